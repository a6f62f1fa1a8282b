//! A deadline for tests that boot VMs. A test that hangs (a guest that never powers off, a
//! command that never returns) would otherwise hold CI until its own limit and print
//! nothing of why. When the deadline passes, the watchdog writes what the state root's VMs
//! were doing (their processes, the supervisor's log, the console's last lines) straight
//! to the test binary's stderr, past the harness's output capture, kills the processes
//! that belong to the state root and ends the test binary with a failure.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The deadline when `IGNITE_TEST_WATCHDOG_SECS` does not set one: far above what any VM
/// test takes on a slow machine, far below CI's own limit.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(15 * 60);

/// How much of each log the report shows.
const LOG_TAIL: u64 = 4 << 10;

/// Disarms the deadline when dropped (the test ended, passed or failed).
#[derive(Debug)]
pub struct Watchdog {
    finished: Arc<(Mutex<bool>, Condvar)>,
}

/// The deadline from `IGNITE_TEST_WATCHDOG_SECS`, else [`DEFAULT_LIMIT`].
pub fn limit() -> Duration {
    std::env::var("IGNITE_TEST_WATCHDOG_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_LIMIT, Duration::from_secs)
}

/// Arms a deadline of [`limit`] for the test running on this thread, whose VMs keep their
/// state under `state_root`.
pub fn arm(state_root: &Path) -> Watchdog {
    arm_for(state_root, limit())
}

/// Arms a deadline of `limit`.
pub fn arm_for(state_root: &Path, limit: Duration) -> Watchdog {
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    let finished = Arc::new((Mutex::new(false), Condvar::new()));
    let watched = finished.clone();
    let root = state_root.to_path_buf();
    std::thread::spawn(move || {
        let (lock, cond) = &*watched;
        let deadline = Instant::now() + limit;
        let mut done = lock.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(done);
                expire(&test, &root, limit);
            }
            done = cond
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    });
    Watchdog { finished }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let (lock, cond) = &*self.finished;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cond.notify_all();
    }
}

fn expire(test: &str, root: &Path, limit: Duration) -> ! {
    let report = report(test, root, limit);
    // Not eprintln!: the harness captures that for the test's thread and its children, and
    // would drop it when the process ends here.
    let _ = std::io::stderr().write_all(report.as_bytes());
    for pid in processes_under(root).iter().map(|(pid, _)| *pid) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &pid.to_string()])
            .status();
    }
    std::process::exit(101)
}

/// What the report says: the processes that name the state root, then each VM's
/// supervisor log and console tail.
pub fn report(test: &str, root: &Path, limit: Duration) -> String {
    let mut out = format!(
        "\n==== watchdog: {test} did not finish within {} s; what its VMs were doing (state {}):\n",
        limit.as_secs(),
        root.display()
    );
    out.push_str("-- processes\n");
    for (_, line) in processes_under(root) {
        out.push_str(&line);
        out.push('\n');
    }
    for dir in vm_dirs(root) {
        out.push_str(&format!("-- VM {}\n", dir.display()));
        for file in ["metadata.json", "supervisor.log", "console.log"] {
            out.push_str(&format!("--- {file} (last {} KiB)\n", LOG_TAIL >> 10));
            out.push_str(&tail(&dir.join(file)));
            out.push('\n');
        }
    }
    out.push_str("==== watchdog: killing them and failing the test binary\n");
    out
}

/// `(pid, ps line)` of every process whose command line names `root`.
fn processes_under(root: &Path) -> Vec<(u32, String)> {
    let Ok(out) = std::process::Command::new("ps")
        .args(["-eo", "pid=,ppid=,etimes=,stat=,args="])
        .output()
    else {
        return Vec::new();
    };
    let needle = root.to_string_lossy().into_owned();
    let me = std::process::id();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let pid: u32 = l.split_whitespace().next()?.parse().ok()?;
            (pid != me).then(|| (pid, l.trim().to_string()))
        })
        .collect()
}

/// The VM directories of a state root (state/vms/UID), or of a root that is one.
fn vm_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for vms in [root.join("vms"), root.join("state").join("vms")] {
        if let Ok(entries) = std::fs::read_dir(&vms) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
        }
    }
    dirs.sort();
    dirs
}

fn tail(path: &Path) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return "(none)".into();
    };
    let len = file.metadata().map_or(0, |m| m.len());
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(LOG_TAIL)));
    let mut bytes = Vec::new();
    let _ = file.take(LOG_TAIL).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_the_test_and_shows_each_vm_s_logs() {
        let root = tempfile::tempdir().unwrap();
        let vm = root.path().join("vms").join("0123456789abcdef");
        std::fs::create_dir_all(&vm).unwrap();
        std::fs::write(vm.join("console.log"), "x".repeat(10_000) + "the last line").unwrap();
        std::fs::write(vm.join("supervisor.log"), "the VMM runs").unwrap();
        let report = report("a_hanging_test", root.path(), Duration::from_secs(7));
        assert!(
            report.contains("a_hanging_test did not finish within 7 s"),
            "{report}"
        );
        assert!(report.contains("the VMM runs"), "{report}");
        assert!(report.contains("the last line"), "{report}");
        // Only the tail: the console's first bytes are not in it.
        assert!(report.matches('x').count() <= LOG_TAIL as usize, "{report}");
        assert!(
            report.contains("--- metadata.json (last 4 KiB)\n(none)"),
            "{report}"
        );
    }

    #[test]
    fn processes_naming_the_root_are_found() {
        let root = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30", "sh"])
            .arg(root.path())
            .spawn()
            .unwrap();
        let found = processes_under(root.path());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.iter().any(|(pid, _)| *pid == child.id()), "{found:?}");
    }

    #[test]
    fn a_disarmed_watchdog_lets_the_test_go_on() {
        let root = tempfile::tempdir().unwrap();
        let dog = arm_for(root.path(), Duration::from_millis(200));
        drop(dog);
        std::thread::sleep(Duration::from_millis(400));
    }
}
