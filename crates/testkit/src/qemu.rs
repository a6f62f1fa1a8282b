//! Booting test guests with real QEMU (TCG: nested KVM cannot run a guest on the CI
//! machines), on the command line the product's QEMU driver builds, with the console in a
//! file the test watches and the guest agent on a unix socket.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ignite_guest_protocol::client::AgentClient;
use ignite_vmm::{ConsoleSpec, MachineSpec, qemu};

pub struct TestVm {
    child: Child,
    pub console: PathBuf,
    agent_socket: Option<PathBuf>,
    started: Instant,
}

impl TestVm {
    /// Starts QEMU for `spec`, whose console must be a file.
    pub fn start(spec: &MachineSpec) -> TestVm {
        crate::require_program(qemu::QEMU_BINARY, "qemu-system-x86");
        let ConsoleSpec::File(console) = &spec.console else {
            panic!("test VMs log their console to a file");
        };
        let child = Command::new(qemu::QEMU_BINARY)
            .args(qemu::command_line(spec))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("QEMU starts");
        TestVm {
            child,
            console: console.clone(),
            agent_socket: spec.agent_socket.clone(),
            started: Instant::now(),
        }
    }

    pub fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console)
            .map(|s| s.replace('\r', ""))
            .unwrap_or_default()
    }

    /// Waits until the console shows `needle`; panics with the console when it does not.
    pub fn wait_for_console(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.console_text();
            if text.contains(needle) {
                return text;
            }
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                panic!(
                    "the console did not show {needle:?} within {timeout:?} ({:?} after start):\n{text}",
                    self.started.elapsed()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for QEMU to exit; returns the console and whether QEMU exited cleanly (a
    /// guest power-off). Kills it after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> (String, bool) {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        eprintln!("guest ran for {:?}", self.started.elapsed());
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            use std::io::Read;
            let _ = e.read_to_string(&mut stderr);
        }
        if !stderr.trim().is_empty() {
            eprintln!("QEMU said: {stderr}");
        }
        (self.console_text(), status.is_some_and(|s| s.success()))
    }

    /// Connects to the guest agent (QEMU's socket appears at once; the agent answers once
    /// the guest has booted far enough).
    pub fn agent(&mut self, timeout: Duration) -> AgentClient {
        let path = self
            .agent_socket
            .clone()
            .expect("the VM has an agent socket");
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    panic!("cannot connect to {}: {e}", path.display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let reader = stream.try_clone().unwrap();
        AgentClient::connect(
            reader,
            stream,
            deadline.saturating_duration_since(Instant::now()),
        )
        .unwrap_or_else(|e| {
            panic!(
                "the agent did not answer: {e}\nconsole:\n{}",
                self.console_text()
            )
        })
    }
}

impl Drop for TestVm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
