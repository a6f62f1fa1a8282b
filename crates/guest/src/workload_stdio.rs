//! Container mode: the workload's stdin, stdout and stderr, connected to the host through
//! the agent (session [`WORKLOAD`]) instead of the serial console, so `ignite run --rm` and
//! `-a` get its output byte for byte, stdout and stderr apart, and `ignite logs` keeps it
//! beside the boot messages.
//!
//! Pipes by default; with `-t` one pseudo-terminal for all three. Its stdin is /dev/null
//! unless the host attached it (`-i`). Every byte the workload wrote is sent before its
//! exit status, and PID 1 powers off only once the host acknowledged both.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ignite_guest_protocol::agent::{
    ExitStatus, Frame, FrameKind, SignalRequest, WORKLOAD, WindowSize,
};
use ignite_guest_protocol::config::Workload;
use rustix::process::{Pid, Signal};

use crate::pty::{open_terminal, winsize};

/// Read size of the output pumps.
const CHUNK: usize = 32 * 1024;
/// After the workload exited, how long its output may stay open and silent (held by
/// descendants) before the exit is reported anyway. Output still flowing is waited for.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
/// Chunks of stdin waiting for a workload that does not read them.
const STDIN_BACKLOG: usize = 64;

/// PID 1's end of the agent in container mode: a framed link (the agent's stdin and
/// stdout) over which the workload's output and exit go to the host, and the host's stdin,
/// window size, signals and exit acknowledgement come back.
pub struct AgentLink {
    pub to_agent: std::fs::File,
    pub from_agent: std::fs::File,
}

/// The command to start, with its stdio set for the host; [`Pending::start`] after spawn.
pub struct Pending {
    link: AgentLink,
    terminal: Option<Arc<OwnedFd>>,
    stdin: bool,
}

/// Builds the workload's command: the program itself, or with a terminal the
/// `exec-tty` helper that makes the terminal its controlling one and execs the program.
pub fn command(
    program: &Path,
    argv: &[String],
    workload: &Workload,
    link: Option<AgentLink>,
) -> std::io::Result<(Command, Option<Pending>)> {
    let Some(link) = link else {
        // No agent: the workload has the console, as the init's own output does.
        let mut command = Command::new(program);
        command.arg0(&argv[0]).args(&argv[1..]);
        return Ok((command, None));
    };
    let mut command;
    let terminal = if workload.tty {
        let (master, slave) = open_terminal(workload.window)?;
        command = Command::new("/proc/self/exe");
        command
            .arg0("ignite-exec")
            .arg("exec-tty")
            .arg(program)
            .args(argv)
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        Some(Arc::new(master))
    } else {
        command = Command::new(program);
        command
            .arg0(&argv[0])
            .args(&argv[1..])
            .stdin(if workload.stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        None
    };
    Ok((
        command,
        Some(Pending {
            link,
            terminal,
            stdin: workload.stdin,
        }),
    ))
}

impl Pending {
    /// The link back, for a workload that could not be started.
    pub fn into_link(self) -> AgentLink {
        self.link
    }
}

/// The workload could not be started: the reason goes on its stderr (where `docker run`
/// prints its engine's), then `status` as its exit status. True once the host acknowledged
/// it within `timeout`.
pub fn report_failure(link: AgentLink, status: i32, message: &str, timeout: Duration) -> bool {
    let AgentLink {
        mut to_agent,
        from_agent,
    } = link;
    let (ack, acks) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(from_agent);
        while let Ok(Some(frame)) = Frame::read_from(&mut reader) {
            if frame.kind == FrameKind::ExitAck {
                let _ = ack.send(());
                return;
            }
        }
    });
    let line = format!("ignite-init: {message}\n").into_bytes();
    let exit = ExitStatus {
        code: Some(status),
        signal: None,
    };
    let sent = Frame::new(FrameKind::Stderr, WORKLOAD, line)
        .write_to(&mut to_agent)
        .and_then(|()| {
            Frame::json(FrameKind::WorkloadExited, WORKLOAD, &exit).write_to(&mut to_agent)
        })
        .is_ok();
    sent && acks.recv_timeout(timeout).is_ok()
}

/// The relay once the workload runs.
pub struct Relay {
    to_agent: Arc<Mutex<std::fs::File>>,
    pumps: usize,
    pumped: Receiver<()>,
    /// Frames sent so far, and whether one is being sent, to tell output still flowing
    /// (perhaps slowed by the host) from output merely held open.
    sent: Arc<AtomicU64>,
    sending: Arc<AtomicUsize>,
    acks: Receiver<()>,
}

impl Pending {
    /// Starts pumping the child's output to the host and the host's input to the child.
    pub fn start(self, child: &mut Child) -> Relay {
        let pid = Pid::from_child(child);
        let to_agent = Arc::new(Mutex::new(self.link.to_agent));
        let mut outputs: Vec<(FrameKind, Box<dyn Read + Send>)> = Vec::new();
        let mut input: Option<Box<dyn Write + Send>> = None;
        match &self.terminal {
            Some(master) => {
                if let Ok(fd) = master.try_clone() {
                    outputs.push((FrameKind::Stdout, Box::new(File::from(fd))));
                }
                if let Ok(fd) = master.try_clone() {
                    input = Some(Box::new(File::from(fd)));
                }
            }
            None => {
                if let Some(out) = child.stdout.take() {
                    outputs.push((FrameKind::Stdout, Box::new(out)));
                }
                if let Some(err) = child.stderr.take() {
                    outputs.push((FrameKind::Stderr, Box::new(err)));
                }
                if let Some(stdin) = child.stdin.take() {
                    input = Some(Box::new(stdin));
                }
            }
        }
        let (done, pumped) = mpsc::channel();
        let pumps = outputs.len();
        let sent = Arc::new(AtomicU64::new(0));
        let sending = Arc::new(AtomicUsize::new(0));
        for (kind, reader) in outputs {
            let to_agent = to_agent.clone();
            let done = done.clone();
            let (sent, sending) = (sent.clone(), sending.clone());
            std::thread::spawn(move || {
                pump(kind, reader, &to_agent, &sent, &sending);
                let _ = done.send(());
            });
        }
        let stdin = input
            .filter(|_| self.stdin || self.terminal.is_some())
            .map(|w| {
                let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(STDIN_BACKLOG);
                let terminal = self.terminal.is_some();
                std::thread::spawn(move || feed_stdin(w, rx, terminal));
                tx
            });
        let (ack, acks) = mpsc::channel();
        let from_agent = self.link.from_agent;
        let terminal = self.terminal;
        std::thread::spawn(move || serve_host(from_agent, pid, stdin, terminal, ack));
        Relay {
            to_agent,
            pumps,
            pumped,
            sent,
            sending,
            acks,
        }
    }
}

/// Copies one output stream into frames until it ends (a terminal's master reads EIO
/// once the last process holding the terminal is gone).
fn pump(
    kind: FrameKind,
    mut reader: Box<dyn Read + Send>,
    to_agent: &Mutex<std::fs::File>,
    sent: &AtomicU64,
    sending: &AtomicUsize,
) {
    let mut buf = vec![0u8; CHUNK];
    while let Ok(n @ 1..) = reader.read(&mut buf) {
        sending.fetch_add(1, Ordering::SeqCst);
        let frame = Frame::new(kind, WORKLOAD, buf[..n].to_vec());
        let written = frame.write_to(&mut *to_agent.lock().expect("agent link lock"));
        sending.fetch_sub(1, Ordering::SeqCst);
        sent.fetch_add(1, Ordering::SeqCst);
        if written.is_err() {
            return;
        }
    }
}

/// Writes the host's stdin chunks; an empty one is the end of input (a terminal gets ^D,
/// as from a user at a keyboard).
fn feed_stdin(mut writer: Box<dyn Write + Send>, chunks: Receiver<Vec<u8>>, terminal: bool) {
    for chunk in chunks {
        if chunk.is_empty() {
            if terminal {
                let _ = writer.write_all(b"\x04");
                continue;
            }
            return;
        }
        if writer
            .write_all(&chunk)
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
    }
}

/// The host's frames for the workload, as the agent passes them on.
fn serve_host(
    from_agent: impl Read,
    pid: Pid,
    stdin: Option<SyncSender<Vec<u8>>>,
    terminal: Option<Arc<OwnedFd>>,
    ack: mpsc::Sender<()>,
) {
    let mut reader = BufReader::new(from_agent);
    let mut stdin = stdin;
    while let Ok(Some(frame)) = Frame::read_from(&mut reader) {
        match frame.kind {
            FrameKind::Stdin => {
                let ended = frame.payload.is_empty() && terminal.is_none();
                if let Some(tx) = &stdin
                    && tx.send(frame.payload).is_err()
                {
                    stdin = None;
                }
                if ended {
                    stdin = None;
                }
            }
            FrameKind::Resize => {
                if let (Some(term), Ok(size)) = (&terminal, frame.body::<WindowSize>()) {
                    let _ = rustix::termios::tcsetwinsize(&**term, winsize(size));
                }
            }
            FrameKind::Signal => {
                if let Ok(req) = frame.body::<SignalRequest>()
                    && let Some(sig) = Signal::from_named_raw(req.signal)
                {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
            FrameKind::ExitAck => {
                let _ = ack.send(());
            }
            _ => {}
        }
    }
}

impl Relay {
    /// Reports the exit once the output is through (or [`DRAIN_TIMEOUT`] passed, for
    /// descendants that keep it open); true once the host acknowledged it within `timeout`.
    pub fn finish(self, exit: ExitStatus, timeout: Duration) -> bool {
        let mut open = self.pumps;
        let mut quiet_since = Instant::now();
        let mut last = self.sent.load(Ordering::SeqCst);
        while open > 0 && quiet_since.elapsed() < DRAIN_TIMEOUT {
            match self.pumped.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => open -= 1,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let now = self.sent.load(Ordering::SeqCst);
                    if now != last || self.sending.load(Ordering::SeqCst) > 0 {
                        last = now;
                        quiet_since = Instant::now();
                    }
                }
            }
        }
        let frame = Frame::json(FrameKind::WorkloadExited, WORKLOAD, &exit);
        let sent = frame
            .write_to(&mut *self.to_agent.lock().expect("agent link lock"))
            .is_ok();
        sent && self.acks.recv_timeout(timeout).is_ok()
    }
}
