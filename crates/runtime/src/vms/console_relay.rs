//! The serial console, relayed by the supervisor for every VMM: the VMM has it on its
//! stdin and stdout, the supervisor appends the output to the capped `console.log` (see
//! [`super::console_log`]) and to the output log `ignite logs` reads (see
//! [`super::output_log`]), and serves `console.sock` for `attach`, any number of clients at
//! once. A client that stops reading is dropped rather than allowed to stall the guest.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::console_log::ConsoleLogWriter;
use super::output_log::{OutputLogWriter, Stream};
use super::{VmError, io};

type Clients = Arc<Mutex<Vec<UnixStream>>>;

/// How long an attached client may leave console output unread before it is dropped.
const STALLED_CLIENT: Duration = Duration::from_secs(2);

/// Starts relaying; returns once `socket` listens.
pub fn start(
    input: ChildStdin,
    mut output: ChildStdout,
    socket: &Path,
    log: &Path,
    output_log: Arc<Mutex<OutputLogWriter>>,
) -> Result<(), VmError> {
    let listener = UnixListener::bind(socket).map_err(io("listen on", socket))?;
    let mut log = ConsoleLogWriter::open(log).map_err(io("open", log))?;
    let clients: Clients = Arc::default();
    let input = Arc::new(Mutex::new(input));
    {
        let clients = clients.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(mut reader) = stream.try_clone() else {
                    continue;
                };
                if stream.set_write_timeout(Some(STALLED_CLIENT)).is_err() {
                    continue;
                }
                clients.lock().expect("clients lock").push(stream);
                let input = input.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = reader.read(&mut buf) {
                        if input
                            .lock()
                            .expect("input lock")
                            .write_all(&buf[..n])
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
        });
    }
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 << 10];
        let mut log_failed = false;
        while let Ok(n @ 1..) = output.read(&mut buf) {
            let chunk = &buf[..n];
            let logged = log.append(chunk).and_then(|()| {
                output_log
                    .lock()
                    .expect("output log lock")
                    .append(Stream::Console, chunk)
            });
            if let Err(e) = logged
                && !log_failed
            {
                tracing::warn!("cannot write the console log: {e}");
                log_failed = true;
            }
            clients
                .lock()
                .expect("clients lock")
                .retain_mut(|c| c.write_all(chunk).is_ok());
        }
    });
    Ok(())
}
