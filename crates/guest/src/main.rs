//! `ignite-init`: PID 1 inside every VM. It is built as a static binary (no libc at run
//! time, no NSS) so it runs before the image's root filesystem is even mounted:
//!
//! ```sh
//! RUSTFLAGS="-C target-feature=+crt-static" \
//!     cargo build --release -p ignite-guest --target x86_64-unknown-linux-gnu
//! ```
//!
//! What it does so far: mounts /proc, /sys and /dev, loads the modules the initramfs lists
//! in /etc/ignite/modules (in that order), mounts the root disk and hands over to the
//! image's `/sbin/init`. Per-VM configuration, growing the root filesystem, container mode
//! and the guest agent come next.

mod boot;

use std::process::ExitCode;

const USAGE: &str = "ignite-init is the init (PID 1) of Ignite VMs; the host puts it into each VM's \
initramfs. It is not meant to be run by hand.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("ignite-init v{}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
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
