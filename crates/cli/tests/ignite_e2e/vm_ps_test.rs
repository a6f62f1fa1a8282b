//! Ignite's e2e/vm_ps_test.go: a VM whose record says stopped while it runs is shown as
//! `*Up`, with a note saying what the mark means.

use crate::util::E2e;

fn set_recorded_running(e2e: &E2e, uid: &str, running: bool) {
    let store = ignite_store::Store::open(e2e.host.state()).unwrap();
    let uid: ignite_api::Uid = uid.parse().unwrap();
    store
        .vms()
        .update(&uid, |vm| -> Result<(), ignite_store::StoreError> {
            vm.status.running = running;
            Ok(())
        })
        .unwrap();
}

#[test]
fn test_v_mps_with_outdated_status() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("ps");
    let vm = "e2e-test-ignite-ps-outdated";
    e2e.ok(&["run", &format!("--name={vm}"), &e2e.image(), "--ssh"]);
    let uid = e2e.ok(&[
        "ps",
        "-a",
        "-f",
        &format!("{{{{.ObjectMeta.Name}}}}={vm}"),
        "-t",
        "{{.ObjectMeta.UID}}",
    ]);
    let uid = uid.trim();
    // Ignite's test rewrites metadata.json with running: false; the store is written the
    // same way here, through its own lock.
    set_recorded_running(&e2e, uid, false);
    let out = e2e.ignite().args(["ps", "-a"]).output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stdout.lines().find(|l| l.ends_with(vm)).unwrap();
    assert!(line.contains("*Up"), "{stdout}");
    assert!(stderr.contains("The symbol *"), "{stderr}");
    // A running VM is never taken for a stopped one: exec reaches it.
    assert_eq!(e2e.ok(&["exec", vm, "echo", "still here"]), "still here\n");
    set_recorded_running(&e2e, uid, true);
    let out = e2e.ignite().args(["ps", "-a"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("*Up"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("The symbol *"));
    e2e.ok(&["rm", "-f", vm]);
}
