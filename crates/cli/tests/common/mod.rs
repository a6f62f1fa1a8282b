//! Running the `ignite` binary against a state directory, for the CLI's tests.

use std::path::{Path, PathBuf};

use assert_cmd::Command;

/// `ignite` with its state in `root`, plain logs and no colour.
pub fn ignite(root: &Path) -> Command {
    let mut cmd = Command::cargo_bin("ignite").unwrap();
    cmd.env("IGNITE_ROOT", root)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1");
    cmd
}

/// Runs the command, expects success and returns its stdout.
#[allow(dead_code)] // not every test binary uses it
pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8(cmd.assert().success().get_output().stdout.clone()).unwrap()
}

/// The static guest init that scripts/test.sh builds before the tests.
#[allow(dead_code)]
pub fn guest_init() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/x86_64-unknown-linux-gnu/release/ignite-init");
    assert!(
        p.is_file(),
        "no static ignite-init at {}: run scripts/test.sh (it builds it)",
        p.display()
    );
    p
}

/// A busybox image as an OCI layout (tag `busybox`): ENTRYPOINT `sh -c`, USER 1000, and
/// an init (VM mode) that powers off on SIGUSR2 or SIGTERM and otherwise idles.
#[allow(dead_code)]
pub fn write_busybox_image(layout: &Path) {
    use ignite_testkit::images::{Compression, Image, LayerBuilder};
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let init = "#!/bin/sh\ntrap 'echo init: powering off; busybox poweroff -f' USR2 TERM\necho init: up\nwhile :; do busybox sleep 0.2; done\n";
    let layer = LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .dir("sbin", 0o755)
        .file("sbin/init", init.as_bytes(), 0o755)
        .finish(Compression::Gzip);
    Image::new(vec![layer], &["echo from CMD"]).write_oci_layout(layout, "busybox");
}
