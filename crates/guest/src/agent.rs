//! The guest agent: a child of PID 1 that serves the host over the `ignite.agent`
//! virtio-serial port (QEMU) and over vsock (Firecracker), speaking the framed protocol of
//! `ignite_guest_protocol::agent`. It runs processes for `ignite exec` (pipes or a
//! terminal, any number at once), forwards the host's shutdown request to PID 1, and in
//! container mode relays between PID 1 and the host what concerns the workload: its output
//! and exit status one way, stdin, window size and signals the other.
//!
//! It is a separate process, not a thread of PID 1, so that its children are its own to
//! wait for while PID 1 reaps everything else. PID 1 forks it without an exec where it
//! can (see [`fork_agent`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use ignite_guest_protocol::agent::{
    BootTimes, CONTROL, CopyRequest, ErrorBody, ExecRequest, ExitStatus, Frame, FrameKind, Hello,
    PROTOCOL_VERSION, RestoreRequest, SERIAL_PORT_NAME, SignalRequest, VSOCK_PORT, WORKLOAD,
    WindowSize,
};
use ignite_guest_protocol::config::{BootMode, Workload};
use rustix::process::{Pid, Signal};

use crate::console::say;
use crate::process_env::{self, DEFAULT_PATH};
use crate::pty::{open_terminal, winsize};
use crate::workload_stdio::AgentLink;

const PORT_WAIT: Duration = Duration::from_secs(10);
/// How long the host may stay away before the agent looks at the port again.
const RECONNECT_POLL: Duration = Duration::from_millis(100);
/// After a process exited, how long output still held by its descendants is forwarded.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const CHUNK: usize = 32 * 1024;

/// Starts the agent (a new process of this same binary). In container mode PID 1 keeps a
/// link to it; in VM mode it is on its own once the image's init takes over.
/// `port`: the agent channel, already open (a warm start), which the agent gets as
/// [`INHERITED_PORT_FD`] instead of opening it.
pub fn spawn(
    mode: BootMode,
    workload: &Workload,
    init_started_millis: u64,
    port: Option<File>,
) -> Option<AgentLink> {
    let user = process_env::resolve_user(&workload.user)
        .or_else(|_| process_env::resolve_user(""))
        .unwrap_or(process_env::User {
            uid: 0,
            gid: 0,
            home: "/".into(),
            groups: Vec::new(),
        });
    let environment = process_env::environment(workload, &user);
    // `set_var` refuses what `execve` passes on (an empty name, `=` in a name, NUL): such
    // an environment goes to an agent exec'd as before.
    let settable = environment
        .iter()
        .all(|(key, value)| !key.is_empty() && !key.contains(['=', '\0']) && !value.contains('\0'));
    match thread_count() {
        Some(1) if !settable => {
            say("the agent is started anew: the environment has names set_var refuses")
        }
        Some(1) => match fork_agent(mode, init_started_millis, port.as_ref(), &environment) {
            Ok(link) => return link,
            Err(e) => say(&format!(
                "warning: cannot fork the agent ({e}); starting it anew"
            )),
        },
        threads => say(&format!(
            "the agent is started anew: PID 1 runs {} threads",
            threads.map_or("an unknown number of".to_string(), |n| n.to_string())
        )),
    }
    let mut command = Command::new("/proc/self/exe");
    command
        .arg0("ignite-agent")
        .arg("agent")
        .arg(mode.as_str())
        .arg(init_started_millis.to_string())
        .env_clear()
        .envs(environment)
        .current_dir("/");
    if mode == BootMode::Container {
        command.stdin(Stdio::piped()).stdout(Stdio::piped());
    } else {
        command.stdin(Stdio::null());
    }
    if let Some(port) = &port {
        inherit_port(&mut command, port);
    }
    let spawned = command.spawn();
    // The agent has its own copy now; PID 1 keeps none (nor do the workload's processes).
    drop(port);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            say(&format!(
                "warning: cannot start the agent ({e}); exec and cp are unavailable"
            ));
            return None;
        }
    };
    Some(AgentLink {
        to_agent: File::from(OwnedFd::from(child.stdin.take()?)),
        from_agent: File::from(OwnedFd::from(child.stdout.take()?)),
    })
}

/// How many threads this process runs (`/proc/self/status`). With one, a child forked
/// from it inherits no lock that another thread held.
fn thread_count() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// The agent as a fork of PID 1, not a new exec of this binary: its code stays at PID 1's
/// addresses, in PID 1's pages. Under TCG the guest's code is translated for the host by
/// address, so an agent exec'd at its own randomized address had the code it shares with
/// PID 1 translated a second time, and it wrote its own relocated data and heap into guest
/// memory, where a warm clone's PID 1 shares the template's pages (together ~3 MiB of host
/// memory per idle VM started warm, measured). The child is
/// set up as `Command` set up the exec'd agent: its stdio, the channel at
/// [`INHERITED_PORT_FD`], nothing else open, the workload's environment, `/`.
/// `Ok(None)`: forked, but the link to it is not complete (as `spawn`'s).
#[allow(unsafe_code)]
fn fork_agent(
    mode: BootMode,
    init_started_millis: u64,
    port: Option<&File>,
    environment: &[(String, String)],
) -> std::io::Result<Option<AgentLink>> {
    use std::os::fd::AsFd;
    let container = mode == BootMode::Container;
    // Close-on-exec, which here does not matter: the child closes what it does not use.
    let (stdin_pipe, stdout_pipe) = if container {
        (Some(std::io::pipe()?), Some(std::io::pipe()?))
    } else {
        (None, None)
    };
    let null = if container {
        None
    } else {
        Some(File::open("/dev/null")?)
    };
    // SAFETY: this process runs one thread (the caller checked), so the child inherits no
    // lock another thread held; the child never returns from this function (it exits).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let stdio = match (&stdin_pipe, &stdout_pipe, &null) {
                (Some((stdin_reader, _)), Some((_, stdout_writer)), _) => {
                    move_fd_to(stdin_reader.as_fd(), 0)
                        .and_then(|()| move_fd_to(stdout_writer.as_fd(), 1))
                }
                (_, _, Some(null)) => move_fd_to(null.as_fd(), 0),
                _ => Ok(()),
            };
            let port_moved = match port {
                Some(port) => move_fd_to(port.as_fd(), INHERITED_PORT_FD),
                None => Ok(()),
            };
            if stdio.is_err() || port_moved.is_err() {
                return ExitCode::FAILURE;
            }
            // What an exec would have closed, and PID 1's ends of the pipes.
            let first_closed = if port.is_some() {
                INHERITED_PORT_FD + 1
            } else {
                3
            };
            // SAFETY: a system call on descriptor numbers only; the pipes' and the port's
            // Rust owners are forgotten below, never closed again.
            let closed = unsafe {
                libc::syscall(
                    libc::SYS_close_range,
                    first_closed as libc::c_uint,
                    libc::c_uint::MAX,
                    0,
                )
            };
            // Kernels before 5.9 lack close_range: the descriptors one by one.
            if closed != 0 {
                let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")
                    .map(|dir| {
                        dir.flatten()
                            .filter_map(|e| e.file_name().to_str()?.parse().ok())
                            .collect()
                    })
                    .unwrap_or_default();
                for fd in open.into_iter().filter(|fd| *fd >= first_closed) {
                    // SAFETY: as above; the directory's own descriptor is closed by now.
                    unsafe { libc::close(fd) };
                }
            }
            std::mem::forget((stdin_pipe, stdout_pipe, null));
            // SAFETY: the child runs one thread; nothing reads the environment meanwhile.
            unsafe { libc::clearenv() };
            for (key, value) in environment {
                // SAFETY: as above; the names and values were checked in `spawn`.
                unsafe { std::env::set_var(key, value) };
            }
            let _ = std::env::set_current_dir("/");
            let _ = rustix::thread::set_name(c"ignite-agent");
            run(mode.as_str(), Some(init_started_millis), port.is_some())
        }));
        let code = match code {
            Ok(code) if code == ExitCode::SUCCESS => 0,
            _ => 1,
        };
        std::process::exit(code);
    }
    Ok(match (stdin_pipe, stdout_pipe) {
        (Some((_, to_agent)), Some((from_agent, _))) => Some(AgentLink {
            to_agent: File::from(OwnedFd::from(to_agent)),
            from_agent: File::from(OwnedFd::from(from_agent)),
        }),
        _ => None,
    })
}

/// Where an agent started with an open channel finds it.
const INHERITED_PORT_FD: i32 = 3;
/// The agent's last argument when it has its channel open already.
pub const INHERITED_PORT_ARG: &str = "inherited-port";

/// The agent, and no other child, gets the open port as fd 3.
#[allow(unsafe_code)]
fn inherit_port(command: &mut Command, port: &File) {
    use std::os::fd::AsRawFd;
    let fd = port.as_raw_fd();
    command.arg(INHERITED_PORT_ARG);
    // SAFETY: between fork and exec only dup2 runs, which is async-signal-safe; the new
    // descriptor (unlike the original) is not close-on-exec.
    unsafe {
        command.pre_exec(move || {
            move_fd_to(rustix::fd::BorrowedFd::borrow_raw(fd), INHERITED_PORT_FD)
                .map_err(std::io::Error::from)
        });
    }
}

/// Puts `fd` at descriptor number `target` of this process, open across exec: dup2, or,
/// when it is there already (dup2 onto itself would keep close-on-exec), its flag
/// cleared. Async-signal-safe (a forked child may call it before exec).
#[allow(unsafe_code)]
fn move_fd_to(fd: rustix::fd::BorrowedFd<'_>, target: i32) -> rustix::io::Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd};
    if fd.as_raw_fd() == target {
        return rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty());
    }
    // SAFETY: a descriptor number of this process that the caller hands over; the
    // `OwnedFd` is forgotten, never closed by Rust: the descriptor is the process's to keep.
    let mut to = unsafe { rustix::fd::OwnedFd::from_raw_fd(target) };
    let done = rustix::io::dup2(fd, &mut to);
    std::mem::forget(to);
    done
}

/// The agent channel PID 1 handed over (see [`inherit_port`]).
#[allow(unsafe_code)]
fn inherited_port() -> Option<File> {
    use std::os::fd::FromRawFd;
    let fd = INHERITED_PORT_FD;
    // SAFETY: PID 1 put the open port at this descriptor before exec; nothing else in
    // this process owns it.
    let file = unsafe { File::from_raw_fd(fd) };
    // Not for the processes the agent starts.
    if let Err(e) = rustix::io::fcntl_setfd(&file, rustix::io::FdFlags::CLOEXEC) {
        say(&format!(
            "agent: cannot keep the agent channel from its children: {e}"
        ));
        return None;
    }
    Some(file)
}

/// The agent process's main.
/// Milliseconds since the kernel started (`CLOCK_BOOTTIME`, which counts from boot).
pub fn boot_clock_millis() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (t.tv_sec as u64) * 1000 + (t.tv_nsec as u64) / 1_000_000
}

/// `ignite-init agent MODE [INIT-STARTED-MILLIS]`.
pub fn run(mode: &str, init_started_millis: Option<u64>, inherited: bool) -> ExitCode {
    let agent = Arc::new(Agent {
        init_started_millis,
        mode: BootMode::parse(mode).unwrap_or(BootMode::Vm),
        connections: Mutex::new(Vec::new()),
        to_init: Mutex::new(std::io::stdout()),
    });
    if let Ok(listener) =
        vsock::VsockListener::bind_with_cid_port(vsock::VMADDR_CID_ANY, VSOCK_PORT)
    {
        let agent = agent.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(writer) = stream.try_clone() else {
                    continue;
                };
                let conn = agent.connect(Box::new(writer));
                let agent = agent.clone();
                std::thread::spawn(move || agent.serve(&conn, stream, false));
            }
        });
    }
    if agent.mode == BootMode::Container {
        let agent = agent.clone();
        std::thread::spawn(move || agent.relay_workload());
    }
    let port = match inherited.then(inherited_port).flatten() {
        Some(port) => Some(port),
        None => match find_serial_port() {
            Some(path) => match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(port) => Some(port),
                Err(e) => {
                    say(&format!("agent: cannot open {path}: {e}"));
                    None
                }
            },
            None => {
                say(&format!(
                    "agent: no virtio-serial port named {SERIAL_PORT_NAME}; serving vsock port {VSOCK_PORT} only"
                ));
                None
            }
        },
    };
    if let Some(port) = port {
        match port.try_clone() {
            Ok(reader) => {
                let conn = agent.connect(Box::new(port));
                agent.serve(&conn, reader, true);
            }
            Err(e) => say(&format!("agent: cannot use the agent channel: {e}")),
        }
    }
    // Without a serial port the vsock thread carries on.
    loop {
        std::thread::park();
    }
}

/// /dev/vportNpM whose sysfs name is `ignite.agent`.
pub(crate) fn find_serial_port() -> Option<String> {
    let deadline = std::time::Instant::now() + PORT_WAIT;
    loop {
        if let Ok(dir) = std::fs::read_dir("/sys/class/virtio-ports") {
            for entry in dir.flatten() {
                let name = std::fs::read_to_string(entry.path().join("name")).unwrap_or_default();
                if name.trim() == SERIAL_PORT_NAME {
                    let dev = format!("/dev/{}", entry.file_name().to_string_lossy());
                    if std::path::Path::new(&dev).exists() {
                        return Some(dev);
                    }
                }
            }
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Agent {
    /// When ignite-init started (the boot clock), for the hello's boot times.
    init_started_millis: Option<u64>,
    mode: BootMode,
    connections: Mutex<Vec<Weak<Connection>>>,
    /// Container mode: frames for the workload go to PID 1 on stdout.
    to_init: Mutex<std::io::Stdout>,
}

struct Connection {
    writer: Mutex<Box<dyn Write + Send>>,
    sessions: Mutex<HashMap<u32, Session>>,
    /// The host said hello on it: a serial port is open before anyone listens, and what is
    /// written then may wait for a host that never comes.
    greeted: AtomicBool,
}

struct Session {
    /// The process, for signals (a copy has none).
    pid: Option<Pid>,
    stdin: Option<Box<dyn Write + Send>>,
    terminal: Option<Arc<OwnedFd>>,
}

impl Connection {
    fn send(&self, frame: Frame) {
        let mut writer = self.writer.lock().expect("writer lock");
        let _ = writer
            .write_all(&frame.encode())
            .and_then(|()| writer.flush());
    }

    fn fail(&self, session: u32, status: Option<i32>, message: String) {
        self.send(Frame::json(
            FrameKind::Error,
            session,
            &ErrorBody { message, status },
        ));
    }
}

impl Agent {
    fn connect(&self, writer: Box<dyn Write + Send>) -> Arc<Connection> {
        let conn = Arc::new(Connection {
            writer: Mutex::new(writer),
            sessions: Mutex::new(HashMap::new()),
            greeted: AtomicBool::new(false),
        });
        let mut all = self.connections.lock().expect("connections lock");
        all.retain(|c| c.strong_count() > 0);
        all.push(Arc::downgrade(&conn));
        conn
    }

    /// Reads frames until the stream ends. A serial port "ends" whenever the host side
    /// closes it and comes back later, so it is polled again instead.
    fn serve(&self, conn: &Arc<Connection>, reader: impl Read, serial: bool) {
        let mut reader = BufReader::with_capacity(64 * 1024, reader);
        loop {
            match Frame::read_from(&mut reader) {
                Ok(Some(frame)) => self.handle(conn, frame),
                Ok(None) | Err(_) if serial => std::thread::sleep(RECONNECT_POLL),
                Ok(None) => return,
                Err(e) => {
                    say(&format!("agent: dropping a vsock connection: {e}"));
                    return;
                }
            }
        }
    }

    fn handle(&self, conn: &Arc<Connection>, frame: Frame) {
        let session = frame.session;
        let for_workload = matches!(
            (frame.kind, session),
            (
                FrameKind::Stdin | FrameKind::Signal | FrameKind::Resize,
                WORKLOAD
            ) | (FrameKind::ExitAck, CONTROL)
        );
        if for_workload {
            if self.mode == BootMode::Container {
                let mut init = self.to_init.lock().expect("init link lock");
                let _ = frame.write_to(&mut *init);
            }
            return;
        }
        match frame.kind {
            FrameKind::Hello => {
                let hello: Result<Hello, _> = frame.body();
                if let Ok(h) = &hello
                    && h.version != PROTOCOL_VERSION
                {
                    conn.fail(
                        CONTROL,
                        None,
                        format!(
                            "agent protocol mismatch: the host speaks version {}, ignite-init {PROTOCOL_VERSION}; use matching builds",
                            h.version
                        ),
                    );
                }
                conn.send(Frame::json(
                    FrameKind::Hello,
                    CONTROL,
                    &Hello {
                        version: PROTOCOL_VERSION,
                        software: format!("ignite-init v{}", env!("CARGO_PKG_VERSION")),
                        mode: Some(self.mode.as_str().to_string()),
                        boot: self.init_started_millis.map(|started| BootTimes {
                            kernel_millis: Some(started),
                            init_millis: Some(boot_clock_millis().saturating_sub(started)),
                            ..BootTimes::default()
                        }),
                    },
                ));
                conn.greeted.store(true, Ordering::SeqCst);
            }
            FrameKind::Exec => match frame.body::<ExecRequest>() {
                Ok(request) => {
                    if let Err((status, message)) = start_session(conn, session, request) {
                        conn.fail(session, Some(status), message);
                    }
                }
                Err(e) => conn.fail(session, None, e.to_string()),
            },
            FrameKind::Stdin => {
                let mut sessions = conn.sessions.lock().expect("sessions lock");
                if let Some(s) = sessions.get_mut(&session) {
                    if frame.payload.is_empty() {
                        match (&s.terminal, s.stdin.as_mut()) {
                            // A terminal has no separate end of input: send ^D as a user would.
                            (Some(_), Some(w)) => {
                                let _ = w.write_all(b"\x04");
                            }
                            _ => s.stdin = None,
                        }
                    } else if let Some(w) = s.stdin.as_mut()
                        && w.write_all(&frame.payload)
                            .and_then(|()| w.flush())
                            .is_err()
                    {
                        s.stdin = None;
                    }
                }
            }
            FrameKind::Signal => {
                let pid = conn
                    .sessions
                    .lock()
                    .expect("sessions lock")
                    .get(&session)
                    .and_then(|s| s.pid);
                if let (Some(pid), Ok(req)) = (pid, frame.body::<SignalRequest>()) {
                    match Signal::from_named_raw(req.signal) {
                        Some(sig) => {
                            let _ = rustix::process::kill_process(pid, sig);
                        }
                        None => conn.fail(session, None, format!("unknown signal {}", req.signal)),
                    }
                }
            }
            FrameKind::Resize => {
                let sessions = conn.sessions.lock().expect("sessions lock");
                if let (Some(Some(term)), Ok(size)) = (
                    sessions.get(&session).map(|s| s.terminal.clone()),
                    frame.body::<WindowSize>(),
                ) {
                    let _ = rustix::termios::tcsetwinsize(&*term, winsize(size));
                }
            }
            FrameKind::Shutdown => self.shutdown(),
            FrameKind::CopyIn => match frame.body::<CopyRequest>() {
                Ok(req) => start_copy_in(conn, session, req.path),
                Err(e) => conn.fail(session, None, e.to_string()),
            },
            FrameKind::CopyOut => match frame.body::<CopyRequest>() {
                Ok(req) => start_copy_out(conn, session, req.path),
                Err(e) => conn.fail(session, None, e.to_string()),
            },
            // Handled before the next frame is read: nothing the host asks afterwards runs
            // with the snapshot's clock, randomness or addresses.
            FrameKind::Restored => match frame
                .body::<RestoreRequest>()
                .map_err(|e| e.to_string())
                .and_then(|req| crate::restore::renew(&req))
            {
                Ok(()) => conn.send(Frame::json(
                    FrameKind::Exited,
                    session,
                    &ExitStatus {
                        code: Some(0),
                        signal: None,
                    },
                )),
                Err(e) => conn.fail(session, None, e),
            },
            _ => {}
        }
    }

    /// Asks PID 1 to stop: the workload gets SIGTERM (container mode), or the image's init
    /// its power-off signal (systemd: SIGRTMIN+4; busybox: SIGUSR2; others: SIGTERM).
    fn shutdown(&self) {
        let init = Pid::INIT;
        if self.mode == BootMode::Container {
            let _ = rustix::process::kill_process(init, Signal::TERM);
            return;
        }
        let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        match comm.trim() {
            "systemd" => {
                let _ = signal_systemd_poweroff();
            }
            "init" | "busybox" => {
                let _ = rustix::process::kill_process(init, Signal::USR2);
            }
            _ => {
                let _ = rustix::process::kill_process(init, Signal::TERM);
            }
        }
    }

    /// Container mode: PID 1 sends the workload's output and exit as frames on our stdin;
    /// each goes to the host connections that greeted us, in order. Until one has, they
    /// wait (and so, once the pipe is full, does the workload): output is never dropped.
    fn relay_workload(&self) {
        let mut input = BufReader::with_capacity(64 * 1024, std::io::stdin().lock());
        while let Ok(Some(frame)) = Frame::read_from(&mut input) {
            let conns = loop {
                let conns: Vec<Arc<Connection>> = self
                    .connections
                    .lock()
                    .expect("connections lock")
                    .iter()
                    .filter_map(Weak::upgrade)
                    .filter(|c| c.greeted.load(Ordering::SeqCst))
                    .collect();
                if !conns.is_empty() {
                    break conns;
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            for conn in conns {
                conn.send(frame.clone());
            }
        }
    }
}

/// SIGRTMIN+4 asks systemd to power off. rustix only builds named signals safely.
#[allow(unsafe_code)]
fn signal_systemd_poweroff() -> rustix::io::Result<()> {
    const SIGRTMIN: i32 = 34;
    // SAFETY: the signal is sent to another process (PID 1), so libc's use of low real-time
    // signals in this process is not affected; 38 is a valid signal number on Linux.
    let sig = unsafe { Signal::from_raw_unchecked(SIGRTMIN + 4) };
    rustix::process::kill_process(Pid::INIT, sig)
}

type StartError = (i32, String);

fn start_session(conn: &Arc<Connection>, session: u32, req: ExecRequest) -> Result<(), StartError> {
    if req.argv.is_empty() {
        return Err((
            ignite_guest_protocol::status::CANNOT_START,
            "no command to run".into(),
        ));
    }
    if conn
        .sessions
        .lock()
        .expect("sessions lock")
        .contains_key(&session)
    {
        return Err((125, format!("session {session} is already running")));
    }
    let path = std::env::var("PATH").unwrap_or_else(|_| DEFAULT_PATH.into());
    let program = process_env::find_program(&req.argv[0], &path)?;
    let workdir = req.working_dir.clone().unwrap_or_else(|| "/".into());
    let env = req.env.iter().map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
        (k.to_string(), v.to_string())
    });
    let cannot = |e: std::io::Error| (126, format!("cannot run {}: {e}", req.argv[0]));

    let mut command;
    let mut readers: Vec<(FrameKind, Box<dyn Read + Send>)> = Vec::new();
    let (stdin, terminal): (Box<dyn Write + Send>, Option<Arc<OwnedFd>>);
    if req.tty {
        let (master, slave) = open_terminal(req.window).map_err(cannot)?;
        // The helper makes the terminal the process's controlling terminal, then execs it.
        command = Command::new("/proc/self/exe");
        command
            .arg0("ignite-exec")
            .arg("exec-tty")
            .arg(&program)
            .args(&req.argv);
        if !req.env.iter().any(|e| e.starts_with("TERM=")) {
            command.env("TERM", "xterm");
        }
        command
            .stdin(Stdio::from(slave.try_clone().map_err(cannot)?))
            .stdout(Stdio::from(slave.try_clone().map_err(cannot)?))
            .stderr(Stdio::from(slave));
        let master = Arc::new(master);
        readers.push((
            FrameKind::Stdout,
            Box::new(File::from(master.try_clone().map_err(cannot)?)),
        ));
        stdin = Box::new(File::from(master.try_clone().map_err(cannot)?));
        terminal = Some(master);
    } else {
        command = Command::new(&program);
        command
            .arg0(&req.argv[0])
            .args(&req.argv[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        terminal = None;
        stdin = Box::new(std::io::sink()); // replaced below with the child's
    }
    command.envs(env).current_dir(&workdir);
    let mut child = command.spawn().map_err(|e| {
        if !std::path::Path::new(&workdir).is_dir() {
            (
                126,
                format!("the working directory {workdir} does not exist"),
            )
        } else {
            cannot(e)
        }
    })?;
    drop(command); // closes our copies of the terminal's slave side
    let stdin: Box<dyn Write + Send> = match child.stdin.take() {
        Some(s) => Box::new(s),
        None => stdin,
    };
    if let Some(out) = child.stdout.take() {
        readers.push((FrameKind::Stdout, Box::new(out)));
    }
    if let Some(err) = child.stderr.take() {
        readers.push((FrameKind::Stderr, Box::new(err)));
    }
    conn.sessions.lock().expect("sessions lock").insert(
        session,
        Session {
            pid: Some(Pid::from_child(&child)),
            stdin: Some(stdin),
            terminal,
        },
    );

    let (done_tx, done_rx) = mpsc::channel();
    for (kind, mut reader) in readers {
        let conn = conn.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; CHUNK];
            // A terminal's master reads EIO once the last slave closed: that is its end.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                conn.send(Frame::new(kind, session, buf[..n].to_vec()));
            }
            let _ = done.send(());
        });
    }
    drop(done_tx);
    let conn = conn.clone();
    std::thread::spawn(move || {
        let status = child.wait();
        // Output still in flight is forwarded; descendants that keep the pipes open do not
        // hold the session forever.
        let deadline = std::time::Instant::now() + DRAIN_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match done_rx.recv_timeout(left) {
                Ok(()) => {}
                Err(_) => break,
            }
        }
        conn.sessions
            .lock()
            .expect("sessions lock")
            .remove(&session);
        let exit = match status {
            Ok(s) => ExitStatus {
                code: s.code(),
                signal: s.signal(),
            },
            Err(_) => ExitStatus {
                code: None,
                signal: None,
            },
        };
        conn.send(Frame::json(FrameKind::Exited, session, &exit));
    });
    Ok(())
}

fn finish_copy(conn: &Arc<Connection>, session: u32, result: Result<(), String>) {
    conn.sessions
        .lock()
        .expect("sessions lock")
        .remove(&session);
    match result {
        Ok(()) => conn.send(Frame::json(
            FrameKind::Exited,
            session,
            &ExitStatus {
                code: Some(0),
                signal: None,
            },
        )),
        Err(message) => conn.fail(session, Some(1), message),
    }
}

/// The archive arrives as the session's stdin, through a pipe to the unpacking thread.
fn start_copy_in(conn: &Arc<Connection>, session: u32, path: String) {
    let (reader, writer) = match std::io::pipe() {
        Ok(p) => p,
        Err(e) => return conn.fail(session, None, format!("cannot copy: {e}")),
    };
    conn.sessions.lock().expect("sessions lock").insert(
        session,
        Session {
            pid: None,
            stdin: Some(Box::new(writer)),
            terminal: None,
        },
    );
    let conn = conn.clone();
    std::thread::spawn(move || {
        let mut reader = reader;
        let result = crate::copy::copy_in(&path, &mut reader);
        // Drain what is left so the sender is never stuck on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
        finish_copy(&conn, session, result);
    });
}

/// Sends what it is given as Stdout frames of the session.
struct FrameSink {
    conn: Arc<Connection>,
    session: u32,
    buf: Vec<u8>,
}

impl Write for FrameSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK * 8 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            let chunk = std::mem::take(&mut self.buf);
            self.conn
                .send(Frame::new(FrameKind::Stdout, self.session, chunk));
        }
        Ok(())
    }
}

fn start_copy_out(conn: &Arc<Connection>, session: u32, path: String) {
    let conn = conn.clone();
    std::thread::spawn(move || {
        let mut sink = FrameSink {
            conn: conn.clone(),
            session,
            buf: Vec::new(),
        };
        let result = crate::copy::copy_out(&path, &mut sink);
        let _ = sink.flush();
        finish_copy(&conn, session, result);
    });
}

/// `ignite-init exec-tty PROGRAM ARGV...`: runs in the new process of a terminal session,
/// makes its stdin terminal the controlling terminal of a new session, and execs.
pub fn exec_tty(args: &[String]) -> ExitCode {
    let [program, argv0, rest @ ..] = args else {
        eprintln!("usage: ignite-init exec-tty PROGRAM ARGV0 [ARG...]");
        return ExitCode::from(2);
    };
    if let Err(e) =
        rustix::process::setsid().and_then(|_| rustix::process::ioctl_tiocsctty(std::io::stdin()))
    {
        eprintln!("ignite-exec: cannot take the terminal: {e}");
    }
    let err = Command::new(program).arg0(argv0).args(rest).exec();
    eprintln!("ignite-exec: cannot run {program}: {err}");
    ExitCode::from(126)
}
