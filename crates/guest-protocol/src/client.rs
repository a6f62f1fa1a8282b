//! The host's side of the agent protocol over any stream (a unix socket to QEMU's
//! virtio-serial chardev, or a Firecracker vsock connection after its `CONNECT` handshake).
//! One reader thread routes frames to their sessions, so sessions run concurrently.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::agent::{
    BootRequest, CONTROL, CopyRequest, ErrorBody, ExecRequest, ExitStatus, Frame, FrameKind, Hello,
    MAX_PAYLOAD, PROTOCOL_VERSION, RestoreRequest, SignalRequest, WORKLOAD, WindowSize,
};

type Routes = Arc<Mutex<HashMap<u32, SyncSender<Frame>>>>;

/// Frames held for one session that its reader has not taken yet. When they are full the
/// router stops reading from the guest, the guest's writes block, and so does the process
/// writing in the guest: what the guest sends cannot grow host memory beyond this bound
/// (at most this many frames of `MAX_PAYLOAD` per session).
pub const SESSION_BACKLOG: usize = 8;

/// Control frames (hello, workload exit) held until read; further ones are dropped, since a
/// guest that floods them gains nothing but its own lost messages.
const CONTROL_BACKLOG: usize = 16;

/// What [`Session::wait`] collects at most.
pub const MAX_COLLECTED: usize = 256 << 20;

pub struct AgentClient {
    writer: Arc<Mutex<Box<dyn Write + Send>>>,
    routes: Routes,
    /// Held so the router keeps running after the hello (control frames the guest sends
    /// later are dropped once the backlog is full), and read by [`AgentClient::greet_again`].
    control: Mutex<Receiver<Frame>>,
    /// The container-mode workload's output and exit, routed from the first frame on.
    workload: Mutex<Option<Receiver<Frame>>>,
    next_session: Mutex<u32>,
    /// What the guest said in its hello.
    pub guest: Hello,
}

/// What an exec session ended with.
#[derive(Debug, Clone)]
pub struct Finished {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub status: ExitStatus,
}

fn protocol_error(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

impl AgentClient {
    /// Greets the agent and waits up to `timeout` for its answer (the guest may still be
    /// booting; the greeting is repeated every half second until then).
    pub fn connect<S>(reader: S, writer: S, timeout: Duration) -> io::Result<AgentClient>
    where
        S: Read + Write + Send + 'static,
    {
        let writer: Arc<Mutex<Box<dyn Write + Send>>> = Arc::new(Mutex::new(Box::new(writer)));
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let (control_tx, control) = mpsc::sync_channel(CONTROL_BACKLOG);
        let (workload_tx, workload) = mpsc::sync_channel(SESSION_BACKLOG);
        routes
            .lock()
            .expect("routes lock")
            .insert(WORKLOAD, workload_tx);
        {
            let routes = routes.clone();
            std::thread::spawn(move || route_frames(reader, routes, control_tx));
        }
        let hello = host_hello();
        let deadline = Instant::now() + timeout;
        loop {
            writer
                .lock()
                .expect("writer lock")
                .write_all(&hello.encode())?;
            let left = deadline.saturating_duration_since(Instant::now());
            match control.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(frame) if frame.kind == FrameKind::Hello => {
                    let guest: Hello = frame.body()?;
                    if guest.version != PROTOCOL_VERSION {
                        return Err(protocol_error(format!(
                            "the VM's agent speaks protocol version {}, this ignite {PROTOCOL_VERSION}: use matching ignite and ignite-init builds",
                            guest.version
                        )));
                    }
                    return Ok(AgentClient {
                        writer,
                        routes,
                        control: Mutex::new(control),
                        workload: Mutex::new(Some(workload)),
                        next_session: Mutex::new(1),
                        guest,
                    });
                }
                Ok(frame) if frame.kind == FrameKind::Error => {
                    let body: ErrorBody = frame.body()?;
                    return Err(protocol_error(body.message));
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Ok(_) | Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the VM's agent did not answer",
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the agent connection closed",
                    ));
                }
            }
        }
    }

    fn send(&self, frame: &Frame) -> io::Result<()> {
        let mut writer = self.writer.lock().expect("writer lock");
        writer.write_all(&frame.encode())?;
        writer.flush()
    }

    /// Starts a process in the guest.
    pub fn exec(&self, request: &ExecRequest) -> io::Result<Session<'_>> {
        self.start(FrameKind::Exec, request)
    }

    /// Starts a copy into the guest: write a tar archive with [`Session::write_stdin`],
    /// then [`Session::close_stdin`], then wait.
    pub fn copy_in(&self, path: &str) -> io::Result<Session<'_>> {
        self.start(FrameKind::CopyIn, &CopyRequest { path: path.into() })
    }

    /// Starts a copy out of the guest: the tar archive arrives as stdout.
    pub fn copy_out(&self, path: &str) -> io::Result<Session<'_>> {
        self.start(FrameKind::CopyOut, &CopyRequest { path: path.into() })
    }

    /// Renews a restored guest's clock, entropy and network identity, and waits until it
    /// has.
    pub fn restored(&self, request: &RestoreRequest, timeout: Duration) -> io::Result<()> {
        match self.start(FrameKind::Restored, request)?.wait(timeout)? {
            Ok(done) if done.status.shell_code() == 0 => Ok(()),
            Ok(done) => Err(io::Error::other(format!(
                "the guest could not renew itself after the restore: {}",
                String::from_utf8_lossy(&done.stderr).trim()
            ))),
            Err(body) => Err(io::Error::other(format!(
                "the guest could not renew itself after the restore: {}",
                body.message
            ))),
        }
    }

    /// Greets the guest again on this connection and waits for its answer: a warm start's
    /// init hands the channel to the agent, which must be greeted to send the workload's
    /// output. (One connection throughout: a guest drops what arrives on its channel
    /// while the host reconnects.)
    pub fn greet_again(&self, timeout: Duration) -> io::Result<Hello> {
        let control = self.control.lock().expect("control lock");
        while control.try_recv().is_ok() {}
        let deadline = Instant::now() + timeout;
        loop {
            self.send(&host_hello())?;
            let left = deadline.saturating_duration_since(Instant::now());
            match control.recv_timeout(left.min(Duration::from_millis(500))) {
                Ok(frame) if frame.kind == FrameKind::Hello => return frame.body(),
                Ok(frame) if frame.kind == FrameKind::Error => {
                    let body: ErrorBody = frame.body()?;
                    return Err(protocol_error(body.message));
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Ok(_) | Err(RecvTimeoutError::Timeout) => {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the VM's agent did not answer",
                    ));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        "the agent connection closed",
                    ));
                }
            }
        }
    }

    /// Hands a warm-start template's guest the configuration of the VM restored from it,
    /// and waits until it has taken it.
    pub fn boot(&self, request: &BootRequest, timeout: Duration) -> io::Result<()> {
        match self.start(FrameKind::Boot, request)?.wait(timeout)? {
            Ok(_) => Ok(()),
            Err(body) => Err(io::Error::other(format!(
                "the template's guest did not take the VM's configuration: {}",
                body.message
            ))),
        }
    }

    fn start<T: serde::Serialize>(&self, kind: FrameKind, body: &T) -> io::Result<Session<'_>> {
        let (id, rx) = self.open_route();
        self.send(&Frame::json(kind, id, body))?;
        Ok(Session {
            client: self,
            id,
            frames: Mutex::new(rx),
        })
    }

    /// A new session id whose frames from the guest go to the returned receiver: for
    /// relaying another client's session (the supervisor does this for `ignite exec`).
    pub fn open_route(&self) -> (u32, Receiver<Frame>) {
        let id = {
            let mut next = self.next_session.lock().expect("session counter");
            let id = *next;
            // Never CONTROL, never WORKLOAD: past the last id, back to the first.
            *next = if id >= WORKLOAD - 1 { 1 } else { id + 1 };
            id
        };
        let (tx, rx) = mpsc::sync_channel(SESSION_BACKLOG);
        self.routes.lock().expect("routes lock").insert(id, tx);
        (id, rx)
    }

    /// Sends a frame as it is (see [`AgentClient::open_route`]).
    pub fn send_frame(&self, frame: &Frame) -> io::Result<()> {
        self.send(frame)
    }

    /// Asks the guest to stop (its workload or init gets the stop signal).
    pub fn shutdown(&self) -> io::Result<()> {
        self.send(&Frame::new(FrameKind::Shutdown, CONTROL, Vec::new()))
    }

    /// The container-mode workload's frames, in the order the guest sent them: Stdout and
    /// Stderr, then WorkloadExited. For one taker: the supervisor. The frames wait (and so,
    /// once [`SESSION_BACKLOG`] are held, does the guest) until they are read.
    pub fn take_workload(&self) -> Option<Receiver<Frame>> {
        self.workload.lock().expect("workload lock").take()
    }

    /// Waits for the container-mode workload's exit status, dropping its output, and
    /// acknowledges it (the guest then powers off).
    pub fn workload_exit(&self, timeout: Duration) -> io::Result<ExitStatus> {
        Ok(self.workload_output(timeout)?.status)
    }

    /// Collects the container-mode workload's output until it exits (at most
    /// [`MAX_COLLECTED`] bytes), and acknowledges the exit.
    pub fn workload_output(&self, timeout: Duration) -> io::Result<Finished> {
        let frames = self.take_workload().ok_or_else(|| {
            io::Error::other("the workload's frames were taken by another reader")
        })?;
        let finished = collect_workload(&frames, timeout)?;
        self.ack_exit()?;
        Ok(finished)
    }

    /// Tells the guest its workload's output and exit are stored: it may power off.
    pub fn ack_exit(&self) -> io::Result<()> {
        self.send(&Frame::new(FrameKind::ExitAck, CONTROL, Vec::new()))
    }
}

/// Reads `frames` (see [`AgentClient::take_workload`]) until the workload's exit.
pub fn collect_workload(frames: &Receiver<Frame>, timeout: Duration) -> io::Result<Finished> {
    let deadline = Instant::now() + timeout;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = frames.recv_timeout(left).map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the workload's exit status did not arrive",
            )
        })?;
        if stdout.len() + stderr.len() > MAX_COLLECTED {
            return Err(protocol_error(format!(
                "the workload sent more than {MAX_COLLECTED} bytes of output"
            )));
        }
        match frame.kind {
            FrameKind::Stdout => stdout.extend(frame.payload),
            FrameKind::Stderr => stderr.extend(frame.payload),
            FrameKind::WorkloadExited => {
                return Ok(Finished {
                    stdout,
                    stderr,
                    status: frame.body()?,
                });
            }
            _ => {}
        }
    }
}

/// The host's hello.
fn host_hello() -> Frame {
    Frame::json(
        FrameKind::Hello,
        CONTROL,
        &Hello {
            version: PROTOCOL_VERSION,
            software: format!("ignite v{}", env!("CARGO_PKG_VERSION")),
            mode: None,
            boot: None,
        },
    )
}

fn route_frames(mut reader: impl Read, routes: Routes, control: SyncSender<Frame>) {
    while let Ok(Some(frame)) = Frame::read_from(&mut reader) {
        if frame.session == CONTROL {
            // Full: nobody is reading control frames now, and a flood is the guest's loss.
            if let Err(TrySendError::Disconnected(_)) = control.try_send(frame) {
                break;
            }
            continue;
        }
        let route = routes
            .lock()
            .expect("routes lock")
            .get(&frame.session)
            .cloned();
        if let Some(route) = route {
            let ends = matches!(frame.kind, FrameKind::Exited | FrameKind::Error);
            let session = frame.session;
            // Blocks while the session's reader is behind: that is the backpressure.
            let gone = route.send(frame).is_err();
            if ends || gone {
                routes.lock().expect("routes lock").remove(&session);
            }
        }
    }
    // The stream ended: every waiting session sees its channel close.
    routes.lock().expect("routes lock").clear();
}

/// One running process in the guest.
pub struct Session<'a> {
    client: &'a AgentClient,
    id: u32,
    /// Behind a lock so one thread can read output while another feeds stdin.
    frames: Mutex<Receiver<Frame>>,
}

/// What a session produced next.
#[derive(Debug)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exited(ExitStatus),
    /// The guest could not start the process.
    Failed(ErrorBody),
}

impl Session<'_> {
    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn write_stdin(&self, bytes: &[u8]) -> io::Result<()> {
        for chunk in bytes.chunks(MAX_PAYLOAD) {
            self.client
                .send(&Frame::new(FrameKind::Stdin, self.id, chunk.to_vec()))?;
        }
        Ok(())
    }

    pub fn close_stdin(&self) -> io::Result<()> {
        self.client
            .send(&Frame::new(FrameKind::Stdin, self.id, Vec::new()))
    }

    pub fn signal(&self, signal: i32) -> io::Result<()> {
        self.client.send(&Frame::json(
            FrameKind::Signal,
            self.id,
            &SignalRequest { signal },
        ))
    }

    pub fn resize(&self, size: WindowSize) -> io::Result<()> {
        self.client
            .send(&Frame::json(FrameKind::Resize, self.id, &size))
    }

    /// The next piece of output, or the end.
    pub fn next(&self, timeout: Duration) -> io::Result<Output> {
        let frame = self
            .frames
            .lock()
            .expect("session frames lock")
            .recv_timeout(timeout)
            .map_err(|e| match e {
                RecvTimeoutError::Timeout => io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the guest process did not finish in time",
                ),
                RecvTimeoutError::Disconnected => io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the agent connection closed before the process ended",
                ),
            })?;
        Ok(match frame.kind {
            FrameKind::Stdout => Output::Stdout(frame.payload),
            FrameKind::Stderr => Output::Stderr(frame.payload),
            FrameKind::Exited => Output::Exited(frame.body()?),
            FrameKind::Error => Output::Failed(frame.body()?),
            other => return Err(protocol_error(format!("unexpected {other:?} frame"))),
        })
    }

    /// Collects all output until the process ends (at most [`MAX_COLLECTED`] bytes: more
    /// is an error, since the guest decides how much it sends).
    pub fn wait(self, timeout: Duration) -> io::Result<Result<Finished, ErrorBody>> {
        let deadline = Instant::now() + timeout;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            let output = self.next(deadline.saturating_duration_since(Instant::now()))?;
            if stdout.len() + stderr.len() > MAX_COLLECTED {
                return Err(protocol_error(format!(
                    "the guest process sent more than {MAX_COLLECTED} bytes of output"
                )));
            }
            match output {
                Output::Stdout(b) => stdout.extend(b),
                Output::Stderr(b) => stderr.extend(b),
                Output::Exited(status) => {
                    return Ok(Ok(Finished {
                        stdout,
                        stderr,
                        status,
                    }));
                }
                Output::Failed(body) => return Ok(Err(body)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A guest that greets, sends output the host has not asked for yet (a workload that
    /// started before anyone listened), then the exit; the host gets all of it in order
    /// and acknowledges the exit.
    #[test]
    fn the_workload_s_output_and_exit_arrive_in_order_and_are_acknowledged() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let guest_thread = std::thread::spawn(move || {
            let hello = Frame::read_from(&mut guest).unwrap().unwrap();
            assert_eq!(hello.kind, FrameKind::Hello);
            for frame in [
                Frame::json(
                    FrameKind::Hello,
                    CONTROL,
                    &Hello {
                        version: PROTOCOL_VERSION,
                        software: "guest".into(),
                        mode: Some("container".into()),
                        boot: None,
                    },
                ),
                Frame::new(FrameKind::Stdout, WORKLOAD, b"one ".to_vec()),
                Frame::new(FrameKind::Stderr, WORKLOAD, vec![0, 255]),
                Frame::new(FrameKind::Stdout, WORKLOAD, b"two".to_vec()),
                Frame::json(
                    FrameKind::WorkloadExited,
                    WORKLOAD,
                    &ExitStatus {
                        code: Some(7),
                        signal: None,
                    },
                ),
            ] {
                guest.write_all(&frame.encode()).unwrap();
            }
            // Whatever else the host sends, the acknowledgement must come.
            loop {
                let frame = Frame::read_from(&mut guest).unwrap().unwrap();
                if frame.kind == FrameKind::ExitAck {
                    return;
                }
            }
        });
        let client =
            AgentClient::connect(host.try_clone().unwrap(), host, Duration::from_secs(10)).unwrap();
        let done = client.workload_output(Duration::from_secs(10)).unwrap();
        assert_eq!(done.stdout, b"one two");
        assert_eq!(done.stderr, [0, 255]);
        assert_eq!(done.status.code, Some(7));
        guest_thread.join().unwrap();
        assert!(client.take_workload().is_none(), "one taker only");
    }

    #[test]
    fn exec_sessions_never_get_the_workload_s_or_the_control_id() {
        let (host, _guest) = UnixStream::pair().unwrap();
        let client = AgentClient {
            writer: Arc::new(Mutex::new(Box::new(host))),
            routes: Arc::default(),
            control: Mutex::new(mpsc::sync_channel(1).1),
            workload: Mutex::new(None),
            next_session: Mutex::new(WORKLOAD - 1),
            guest: Hello {
                version: PROTOCOL_VERSION,
                software: "t".into(),
                mode: None,
                boot: None,
            },
        };
        let ids: Vec<u32> = (0..3).map(|_| client.open_route().0).collect();
        assert_eq!(ids, [WORKLOAD - 1, 1, 2]);
        assert!(!ids.contains(&WORKLOAD) && !ids.contains(&CONTROL));
    }
}
