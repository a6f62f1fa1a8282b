//! A warm-start template's PID 1 (the host's `vms::warm`): booted with `template` in its
//! configuration, ignite-init stops before it touches the root disk and serves the agent
//! channel itself, answering hellos until a [`BootRequest`] arrives. That happens in a VM
//! restored from the template's snapshot: the request carries the VM's configuration and
//! the renewal every restored guest needs (clock, entropy, hostname, MAC and addresses).
//! The block caches of the root device are dropped, since the template's kernel read the
//! template's disk (its partition table) when the device appeared; then the boot goes on
//! with the VM's configuration, and the agent comes up on the same channel as in any boot.

use std::fs::{File, OpenOptions};
use std::io::BufReader;
use std::time::Duration;

use ignite_guest_protocol::agent::{
    BootRequest, CONTROL, ErrorBody, ExitStatus, Frame, FrameKind, Hello, PROTOCOL_VERSION,
};
use ignite_guest_protocol::config::GuestConfig;

use crate::console::say;

/// How long the host may stay away before the port is read again.
const RECONNECT_POLL: Duration = Duration::from_millis(20);

/// Waits for the VM's configuration; the renewal is applied before it is returned, with
/// the open agent channel. The channel stays open for the agent: closing it and opening
/// it again would drop what the host sends in between (the guest kernel discards data for
/// a port nobody holds open).
pub fn wait_for_vm() -> Result<(GuestConfig, File), String> {
    let path = crate::agent::find_serial_port()
        .ok_or("a template needs the agent channel, which this VM lacks")?;
    // The loopback comes up now, not in every VM restored from the template.
    if let Err(e) = crate::network::configure(&[]) {
        say(&format!("warning: template: {e}"));
    }
    say("template: waiting for a VM's configuration");
    let port = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut writer = port.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(port);
    loop {
        let frame = match Frame::read_from(&mut reader) {
            Ok(Some(frame)) => frame,
            // The host side closed, or is not there yet: it comes back.
            Ok(None) | Err(_) => {
                std::thread::sleep(RECONNECT_POLL);
                continue;
            }
        };
        match frame.kind {
            FrameKind::Hello => {
                let hello = Hello {
                    version: PROTOCOL_VERSION,
                    software: format!("ignite-init v{}", env!("CARGO_PKG_VERSION")),
                    mode: Some("template".into()),
                    boot: None,
                };
                let _ = Frame::json(FrameKind::Hello, CONTROL, &hello).write_to(&mut writer);
            }
            FrameKind::Boot => {
                let taken = frame
                    .body::<BootRequest>()
                    .map_err(|e| e.to_string())
                    .and_then(|request| {
                        crate::restore::renew(&request.renew)?;
                        drop_block_caches(&request.config.root_device)?;
                        Ok(request.config)
                    });
                match taken {
                    Ok(config) => {
                        let done = ExitStatus {
                            code: Some(0),
                            signal: None,
                        };
                        let _ = Frame::json(FrameKind::Exited, frame.session, &done)
                            .write_to(&mut writer);
                        // The port is the agent's from here on.
                        drop(writer);
                        return Ok((config, reader.into_inner()));
                    }
                    Err(message) => refuse(&mut writer, frame.session, message),
                }
            }
            _ => refuse(
                &mut writer,
                frame.session,
                "this VM is a template waiting for a VM's configuration".into(),
            ),
        }
    }
}

fn refuse(writer: &mut File, session: u32, message: String) {
    let body = ErrorBody {
        message,
        status: None,
    };
    let _ = Frame::json(FrameKind::Error, session, &body).write_to(writer);
}

/// `BLKFLSBUF` on the device: what the template's kernel cached of the template's disk
/// goes, so the VM's own disk is read afresh.
fn drop_block_caches(device: &str) -> Result<(), String> {
    let file = File::open(device).map_err(|e| format!("cannot open {device}: {e}"))?;
    flush_buffers(&file).map_err(|e| format!("cannot drop the caches of {device}: {e}"))
}

/// `BLKFLSBUF`: `_IO(0x12, 97)`.
#[allow(unsafe_code)]
fn flush_buffers(device: &File) -> rustix::io::Result<()> {
    use rustix::ioctl::{NoArg, ioctl, opcode};
    const BLKFLSBUF: rustix::ioctl::Opcode = opcode::none(0x12, 97);
    // SAFETY: BLKFLSBUF takes no argument, which is what NoArg passes; the fd is a block
    // device, which the ioctl is defined on.
    unsafe { ioctl(device, NoArg::<BLKFLSBUF>::new()) }
}
