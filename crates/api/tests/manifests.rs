//! Reading, writing and validating manifests as an Ignite user writes them.

use ignite_api::manifest::{self, DecodeError, Object};
use ignite_api::validation::{validate_configuration, validate_vm, validate_vm_manifest};
use ignite_api::{Configuration, Image, Protocol, Size, Ssh, Vm, VmSpec};

const MY_VM: &str = include_str!("fixtures/my-vm.yaml");

#[test]
fn ignite_example_manifest_loads_unchanged() {
    let vm: Vm = manifest::decode(MY_VM).unwrap();
    assert_eq!(vm.metadata.name, "my-vm");
    assert_eq!(
        vm.metadata.uid.as_ref().unwrap().as_str(),
        "599615df99804ae8"
    );
    assert_eq!(vm.metadata.labels["env"], "dev");
    assert_eq!(
        vm.metadata.annotations["ignite.weave.works/interface/eth1"],
        "tc-redirect"
    );
    assert_eq!(
        vm.spec.image_ref().unwrap().to_string(),
        "weaveworks/ignite-ubuntu:latest"
    );
    assert_eq!(
        vm.spec
            .image_ref()
            .unwrap()
            .reference()
            .unwrap()
            .normalized(),
        "docker.io/weaveworks/ignite-ubuntu:latest"
    );
    assert_eq!(
        vm.spec.kernel_ref().unwrap().to_string(),
        "weaveworks/ignite-kernel:5.10.51"
    );
    assert_eq!(vm.spec.cpus(), 2);
    assert_eq!(vm.spec.memory(), Size::from_mib(800));
    assert_eq!(vm.spec.disk_size(), Size::from_mib(3 * 1024));
    let port = &vm.spec.network.ports[0];
    assert_eq!((port.host_port, port.vm_port), (443, 6443));
    assert_eq!(port.protocol, Some(Protocol::Tcp));
    assert_eq!(port.bind_address, Some("10.0.0.2".parse().unwrap()));
    assert_eq!(vm.spec.storage.volumes[0].name, "volume0");
    assert_eq!(
        vm.spec.storage.volume_mounts[0].mount_path.to_str(),
        Some("/mnt")
    );
    assert_eq!(
        vm.spec.copy_files[0].vm_path.to_str(),
        Some("/root/.kube/config")
    );
    assert_eq!(vm.spec.ssh, Some(Ssh::Generate));
    assert!(vm.status.running);
    validate_vm(&vm).unwrap();
}

#[test]
fn manifests_round_trip_through_json_and_yaml() {
    let vm: Vm = manifest::decode(MY_VM).unwrap();
    let json = manifest::to_json(&vm);
    let yaml = manifest::to_yaml(&vm);
    assert_eq!(manifest::decode::<Vm>(&json).unwrap(), vm);
    assert_eq!(manifest::decode::<Vm>(&yaml).unwrap(), vm);
    // Writing what was read gives the same text again.
    assert_eq!(
        manifest::to_json(&manifest::decode::<Vm>(&json).unwrap()),
        json
    );
    assert_eq!(
        manifest::to_yaml(&manifest::decode::<Vm>(&yaml).unwrap()),
        yaml
    );
    // JSON keeps Ignite's field order, YAML sorts keys as Ignite does.
    assert!(json.starts_with(
        "{\n  \"kind\": \"VM\",\n  \"apiVersion\": \"ignite.weave.works/v1alpha4\",\n  \"metadata\""
    ));
    assert!(yaml.starts_with("apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:"));
}

#[test]
fn objects_written_by_ignite_load() {
    let vm: Vm = manifest::decode(include_str!("fixtures/ignite-inspect.json")).unwrap();
    assert_eq!(vm.metadata.uid.unwrap().as_str(), "1699b6ba255cde7f");
    assert!(vm.status.ip_addresses().is_empty());
    assert_eq!(vm.status.image.id, None);
}

#[test]
fn ssh_is_true_or_a_path() {
    let base = "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nspec:\n  ssh: ";
    let ssh = |v: &str| {
        manifest::decode::<Vm>(&format!("{base}{v}\n"))
            .unwrap()
            .spec
            .ssh
    };
    assert_eq!(ssh("true"), Some(Ssh::Generate));
    assert_eq!(ssh("\"true\""), Some(Ssh::Generate));
    assert_eq!(ssh("false"), None);
    assert_eq!(
        ssh("/root/.ssh/id.pub"),
        Some(Ssh::PublicKey("/root/.ssh/id.pub".into()))
    );
    let vm: Vm = manifest::decode(&format!("{base}/k.pub\n")).unwrap();
    assert!(manifest::to_json(&vm).contains("\"ssh\": \"/k.pub\""));
}

#[test]
fn decode_object_dispatches_on_kind() {
    assert!(matches!(
        manifest::decode_object(MY_VM).unwrap(),
        Object::Vm(_)
    ));
    let image = "{\"kind\":\"Image\",\"apiVersion\":\"ignite.weave.works/v1alpha4\",\"spec\":{\"oci\":\"alpine\"}}";
    match manifest::decode_object(image).unwrap() {
        Object::Image(i) => assert_eq!(i.spec.oci.to_string(), "alpine:latest"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        manifest::decode_object("spec: {}"),
        Err(DecodeError::MissingKind)
    ));
    assert!(
        matches!(manifest::decode_object("kind: Pod"), Err(DecodeError::UnknownKind(k)) if k == "Pod")
    );
}

fn decode_err(doc: &str) -> String {
    manifest::decode::<Vm>(doc).unwrap_err().to_string()
}

#[test]
fn decoding_errors_name_the_field_and_value() {
    let head = "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\n";
    let e = decode_err(&format!("{head}spec:\n  cpu: 2\n"));
    assert!(
        e.contains("spec") && e.contains("unknown field `cpu`"),
        "{e}"
    );
    let e = decode_err(&format!("{head}spec:\n  memory: lots\n"));
    assert!(e.contains("spec.memory") && e.contains("\"lots\""), "{e}");
    let e = decode_err(&format!(
        "{head}spec:\n  network:\n    ports: [{{hostPort: 70000, vmPort: 1}}]\n"
    ));
    assert!(
        e.contains("spec.network.ports[0].hostPort") && e.contains("70000"),
        "{e}"
    );
    let e = decode_err(&format!("{head}spec:\n  image: {{oci: \"Bad//Ref\"}}\n"));
    assert!(
        e.contains("spec.image.oci") && e.contains("Bad//Ref"),
        "{e}"
    );
    let e = decode_err(&format!(
        "{head}spec:\n  network:\n    ports: [{{hostPort: 1, vmPort: 1, protocol: sctp}}]\n"
    ));
    assert!(e.contains("protocol") && e.contains("sctp"), "{e}");
    let e = decode_err("apiVersion: ignite.weave.works/v1alpha1\nkind: VM\n");
    assert!(e.contains("apiVersion") && e.contains("v1alpha1"), "{e}");
    let e = decode_err("apiVersion: ignite.weave.works/v1alpha4\nkind: Image\n");
    assert!(e.contains("kind") && e.contains("Image"), "{e}");
    let e = decode_err(&format!("{head}metadata:\n  uid: 12\n"));
    assert!(e.contains("metadata.uid"), "{e}");
    let e = decode_err("kind: [unclosed");
    assert!(e.contains("not valid YAML"), "{e}");
    let e = decode_err("{\"kind\": ");
    assert!(e.contains("not valid JSON"), "{e}");
    let big = format!("{head}# {}\n", "x".repeat(manifest::MAX_MANIFEST_BYTES));
    assert!(matches!(
        manifest::decode::<Vm>(&big),
        Err(DecodeError::TooLarge(_))
    ));
}

fn vm_with(spec_yaml: &str) -> Vm {
    manifest::decode(&format!(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: ok\nspec:\n  image: {{oci: alpine}}\n{spec_yaml}"
    ))
    .unwrap()
}

fn rejection(vm: &Vm) -> String {
    validate_vm(vm).unwrap_err().to_string()
}

#[test]
fn validation_rejects_each_bad_field_by_name() {
    let cases: &[(&str, &str, &str)] = &[
        ("  cpus: 0\n", "spec.cpus", "\"0\""),
        (
            "  network: {mode: cni, cniNetwork: \"\"}\n",
            "spec.network.cniNetwork",
            "CNI network",
        ),
        ("  cpus: 1000\n", "spec.cpus", "\"1000\""),
        ("  memory: 0\n", "spec.memory", "\"0B\""),
        ("  memory: 100KB\n", "spec.memory", "\"100KB\""),
        ("  diskSize: 0B\n", "spec.diskSize", "\"0B\""),
        (
            "  kernel: {cmdLine: \"a\\nb\"}\n",
            "spec.kernel.cmdLine",
            "a\\nb",
        ),
        (
            "  copyFiles: [{hostPath: rel/path, vmPath: /x}]\n",
            "spec.copyFiles[0].hostPath",
            "rel/path",
        ),
        (
            "  copyFiles: [{hostPath: /a, vmPath: x}]\n",
            "spec.copyFiles[0].vmPath",
            "\"x\"",
        ),
        (
            "  copyFiles: [{hostPath: /a, vmPath: /x}, {hostPath: /b, vmPath: /x}]\n",
            "spec.copyFiles[1].vmPath",
            "/x",
        ),
        ("  ssh: id.pub\n", "spec.ssh", "id.pub"),
        (
            "  network: {ports: [{hostPort: 80, vmPort: 80}, {hostPort: 80, vmPort: 81}]}\n",
            "spec.network.ports[1]",
            "0.0.0.0:80->81/tcp",
        ),
        (
            "  network: {ports: [{hostPort: 0, vmPort: 80}]}\n",
            "spec.network.ports[0].hostPort",
            "\"0\"",
        ),
        (
            "  storage: {volumes: [{name: v, blockDevice: {path: /dev/a}}, {name: v, blockDevice: {path: /dev/b}}]}\n",
            "spec.storage.volumes[1].name",
            "\"v\"",
        ),
        (
            "  storage: {volumes: [{name: v}]}\n",
            "spec.storage.volumes[0].blockDevice",
            "",
        ),
        (
            "  storage: {volumes: [{name: \"\", blockDevice: {path: /dev/a}}]}\n",
            "spec.storage.volumes[0].name",
            "",
        ),
        (
            "  storage: {volumes: [{name: v, blockDevice: {path: dev/a}}]}\n",
            "spec.storage.volumes[0].blockDevice.path",
            "dev/a",
        ),
        (
            "  storage: {volumes: [{name: a, blockDevice: {path: /dev/a}}, {name: b, blockDevice: {path: /dev/a}}]}\n",
            "spec.storage.volumes[1].blockDevice.path",
            "/dev/a",
        ),
        (
            "  storage: {volumes: [{name: v, blockDevice: {path: /dev/a}}], volumeMounts: [{name: w, mountPath: /mnt}]}\n",
            "spec.storage.volumeMounts[0].name",
            "\"w\"",
        ),
        (
            "  storage: {volumes: [{name: v, blockDevice: {path: /dev/a}}], volumeMounts: [{name: v, mountPath: mnt}]}\n",
            "spec.storage.volumeMounts[0].mountPath",
            "mnt",
        ),
        (
            "  storage: {volumes: [{name: v, blockDevice: {path: /dev/a}}], volumeMounts: [{name: v, mountPath: /m}, {name: v, mountPath: /n}]}\n",
            "spec.storage.volumeMounts[1].name",
            "\"v\"",
        ),
        (
            "  storage: {volumes: [{name: a, blockDevice: {path: /dev/a}}, {name: b, blockDevice: {path: /dev/b}}], volumeMounts: [{name: a, mountPath: /m}, {name: b, mountPath: /m}]}\n",
            "spec.storage.volumeMounts[1].mountPath",
            "/m",
        ),
        ("  command: []\n", "spec.command", "[]"),
    ];
    for (spec, field, value) in cases {
        let e = rejection(&vm_with(spec));
        assert!(
            e.contains(&format!("{field}: invalid value")),
            "{spec}: {e}"
        );
        assert!(e.contains(value), "{spec}: {e} should show {value}");
    }
}

#[test]
fn validation_rejects_bad_names_and_missing_image() {
    let mut vm = vm_with("");
    for bad in ["My-VM", "-vm", "vm-", "a_b", "a..b", &"x".repeat(254)] {
        vm.metadata.name = bad.to_string();
        let e = rejection(&vm);
        assert!(
            e.contains("metadata.name: invalid value") && e.contains(bad),
            "{e}"
        );
    }
    vm.metadata.name = String::new();
    assert!(rejection(&vm).contains("metadata.name"));
    // A --config manifest may leave the name to be generated.
    validate_vm_manifest(&vm).unwrap();
    vm.metadata.name = "web-1.example".into();
    vm.spec.image = None;
    let e = rejection(&vm);
    assert!(
        e.contains("spec.image.oci") && e.contains("required"),
        "{e}"
    );
}

#[test]
fn validation_reports_every_problem_at_once() {
    let vm = vm_with("  cpus: 0\n  memory: 0\n");
    let errors = validate_vm(&vm).unwrap_err().errors;
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn configuration_loads_and_validates() {
    let config: Configuration = manifest::decode(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nmetadata:\n  name: test\nspec:\n  runtime: containerd\n  networkPlugin: cni\n  idPrefix: ignite\n  registryConfigDir: /root/.docker\n  vmDefaults:\n    cpus: 2\n    memory: 1GB\n",
    )
    .unwrap();
    validate_configuration(&config).unwrap();
    assert_eq!(config.spec.vm_defaults.cpus, Some(2));

    let mut bad = config.clone();
    bad.spec.runtime = Some("podman".into());
    bad.spec.vm_defaults.cpus = Some(0);
    bad.spec.registry_config_dir = Some("docker".into());
    bad.spec.cni = Some(ignite_api::CniConfig {
        conf_dir: Some("net.d".into()),
        bin_dirs: vec!["/usr/lib/cni".into(), "bin".into()],
    });
    let e = validate_configuration(&bad).unwrap_err().to_string();
    for needle in [
        "spec.runtime",
        "podman",
        "spec.vmDefaults.cpus",
        "spec.registryConfigDir",
        "spec.cni.confDir",
        "spec.cni.binDirs[1]",
    ] {
        assert!(e.contains(needle), "{e}");
    }
    // kind and apiVersion are required, as in Ignite.
    assert!(manifest::decode::<Configuration>("spec: {}").is_err());
}

#[test]
fn layers_follow_precedence() {
    let flags = VmSpec {
        cpus: Some(4),
        ..VmSpec::default()
    };
    let manifest_spec = vm_with("  cpus: 2\n  memory: 1GB\n  kernel: {cmdLine: custom}\n").spec;
    let config_defaults = VmSpec {
        memory: Some(Size::from_mib(256)),
        disk_size: Some(Size::from_mib(8192)),
        ..VmSpec::default()
    };
    let spec = flags
        .layered_over(manifest_spec)
        .layered_over(config_defaults)
        .layered_over(VmSpec::builtin_defaults());
    assert_eq!(spec.cpus, Some(4)); // flag
    assert_eq!(spec.memory, Some(Size::from_mib(1024))); // manifest
    assert_eq!(spec.disk_size, Some(Size::from_mib(8192))); // configuration
    assert_eq!(
        spec.kernel.as_ref().unwrap().cmd_line.as_deref(),
        Some("custom")
    );
    assert_eq!(spec.image_ref().unwrap().to_string(), "alpine:latest");
    let bare = VmSpec::default().layered_over(VmSpec::builtin_defaults());
    assert_eq!(
        (bare.cpus(), bare.memory(), bare.disk_size()),
        (1, Size::from_mib(512), Size::from_mib(4096))
    );
}

#[test]
fn image_objects_round_trip() {
    let doc = "apiVersion: ignite.weave.works/v1alpha4\nkind: Image\nmetadata:\n  name: alpine:3.19\n  uid: 0123456789abcdef\nspec:\n  oci: alpine:3.19\nstatus:\n  ociSource:\n    id: oci://docker.io/library/alpine@sha256:0000000000000000000000000000000000000000000000000000000000000000\n    size: 7MB\n";
    let image: Image = manifest::decode(doc).unwrap();
    assert_eq!(image.status.oci_source.size, Size::from_mib(7));
    assert_eq!(
        manifest::decode::<Image>(&manifest::to_json(&image)).unwrap(),
        image
    );
}
