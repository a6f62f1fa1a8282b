//! `ignite-init`: PID 1 inside every VM. It is built as a static binary (no libc at run
//! time, no NSS) so it runs before the image's root filesystem is even mounted:
//!
//! ```sh
//! RUSTFLAGS="-C target-feature=+crt-static" \
//!     cargo build --release -p ignite-guest --target x86_64-unknown-linux-gnu
//! ```
//!
//! As PID 1 it boots the VM ([`boot`]). The same binary, started again by itself, is the
//! guest agent (`ignite-init agent MODE`, [`agent`]) and the helper that gives an exec
//! session its terminal (`ignite-init exec-tty ...`).

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod agent;
mod boot;
mod console;
mod copy;
mod grow;
mod network;
mod process_env;
mod provision;
mod pty;
mod restore;
mod template;
mod workload;
mod workload_stdio;

use std::process::ExitCode;

const USAGE: &str = "ignite-init is the init (PID 1) of Ignite VMs; the host puts it into each VM's \
initramfs. It is not meant to be run by hand.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => {
            println!("ignite-init v{}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Some("--help" | "-h") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some("agent") => {
            return agent::run(
                args.get(1).map_or("vm", String::as_str),
                args.get(2).and_then(|ms| ms.parse().ok()),
                args.get(3).map(String::as_str) == Some(agent::INHERITED_PORT_ARG),
            );
        }
        Some("exec-tty") => return agent::exec_tty(&args[1..]),
        _ => {}
    }
    if rustix::process::getpid().is_init() {
        boot::run();
    }
    eprintln!(
        "ignite-init: refusing to run as PID {}: {USAGE}",
        rustix::process::getpid().as_raw_nonzero()
    );
    ExitCode::from(2)
}
