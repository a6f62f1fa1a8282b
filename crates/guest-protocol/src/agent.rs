//! The guest agent's wire protocol.
//!
//! A byte stream (a virtio-serial port with QEMU, a vsock connection with Firecracker)
//! carries frames:
//!
//! ```text
//! magic "IG" (2) | kind (1) | reserved 0 (1) | session (u32 BE) | length (u32 BE) | payload
//! ```
//!
//! Session 0 is the control session (hello, shutdown); every exec gets a session id chosen
//! by the host, so any number of them run at once over one stream. Session [`WORKLOAD`] is
//! the container-mode workload's: its stdout and stderr, then its exit, in that order, and
//! the host's stdin, window size and signals for it.
//! Control bodies are JSON; stdin/stdout/stderr bodies are raw bytes. The magic lets a
//! reader resynchronise after a peer vanished mid-frame (a virtio-serial port outlives the
//! host process that had it open).

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

/// The protocol version both sides announce in [`Hello`]. A peer speaking another version
/// is refused with an error naming both.
pub const PROTOCOL_VERSION: u32 = 1;
/// The virtio-serial port name (QEMU `virtserialport,name=`).
pub const SERIAL_PORT_NAME: &str = "ignite.agent";
/// The vsock port the agent listens on (Firecracker).
pub const VSOCK_PORT: u32 = 10789;
/// No frame carries more than this; larger stdin/stdout chunks are split.
pub const MAX_PAYLOAD: usize = 1 << 20;
/// The control session.
pub const CONTROL: u32 = 0;
/// The container-mode workload's session (never one the host allocates for an exec).
pub const WORKLOAD: u32 = u32::MAX;

const MAGIC: [u8; 2] = *b"IG";
const HEADER_LEN: usize = 12;
/// How many bytes a reader skips looking for a frame before it gives up.
const MAX_RESYNC: usize = 1 << 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Both ways on session 0, JSON [`Hello`].
    Hello = 0x01,
    /// Host → guest: stop the VM gracefully (the workload or the image's init gets SIGTERM).
    Shutdown = 0x02,
    /// Guest → host on [`WORKLOAD`], JSON [`ExitStatus`]: the container-mode workload
    /// ended, and every byte of its output was sent before this frame.
    WorkloadExited = 0x03,
    /// Host → guest on session 0: the host has stored the workload's output and exit
    /// status, so the guest may power off.
    ExitAck = 0x04,
    /// Host → guest, JSON [`ExecRequest`]: start a process in a new session.
    Exec = 0x10,
    /// Host → guest, bytes for the process's stdin; an empty payload closes it.
    Stdin = 0x11,
    /// Guest → host, bytes the process wrote.
    Stdout = 0x12,
    Stderr = 0x13,
    /// Guest → host, JSON [`ExitStatus`]: the session's process ended; the session is over.
    Exited = 0x14,
    /// Host → guest, JSON [`SignalRequest`] for the session's process.
    Signal = 0x15,
    /// Host → guest, JSON [`WindowSize`] for the session's terminal.
    Resize = 0x16,
    /// Guest → host, JSON [`ErrorBody`]: the request failed; the session is over.
    Error = 0x17,
    /// Host → guest, JSON [`CopyRequest`]: a tar archive follows as Stdin frames (an empty
    /// one ends it) and is unpacked at the path with `docker cp` semantics; Exited ends it.
    CopyIn = 0x20,
    /// Host → guest, JSON [`CopyRequest`]: the path comes back as a tar archive in Stdout
    /// frames (its top entry named after the path's last component), then Exited.
    CopyOut = 0x21,
    /// Host → guest, JSON [`RestoreRequest`], right after the guest was restored from a
    /// snapshot: its clock, entropy and network identity are renewed; Exited (or Error)
    /// ends it.
    Restored = 0x30,
    /// Host → guest, JSON [`BootRequest`], to a warm-start template's ignite-init (PID 1,
    /// not the agent): renew as after a restore, then boot this VM's configuration;
    /// Exited (or Error) ends it, and the agent comes up as in any boot.
    Boot = 0x31,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<FrameKind> {
        use FrameKind::*;
        Some(match b {
            0x01 => Hello,
            0x02 => Shutdown,
            0x03 => WorkloadExited,
            0x04 => ExitAck,
            0x10 => Exec,
            0x11 => Stdin,
            0x12 => Stdout,
            0x13 => Stderr,
            0x14 => Exited,
            0x15 => Signal,
            0x16 => Resize,
            0x17 => Error,
            0x20 => CopyIn,
            0x21 => CopyOut,
            0x30 => Restored,
            0x31 => Boot,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: FrameKind,
    pub session: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn new(kind: FrameKind, session: u32, payload: Vec<u8>) -> Frame {
        Frame {
            kind,
            session,
            payload,
        }
    }

    pub fn json<T: Serialize>(kind: FrameKind, session: u32, body: &T) -> Frame {
        Frame::new(
            kind,
            session,
            serde_json::to_vec(body).expect("protocol bodies always serialise"),
        )
    }

    pub fn body<T: for<'de> Deserialize<'de>>(&self) -> io::Result<T> {
        serde_json::from_slice(&self.payload).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad {:?} frame body: {e}", self.kind),
            )
        })
    }

    /// The frame as bytes; one `write_all` of this keeps frames from interleaving when
    /// several writers share a stream behind a lock.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.payload.len() <= MAX_PAYLOAD, "frame payload too large");
        let mut out = Vec::with_capacity(HEADER_LEN + self.payload.len());
        out.extend_from_slice(&MAGIC);
        out.push(self.kind as u8);
        out.push(0);
        out.extend_from_slice(&self.session.to_be_bytes());
        out.extend_from_slice(&(self.payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        out.write_all(&self.encode())?;
        out.flush()
    }

    /// Reads the next frame; `Ok(None)` at a clean end of stream. Bytes that cannot start a
    /// frame are skipped (up to 64 KiB) so a reader recovers from a torn frame.
    pub fn read_from(input: &mut impl Read) -> io::Result<Option<Frame>> {
        let mut header = [0u8; HEADER_LEN];
        if !read_exact_or_eof(input, &mut header)? {
            return Ok(None);
        }
        let mut skipped = 0;
        loop {
            let kind = FrameKind::from_u8(header[2]);
            let len = u32::from_be_bytes(header[8..12].try_into().expect("4 bytes")) as usize;
            if header[..2] == MAGIC
                && header[3] == 0
                && len <= MAX_PAYLOAD
                && let Some(kind) = kind
            {
                let session = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
                let mut payload = vec![0u8; len];
                input.read_exact(&mut payload)?;
                return Ok(Some(Frame {
                    kind,
                    session,
                    payload,
                }));
            }
            skipped += 1;
            if skipped > MAX_RESYNC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "no agent frame in 64 KiB of input: the other side does not speak the Ignite agent protocol",
                ));
            }
            header.copy_within(1.., 0);
            let mut byte = [0u8; 1];
            if !read_exact_or_eof(input, &mut byte)? {
                return Ok(None);
            }
            header[HEADER_LEN - 1] = byte[0];
        }
    }
}

fn read_exact_or_eof(input: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u32,
    /// `ignite-init v0.1.0`, `ignite v0.1.0`.
    pub software: String,
    /// Guest → host: the mode the guest booted in (`vm` or `container`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Guest → host: where the boot's time went, as far as the guest saw it; the
    /// supervisor adds its own phases before it hands the hello to an attached client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootTimes>,
}

/// Where a boot's time went, in milliseconds, phase by phase. The guest fills `kernel`
/// and `init` (its own clock, `CLOCK_BOOTTIME`); the supervisor the others (the host's).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootTimes {
    /// Supervisor start → VMM process started: network, initramfs, disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_millis: Option<u64>,
    /// VMM process started → guest running: the VMM's own set-up and the boot request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_start_millis: Option<u64>,
    /// Kernel start → ignite-init running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_millis: Option<u64>,
    /// ignite-init start → the agent's hello: modules, root disk, network, the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_millis: Option<u64>,
    /// VMM process started → the agent's hello, on the host's clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_millis: Option<u64>,
}

impl std::fmt::Display for BootTimes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let phases = [
            ("prepare", self.prepare_millis),
            ("VMM start", self.vmm_start_millis),
            ("kernel → init", self.kernel_millis),
            ("init → agent hello", self.init_millis),
            ("ready", self.ready_millis),
        ];
        let mut first = true;
        for (name, millis) in phases {
            if let Some(ms) = millis {
                write!(f, "{}{name} {ms} ms", if first { "" } else { ", " })?;
                first = false;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecRequest {
    pub argv: Vec<String>,
    /// `KEY=value` pairs added to the agent's base environment.
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub tty: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowSize>,
}

/// What a guest restored from a snapshot renews before anything else runs on: every
/// clone of one snapshot starts with the same memory, so the same clock, random state
/// and network identity, until this arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreRequest {
    /// The host's wall clock, nanoseconds since the Unix epoch.
    pub unix_nanos: u128,
    /// Bytes from the host's random source, mixed into the guest's pool, which is then
    /// reseeded from it (as hex; [`RESTORE_ENTROPY_BYTES`] of them).
    pub entropy: String,
    /// The VM's hostname now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Each interface the guest had, found by its old MAC, moved to its new identity.
    #[serde(default)]
    pub interfaces: Vec<Readdress>,
    /// The guest's memory is a private mapping of a file other VMs map too (a warm-start
    /// template's): its balloon driver must stop reporting freed pages, because QEMU 7.2
    /// gives a reported page back by punching a hole in that file (not only in this VM's
    /// mapping), which every other VM still reading the page would see as zeros.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_free_page_reporting: bool,
}

/// What a warm-start template's guest gets from the VM restored from it: the renewal of
/// any restore, and the configuration it boots on with (instead of the initramfs's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootRequest {
    pub renew: RestoreRequest,
    pub config: crate::config::GuestConfig,
}

/// How many random bytes a restore request carries.
pub const RESTORE_ENTROPY_BYTES: usize = 64;

/// One guest interface's move to a clone's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Readdress {
    /// The MAC the interface had in the snapshot.
    pub old_mac: String,
    /// The addresses (CIDR) it had, which are removed.
    #[serde(default)]
    pub old_addresses: Vec<String>,
    /// Its new MAC, addresses, gateway and MTU.
    pub new: crate::config::Interface,
}

/// The guest path of a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopyRequest {
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// The exit code, when the process exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// The signal that killed it, otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

impl ExitStatus {
    /// The status a shell would report: the code, or 128 + the signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 255,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    pub signal: i32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub message: String,
    /// The status the host's command should exit with, when there is a natural one (127
    /// for a command that was not found, 126 for one that cannot run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_interleave() {
        let frames = [
            Frame::json(
                FrameKind::Hello,
                CONTROL,
                &Hello {
                    version: PROTOCOL_VERSION,
                    software: "test".into(),
                    mode: None,
                    boot: None,
                },
            ),
            Frame::new(FrameKind::Stdout, 7, b"hello".to_vec()),
            Frame::new(FrameKind::Stdin, 9, Vec::new()),
            Frame::json(
                FrameKind::Exited,
                7,
                &ExitStatus {
                    code: Some(3),
                    signal: None,
                },
            ),
        ];
        let mut stream = Vec::new();
        for f in &frames {
            f.write_to(&mut stream).unwrap();
        }
        let mut input = stream.as_slice();
        for f in &frames {
            assert_eq!(Frame::read_from(&mut input).unwrap().as_ref(), Some(f));
        }
        assert_eq!(Frame::read_from(&mut input).unwrap(), None);
        let exit: ExitStatus = frames[3].body().unwrap();
        assert_eq!(exit.shell_code(), 3);
    }

    #[test]
    fn a_reader_skips_a_torn_frame() {
        let whole = Frame::new(FrameKind::Stdout, 1, b"abc".to_vec()).encode();
        let mut stream = whole[..7].to_vec(); // what a vanished writer left behind
        stream.extend_from_slice(b"garbage");
        stream.extend_from_slice(&whole);
        let frame = Frame::read_from(&mut stream.as_slice()).unwrap().unwrap();
        assert_eq!(frame.payload, b"abc");
    }

    #[test]
    fn garbage_and_truncation_are_errors() {
        let noise = vec![0x55u8; 70_000];
        let err = Frame::read_from(&mut noise.as_slice()).unwrap_err();
        assert!(err.to_string().contains("agent protocol"), "{err}");
        let whole = Frame::new(FrameKind::Stdout, 1, b"abcdef".to_vec()).encode();
        let err = Frame::read_from(&mut &whole[..whole.len() - 2]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            ExitStatus {
                code: None,
                signal: Some(15)
            }
            .shell_code(),
            143
        );
    }
}
