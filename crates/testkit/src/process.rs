//! Host processes as the crash tests see them.

/// Whether the process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit_once(')').unwrap().1.trim_start().starts_with('Z'))
}

/// `kill -9`; fails the test when kill does.
pub fn kill9(pid: u32) {
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
}

/// Retries `attempt` every half second until it succeeds with output containing `want` (a
/// server starting, a route appearing), failing the test after 90 s with the last answer.
pub fn eventually(what: &str, want: &str, attempt: impl Fn() -> (bool, String)) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    loop {
        let (ok, out) = attempt();
        if ok && out.contains(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: never got {want:?}; last answer:\n{out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
