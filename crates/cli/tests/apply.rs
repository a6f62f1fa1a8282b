//! `ignite apply` through the binary, booting real VMs under QEMU (TCG): a dry run,
//! create, a change a restart applies, a recreate, a stop through `status.running: false`,
//! a broken manifest, and prune.

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::{Host, stdout};

#[test]
fn apply_creates_updates_stops_and_prunes() {
    ignite_testkit::require_root!("booting VMs");
    let host = Host::new(cargo_bin!("ignite"));
    let dir = host.root().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("a.yaml"), host.manifest("a", "  cpus: 1\n", "")).unwrap();
    std::fs::write(
        dir.join("b.yaml"),
        host.manifest("b", "", "status:\n  running: false\n"),
    )
    .unwrap();
    let apply = |args: &[&str]| {
        let out = host
            .ignite()
            .arg("apply")
            .arg("-f")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // --dry-run says what it would do and does nothing.
    let (ok, out, _) = apply(&["--dry-run"]);
    assert!(ok);
    assert_eq!(out, "would create and start VM a\nwould create VM b\n");
    assert_eq!(stdout(host.ignite().args(["ps", "-a", "-q"])), "");
    let (ok, out, err) = apply(&[]);
    assert!(ok, "{err}");
    assert_eq!(out, "created and started VM a\ncreated VM b\n");
    assert_eq!(host.status_of("a"), "Up");
    assert_eq!(host.status_of("b"), "Stopped");
    let (ok, out, _) = apply(&[]);
    assert!(ok);
    assert_eq!(out, "VM a is up to date\nVM b is up to date\n");
    // A change a restart applies.
    std::fs::write(
        dir.join("a.yaml"),
        host.manifest("a", "  cpus: 2\n  memory: 256MB\n", ""),
    )
    .unwrap();
    let (ok, out, err) = apply(&[]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "VM b is up to date\nupdated and restarted VM a (spec.cpus, spec.memory changed)\n"
    );
    let a = host.vm("a");
    assert_eq!(a.spec.cpus, Some(2));
    assert_eq!(a.spec.memory().bytes(), 256 << 20);
    assert_eq!(host.status_of("a"), "Up");
    // One a recreate applies: a new VM under the same name.
    std::fs::write(
        dir.join("a.yaml"),
        host.manifest("a", "  cpus: 2\n  memory: 256MB\n  diskSize: 5GB\n", ""),
    )
    .unwrap();
    let (ok, out, err) = apply(&[]);
    assert!(ok, "{err}");
    assert!(
        out.contains("recreated VM a (spec.diskSize changed)"),
        "{out}"
    );
    assert_ne!(host.vm("a").metadata.uid, a.metadata.uid);
    // status.running: false stops it.
    std::fs::write(
        dir.join("a.yaml"),
        host.manifest(
            "a",
            "  cpus: 2\n  memory: 256MB\n  diskSize: 5GB\n",
            "status:\n  running: false\n",
        ),
    )
    .unwrap();
    let (_, out, _) = apply(&[]);
    assert!(out.contains("stopped VM a"), "{out}");
    assert_eq!(host.status_of("a"), "Stopped");
    // A broken manifest is reported; the others are still applied.
    std::fs::write(dir.join("broken.yaml"), "kind: VM\nspec: [").unwrap();
    // Prune removes what apply made and is gone, not VMs made otherwise.
    host.ignite()
        .args([
            "create",
            "--name",
            "handmade",
            "--network",
            "none",
            &host.image(),
        ])
        .assert()
        .success();
    std::fs::remove_file(dir.join("b.yaml")).unwrap();
    let (_, out, _) = apply(&[]);
    assert!(!out.contains("removed"), "{out}");
    let (ok, out, err) = apply(&["--prune"]);
    assert!(!ok, "a broken manifest fails the run");
    assert!(err.contains("broken.yaml"), "{err}");
    assert!(out.contains("removed VM b"), "{out}");
    let names = stdout(
        host.ignite()
            .args(["ps", "-a", "-t", "{{.ObjectMeta.Name}}"]),
    );
    let mut names: Vec<&str> = names.lines().collect();
    names.sort_unstable();
    assert_eq!(names, ["a", "handmade"]);
    host.ignite()
        .args(["rm", "-f", "a", "handmade"])
        .assert()
        .success();
}

/// `--host`: only the manifests placed on the host are applied, the others skipped with a
/// line each; a VM placed elsewhere now goes with `--prune`; a hostile label is an error.
/// The VMs are made stopped: nothing boots.
#[test]
fn apply_with_host_applies_only_the_vms_placed_on_it() {
    ignite_testkit::require_root!("importing a kernel");
    let host = Host::new(cargo_bin!("ignite"));
    let dir = host.root().join("manifests");
    std::fs::create_dir(&dir).unwrap();
    let placed = |name: &str, on: Option<&str>| {
        let text = host.manifest(name, "", "status:\n  running: false\n");
        match on {
            Some(h) => text.replace(
                &format!("metadata:\n  name: {name}\n"),
                &format!("metadata:\n  name: {name}\n  labels:\n    ignite.rs/host: {h:?}\n"),
            ),
            None => text,
        }
    };
    std::fs::write(dir.join("m.yaml"), placed("m", Some("me"))).unwrap();
    std::fs::write(dir.join("o.yaml"), placed("o", Some("other"))).unwrap();
    std::fs::write(dir.join("u.yaml"), placed("u", None)).unwrap();
    let apply = |args: &[&str]| {
        let out = host
            .ignite()
            .arg("apply")
            .arg("-f")
            .arg(&dir)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let names = || {
        let mut n: Vec<String> =
            stdout(
                host.ignite()
                    .args(["ps", "-a", "-t", "{{.ObjectMeta.Name}}"]),
            )
            .lines()
            .map(str::to_string)
            .collect();
        n.sort();
        n
    };
    let (ok, out, err) = apply(&["--host", "me"]);
    assert!(ok, "{err}");
    assert_eq!(
        out,
        "VM o is placed on host other, not me: skipped\n\
         VM u names no host (ignite.rs/host): skipped; give --adopt-unplaced to apply it on me\n\
         created VM m\n"
    );
    assert_eq!(names(), ["m"]);
    let (ok, out, err) = apply(&["--host", "me", "--adopt-unplaced"]);
    assert!(ok, "{err}");
    assert!(out.contains("created VM u"), "{out}");
    // m moves to another host: skipped here, and removed with --prune; u (unplaced, not
    // adopted this time) is not pruned.
    std::fs::write(dir.join("m.yaml"), placed("m", Some("other"))).unwrap();
    let (ok, out, _) = apply(&["--host", "me"]);
    assert!(ok);
    assert!(
        out.contains("VM m is placed on host other, not me: skipped"),
        "{out}"
    );
    assert_eq!(names(), ["m", "u"]);
    let (ok, out, err) = apply(&["--host", "me", "--prune"]);
    assert!(ok, "{err}");
    assert!(out.contains("removed VM m (placed on host other)"), "{out}");
    assert_eq!(names(), ["u"]);
    // A label that is a path is refused, and its VM is made nowhere.
    std::fs::write(dir.join("e.yaml"), placed("e", Some("../../etc"))).unwrap();
    let (ok, _, err) = apply(&["--host", "me"]);
    assert!(!ok);
    assert!(
        err.contains("e.yaml: label ignite.rs/host: \"../../etc\" is not a host name"),
        "{err}"
    );
    assert_eq!(names(), ["u"]);
    // Bad flags: a host name that is a path, --adopt-unplaced without --host.
    let (ok, _, err) = apply(&["--host", "a/b"]);
    assert!(
        !ok && err.contains("--host: \"a/b\" is not a host name"),
        "{err}"
    );
    let (ok, _, err) = apply(&["--adopt-unplaced"]);
    assert!(!ok && err.contains("--host"), "{err}");
    host.ignite().args(["rm", "-f", "u"]).assert().success();
}
