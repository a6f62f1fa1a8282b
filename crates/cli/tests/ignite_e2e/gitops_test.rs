//! Ignite's e2e/gitops_test.go. The VM's image is the suite's stand-in for
//! `weaveworks/ignite-ubuntu`, so the expected line names it. `ignited gitops` runs with
//! Ignite's default branch: a fresh `git init --bare` makes `master` or `main` as this
//! host's git is set up, and ignited follows `main` (the remote's default) when there is
//! no `master`.

use crate::util::E2e;
use ignite_testkit::git::git;

#[test]
fn test_run_gitops() {
    ignite_testkit::require_root!("booting VMs in a network namespace");
    let e2e = E2e::new("gitops");
    let vm_name = "my-vm";
    let git_dir = e2e.host.root().join("ignite-gitops");
    let clone_dir = e2e.host.root().join("ignite-gitops-clone");
    std::fs::create_dir_all(&git_dir).unwrap();
    // Initialize the repo as a bare git repo, and clone it.
    git(&git_dir, &["init", "--quiet", "--bare"]);
    let git_repo_url = format!("file://{}", git_dir.display());
    git(
        e2e.host.root(),
        &[
            "clone",
            "--quiet",
            &git_repo_url,
            clone_dir.to_str().unwrap(),
        ],
    );
    // Write a VM config file in the cloned repo, commit and push.
    let vm_config = format!(
        "---\napiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: my-vm\n  uid: 599615df99804ae8\nspec:\n  image:\n    oci: \"{}\"\n  cpus: 1\n  diskSize: 3GB\n  memory: 800MB\n  ssh: true\nstatus:\n  running: true\n",
        e2e.image()
    );
    std::fs::write(clone_dir.join("my-vm.yaml"), vm_config).unwrap();
    git(&clone_dir, &["add", "my-vm.yaml"]);
    git(&clone_dir, &["commit", "--quiet", "-m", "add vm config"]);
    git(&clone_dir, &["push", "--quiet", "origin", "HEAD"]);

    // Start ignited in gitops mode; it is killed and the VM deleted at the end.
    let checkout = e2e.host.root().join("gitops-checkout");
    let ignited = e2e.ignited(
        &[
            "gitops",
            &git_repo_url,
            "--checkout-dir",
            checkout.to_str().unwrap(),
            // Ignite ran every manifest; here a host runs the unplaced ones when told to.
            "--adopt-unplaced",
        ],
        &[vm_name],
    );
    // Ignite prints `{true }` for `.Spec.SSH` (a Go struct); so does this template engine.
    let want_vm_properties = format!("'800.0 MB 1 3.0 GB {} {{true }} true'", e2e.image());
    let ps_args = [
        "ps",
        &format!("--filter={{{{.ObjectMeta.Name}}}}={vm_name}"),
        "--template='{{.Spec.Memory}} {{.Spec.CPUs}} {{.Spec.DiskSize}} {{.Spec.Image.OCI}} {{.Spec.SSH}} {{.Status.Running}}'",
    ];
    let got = e2e.wait_for_output(&ps_args, &want_vm_properties, &ignited);
    assert_eq!(
        got,
        want_vm_properties,
        "unexpected VM properties; ignited said:\n{}",
        ignited.log()
    );
}
