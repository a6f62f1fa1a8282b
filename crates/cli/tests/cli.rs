//! The `ignite` binary end to end: ps, inspect, vm, version and completion against a real
//! state directory. Golden files live in tests/golden; `UPDATE_GOLDEN=1` rewrites them.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin;
use chrono::{Duration, SubsecRound, Utc};
use ignite_api::{Time, Vm, manifest};
use ignite_store::Store;
use ignite_testkit::stdout;
use predicates::prelude::*;

/// `ignite` with its state in `root`, plain logs and no colour.
fn ignite(root: &Path) -> assert_cmd::Command {
    ignite_testkit::ignite(cargo_bin!("ignite"), root)
}

fn golden(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::write(&path, actual).unwrap();
    }
    let expected = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(actual, expected, "output differs from {}", path.display());
}

/// A live process to record as a running VM's supervisor: this test process.
fn live_supervisor() -> String {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let ticks = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .nth(19)
        .unwrap()
        .to_string();
    format!("{{pid: {}, startTicks: {ticks}}}", std::process::id())
}

/// Three VMs as in Ignite's own ps tests, created three days ago; vm2 runs since 2h (its
/// supervisor is this test process, so it counts as running).
fn three_vms(root: &Path) {
    let store = Store::open(root).unwrap();
    let created = Time((Utc::now() - Duration::days(3)).trunc_subsecs(0));
    let started = Time((Utc::now() - Duration::hours(2)).trunc_subsecs(0));
    let docs = [
        (
            "vm1",
            "20e1d566ce318ada",
            "image: {oci: foo/bar}\n  cpus: 1\n  memory: 512MB\n  diskSize: 4GB",
            "",
        ),
        (
            "vm2",
            "bfc80c948b1e2419",
            "image: {oci: foo/bar}\n  cpus: 2\n  memory: 800MB\n  diskSize: 3GB\n  network: {ports: [{hostPort: 8080, vmPort: 80, protocol: tcp}]}",
            "status:\n  running: true\n  startTime: STARTED\n  supervisor: SUPERVISOR\n  network: {plugin: bridge, ipAddresses: [10.61.0.2, 10.61.0.3]}\n",
        ),
        (
            "vm3",
            "cddc37ba657766e3",
            "image: {oci: \"alpine:3.19\"}\n  cpus: 1\n  memory: 512MB\n  diskSize: 4GB",
            "",
        ),
    ];
    for (name, uid, spec, status) in docs {
        let doc = format!(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\n  uid: {uid}\n  created: {created}\nspec:\n  kernel: {{oci: weaveworks/ignite-kernel:5.10.51}}\n  {spec}\n{}",
            status
                .replace("STARTED", &started.to_string())
                .replace("SUPERVISOR", &live_supervisor())
        );
        let vm: Vm = manifest::decode(&doc).unwrap();
        store.vms().create(vm).unwrap();
    }
}

#[test]
fn ps_lists_running_vms_by_default() {
    let root = tempfile::tempdir().unwrap();
    three_vms(root.path());
    golden("ps-running.txt", &stdout(ignite(root.path()).arg("ps")));
}

#[test]
fn ps_all_shows_ignites_columns() {
    let root = tempfile::tempdir().unwrap();
    three_vms(root.path());
    let out = stdout(ignite(root.path()).args(["ps", "-a"]));
    golden("ps-all.txt", &out);
    // The same table from the vm group and its aliases.
    for args in [
        &["vm"][..],
        &["vms"],
        &["vm", "ls"],
        &["vm", "list"],
        &["vm", "ps", "-a"],
    ] {
        assert_eq!(stdout(ignite(root.path()).args(args)), out, "{args:?}");
    }
}

#[test]
fn ps_filters_and_templates() {
    let root = tempfile::tempdir().unwrap();
    three_vms(root.path());
    golden(
        "ps-filtered.txt",
        &stdout(ignite(root.path()).args(["ps", "-a", "-f", "{{.ObjectMeta.Name}}=vm2"])),
    );
    golden(
        "ps-formatted.txt",
        &stdout(ignite(root.path()).args([
            "ps",
            "-a",
            "-f",
            "{{.ObjectMeta.Name}}!=vm2",
            "-t",
            "Name: {{.ObjectMeta.Name}} Image: {{.Spec.Image.OCI}}",
        ])),
    );
    let out = stdout(ignite(root.path()).args([
        "ps",
        "-a",
        "-f",
        "{{.Spec.Image.OCI}}=~foo,{{.Spec.CPUs}}!=2",
        "-t",
        "{{.Name}}",
    ]));
    assert_eq!(out, "vm1\n");
    let out = stdout(ignite(root.path()).args([
        "ps",
        "-a",
        "-f",
        "{{.Spec.Image.OCI}}!~foo",
        "-t",
        "{{.Name}}",
    ]));
    assert_eq!(out, "vm3\n");
}

#[test]
fn ps_quiet_prints_only_ids() {
    let root = tempfile::tempdir().unwrap();
    three_vms(root.path());
    assert_eq!(
        stdout(ignite(root.path()).args(["ps", "-a", "-q"])),
        "20e1d566ce318ada\nbfc80c948b1e2419\ncddc37ba657766e3\n"
    );
    assert_eq!(
        stdout(ignite(root.path()).args(["-q", "ps"])),
        "bfc80c948b1e2419\n"
    );
}

#[test]
fn ps_rejects_bad_filters_and_templates() {
    let root = tempfile::tempdir().unwrap();
    three_vms(root.path());
    ignite(root.path())
        .args(["ps", "-f", "name=vm1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("invalid filter \"name=vm1\""));
    ignite(root.path())
        .args(["ps", "-t", "{{.Spec.Nope}}"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("VM has no field .Spec.Nope"));
}

#[test]
fn ps_on_a_fresh_machine_is_empty_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let out = stdout(ignite(&root).args(["ps", "-a"]));
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.starts_with("VM ID"));
    assert!(!root.exists());
}

#[test]
fn ps_reports_damaged_vms_and_lists_the_rest() {
    let root = tempfile::tempdir().unwrap();
    three_vms(root.path());
    let bad = root.path().join("vms/00000000000000bd");
    fs::create_dir_all(&bad).unwrap();
    fs::write(bad.join("metadata.json"), "{\"kind\": \"VM\"").unwrap();
    let assert = ignite(root.path())
        .args(["ps", "-a", "-q"])
        .assert()
        .success();
    let out = assert.get_output();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("00000000000000bd") && err.contains("damaged"),
        "{err}"
    );
}

/// A VM with fixed values, for byte-exact inspect output.
fn inspect_fixture(root: &Path) {
    let store = Store::open(root).unwrap();
    let vm: Vm = manifest::decode(include_str!("../../api/tests/fixtures/my-vm.yaml")).unwrap();
    let mut vm = vm;
    vm.metadata.created = Some(manifest::decode::<Time>("\"2000-01-01T01:00:00Z\"").unwrap());
    store.vms().create(vm).unwrap();
}

#[test]
fn inspect_prints_json_yaml_and_templates() {
    let root = tempfile::tempdir().unwrap();
    inspect_fixture(root.path());
    golden(
        "inspect-vm.json",
        &stdout(ignite(root.path()).args(["inspect", "vm", "my-vm"])),
    );
    golden(
        "inspect-vm.yaml",
        &stdout(ignite(root.path()).args(["inspect", "VM", "5996", "-o", "yaml"])),
    );
    assert_eq!(
        stdout(ignite(root.path()).args([
            "inspect",
            "vm",
            "my",
            "-t",
            "{{.ObjectMeta.Name}} {{.Spec.Image.OCI}} {{.Spec.Memory}}"
        ])),
        "my-vm weaveworks/ignite-ubuntu:latest 800.0 MB\n"
    );
    // What inspect prints is a manifest that loads again.
    let json = stdout(ignite(root.path()).args(["inspect", "vm", "my-vm"]));
    let vm: Vm = manifest::decode(&json).unwrap();
    assert_eq!(vm.metadata.name, "my-vm");
}

#[test]
fn inspect_errors_are_clear() {
    let root = tempfile::tempdir().unwrap();
    three_vms(root.path());
    ignite(root.path())
        .args(["inspect", "vm", "vm"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("ambiguous")
                .and(predicate::str::contains("20e1d566ce318ada (vm1)")),
        );
    ignite(root.path())
        .args(["inspect", "vm", "nothing"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "can't find VM: no ID or name matches \"nothing\"",
        ));
    ignite(root.path())
        .args(["inspect", "pod", "vm1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unrecognized kind \"pod\""));
    ignite(root.path())
        .args(["inspect", "image", "vm1"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("can't find Image"));
    ignite(root.path())
        .args(["inspect", "vm", "vm1", "-o", "xml"])
        .assert()
        .code(2);
}

#[test]
fn configuration_file_is_checked() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("config.yaml");
    fs::write(&config, "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  vmDefaults:\n    memory: 0\n").unwrap();
    ignite(root.path())
        .args(["ps", "--ignite-config"])
        .arg(&config)
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("config.yaml")
                .and(predicate::str::contains("spec.vmDefaults.memory")),
        );
    fs::write(&config, "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  vmDefaults:\n    memory: 1GB\n").unwrap();
    ignite(root.path())
        .args(["ps", "--ignite-config"])
        .arg(&config)
        .assert()
        .success();
    ignite(root.path())
        .args(["ps", "--ignite-config", "/nonexistent/config.yaml"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("/nonexistent/config.yaml"));
}

#[test]
fn root_flag_beats_environment() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    three_vms(a.path());
    let out = stdout(
        ignite(b.path())
            .args(["ps", "-a", "-q", "--root"])
            .arg(a.path()),
    );
    assert_eq!(out.lines().count(), 3);
}

#[test]
fn version_in_every_format() {
    let root = tempfile::tempdir().unwrap();
    let text = stdout(ignite(root.path()).arg("version"));
    assert!(
        text.starts_with(&format!("Ignite version: v{}", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
    assert_eq!(
        stdout(ignite(root.path()).args(["version", "-o", "short"])),
        format!("Ignite version: v{}\n", env!("CARGO_PKG_VERSION"))
    );
    let json: serde_json::Value =
        serde_json::from_str(&stdout(ignite(root.path()).args(["version", "-o", "json"]))).unwrap();
    assert_eq!(
        json["ignite"]["version"],
        format!("v{}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(json["ignite"]["platform"], "linux/amd64");
    let yaml = stdout(ignite(root.path()).args(["version", "-o", "yaml"]));
    assert!(yaml.contains("ignite:\n  buildDate:"), "{yaml}");
}

#[test]
fn completions_for_each_shell() {
    let root = tempfile::tempdir().unwrap();
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef ignite"),
        ("fish", "complete -c ignite"),
    ] {
        let script = stdout(ignite(root.path()).args(["completion", shell]));
        assert!(
            script.contains(marker) && script.contains("inspect"),
            "{shell}"
        );
    }
    // Ignite's `. <(ignite completion)` still works: bash is the default.
    assert!(stdout(ignite(root.path()).arg("completion")).contains("complete -F"));
}

#[test]
fn help_and_usage_errors() {
    let root = tempfile::tempdir().unwrap();
    ignite(root.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("ps").and(predicate::str::contains("IGNITE_ROOT")));
    ignite(root.path()).arg("frobnicate").assert().code(2);
    ignite(root.path()).args(["inspect", "vm"]).assert().code(2);
}

#[test]
fn ps_sees_changes_made_after_it_last_ran() {
    let root = tempfile::tempdir().unwrap();
    three_vms(root.path());
    let before = stdout(ignite(root.path()).args(["ps", "-a", "-q"]));
    assert_eq!(before.lines().count(), 3);
    let store = Store::open(root.path()).unwrap();
    let uid: ignite_api::Uid = "20e1d566ce318ada".parse().unwrap();
    store
        .vms()
        .update(&uid, |vm| -> Result<(), ignite_store::StoreError> {
            vm.status.running = true;
            vm.status.supervisor = Some(ignite_api::ProcessRef {
                pid: std::process::id(),
                start_ticks: fs::read_to_string("/proc/self/stat")
                    .unwrap()
                    .rsplit_once(')')
                    .unwrap()
                    .1
                    .split_whitespace()
                    .nth(19)
                    .unwrap()
                    .parse()
                    .unwrap(),
            });
            Ok(())
        })
        .unwrap();
    assert_eq!(
        stdout(ignite(root.path()).args(["ps", "-q"])),
        "20e1d566ce318ada\nbfc80c948b1e2419\n"
    );
    store.vms().delete(&uid).unwrap();
    assert_eq!(
        stdout(ignite(root.path()).args(["ps", "-a", "-q"])),
        "bfc80c948b1e2419\ncddc37ba657766e3\n"
    );
}

/// `ignite ... | head -c1`: once the reader has gone, the command ends quietly with status 0
/// (no panic, nothing on stderr), in a real shell pipeline and with the pipe's read end
/// closed before the command writes anything (so every write meets EPIPE).
#[test]
fn a_closed_output_pipe_ends_every_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    three_vms(dir.path());
    // vm1's console: far more than a pipe buffer, so `head -c1` closes it mid-write.
    let console = dir.path().join("vms/20e1d566ce318ada/console.log");
    fs::write(&console, "console line\n".repeat(100_000)).unwrap();
    let commands: [&[&str]; 6] = [
        &["ps", "-a"],
        &["images"],
        &["kernels"],
        &["logs", "vm1"],
        &["completion", "bash"],
        &["version", "-o", "json"],
    ];
    let ignite = assert_cmd::cargo::cargo_bin("ignite");
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(&ignite)
            .args(args)
            .env("IGNITE_ROOT", dir.path())
            .stdout(writer)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "ignite {args:?} into a closed pipe: {out:?}"
        );
        assert!(
            out.stderr.is_empty(),
            "ignite {args:?} into a closed pipe printed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pipeline = format!(
            "set -o pipefail; '{}' {} | head -c1 >/dev/null",
            ignite.display(),
            args.join(" ")
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &pipeline])
            .env("IGNITE_ROOT", dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "{pipeline}: {out:?}"
        );
    }
    let ignited = assert_cmd::cargo::cargo_bin("ignited");
    for args in [&["completion", "bash"][..], &["version"][..]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(&ignited)
            .args(args)
            .stdout(writer)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "ignited {args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "ignited {args:?}: {out:?}");
    }
}
