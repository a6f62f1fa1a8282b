//! Images (and kernels) straight from containerd's store, through the `ignite` binary and a
//! containerd of the test's own (own root, state and socket), filled with `ctr image import`
//! as a user of containerd would: `containerd:NAME`, bare names found there, namespaces,
//! `--runtime containerd`'s requirement, the rebuild check, and what containerd serves
//! being checked like any other source.

use std::path::Path;

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::docker::Containerd;
use ignite_testkit::images::{Compression, Image, LayerBuilder};
use ignite_testkit::{Host, stdout};

/// A busybox image whose CMD prints `greeting`, as `docker save` writes it, tagged `tag`.
fn busybox_archive(dir: &Path, tag: &str, greeting: &str) -> (std::path::PathBuf, Image) {
    let layer = LayerBuilder::new()
        .dir("bin", 0o755)
        .file(
            "bin/busybox",
            &std::fs::read("/bin/busybox").unwrap(),
            0o755,
        )
        .symlink("bin/sh", "busybox")
        .dir("srv", 0o755)
        .finish(Compression::None);
    let image = Image::new(vec![layer], &[&format!("echo {greeting}")]);
    let file = dir.join(format!(
        "{}.tar",
        ignite_testkit::images::sha256(greeting.as_bytes())
    ));
    image.write_docker_archive(&file, tag);
    (file, image)
}

/// Runs `cmd`, which must succeed (`ok`) or fail, and whose stderr must say `needle`;
/// returns its stdout.
fn expect(cmd: &mut assert_cmd::Command, ok: bool, needle: &str) -> String {
    let out = cmd.assert();
    let out = if ok { out.success() } else { out.failure() };
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(stderr.contains(needle), "wanted {needle:?} in: {stderr}");
    String::from_utf8_lossy(&out.get_output().stdout).into_owned()
}

/// `ignite inspect image NAME -t TEMPLATE`.
fn inspect(host: &Host, name: &str, template: &str) -> String {
    stdout(
        host.ignite()
            .args(["inspect", "image", name, "-t", template]),
    )
    .trim()
    .to_string()
}

fn ctr_import(containerd: &Containerd, namespace: &str, archive: &Path) {
    containerd.ctr(
        namespace,
        &["image", "import", "--no-unpack", archive.to_str().unwrap()],
    );
}

/// The state root's staging area holds nothing after any import.
fn assert_no_staging(host: &Host) {
    let left: Vec<String> = std::fs::read_dir(host.state().join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "staging left behind: {left:?}");
}

#[test]
fn containerd_images_by_name_in_namespaces_and_by_bare_name() {
    ignite_testkit::require_root!("a containerd of the test's own");
    let containerd = Containerd::start();
    let host = Host::empty(cargo_bin!("ignite"));
    let ignite = || {
        let mut cmd = host.ignite();
        cmd.env("CONTAINERD_ADDRESS", containerd.address());
        // No Docker Engine: bare names go to containerd, then the registry.
        cmd.env(
            "DOCKER_HOST",
            format!("unix://{}", host.root().join("no-docker.sock").display()),
        );
        cmd
    };
    let (hello, hello_image) = busybox_archive(host.root(), "local/hello:1", "one");
    let (team, team_image) = busybox_archive(host.root(), "local/team:1", "team");
    ctr_import(&containerd, "default", &hello);
    ctr_import(&containerd, "team", &team);

    // containerd:NAME, named as Docker names it, its ID the config's digest.
    let uid = expect(
        ignite().args(["image", "import", "-q", "containerd:local/hello:1"]),
        true,
        "reading docker.io/local/hello:1",
    )
    .trim()
    .to_string();
    assert_eq!(
        inspect(
            &host,
            &uid,
            "{{.ObjectMeta.Name}} {{.Spec.OCI}} {{.Status.ImageID}}"
        ),
        format!(
            "local/hello:1 containerd:local/hello:1 {}",
            hello_image.config_digest()
        )
    );
    assert_no_staging(&host);

    // Another namespace: not found in `default` (the error says where it looked), found
    // with --containerd-namespace or CONTAINERD_NAMESPACE.
    expect(
        ignite().args(["image", "import", "containerd:local/team:1"]),
        false,
        &format!(
            "containerd at {} has no image \"local/team:1\" in namespace default",
            containerd.address()
        ),
    );
    ignite()
        .args([
            "--containerd-namespace",
            "team",
            "image",
            "import",
            "containerd:local/team:1",
        ])
        .assert()
        .success();
    assert_eq!(
        inspect(&host, "local/team:1", "{{.Status.ImageID}}"),
        team_image.config_digest()
    );
    expect(
        ignite().env("CONTAINERD_NAMESPACE", "bad/namespace").args([
            "image",
            "import",
            "containerd:local/not-imported:1",
        ]),
        false,
        "CONTAINERD_NAMESPACE=\"bad/namespace\"",
    );

    // A bare name: Docker Engine is not running, containerd has it.
    let (other, other_image) = busybox_archive(host.root(), "local/other:2", "other");
    ctr_import(&containerd, "default", &other);
    expect(
        ignite().args(["image", "import", "local/other:2"]),
        true,
        "local/other:2: found in containerd",
    );
    assert_eq!(
        inspect(&host, "local/other:2", "{{.Spec.OCI}} {{.Status.ImageID}}"),
        format!("containerd:local/other:2 {}", other_image.config_digest())
    );

    // The rebuild check: the tag now points at another image; the next import of the name
    // reads it again, and an unchanged tag reads nothing.
    let (again, again_image) = busybox_archive(host.root(), "local/other:2", "rebuilt");
    ctr_import(&containerd, "default", &again);
    expect(
        ignite().args(["image", "import", "local/other:2"]),
        true,
        "now points at",
    );
    assert_eq!(
        inspect(&host, "local/other:2", "{{.Status.ImageID}}"),
        again_image.config_digest()
    );
    let out = ignite()
        .args(["image", "import", "local/other:2"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr);
    assert!(!stderr.contains("reading"), "{stderr}");
    assert_no_staging(&host);
}

#[test]
fn runtime_containerd_needs_containerd_and_its_content_is_checked() {
    ignite_testkit::require_root!("a containerd of the test's own");
    let host = Host::empty(cargo_bin!("ignite"));

    // --runtime containerd with none running: the error names the socket and the fix.
    let socket = host.root().join("no-containerd.sock");
    expect(
        host.ignite().env("CONTAINERD_ADDRESS", &socket).args([
            "--runtime",
            "containerd",
            "image",
            "import",
            "local/hello:1",
        ]),
        false,
        &format!(
            "no containerd at {} (cannot connect: No such file or directory (os error 2)): start it, or set CONTAINERD_ADDRESS=/path/to/containerd.sock",
            socket.display()
        ),
    );

    let containerd = Containerd::start();
    let ignite = || {
        let mut cmd = host.ignite();
        cmd.env("CONTAINERD_ADDRESS", containerd.address());
        cmd
    };
    let (archive, image) = busybox_archive(host.root(), "local/hello:1", "one");
    ctr_import(&containerd, "default", &archive);
    let layer = &image.layers[0].digest;

    // A layer changed in containerd's store (containerd serves it as it is): refused by its
    // digest, nothing imported, nothing left in staging.
    let blob = containerd.blob_path(layer);
    let original = std::fs::read(&blob).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 600;
    tampered[last] ^= 0x55;
    std::fs::write(&blob, &tampered).unwrap();
    expect(
        ignite().args([
            "--runtime",
            "containerd",
            "image",
            "import",
            "local/hello:1",
        ]),
        false,
        "does not match its digest",
    );
    assert!(
        stdout(host.ignite().args(["image", "ls", "-q"]))
            .trim()
            .is_empty()
    );
    assert_no_staging(&host);
    std::fs::write(&blob, &original).unwrap();

    // Content containerd no longer holds: a clear error, not a hang.
    containerd.ctr("default", &["content", "rm", layer]);
    expect(
        ignite().args(["image", "import", "containerd:local/hello:1"]),
        false,
        &format!("does not hold blob {layer}"),
    );
    assert_no_staging(&host);

    // Imported again, it works (by --runtime, the registry never asked).
    ctr_import(&containerd, "default", &archive);
    expect(
        ignite().args([
            "--runtime",
            "containerd",
            "image",
            "import",
            "local/hello:1",
        ]),
        true,
        "local/hello:1: found in containerd",
    );
}

#[test]
fn a_kernel_and_a_vm_from_containerd() {
    ignite_testkit::require_root!("booting VMs");
    let containerd = Containerd::start();
    let host = Host::new(cargo_bin!("ignite"));

    // A kernel image (vmlinux and modules) imported into containerd, then into Ignite.
    let release = "6.1.0-test-containerd";
    let kernel = Image::new(
        vec![
            LayerBuilder::new()
                .dir("boot", 0o755)
                .file(
                    "boot/vmlinux",
                    &ignite_testkit::images::fake_vmlinux(release),
                    0o644,
                )
                .dir("lib", 0o755)
                .dir("lib/modules", 0o755)
                .dir(&format!("lib/modules/{release}"), 0o755)
                .finish(Compression::None),
        ],
        &["true"],
    );
    let kernel_archive = host.root().join("kernel.tar");
    kernel.write_docker_archive(&kernel_archive, "my/kernel:6.1");
    containerd.ctr(
        "default",
        &[
            "image",
            "import",
            "--no-unpack",
            kernel_archive.to_str().unwrap(),
        ],
    );
    expect(
        host.ignite()
            .env("CONTAINERD_ADDRESS", containerd.address())
            .args([
                "--runtime",
                "containerd",
                "kernel",
                "import",
                "my/kernel:6.1",
            ]),
        true,
        "my/kernel:6.1: found in containerd",
    );
    let listed = stdout(host.ignite().args(["kernel", "ls"]));
    assert!(
        listed.contains("my/kernel:6.1") && listed.contains(release),
        "{listed}"
    );

    // A VM of an image read from containerd (with the default kernel).
    let (archive, _) = busybox_archive(host.root(), "local/hello:1", "hello from containerd");
    ctr_import(&containerd, "default", &archive);
    let out = expect(
        host.ignite()
            .env("CONTAINERD_ADDRESS", containerd.address())
            .args([
                "run",
                "--rm",
                "--network",
                "none",
                "containerd:local/hello:1",
            ]),
        true,
        "local/hello:1",
    );
    assert_eq!(out, "hello from containerd\n");
}
