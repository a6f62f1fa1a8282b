//! Ignite's e2e/config_test.go: the Configuration file (`--ignite-config`) gives VM
//! defaults, a VM manifest (`--config`) overrides them, flags override both; an empty
//! Configuration is refused. Values are read back with Ignite's template.
//!
//! Ignite's kernel and sandbox images come from Docker Hub; here the kernel is Debian's
//! package (a copy of it stands for Ignite's `weaveworks/ignite-kernel:5.4.43`), and the
//! sandbox image is only recorded, as Ignite's test passes it.

use crate::util::E2e;

const SANDBOX: &str = "weaveworks/ignite:dev";
const VM: &str = "e2e-test-ignite-config-file";

struct Case {
    name: &'static str,
    config: String,
    vm_config: &'static str,
    args: &'static [&'static str],
    /// Memory, CPUs, disk size, then (after the image, sandbox and kernel) SSH.
    want: Option<(&'static str, &'static str)>,
    kernel: Option<String>,
}

#[test]
fn test_config_file() {
    ignite_testkit::require_root!("booting VMs");
    let e2e = E2e::new("config");
    // The default kernel, imported from Debian's package, is named by its file.
    let default_kernel = ignite_testkit::kernel_deb().display().to_string();
    let custom_kernel = e2e.host.root().join("ignite-kernel-5.4.43.deb");
    std::fs::copy(ignite_testkit::kernel_deb(), &custom_kernel).unwrap();
    let header = "---\napiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\n";
    let named = format!("{header}metadata:\n  name: test-config\n");
    let cases = [
        Case {
            name: "invalid config",
            config: String::new(),
            vm_config: "",
            args: &[],
            want: None,
            kernel: None,
        },
        Case {
            name: "minimal valid config",
            config: header.into(),
            vm_config: "",
            args: &[],
            want: Some(("512.0 MB 1 4.0 GB", "<nil>")),
            kernel: None,
        },
        Case {
            name: "custom vm properties",
            config: format!(
                "{named}spec:\n  vmDefaults:\n    memory: \"2GB\"\n    diskSize: \"3GB\"\n    cpus: 2\n    sandbox:\n      oci: {SANDBOX}\n    kernel:\n      oci: {}\n    ssh: true\n",
                custom_kernel.display()
            ),
            vm_config: "",
            args: &[],
            want: Some(("2.0 GB 2 3.0 GB", "{true }")),
            kernel: Some(custom_kernel.display().to_string()),
        },
        Case {
            name: "runtime and network config",
            config: format!("{named}spec:\n  runtime: docker\n  networkPlugin: docker-bridge\n"),
            vm_config: "",
            args: &[],
            want: Some(("512.0 MB 1 4.0 GB", "<nil>")),
            kernel: None,
        },
        Case {
            name: "override properties",
            config: format!(
                "{named}spec:\n  vmDefaults:\n    memory: \"2GB\"\n    diskSize: \"3GB\"\n    cpus: 2\n"
            ),
            vm_config: "",
            args: &["--memory=1GB", "--size=1GB", "--cpus=1", "--ssh"],
            want: Some(("1024.0 MB 1 1024.0 MB", "{true }")),
            kernel: None,
        },
        Case {
            name: "vm config",
            config: format!(
                "{named}spec:\n  vmDefaults:\n    memory: \"2GB\"\n    diskSize: \"3GB\"\n    cpus: 2\n"
            ),
            vm_config: "\napiVersion: ignite.weave.works/v1alpha4\nkind: VM\nspec:\n  memory: \"1GB\"\n  diskSize: \"2GB\"\n  cpus: 1\n",
            args: &[],
            want: Some(("1024.0 MB 1 2.0 GB", "<nil>")),
            kernel: None,
        },
        Case {
            name: "vm config and flags",
            config: format!(
                "{named}spec:\n  vmDefaults:\n    memory: \"2GB\"\n    diskSize: \"3GB\"\n    cpus: 2\n"
            ),
            vm_config: "\napiVersion: ignite.weave.works/v1alpha4\nkind: VM\nspec:\n  memory: \"1GB\"\n  diskSize: \"2GB\"\n",
            args: &["--size=1GB", "--cpus=1"],
            want: Some(("1024.0 MB 1 1024.0 MB", "<nil>")),
            kernel: None,
        },
    ];
    for case in cases {
        let config = e2e.host.root().join("ignite-config-file-test");
        std::fs::write(&config, &case.config).unwrap();
        let ignite_config = format!("--ignite-config={}", config.display());
        let vm_config = e2e.host.root().join("ignite-vm-config");
        let mut run = vec![
            "run".to_string(),
            format!("--name={VM}"),
            format!("--sandbox-image={SANDBOX}"),
            ignite_config.clone(),
            e2e.image(),
        ];
        if !case.vm_config.is_empty() {
            std::fs::write(&vm_config, case.vm_config).unwrap();
            run.push(format!("--config={}", vm_config.display()));
        }
        run.extend(case.args.iter().map(|a| a.to_string()));
        let (ok, out) = e2e.try_run(&run.iter().map(String::as_str).collect::<Vec<_>>());
        let Some((sizes, ssh)) = case.want else {
            assert!(!ok, "{}: the VM was created:\n{out}", case.name);
            continue;
        };
        assert!(ok, "{}: {out}", case.name);
        let got = e2e.ok(&[
            "ps",
            &format!("--filter={{{{.ObjectMeta.Name}}}}={VM}"),
            "--template='{{.Spec.Memory}} {{.Spec.CPUs}} {{.Spec.DiskSize}} {{.Spec.Image.OCI}} {{.Spec.Sandbox.OCI}} {{.Spec.Kernel.OCI}} {{.Spec.SSH}}'",
        ]);
        let kernel = case
            .kernel
            .clone()
            .unwrap_or_else(|| default_kernel.clone());
        let want = format!("'{sizes} {} {SANDBOX} {kernel} {ssh}'", e2e.image());
        assert_eq!(got.trim(), want, "{}", case.name);
        e2e.ok(&["rm", "-f", VM, &ignite_config]);
    }
}
