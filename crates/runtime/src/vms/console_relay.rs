//! The serial console of VMMs that put it on their stdin and stdout (Firecracker): the
//! supervisor appends the output to `console.log` and serves `console.sock` for `attach`,
//! as QEMU does itself, so `logs` and `attach` work the same whatever the VMM.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout};
use std::sync::{Arc, Mutex};

use super::{VmError, io};

type Clients = Arc<Mutex<Vec<UnixStream>>>;

/// Starts relaying; returns once `socket` listens.
pub fn start(
    input: ChildStdin,
    mut output: ChildStdout,
    socket: &Path,
    log: &Path,
) -> Result<(), VmError> {
    let listener = UnixListener::bind(socket).map_err(io("listen on", socket))?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io("open", log))?;
    let clients: Clients = Arc::default();
    let input = Arc::new(Mutex::new(input));
    {
        let clients = clients.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let Ok(mut reader) = stream.try_clone() else {
                    continue;
                };
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
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = output.read(&mut buf) {
            let chunk = &buf[..n];
            let _ = log.write_all(chunk);
            clients
                .lock()
                .expect("clients lock")
                .retain_mut(|c| c.write_all(chunk).is_ok());
        }
    });
    Ok(())
}
