//! The attached side of `run --rm`, `run -a`/`-i` and `start -a`/`-i` in container mode:
//! the workload's stdout and stderr on ours, byte for byte; with `-i` our stdin on its;
//! with `-t` our terminal in raw mode and its size passed on; and, as `docker run` does,
//! signals we receive passed to the workload. A guest in VM mode has no workload: `-i`
//! joins its console instead, as in Ignite.

use std::io::{IsTerminal, Read, Write};

use ignite_guest_protocol::agent::WindowSize;
use ignite_runtime::vms::attach::{AttachRequest, AttachSender, Attachment, Event};
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

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
    /// The workload ran and its streams ended with the VM.
    Workload,
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

/// Follows the attachment until the VM ends.
pub fn follow(mut attachment: Attachment, flags: AttachFlags) -> anyhow::Result<Attached> {
    match attachment.next_event()? {
        Event::Guest { mode } if mode.as_deref() == Some("container") => {}
        Event::NoAgent(why) => {
            tracing::debug!("no workload stream: {why}");
            return Ok(Attached::NoWorkload);
        }
        _ => return Ok(Attached::NoWorkload),
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
    forward_signals(sender.clone(), flags.tty);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    let mut out_open = true;
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
            Event::Closed => return Ok(Attached::Workload),
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

/// Signals to us go to the workload (docker's sig-proxy); a window change resizes its
/// terminal. In raw mode ^C is a byte for the guest's terminal, not a signal here.
fn forward_signals(sender: AttachSender, tty: bool) {
    let Ok(mut signals) = signal_hook::iterator::Signals::new([
        SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
    ]) else {
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
