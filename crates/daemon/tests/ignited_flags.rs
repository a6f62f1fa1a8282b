//! Ignite v0.10's ignited flags, through the binary: the global flags anywhere on the
//! command line, `version -o`, and `gitops`'s branch rule, durations, timeout and HTTPS
//! password warning, against real git remotes on file:// and 127.0.0.1. No VM is booted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::git::git;

fn ignited(args: &[&str]) -> Output {
    Command::new(cargo_bin!("ignited"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_prints_ignites_shapes() {
    let version = format!("v{}", env!("CARGO_PKG_VERSION"));
    let out = ignited(&["version", "-o", "short"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("Ignite version: {version}\n")
    );
    let out = ignited(&["version", "--output", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ignite"]["version"], version.as_str());
    assert!(json["ignite"]["gitCommit"].is_string());
    let out = ignited(&["version", "-o", "yaml"]);
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.starts_with("ignite:\n"), "{yaml}");
    assert!(yaml.contains(&format!("version: {version}")), "{yaml}");
    let out = ignited(&["version"]);
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .starts_with(&format!("Ignite version: {version} (commit "))
    );
    let out = ignited(&["version", "-o", "xml"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("short, json, yaml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn global_flags_go_anywhere_and_log_level_drives_the_log() {
    let ignored = [
        "--runtime",
        "docker",
        "--network-plugin",
        "docker-bridge",
        "--id-prefix",
        "mine",
    ];
    // Before the subcommand, at debug: the ignored flags are said to be ignored.
    let mut line = vec!["--log-level", "debug"];
    line.extend(ignored);
    line.extend(["version", "-o", "short"]);
    let out = ignited(&line);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = stderr(&out);
    for flag in ["--runtime", "--network-plugin", "--id-prefix"] {
        assert!(
            log.contains(&format!("{flag} ")) && log.contains("ignored"),
            "{flag}: {log}"
        );
    }
    // After it, at info (logrus's "warning" too): nothing said. An explicit level wins over RUST_LOG.
    for level in ["info", "warning", "panic", "fatal", "error", "trace"] {
        let mut line = vec!["version", "-o", "short", "--log-level", level];
        line.extend(ignored);
        let out = Command::new(cargo_bin!("ignited"))
            .args(&line)
            .env("RUST_LOG", "debug")
            .output()
            .unwrap();
        assert!(out.status.success(), "{level}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).contains("ignored"),
            level == "trace",
            "{level}"
        );
    }
    for bad in [
        &["--log-level", "loud", "version"][..],
        &["version", "--runtime", "podman"],
        &["--network-plugin", "flannel", "version"],
    ] {
        let out = ignited(bad);
        assert!(!out.status.success(), "{bad:?}");
        assert!(
            stderr(&out).contains("possible values"),
            "{bad:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn bad_durations_are_refused_with_the_accepted_form() {
    for (flag, value, says) in [
        ("--interval", "10x", "unknown unit"),
        ("--interval", "-1.5h", "negative"),
        ("--interval", "0", "more than 0"),
        ("--timeout", "30", "missing a unit"),
        ("--timeout", "soon", "300ms, 1m30s"),
    ] {
        let out = ignited(&["gitops", "file:///nowhere", &format!("{flag}={value}")]);
        assert!(!out.status.success(), "{flag} {value}");
        let e = stderr(&out);
        assert!(e.contains(flag) && e.contains(says), "{flag} {value}: {e}");
    }
}

/// A scratch directory and `ignited gitops` in it, killed when dropped.
struct Gitops {
    child: Child,
    log: PathBuf,
}

impl Gitops {
    fn start(dir: &Path, tag: &str, url: &str, extra: &[&str]) -> Gitops {
        let log = dir.join(format!("ignited-{tag}.log"));
        let child = Command::new(cargo_bin!("ignited"))
            .args(["gitops", url, "--root"])
            .arg(dir.join("state"))
            .arg("--api-socket")
            .arg(dir.join(format!("api-{tag}.sock")))
            .arg("--checkout-dir")
            .arg(dir.join(format!("checkout-{tag}")))
            .args(extra)
            .env_remove("RUST_LOG")
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Gitops { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits (30 s at most) until the log holds `needle` `times` times.
    fn wait_for(&self, needle: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if log.matches(needle).count() >= times {
                return log;
            }
            assert!(Instant::now() < deadline, "no {needle:?} in:\n{log}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the process to end on its own; its exit status and log.
    fn exit(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Gitops {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare repository whose only branch (and HEAD) is `branch`, with one commit.
fn remote_with(dir: &Path, branch: &str) -> String {
    let remote = dir.join(format!("{branch}.git"));
    git(
        dir,
        &[
            "init",
            "--quiet",
            "--bare",
            "-b",
            branch,
            remote.to_str().unwrap(),
        ],
    );
    let work = dir.join(format!("work-{branch}"));
    git(
        dir,
        &["init", "--quiet", "-b", branch, work.to_str().unwrap()],
    );
    std::fs::write(work.join("README"), "no VMs yet\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "empty"]);
    git(
        &work,
        &["push", "--quiet", remote.to_str().unwrap(), branch],
    );
    format!("file://{}", remote.display())
}

#[test]
fn gitops_follows_master_or_else_the_remotes_default_branch() {
    let dir = tempfile::tempdir().unwrap();
    let main = remote_with(dir.path(), "main");
    // No --branch and no master: the remote's default branch, said at info.
    let gitops = Gitops::start(dir.path(), "fallback", &main, &[]);
    let log = gitops.wait_for("following file://", 1);
    assert!(
        log.contains("has no branch master (Ignite's default): following its default branch main"),
        "{log}"
    );
    assert!(log.contains("(main)"), "{log}");
    drop(gitops);
    // -b names it: no fallback said.
    let gitops = Gitops::start(dir.path(), "b", &main, &["-b", "main", "--interval", "2"]);
    let log = gitops.wait_for("following file://", 1);
    assert!(!log.contains("Ignite's default"), "{log}");
    drop(gitops);
    // master, when there, is Ignite's default.
    let master = remote_with(dir.path(), "master");
    let gitops = Gitops::start(dir.path(), "master", &master, &["--interval", "1m0s"]);
    let log = gitops.wait_for("following file://", 1);
    assert!(
        log.contains("(master)") && !log.contains("Ignite's default"),
        "{log}"
    );
    drop(gitops);
    // A branch given that the remote does not have: an error, at once.
    let (status, log) = Gitops::start(
        dir.path(),
        "nope",
        &main,
        &["--branch", "nope", "--timeout", "10s"],
    )
    .exit();
    assert!(!status.success());
    assert!(
        log.contains(
            "no branch \"nope\" to follow (it has main); give an existing one to --branch"
        ),
        "{log}"
    );
}

#[test]
fn git_operations_are_stopped_after_the_timeout_and_the_loop_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    // A git:// server that takes connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("git://{}/vms.git", silent.local_addr().unwrap());
    let started = Instant::now();
    let gitops = Gitops::start(
        dir.path(),
        "timeout",
        &url,
        &["--timeout", "500ms", "--interval", "1s"],
    );
    let log = gitops.wait_for("took longer than 500ms and was stopped", 2);
    assert!(log.contains("retrying"), "{log}");
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(gitops);
    drop(silent);
}

#[test]
fn an_https_password_on_the_command_line_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gitops = Gitops::start(
        dir.path(),
        "https",
        &format!("https://127.0.0.1:{port}/vms.git"),
        &[
            "--https-username",
            "u",
            "--https-password",
            "s3cret",
            "--log-level",
            "error",
        ],
    );
    let log = gitops.wait_for("Warning: --https-password is visible to other users", 1);
    assert!(log.contains("set IGNITE_GIT_PASSWORD"), "{log}");
}
