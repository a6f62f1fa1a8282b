//! The attached side of `run --rm`, `run -a`/`-i` and `start -a`/`-i` in container mode:
//! the workload's stdout and stderr on ours, byte for byte; with `-i` our stdin on its;
//! with `-t` our terminal in raw mode and its size passed on; and, as `docker run` does,
//! signals we receive passed to the workload. A guest in VM mode has no workload: `-i`
//! joins its console instead, as in Ignite, and SIGINT, SIGTERM or SIGHUP stop the VM as
//! `ignite stop` does. Signals are caught from before the VM starts ([`SignalProxy`]), so
//! one that comes while the guest boots is held for it, never the end of the client alone.

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use ignite_api::Vm;
use ignite_guest_protocol::agent::{ExitStatus, WindowSize};
use ignite_runtime::vms::attach::{AttachRequest, AttachSender, Attachment, Event};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::Signals;

const SIGPIPE: i32 = 13;

/// How an attached start wants to be connected.
#[derive(Debug, Clone, Copy)]
pub struct AttachFlags {
    /// `-i`: our stdin goes to the workload.
    pub stdin: bool,
    /// The VM's spec has `tty`.
    pub tty: bool,
}

impl AttachFlags {
    pub fn request(self) -> AttachRequest {
        AttachRequest {
            stdin: self.stdin,
            window: self.tty.then(window_size).flatten(),
        }
    }
}

/// What the attachment turned out to be.
pub enum Attached {
    /// The workload ran and its streams ended with the VM; its status, once it reported it.
    Workload(Option<ExitStatus>),
    /// The guest runs no workload (VM mode) or has no agent: the caller decides (console
    /// for `-i`, else wait).
    NoWorkload,
}

fn window_size() -> Option<WindowSize> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (size.ws_row > 0 && size.ws_col > 0).then_some(WindowSize {
        rows: size.ws_row,
        cols: size.ws_col,
    })
}

/// The signals an attached client passes on, caught (and so not the client's end) from
/// before the VM starts until the client exits.
pub struct SignalProxy {
    /// Taken by the one thread that handles them once the guest's mode is known.
    signals: std::sync::Mutex<Option<Signals>>,
    /// The signal that stopped a VM-mode guest, 0 until one did.
    stopped_by: Arc<AtomicI32>,
}

impl SignalProxy {
    pub fn catch() -> anyhow::Result<SignalProxy> {
        let signals = Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH])
            .map_err(|e| anyhow::anyhow!("cannot handle signals: {e}"))?;
        Ok(SignalProxy {
            signals: std::sync::Mutex::new(Some(signals)),
            stopped_by: Arc::default(),
        })
    }

    fn take(&self) -> Option<Signals> {
        self.signals.lock().expect("signals lock").take()
    }

    /// The signal that made us stop a VM-mode guest, if one did.
    pub fn stopped_by(&self) -> Option<i32> {
        match self.stopped_by.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// Signals to us go to the workload (docker's sig-proxy); a window change resizes its
    /// terminal. In raw mode ^C is a byte for the guest's terminal, not a signal here.
    fn forward_to_workload(&self, sender: AttachSender, tty: bool) {
        let Some(mut signals) = self.take() else {
            return;
        };
        std::thread::spawn(move || {
            for signal in signals.forever() {
                let sent = if signal == SIGWINCH {
                    match (tty, window_size()) {
                        (true, Some(size)) => sender.resize(size),
                        _ => Ok(()),
                    }
                } else {
                    sender.signal(signal)
                };
                if sent.is_err() {
                    return;
                }
            }
        });
    }

    /// No workload (VM mode, or no agent): SIGINT, SIGTERM and SIGHUP stop the VM
    /// gracefully, as `ignite stop` does; the first of them is the client's exit status.
    fn stop_the_vm_on_signal(&self, vm: Vm) {
        let Some(mut signals) = self.take() else {
            return;
        };
        let stopped_by = self.stopped_by.clone();
        std::thread::spawn(move || {
            for signal in signals.forever() {
                if matches!(signal, SIGINT | SIGTERM | SIGHUP)
                    && stopped_by
                        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    tracing::debug!("signal {signal}: stopping VM {}", vm.metadata.name);
                    ignite_runtime::vms::request_stop(&vm);
                }
            }
        });
    }
}

/// Follows the attachment of the started `vm` until the VM ends.
pub fn follow(
    attachment: &mut Attachment,
    flags: AttachFlags,
    proxy: &SignalProxy,
    vm: &Vm,
) -> anyhow::Result<Attached> {
    let event = attachment.next_event()?;
    if let Event::Guest {
        boot: Some(boot), ..
    } = &event
    {
        match &vm.status.restored_from {
            Some(snapshot) => tracing::debug!("restored from {snapshot}, not booted: {boot}"),
            None => tracing::debug!("boot phases: {boot}"),
        }
    }
    match event {
        Event::Guest { mode, .. } if mode.as_deref() == Some("container") => {}
        Event::NoAgent(why) => {
            tracing::debug!("no workload stream: {why}");
            proxy.stop_the_vm_on_signal(vm.clone());
            return Ok(Attached::NoWorkload);
        }
        _ => {
            proxy.stop_the_vm_on_signal(vm.clone());
            return Ok(Attached::NoWorkload);
        }
    }
    let sender = attachment.sender();
    let raw = flags.tty && flags.stdin && std::io::stdin().is_terminal();
    let _raw = raw.then(crate::terminal::RawMode::enable);
    if flags.tty
        && let Some(size) = window_size()
    {
        let _ = sender.resize(size);
    }
    if flags.stdin {
        let sender = sender.clone();
        std::thread::spawn(move || feed_stdin(&sender));
    }
    proxy.forward_to_workload(sender.clone(), flags.tty);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    let mut out_open = true;
    let mut exit = None;
    loop {
        match attachment.next_event()? {
            // Our reader is gone (`| head`): the workload learns it as a writer to a closed
            // pipe would, and the VM still ends (and is removed) as usual.
            Event::Stdout(bytes)
                if out_open && out.write_all(&bytes).and_then(|()| out.flush()).is_err() =>
            {
                out_open = false;
                let _ = sender.signal(SIGPIPE);
            }
            Event::Stderr(bytes) => {
                let _ = err.write_all(&bytes).and_then(|()| err.flush());
            }
            Event::Exited(status) => exit = Some(status),
            Event::Closed => return Ok(Attached::Workload(exit)),
            _ => {}
        }
    }
}

fn feed_stdin(sender: &AttachSender) {
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = sender.close_stdin();
                return;
            }
            Ok(n) => {
                if sender.stdin(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}
