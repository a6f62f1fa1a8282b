//! Running the `ignite` binary against a state directory, for the CLI's tests.

use std::path::Path;

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
