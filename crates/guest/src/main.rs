//! `ignite-init`: PID 1 inside every VM. It is built as a static binary (no libc at run
//! time, no NSS) so it runs before the image's root filesystem is even mounted:
//!
//! ```sh
//! RUSTFLAGS="-C target-feature=+crt-static" \
//!     cargo build --release -p ignite-guest --target x86_64-unknown-linux-gnu
//! ```

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
        // The boot sequence (modules, root disk, per-VM config, VM or container mode)
        // is not in this build. Power off rather than leave the kernel to panic.
        eprintln!("ignite-init: this build cannot boot a VM yet; powering off");
        let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
        return ExitCode::FAILURE;
    }
    eprintln!(
        "ignite-init: refusing to run as PID {}: {USAGE}",
        rustix::process::getpid().as_raw_nonzero()
    );
    ExitCode::from(2)
}
