//! The supervisor's end of `ignite exec`: a unix socket in the VM's directory (private to
//! its owner, like the directory) where clients speak the agent protocol as if to the
//! guest. The guest's channel takes one connection, the supervisor's; every client
//! session is relayed onto it under a session id of its own.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ignite_guest_protocol::agent::{CONTROL, ErrorBody, Frame, FrameKind, SignalRequest};
use ignite_guest_protocol::client::AgentClient;

pub type AgentSlot = Arc<Mutex<Option<Arc<AgentClient>>>>;

/// How long a client waits for a guest that is still booting.
const AGENT_WAIT: Duration = Duration::from_secs(60);
const SIGKILL: i32 = 9;
/// How long a client may leave its output unread before its process is killed and its
/// session dropped: the agent connection carries every session of the VM, and a client
/// that stops reading holds them all up (the bounded backlogs make it wait rather than
/// buffer; see `ignite_guest_protocol::client::SESSION_BACKLOG`).
const STALLED_CLIENT: Duration = Duration::from_secs(30);

pub fn serve(listener: UnixListener, agent: AgentSlot) {
    for stream in listener.incoming().flatten() {
        let agent = agent.clone();
        std::thread::spawn(move || relay(stream, agent));
    }
}

fn wait_for_agent(slot: &AgentSlot) -> Option<Arc<AgentClient>> {
    let deadline = Instant::now() + AGENT_WAIT;
    loop {
        if let Some(agent) = slot.lock().expect("agent lock").clone() {
            return Some(agent);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn relay(stream: UnixStream, slot: AgentSlot) {
    let Ok(mut reader) = stream.try_clone() else {
        return;
    };
    if stream.set_write_timeout(Some(STALLED_CLIENT)).is_err() {
        return;
    }
    let writer = Arc::new(Mutex::new(stream));
    let send = |w: &Arc<Mutex<UnixStream>>, frame: Frame| {
        let _ = w.lock().expect("client lock").write_all(&frame.encode());
    };
    let mut sessions: HashMap<u32, u32> = HashMap::new();
    let mut agent: Option<Arc<AgentClient>> = None;
    while let Ok(Some(frame)) = Frame::read_from(&mut reader) {
        match frame.kind {
            FrameKind::Hello => match wait_for_agent(&slot) {
                Some(a) => {
                    send(&writer, Frame::json(FrameKind::Hello, CONTROL, &a.guest));
                    agent = Some(a);
                }
                None => {
                    send(
                        &writer,
                        Frame::json(
                            FrameKind::Error,
                            CONTROL,
                            &ErrorBody {
                                message: "the VM's agent is not answering (is the guest still booting? see ignite logs)".into(),
                                status: None,
                            },
                        ),
                    );
                    return;
                }
            },
            FrameKind::Exec | FrameKind::CopyIn | FrameKind::CopyOut => {
                let Some(a) = &agent else { return };
                let (id, frames) = a.open_route();
                sessions.insert(frame.session, id);
                let client_id = frame.session;
                let writer = writer.clone();
                let guest = a.clone();
                std::thread::spawn(move || {
                    for mut f in frames {
                        let ends = matches!(f.kind, FrameKind::Exited | FrameKind::Error);
                        f.session = client_id;
                        let written = writer.lock().expect("client lock").write_all(&f.encode());
                        if written.is_err() {
                            // Gone or stalled: its process goes, and dropping `frames`
                            // lets the other sessions' frames through again.
                            tracing::warn!(
                                "an exec client stopped reading for {} s or went away: killing its process",
                                STALLED_CLIENT.as_secs()
                            );
                            let _ = guest.send_frame(&Frame::json(
                                FrameKind::Signal,
                                id,
                                &SignalRequest { signal: SIGKILL },
                            ));
                            break;
                        }
                        if ends {
                            break;
                        }
                    }
                });
                let _ = a.send_frame(&Frame::new(frame.kind, id, frame.payload));
            }
            FrameKind::Stdin | FrameKind::Signal | FrameKind::Resize => {
                if let (Some(a), Some(&id)) = (&agent, sessions.get(&frame.session)) {
                    let _ = a.send_frame(&Frame::new(frame.kind, id, frame.payload));
                }
            }
            // Stopping the VM is `ignite stop`'s, through the supervisor itself.
            _ => {}
        }
    }
    // The client went away: its processes go too, as with a closed SSH session.
    if let Some(a) = &agent {
        for id in sessions.values() {
            let _ = a.send_frame(&Frame::json(
                FrameKind::Signal,
                *id,
                &SignalRequest { signal: SIGKILL },
            ));
        }
    }
}
