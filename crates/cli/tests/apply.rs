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
