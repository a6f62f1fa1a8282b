//! Attached starts (`run --rm`, `run -a`/`-i`, `start -a`/`-i`): the command that starts
//! a container-mode VM stays connected to its workload, as `docker run` does. It gives the
//! supervisor one end of a socket pair as its stdin when it starts it, so the supervisor
//! has its client before the guest boots and nothing the workload prints is missed.
//!
//! The socket carries agent-protocol frames. Supervisor → client: `Hello` (the guest's,
//! once its agent answers; its mode says whether there is a workload), `Error` (no agent
//! will answer), `Stdout`/`Stderr`, `WorkloadExited`; the end of the stream comes after
//! the VM's exit is recorded (the end of the supervisor; for an auto-removed VM the
//! supervisor then waits for the client to hang up, bounded, before it removes the VM, so
//! the client can still read the record). Client → supervisor: `Stdin` (empty: end of
//! input), `Resize`, `Signal`, all for the workload.

use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ignite_guest_protocol::agent::{
    BootTimes, ErrorBody, ExitStatus, Frame, FrameKind, Hello, MAX_PAYLOAD, SignalRequest,
    WORKLOAD, WindowSize,
};
use serde::{Deserialize, Serialize};

/// Set (JSON [`AttachRequest`]) in the supervisor's environment when its stdin is an
/// attached client.
pub const ATTACH_ENV: &str = "IGNITE_ATTACH";

/// How long the supervisor waits on a client that does not read its output before it
/// lets the client go (the output log still gets everything).
const STALLED_CLIENT: Duration = Duration::from_secs(30);

/// What the attached client asks of this start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    /// Feed the workload's stdin (`-i`); otherwise it reads /dev/null.
    pub stdin: bool,
    /// The client's terminal size, for a workload with a terminal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSize>,
}

impl AttachRequest {
    pub fn from_env() -> Option<AttachRequest> {
        serde_json::from_str(&std::env::var(ATTACH_ENV).ok()?).ok()
    }

    pub fn to_env(self) -> String {
        serde_json::to_string(&self).expect("attach requests serialise")
    }
}

/// What arrives on the client's end.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// The guest's agent answered; `mode` is `container` when a workload runs; `boot`
    /// says where the boot's time went.
    Guest {
        mode: Option<String>,
        boot: Option<BootTimes>,
    },
    /// No agent will answer (it is off): there is no workload stream.
    NoAgent(String),
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    Exited(ExitStatus),
    /// The supervisor ended: the VM is over and its exit recorded.
    Closed,
}

/// The client's end.
pub struct Attachment {
    reader: UnixStream,
    sender: AttachSender,
}

/// Sends to the workload; cheap to clone into a stdin or signal thread.
#[derive(Clone)]
pub struct AttachSender(Arc<Mutex<UnixStream>>);

impl Attachment {
    /// A connected pair: the attachment, and the end to give the supervisor as stdin.
    pub fn pair() -> io::Result<(Attachment, OwnedFd)> {
        let (ours, theirs) = UnixStream::pair()?;
        let writer = ours.try_clone()?;
        Ok((
            Attachment {
                reader: ours,
                sender: AttachSender(Arc::new(Mutex::new(writer))),
            },
            theirs.into(),
        ))
    }

    pub fn sender(&self) -> AttachSender {
        self.sender.clone()
    }

    pub fn next_event(&mut self) -> io::Result<Event> {
        loop {
            let Some(frame) = Frame::read_from(&mut self.reader)? else {
                return Ok(Event::Closed);
            };
            return Ok(match frame.kind {
                FrameKind::Hello => {
                    let hello = frame.body::<Hello>()?;
                    Event::Guest {
                        mode: hello.mode,
                        boot: hello.boot,
                    }
                }
                FrameKind::Error => Event::NoAgent(frame.body::<ErrorBody>()?.message),
                FrameKind::Stdout => Event::Stdout(frame.payload),
                FrameKind::Stderr => Event::Stderr(frame.payload),
                FrameKind::WorkloadExited => Event::Exited(frame.body()?),
                _ => continue,
            });
        }
    }
}

/// The client is done once its attachment goes: the socket is shut down for every clone
/// (a stdin or signal thread may hold one), so the supervisor sees it hang up at once.
impl Drop for Attachment {
    fn drop(&mut self) {
        let _ = self.reader.shutdown(std::net::Shutdown::Both);
    }
}

impl AttachSender {
    fn send(&self, frame: &Frame) -> io::Result<()> {
        self.0
            .lock()
            .expect("attach lock")
            .write_all(&frame.encode())
    }

    pub fn stdin(&self, bytes: &[u8]) -> io::Result<()> {
        for chunk in bytes.chunks(MAX_PAYLOAD) {
            self.send(&Frame::new(FrameKind::Stdin, WORKLOAD, chunk.to_vec()))?;
        }
        Ok(())
    }

    pub fn close_stdin(&self) -> io::Result<()> {
        self.send(&Frame::new(FrameKind::Stdin, WORKLOAD, Vec::new()))
    }

    pub fn resize(&self, size: WindowSize) -> io::Result<()> {
        self.send(&Frame::json(FrameKind::Resize, WORKLOAD, &size))
    }

    pub fn signal(&self, signal: i32) -> io::Result<()> {
        self.send(&Frame::json(
            FrameKind::Signal,
            WORKLOAD,
            &SignalRequest { signal },
        ))
    }
}

/// The supervisor's end: output goes out until the client stops reading or leaves.
pub struct AttachedClient {
    writer: Mutex<Option<UnixStream>>,
    /// The socket itself, to end the stream and to see the client hang up.
    socket: UnixStream,
}

impl AttachedClient {
    /// The client on this process's stdin, when [`ATTACH_ENV`] says there is one; stdin
    /// becomes /dev/null so no child inherits the client's socket (and holds it open).
    pub fn from_stdin() -> Option<(AttachedClient, UnixStream, AttachRequest)> {
        let request = AttachRequest::from_env()?;
        let fd = std::io::stdin().as_fd().try_clone_to_owned().ok()?;
        let is_socket = rustix::fs::fstat(&fd)
            .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_socket());
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = rustix::stdio::dup2_stdin(&null);
        }
        if !is_socket {
            tracing::warn!("{ATTACH_ENV} is set but stdin is not a socket: not attached");
            return None;
        }
        let stream = UnixStream::from(fd);
        stream.set_write_timeout(Some(STALLED_CLIENT)).ok()?;
        let reader = stream.try_clone().ok()?;
        let socket = stream.try_clone().ok()?;
        Some((
            AttachedClient {
                writer: Mutex::new(Some(stream)),
                socket,
            },
            reader,
            request,
        ))
    }

    /// Ends the stream (the client sees [`Event::Closed`]) and waits up to `grace` for the
    /// client to hang up: it reads the VM's record meanwhile. Returns whether it did.
    pub fn finish(&self, grace: Duration) -> bool {
        *self.writer.lock().expect("attached client lock") = None;
        let _ = self.socket.shutdown(std::net::Shutdown::Write);
        let deadline = Instant::now() + grace;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [rustix::event::PollFd::new(
                &self.socket,
                rustix::event::PollFlags::RDHUP,
            )];
            let timeout = rustix::event::Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            match rustix::event::poll(&mut fds, Some(&timeout)) {
                Ok(_) => {
                    let seen = fds[0].revents();
                    if seen.intersects(
                        rustix::event::PollFlags::RDHUP
                            | rustix::event::PollFlags::HUP
                            | rustix::event::PollFlags::ERR,
                    ) {
                        return true;
                    }
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(_) => return false,
            }
        }
    }

    pub fn send(&self, frame: &Frame) {
        let mut writer = self.writer.lock().expect("attached client lock");
        if let Some(stream) = writer.as_mut()
            && stream.write_all(&frame.encode()).is_err()
        {
            tracing::warn!(
                "the attached client left or stopped reading: its output is still in ignite logs"
            );
            *writer = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_arrive_as_the_supervisor_sends_them() {
        let (mut attachment, theirs) = Attachment::pair().unwrap();
        let mut supervisor = UnixStream::from(theirs);
        for frame in [
            Frame::json(
                FrameKind::Hello,
                0,
                &Hello {
                    version: 1,
                    software: "t".into(),
                    mode: Some("container".into()),
                    boot: None,
                },
            ),
            Frame::new(FrameKind::Stdout, WORKLOAD, b"out".to_vec()),
            Frame::new(FrameKind::Stderr, WORKLOAD, b"err".to_vec()),
            Frame::json(
                FrameKind::WorkloadExited,
                WORKLOAD,
                &ExitStatus {
                    code: Some(7),
                    signal: None,
                },
            ),
        ] {
            supervisor.write_all(&frame.encode()).unwrap();
        }
        drop(supervisor);
        assert_eq!(
            attachment.next_event().unwrap(),
            Event::Guest {
                mode: Some("container".into()),
                boot: None,
            }
        );
        assert_eq!(
            attachment.next_event().unwrap(),
            Event::Stdout(b"out".to_vec())
        );
        assert_eq!(
            attachment.next_event().unwrap(),
            Event::Stderr(b"err".to_vec())
        );
        assert!(matches!(
            attachment.next_event().unwrap(),
            Event::Exited(ExitStatus { code: Some(7), .. })
        ));
        assert_eq!(attachment.next_event().unwrap(), Event::Closed);
    }

    #[test]
    fn finishing_ends_the_stream_and_waits_for_the_client_to_hang_up() {
        let client_for = |theirs: OwnedFd| {
            let stream = UnixStream::from(theirs);
            AttachedClient {
                socket: stream.try_clone().unwrap(),
                writer: Mutex::new(Some(stream)),
            }
        };
        // A client that holds on: the wait is bounded, and it saw the end of the stream.
        let (mut attachment, theirs) = Attachment::pair().unwrap();
        let supervisor = client_for(theirs);
        let started = Instant::now();
        assert!(!supervisor.finish(Duration::from_millis(200)));
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert_eq!(attachment.next_event().unwrap(), Event::Closed);
        // A client that hangs up once it saw the end.
        let (mut attachment, theirs) = Attachment::pair().unwrap();
        let supervisor = client_for(theirs);
        let client = std::thread::spawn(move || {
            assert_eq!(attachment.next_event().unwrap(), Event::Closed);
            std::thread::sleep(Duration::from_millis(100));
            drop(attachment);
        });
        let started = Instant::now();
        assert!(supervisor.finish(Duration::from_secs(10)));
        assert!(started.elapsed() < Duration::from_secs(5));
        client.join().unwrap();
    }

    #[test]
    fn the_client_sends_workload_frames() {
        let (attachment, theirs) = Attachment::pair().unwrap();
        let mut supervisor = UnixStream::from(theirs);
        let sender = attachment.sender();
        sender.stdin(b"abc").unwrap();
        sender.close_stdin().unwrap();
        sender.signal(2).unwrap();
        let a = Frame::read_from(&mut supervisor).unwrap().unwrap();
        assert_eq!(
            (a.kind, a.session, &a.payload[..]),
            (FrameKind::Stdin, WORKLOAD, &b"abc"[..])
        );
        let b = Frame::read_from(&mut supervisor).unwrap().unwrap();
        assert!(b.payload.is_empty());
        let c = Frame::read_from(&mut supervisor).unwrap().unwrap();
        assert_eq!(c.body::<SignalRequest>().unwrap().signal, 2);
        let request = AttachRequest {
            stdin: true,
            window: Some(WindowSize { rows: 5, cols: 9 }),
        };
        let back: AttachRequest = serde_json::from_str(&request.to_env()).unwrap();
        assert_eq!(back, request);
    }
}
