//! Ignite's e2e/manifest_reconciliation_test.go. The manifest directory is the
//! scenario's own (`--manifest-dir`), not /etc/firecracker/manifests: the host's is left
//! alone (the default's choice is unit-tested in the daemon crate).

use crate::util::E2e;

#[test]
fn test_ignited_daemon() {
    ignite_testkit::require_root!("booting VMs in a network namespace");
    let e2e = E2e::new("manifests");
    let vm_name = "manifest-vm";
    // Ensure that the manifest directory exists, and write the VM manifest in it.
    let manifest_dir = e2e.host.root().join("manifests");
    std::fs::create_dir_all(&manifest_dir).unwrap();
    let vm_config = format!(
        "---\napiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: manifest-vm\n  uid: 599615df99804ae9\nspec:\n  image:\n    oci: \"{}\"\n  cpus: 1\n  diskSize: 3GB\n  memory: 800MB\n  ssh: true\nstatus:\n  running: true\n",
        e2e.image()
    );
    let vm_config_path = manifest_dir.join("test-vm.yaml");
    std::fs::write(&vm_config_path, vm_config).unwrap();

    // Start ignited in daemon mode; it is killed and the VM deleted at the end.
    let ignited = e2e.ignited(
        &[
            "daemon",
            "--resync",
            "2",
            "--manifest-dir",
            manifest_dir.to_str().unwrap(),
        ],
        &[vm_name],
    );
    // Query and check if the VM is created and running.
    let ps_args = [
        "ps",
        &format!("--filter={{{{.ObjectMeta.Name}}}}={vm_name}"),
        "--template='{{.Status.Running}}'",
    ];
    let got = e2e.wait_for_output(&ps_args, "'true'", &ignited);
    assert_eq!(got, "'true'", "ignited said:\n{}", ignited.log());

    // Delete the manifest: the VM goes.
    std::fs::remove_file(&vm_config_path).unwrap();
    let got = e2e.wait_for_output(&ps_args, "", &ignited);
    assert_eq!(got, "", "ignited said:\n{}", ignited.log());
}
