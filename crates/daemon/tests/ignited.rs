//! `ignited` through its binary, over the `ignite` binary, booting real VMs under QEMU
//! (TCG): the manifest directory followed, every endpoint of the API with its error codes
//! and `/metrics`, and GitOps against a bare repository over `file://`, `git daemon` and
//! an sshd the test starts on 127.0.0.1. `ignite` is the one beside this test binary:
//! `cargo test --workspace` builds it, or `cargo build -p ignite-cli`.

use std::io::Write;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::git::{git, push_rebasing};
use ignite_testkit::{Host, guest_init, workspace_binary};

/// `ignited daemon` over a manifest directory, until dropped.
struct Daemon(std::process::Child);

/// A Configuration whose host access policy lets ignited's manifests use the test's
/// local image layout (declarative manifests may name no host path otherwise).
fn host_access_config(host: &Host) -> PathBuf {
    let file = host.root().join("ignited-config.yaml");
    std::fs::write(
        &file,
        format!(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  hostAccess:\n    paths:\n    - {}\n",
            host.root().display()
        ),
    )
    .unwrap();
    file
}

impl Daemon {
    fn start(host: &Host, dir: &Path) -> Daemon {
        let log = std::fs::File::create(host.root().join("ignited.log")).unwrap();
        let child = std::process::Command::new(cargo_bin!("ignited"))
            .args(["daemon", "--resync", "2", "--manifest-dir"])
            .arg(dir)
            .arg("--root")
            .arg(host.root().join("state"))
            .arg("--ignite")
            .arg(host.ignite_binary())
            .arg("--api-socket")
            .arg(host.root().join("api.sock"))
            .arg("--ignite-config")
            .arg(host_access_config(host))
            .env("IGNITE_INIT", guest_init())
            .env("IGNITE_ACCEL", "tcg")
            .env("IGNITE_WARM_STARTS", "off")
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon(child)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until `check` holds (the daemon acts within seconds).
fn wait_until(host: &Host, what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !check() {
        let log = std::fs::read_to_string(host.root().join("ignited.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "{what}: timed out; ignited said:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn ignited_daemon_follows_the_manifest_directory() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(workspace_binary("ignite", "ignite-cli"));
    let dir = host.root().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = Daemon::start(&host, &dir);
    let listed = |name: &str| host.ps_all().lines().any(|l| l.ends_with(name));
    // A manifest dropped in: the VM runs (no uid, no status needed), its status is written back.
    std::fs::write(dir.join("d1.yaml"), host.manifest("d1", "  cpus: 1\n", "")).unwrap();
    wait_until(&host, "d1 runs", || {
        listed("d1") && host.status_of("d1") == "Up"
    });
    wait_until(&host, "d1's status is written back", || {
        std::fs::read_to_string(dir.join("d1.yaml")).is_ok_and(|t| t.contains("running: true"))
    });
    // An edit (written elsewhere and renamed over, as editors and git do) is applied.
    let tmp = host.root().join("d1.yaml.new");
    std::fs::write(&tmp, host.manifest("d1", "  cpus: 2\n", "")).unwrap();
    std::fs::rename(&tmp, dir.join("d1.yaml")).unwrap();
    wait_until(&host, "d1 gets 2 CPUs", || {
        host.vm("d1").spec.cpus == Some(2) && host.status_of("d1") == "Up"
    });
    // A broken manifest is reported and does not stop the others.
    std::fs::write(dir.join("broken.yaml"), "kind: VM\nspec: [").unwrap();
    std::fs::write(dir.join("d2.json"), {
        let yaml = host.manifest("d2", "", "");
        let tree: serde_json::Value = ignite_api::manifest::decode(&yaml).unwrap();
        ignite_api::manifest::to_json(&tree)
    })
    .unwrap();
    wait_until(&host, "d2 runs", || {
        listed("d2") && host.status_of("d2") == "Up"
    });
    wait_until(&host, "the broken manifest is reported", || {
        std::fs::read_to_string(host.root().join("ignited.log"))
            .is_ok_and(|l| l.contains("broken.yaml"))
    });
    // A VM that cannot be made gets its error in its manifest.
    std::fs::write(
        dir.join("bad.yaml"),
        host.manifest("bad", "", "")
            .replace(&host.image(), "oci:/no/such/layout:x"),
    )
    .unwrap();
    wait_until(&host, "bad's error is written back", || {
        std::fs::read_to_string(dir.join("bad.yaml")).is_ok_and(|t| t.contains("error:"))
    });
    // A deleted manifest takes its VM along.
    std::fs::remove_file(dir.join("d1.yaml")).unwrap();
    wait_until(&host, "d1 is removed", || !listed("d1"));
    assert_eq!(host.status_of("d2"), "Up");
    std::fs::remove_file(dir.join("d2.json")).unwrap();
    wait_until(&host, "d2 is removed", || !listed("d2"));
}

/// One request to the daemon's API socket: (status, body).
fn api(host: &Host, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::Read;
    let socket = host.root().join("api.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut stream = loop {
        match std::os::unix::net::UnixStream::connect(&socket) {
            Ok(s) => break s,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "no API at {}: {e}",
                    socket.display()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn ignited_api_serves_vms_images_kernels_and_metrics() {
    use std::os::unix::fs::PermissionsExt;
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(workspace_binary("ignite", "ignite-cli"));
    let dir = host.root().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    let _daemon = Daemon::start(&host, &dir);
    let (status, body) = api(&host, "GET", "/v1/kernels", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body).as_array().unwrap().len(), 1);
    let mode = std::fs::metadata(host.root().join("api.sock"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "only root may use the API without --api-group"
    );
    // Create from a manifest: started unless it says otherwise.
    let manifest = host.manifest("api1", "", "");
    let (status, body) = api(&host, "POST", "/v1/vms", &manifest);
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["status"]["running"], true);
    let (status, body) = api(&host, "POST", "/v1/vms", &manifest);
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["status"], 409);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("already exists")
    );
    let (status, body) = api(&host, "POST", "/v1/vms", "kind: VM\nspec: [");
    assert_eq!(status, 400);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("bad VM manifest")
    );
    let (status, body) = api(&host, "GET", "/v1/images", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body).as_array().unwrap().len(), 1);
    let (status, body) = api(&host, "GET", "/v1/vms", "");
    assert_eq!(status, 200);
    let names: Vec<String> = json(&body)
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["api1"]);
    let (status, body) = api(&host, "GET", "/v1/vms/api1", "");
    assert_eq!(status, 200);
    assert_eq!(json(&body)["metadata"]["name"], "api1");
    let (status, body) = api(&host, "GET", "/v1/vms/nope", "");
    assert_eq!(status, 404);
    assert!(json(&body)["error"].as_str().unwrap().contains("nope"));
    // Once the guest's agent answers, its boot time is a metric.
    host.ignite()
        .args(["exec", "api1", "busybox", "true"])
        .assert()
        .success();
    let (status, metrics) = api(&host, "GET", "/metrics", "");
    assert_eq!(status, 200);
    let mut samples = std::collections::HashMap::new();
    for line in metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a sample: {line}"));
        samples.insert(name.to_string(), value);
    }
    assert_eq!(samples["ignite_vms{state=\"running\"}"], 1.0);
    assert!(samples["ignite_reconcile_passes_total"] >= 1.0);
    let uid = host.vm("api1").metadata.uid.unwrap().to_string();
    let labels = format!("{{vm=\"api1\",uid=\"{uid}\"}}");
    assert!(samples[&format!("ignite_vm_boot_seconds{labels}")] > 0.0);
    assert_eq!(
        samples[&format!("ignite_vm_memory_bytes{labels}")],
        512.0 * 1024.0 * 1024.0
    );
    assert!(samples[&format!("ignite_vm_supervisor_resident_bytes{labels}")] > 0.0);
    // The VMM's memory, read live: resident, and its share of pages it shares.
    let resident = samples[&format!("ignite_vm_vmm_resident_bytes{labels}")];
    let proportional = samples[&format!("ignite_vm_vmm_proportional_bytes{labels}")];
    assert!(resident > 16.0 * 1024.0 * 1024.0, "{resident}");
    assert!(
        proportional > 0.0 && proportional <= resident,
        "{proportional}"
    );
    // What `ignite stats` shows, from the VM's cgroup: CPU time, memory against its limit
    // (512 MB of guest, the VMM's own, TCG's translation cache).
    assert!(samples[&format!("ignite_vm_cpu_seconds_total{labels}")] > 0.0);
    assert!(samples[&format!("ignite_vm_cgroup_memory_bytes{labels}")] > 16.0 * 1024.0 * 1024.0);
    assert_eq!(
        samples[&format!("ignite_vm_cgroup_memory_limit_bytes{labels}")],
        ((512u64 + 256 + 1024) << 20) as f64
    );
    // Stop, start, a second start refused, remove (refused while it runs, unless forced).
    let (status, body) = api(&host, "POST", "/v1/vms/api1/stop", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["status"]["running"], false);
    let (status, body) = api(&host, "POST", "/v1/vms/api1/start", "");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["status"]["running"], true);
    let (status, _) = api(&host, "POST", "/v1/vms/api1/start", "");
    assert_eq!(status, 409);
    let (status, _) = api(&host, "DELETE", "/v1/vms/api1", "");
    assert_eq!(status, 409);
    let (status, body) = api(&host, "DELETE", "/v1/vms/api1?force=true", "");
    assert_eq!(status, 204, "{body}");
    assert_eq!(api(&host, "GET", "/v1/vms/api1", "").0, 404);
    // Wrong methods and paths.
    assert_eq!(api(&host, "PUT", "/v1/vms", "").0, 405);
    assert_eq!(api(&host, "GET", "/v2/anything", "").0, 404);
}

/// A bare repository (branch main) with one manifest committed through a working clone.
fn git_remote(host: &Host, tag: &str, manifest_text: &str, file: &str) -> (PathBuf, PathBuf) {
    let base = host.root().join(format!("git-{tag}"));
    std::fs::create_dir_all(&base).unwrap();
    let remote = base.join("remote.git");
    git(
        &base,
        &["init", "--quiet", "--bare", "-b", "main", "remote.git"],
    );
    let work = base.join("work");
    git(
        &base,
        &["clone", "--quiet", remote.to_str().unwrap(), "work"],
    );
    git(&work, &["checkout", "--quiet", "-b", "main"]);
    std::fs::write(work.join(file), manifest_text).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "a VM"]);
    git(&work, &["push", "--quiet", "origin", "main"]);
    (remote, work)
}

/// `ignited gitops` until dropped.
fn start_gitops(host: &Host, tag: &str, url: &str, extra: &[&str]) -> Daemon {
    let log = std::fs::File::create(host.root().join("ignited.log")).unwrap();
    let child = std::process::Command::new(cargo_bin!("ignited"))
        .args([
            "gitops",
            url,
            "--branch",
            "main",
            "--interval",
            "1",
            // The test's manifests name no host: this single host runs them.
            "--adopt-unplaced",
            "--root",
        ])
        .arg(host.root().join("state"))
        .arg("--ignite")
        .arg(host.ignite_binary())
        .arg("--api-socket")
        .arg(host.root().join(format!("api-{tag}.sock")))
        .arg("--checkout-dir")
        .arg(host.root().join(format!("checkout-{tag}")))
        .arg("--ignite-config")
        .arg(host_access_config(host))
        .args(extra)
        .env("IGNITE_INIT", guest_init())
        .env("IGNITE_ACCEL", "tcg")
        .env("IGNITE_WARM_STARTS", "off")
        .stderr(log)
        .spawn()
        .unwrap();
    Daemon(child)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn ignited_gitops_follows_git_remotes_and_pushes_status() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(workspace_binary("ignite", "ignite-cli"));
    let listed = |name: &str| host.ps_all().lines().any(|l| l.ends_with(name));
    let ignited_commits = |remote: &Path| {
        git(remote, &["log", "--format=%an", "main"])
            .lines()
            .filter(|a| *a == "ignited")
            .count()
    };

    // file://: a commit makes a VM, its status lands in a new commit, a removal removes it.
    let (remote, work) = git_remote(&host, "file", &host.manifest("g1", "", ""), "g1.yaml");
    // The remote rejects the first push: the status gets there at a later try.
    let hook = remote.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nif [ ! -e {m} ]; then touch {m}; echo 'rejected for the test' >&2; exit 1; fi\n",
            m = remote.join("rejected-once").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let url = format!("file://{}", remote.display());
    let gitops = start_gitops(&host, "file", &url, &[]);
    wait_until(&host, "g1 runs", || {
        listed("g1") && host.status_of("g1") == "Up"
    });
    wait_until(&host, "g1's status is pushed", || {
        ignited_commits(&remote) > 0
    });
    assert!(git(&remote, &["show", "main:g1.yaml"]).contains("running: true"));
    assert!(remote.join("rejected-once").exists());
    // The remote goes away for a while: the daemon carries on, and picks up later commits.
    let away = remote.with_extension("away");
    std::fs::rename(&remote, &away).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    std::fs::rename(&away, &remote).unwrap();
    assert_eq!(host.status_of("g1"), "Up");
    git(&work, &["pull", "--quiet", "--rebase", "origin", "main"]);
    git(&work, &["rm", "--quiet", "g1.yaml"]);
    git(&work, &["commit", "--quiet", "-m", "no more g1"]);
    // The daemon may push g1's status meanwhile.
    push_rebasing(&work, "main");
    wait_until(&host, "g1 is removed", || !listed("g1"));
    let log = std::fs::read_to_string(host.root().join("ignited.log")).unwrap();
    assert!(log.contains("cannot fetch"), "{log}");
    assert!(log.contains("cannot push the status"), "{log}");
    drop(gitops);

    // git daemon (git://): read-only, so VMs follow but no status is pushed.
    let (remote, _work) = git_remote(&host, "daemon", &host.manifest("g2", "", ""), "g2.yaml");
    let port = free_port();
    let base = remote.parent().unwrap().to_path_buf();
    // `git daemon` runs git-daemon as its child: both go, as a process group, however the
    // test ends (a leftover git-daemon would hold the test's output open).
    let git_daemon = ProcessGroup(
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
    let gitops = start_gitops(
        &host,
        "daemon",
        &format!("git://127.0.0.1:{port}/remote.git"),
        &[],
    );
    wait_until(&host, "g2 runs", || {
        listed("g2") && host.status_of("g2") == "Up"
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        ignited_commits(&remote),
        0,
        "a read-only remote gets no commits"
    );
    drop(gitops);
    drop(git_daemon);
    host.ignite().args(["rm", "-f", "g2"]).assert().success();

    // SSH with a key and a checked host key: status is pushed.
    ignite_testkit::require_program("/usr/sbin/sshd", "openssh-server");
    let (remote, _work) = git_remote(&host, "ssh", &host.manifest("g3", "", ""), "g3.yaml");
    let sshd_dir = host.root().join("sshd");
    std::fs::create_dir_all(&sshd_dir).unwrap();
    let keygen = |path: &Path| {
        assert!(
            std::process::Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(path)
                .status()
                .unwrap()
                .success()
        );
    };
    keygen(&sshd_dir.join("host_key"));
    keygen(&sshd_dir.join("client_key"));
    let port = free_port();
    std::fs::copy(
        sshd_dir.join("client_key.pub"),
        sshd_dir.join("authorized_keys"),
    )
    .unwrap();
    std::fs::write(
        sshd_dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\nAuthorizedKeysFile {dir}/authorized_keys\nPidFile {dir}/sshd.pid\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
            dir = sshd_dir.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut sshd = std::process::Command::new("/usr/sbin/sshd")
        .args(["-D", "-f"])
        .arg(sshd_dir.join("sshd_config"))
        .arg("-E")
        .arg(sshd_dir.join("sshd.log"))
        .spawn()
        .unwrap();
    let host_key = std::fs::read_to_string(sshd_dir.join("host_key.pub")).unwrap();
    let known_hosts = sshd_dir.join("known_hosts");
    std::fs::write(
        &known_hosts,
        format!(
            "[127.0.0.1]:{port} {}\n",
            host_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ")
        ),
    )
    .unwrap();
    let url = format!("ssh://root@127.0.0.1:{port}{}", remote.display());
    let key = sshd_dir.join("client_key");
    let gitops = start_gitops(
        &host,
        "ssh",
        &url,
        &[
            "--identity-file",
            key.to_str().unwrap(),
            "--hosts-file",
            known_hosts.to_str().unwrap(),
        ],
    );
    wait_until(&host, "g3 runs", || {
        listed("g3") && host.status_of("g3") == "Up"
    });
    wait_until(&host, "g3's status is pushed over SSH", || {
        ignited_commits(&remote) > 0
    });
    drop(gitops);
    let _ = sshd.kill();
    let _ = sshd.wait();
    host.ignite().args(["rm", "-f", "g3"]).assert().success();
}

/// A child that leads its own process group; dropping it kills the whole group.
struct ProcessGroup(std::process::Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}
