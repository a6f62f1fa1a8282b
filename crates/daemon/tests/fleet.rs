//! A fleet on one machine: several `ignited gitops` (each its own state root and host
//! name) following one bare repository, booting real VMs under QEMU (TCG). Each VM runs
//! exactly once, on the host its manifest names; statuses and heartbeats from every host
//! reach the repository, no host's commit touches another host's files, and a changed
//! placement moves the VM. Over `file://` (writable) and `git daemon` (read-only).

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::git::{git, push_rebasing};
use ignite_testkit::{Host, guest_init, workspace_binary};

/// A child process, killed when dropped.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A child leading its own process group; dropping it kills the group.
struct ProcessGroup(std::process::Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

/// One fleet host: its own state root (a [`Host`]) and its `ignited gitops`.
struct FleetHost {
    name: &'static str,
    host: Host,
    ignited: Option<Child>,
}

impl FleetHost {
    fn log(&self) -> String {
        std::fs::read_to_string(self.host.root().join("ignited.log")).unwrap_or_default()
    }

    /// Whether `vm` is in this host's state root, and whether it runs.
    fn has(&self, vm: &str) -> (bool, bool) {
        let listed = self
            .host
            .ps_all()
            .lines()
            .any(|l| l.split_whitespace().last() == Some(vm));
        (listed, listed && self.host.status_of(vm) == "Up")
    }

    /// `ignited gitops URL` as this host; `image_root` is where the shared image is.
    fn start(&mut self, url: &str, image_root: &Path, extra: &[&str]) {
        let root = self.host.root();
        let config = root.join("ignited-config.yaml");
        std::fs::write(
            &config,
            format!(
                "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  hostAccess:\n    paths:\n    - {}\n",
                image_root.display()
            ),
        )
        .unwrap();
        let log = std::fs::File::create(root.join("ignited.log")).unwrap();
        let child = std::process::Command::new(cargo_bin!("ignited"))
            .args(["gitops", url, "--branch", "main", "--interval", "1"])
            .args(["--heartbeat-interval", "3s", "--host", self.name])
            .arg("--root")
            .arg(self.host.state())
            .arg("--ignite")
            .arg(self.host.ignite_binary())
            .arg("--api-socket")
            .arg(root.join("api.sock"))
            .arg("--checkout-dir")
            .arg(root.join("checkout"))
            .arg("--ignite-config")
            .arg(&config)
            .args(extra)
            .env("IGNITE_INIT", guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .env("IGNITE_WARM_STARTS", "off")
            .stderr(log)
            .spawn()
            .unwrap();
        self.ignited = Some(Child(child));
    }
}

fn fleet(names: &[&'static str]) -> Vec<FleetHost> {
    names
        .iter()
        .map(|name| FleetHost {
            name,
            host: Host::new(workspace_binary("ignite", "ignite-cli")),
            ignited: None,
        })
        .collect()
}

/// Waits up to `limit` for `check`, failing with every host's log.
fn wait_until(fleet: &[FleetHost], limit: Duration, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        if Instant::now() >= deadline {
            let logs: String = fleet
                .iter()
                .map(|h| format!("--- ignited on {}:\n{}\n", h.name, h.log()))
                .collect();
            panic!("{what}: timed out after {limit:?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A busybox VM manifest (128 MB, no network) placed on `host` (none: unplaced).
fn manifest(image_host: &Host, name: &str, host: Option<&str>) -> String {
    let text = image_host.manifest(name, "  memory: 128MB\n", "");
    match host {
        Some(h) => text.replace(
            &format!("metadata:\n  name: {name}\n"),
            &format!("metadata:\n  name: {name}\n  labels:\n    ignite.rs/host: {h:?}\n"),
        ),
        None => text,
    }
}

/// A bare repository (branch main) holding `files`, and a working clone of it.
fn repository(base: &Path, files: &[(String, String)]) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(base).unwrap();
    git(
        base,
        &["init", "--quiet", "--bare", "-b", "main", "remote.git"],
    );
    git(base, &["clone", "--quiet", "remote.git", "work"]);
    let work = base.join("work");
    git(&work, &["checkout", "--quiet", "-b", "main"]);
    for (file, text) in files {
        std::fs::write(work.join(file), text).unwrap();
    }
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "the fleet's VMs"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    (base.join("remote.git"), work)
}

/// The file's text on the remote's main, if it is there.
fn show(remote: &Path, path: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["show", &format!("main:{path}")])
        .current_dir(remote)
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `lastSeen` of a host's heartbeat on the remote.
fn last_seen(remote: &Path, host: &str) -> Option<String> {
    let text = show(remote, &format!("hosts/{host}.yaml"))?;
    let tree: serde_json::Value = ignite_api::manifest::decode(&text).ok()?;
    tree.pointer("/status/lastSeen")?
        .as_str()
        .map(str::to_string)
}

#[test]
fn three_hosts_share_one_repository_each_running_its_own_vms() {
    ignite_testkit::require_root!("booting VMs");
    let mut fleet = fleet(&["node-a", "node-b", "node-c"]);
    let image_host = &fleet[0].host;
    let image_root = image_host.root().to_path_buf();
    // Nine VMs, three per host; one with no placement and one with a hostile one.
    let mut files: Vec<(String, String)> = Vec::new();
    let mut placed: Vec<(String, &str)> = Vec::new();
    for h in &fleet {
        for i in 0..3 {
            let vm = format!("{}-vm{i}", h.name.trim_start_matches("node-"));
            files.push((
                format!("{vm}.yaml"),
                manifest(image_host, &vm, Some(h.name)),
            ));
            placed.push((vm, h.name));
        }
    }
    files.push(("stray.yaml".into(), manifest(image_host, "stray", None)));
    files.push((
        "evil.yaml".into(),
        manifest(image_host, "evil", Some("../../etc/passwd")),
    ));
    let base = image_root.join("fleet-repo");
    let (remote, work) = repository(&base, &files);
    let url = format!("file://{}", remote.display());
    let moved_text = manifest(image_host, "a-vm0", Some("node-c"));
    let started = Instant::now();
    for h in &mut fleet {
        h.start(&url, &image_root, &[]);
    }

    // Every VM runs, exactly once: in its own host's state root and no other.
    wait_until(&fleet, Duration::from_secs(420), "nine VMs run", || {
        placed
            .iter()
            .all(|(vm, on)| fleet.iter().find(|h| h.name == *on).unwrap().has(vm).1)
    });
    eprintln!("nine VMs ran on three hosts after {:?}", started.elapsed());
    for (vm, on) in &placed {
        let holders: Vec<&str> = fleet
            .iter()
            .filter(|h| h.has(vm).0)
            .map(|h| h.name)
            .collect();
        assert_eq!(holders, [*on], "{vm} is in exactly one state root");
    }
    for h in &fleet {
        assert_eq!(
            h.has("stray"),
            (false, false),
            "an unplaced VM runs nowhere"
        );
        assert_eq!(h.has("evil"), (false, false));
    }

    // Every status and every heartbeat reaches the repository.
    wait_until(
        &fleet,
        Duration::from_secs(120),
        "statuses and heartbeats are pushed",
        || {
            placed.iter().all(|(vm, _)| {
                show(&remote, &format!("{vm}.yaml")).is_some_and(|t| t.contains("running: true"))
            }) && placed.iter().all(|(vm, on)| {
                show(&remote, &format!("hosts/{on}.yaml")).is_some_and(|t| t.contains(vm.as_str()))
            })
        },
    );
    eprintln!("all statuses pushed after {:?}", started.elapsed());
    // The VMs booted and still run (a guest that failed would have ended its VMM by now).
    for (vm, on) in &placed {
        let h = fleet.iter().find(|h| h.name == *on).unwrap();
        assert_eq!(h.has(vm), (true, true), "{vm} on {on}");
    }
    assert!(!show(&remote, "stray.yaml").unwrap().contains("status:"));
    let heartbeat = show(&remote, "hosts/node-b.yaml").unwrap();
    for field in [
        "kind: Host",
        "cpus:",
        "memory:",
        "vmsRunning:",
        "lastSeen:",
        "b-vm0",
    ] {
        assert!(heartbeat.contains(field), "{field} in:\n{heartbeat}");
    }
    for h in &fleet {
        let log = h.log();
        assert!(
            log.contains("stray.yaml: VM stray has no ignite.rs/host label"),
            "{log}"
        );
        assert!(log.contains("VM evil is run nowhere"), "{log}");
    }

    // Heartbeats advance.
    let seen: Vec<String> = fleet
        .iter()
        .map(|h| last_seen(&remote, h.name).unwrap())
        .collect();
    for time in &seen {
        chrono::DateTime::parse_from_rfc3339(time).unwrap_or_else(|e| panic!("{time}: {e}"));
    }
    wait_until(
        &fleet,
        Duration::from_secs(60),
        "every lastSeen advances",
        || {
            fleet
                .iter()
                .zip(&seen)
                .all(|(h, before)| last_seen(&remote, h.name).is_some_and(|now| now > *before))
        },
    );

    // Moving a VM: its label changed, it leaves node-a and runs on node-c.
    git(&work, &["pull", "--quiet", "--rebase", "origin", "main"]);
    std::fs::write(work.join("a-vm0.yaml"), moved_text).unwrap();
    git(&work, &["commit", "--quiet", "-am", "move a-vm0 to node-c"]);
    // The daemons push statuses and heartbeats to the same branch meanwhile.
    push_rebasing(&work, "main");
    let moved = Instant::now();
    wait_until(
        &fleet,
        Duration::from_secs(180),
        "a-vm0 moves to node-c",
        || fleet[0].has("a-vm0") == (false, false) && fleet[2].has("a-vm0").1,
    );
    eprintln!("a-vm0 moved in {:?}", moved.elapsed());
    assert!(!fleet[1].has("a-vm0").0);
    assert!(
        fleet[0]
            .log()
            .contains("removed VM a-vm0: its manifest places it on host node-c")
    );
    wait_until(
        &fleet,
        Duration::from_secs(60),
        "node-c writes a-vm0's status",
        || {
            let by = git(
                &remote,
                &["log", "-1", "--format=%ae", "main", "--", "a-vm0.yaml"],
            );
            by.trim() == "ignited@node-c"
                && show(&remote, "a-vm0.yaml").is_some_and(|t| t.contains("running: true"))
        },
    );

    // No host's commit touched another host's files: each file an ignited commit changed
    // is its own heartbeat or a manifest placed on it in that commit.
    let commits = git(&remote, &["log", "--format=%H %ae", "main"]);
    let mut by_host = std::collections::BTreeMap::<String, usize>::new();
    for line in commits.lines() {
        let (commit, author) = line.split_once(' ').unwrap();
        let Some(host) = author.strip_prefix("ignited@") else {
            continue;
        };
        *by_host.entry(host.to_string()).or_default() += 1;
        let files = git(&remote, &["show", "--name-only", "--format=", commit]);
        for file in files.lines().filter(|f| !f.is_empty()) {
            if file == format!("hosts/{host}.yaml") {
                continue;
            }
            let text = git(&remote, &["show", &format!("{commit}:{file}")]);
            assert!(
                text.contains(&format!("ignite.rs/host: {host}")),
                "{host}'s commit {commit} touched {file}, not its own:\n{text}"
            );
        }
    }
    assert_eq!(by_host.len(), 3, "every host committed: {by_host:?}");
    // The history is one line: rejected pushes were rebased, nothing was merged over.
    let merges = git(&remote, &["rev-list", "--merges", "--count", "main"]);
    assert_eq!(merges.trim(), "0");
    for h in &mut fleet {
        h.ignited = None;
    }
}

#[test]
fn two_hosts_follow_a_read_only_git_daemon_each_running_its_own() {
    ignite_testkit::require_root!("booting VMs");
    let mut fleet = fleet(&["one", "two"]);
    let image_host = &fleet[0].host;
    let image_root = image_host.root().to_path_buf();
    let files = vec![
        (
            "vm-x.yaml".to_string(),
            manifest(image_host, "vm-x", Some("one")),
        ),
        (
            "vm-y.yaml".to_string(),
            manifest(image_host, "vm-y", Some("two")),
        ),
        ("vm-z.yaml".to_string(), manifest(image_host, "vm-z", None)),
    ];
    let base = image_root.join("fleet-repo");
    let (remote, _work) = repository(&base, &files);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _git_daemon = ProcessGroup(
        std::process::Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(&base)
            .process_group(0)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("git://127.0.0.1:{port}/remote.git");
    // Host two also takes the unplaced VM.
    fleet[0].start(&url, &image_root, &[]);
    fleet[1].start(&url, &image_root, &["--adopt-unplaced"]);
    wait_until(
        &fleet,
        Duration::from_secs(300),
        "vm-x on one, vm-y and vm-z on two",
        || fleet[0].has("vm-x").1 && fleet[1].has("vm-y").1 && fleet[1].has("vm-z").1,
    );
    assert_eq!(fleet[0].has("vm-y"), (false, false));
    assert_eq!(fleet[0].has("vm-z"), (false, false));
    assert_eq!(fleet[1].has("vm-x"), (false, false));
    // Read-only: no status, no heartbeat.
    std::thread::sleep(Duration::from_secs(3));
    let authors = git(&remote, &["log", "--format=%ae", "main"]);
    assert!(!authors.contains("ignited"), "{authors}");
    for h in &mut fleet {
        h.ignited = None;
    }
}

/// `ignited daemon --host`: a manifest directory with the same placement. Nothing boots:
/// the VM placed here cannot be made (its image is nowhere), so its error is its status;
/// the others get no status at all.
#[test]
fn ignited_daemon_with_host_runs_only_the_manifests_placed_on_it() {
    ignite_testkit::require_root!("running ignited");
    let host = Host::empty(workspace_binary("ignite", "ignite-cli"));
    let dir = host.root().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    let unmakeable = |name: &str, on: Option<&str>| {
        // JSON's escapes are YAML's too (a control character as \u001b).
        let labels = on.map_or(String::new(), |h| {
            format!(
                "  labels:\n    ignite.rs/host: {}\n",
                serde_json::to_string(h).unwrap()
            )
        });
        format!(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\n{labels}spec:\n  image:\n    oci: registry.invalid/none:1\n  network:\n    mode: none\n"
        )
    };
    let files = [
        ("mine.yaml", unmakeable("mine", Some("me"))),
        ("theirs.yaml", unmakeable("theirs", Some("them"))),
        ("stray.yaml", unmakeable("stray", None)),
        ("evil.yaml", unmakeable("evil", Some("a\u{1b}[31m/../x"))),
    ];
    for (file, text) in &files {
        std::fs::write(dir.join(file), text).unwrap();
    }
    let log_file = host.root().join("ignited.log");
    let _daemon = Child(
        std::process::Command::new(cargo_bin!("ignited"))
            .args(["daemon", "--resync", "1", "--host", "me", "--manifest-dir"])
            .arg(&dir)
            .arg("--root")
            .arg(host.state())
            .arg("--ignite")
            .arg(host.ignite_binary())
            .arg("--api-socket")
            .arg(host.root().join("api.sock"))
            .env("IGNITE_WARM_STARTS", "off")
            .stderr(std::fs::File::create(&log_file).unwrap())
            .spawn()
            .unwrap(),
    );
    let log = || std::fs::read_to_string(&log_file).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(dir.join("mine.yaml")).is_ok_and(|t| t.contains("error:")) {
        assert!(
            Instant::now() < deadline,
            "mine's error is not written:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // Two more passes: the others stay as written.
    std::thread::sleep(Duration::from_secs(3));
    for (file, text) in &files[1..] {
        assert_eq!(
            &std::fs::read_to_string(dir.join(file)).unwrap(),
            text,
            "{file}"
        );
    }
    let log = log();
    assert!(
        log.contains("host me: 1 manifest(s) placed here, 1 on other hosts, 1 unplaced, 1 with an invalid ignite.rs/host"),
        "{log}"
    );
    assert!(
        log.contains("VM stray has no ignite.rs/host label"),
        "{log}"
    );
    assert!(log.contains("VM evil is run nowhere"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "a control character reached the log: {log}"
    );
    assert!(!log.contains("theirs"), "{log}");
}
