//! Container mode as `docker run` users expect it, through the `ignite` binary (QEMU, TCG):
//! a guest that never reaches its workload is a failure with the reason, not a clean exit.

mod common;

use common::{VmHost, stdout};

#[test]
fn a_kernel_panic_at_boot_fails_the_run_with_125_and_the_panic_line() {
    let host = VmHost::new();
    // No init the kernel can run: "Kernel panic - not syncing: No working init found".
    let args = "console=ttyS0 reboot=k panic=1 rdinit=/nonexistent init=/nonexistent";
    let out = host
        .ignite()
        .args(["run", "--rm", "--network", "none", "--kernel-args", args])
        .arg(host.image())
        .args(["--", "true"])
        .assert()
        .code(125);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("Kernel panic - not syncing"), "{stderr}");
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");

    // Without --rm, the VM's status records it.
    host.ignite()
        .args([
            "run",
            "--name",
            "panics",
            "--network",
            "none",
            "--kernel-args",
            args,
        ])
        .arg(host.image())
        .assert()
        .failure();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let reason = loop {
        let reason = stdout(host.ignite().args([
            "inspect",
            "vm",
            "panics",
            "-t",
            "{{.Status.Exit.Reason}}",
        ]));
        if reason.contains("panicked") {
            break reason;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no panic recorded: {reason}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(reason.contains("Kernel panic - not syncing"), "{reason}");
}
