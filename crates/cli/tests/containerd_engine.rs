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

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
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
    containerd.ctr(
        "default",
        &["image", "import", "--no-unpack", hello.to_str().unwrap()],
    );
    containerd.ctr(
        "team",
        &["image", "import", "--no-unpack", team.to_str().unwrap()],
    );

    // containerd:NAME, named as Docker names it, its ID the config's digest.
    let out = ignite()
        .args(["image", "import", "-q", "containerd:local/hello:1"])
        .assert()
        .success();
    let uid = String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_string();
    assert!(
        stderr_of(&out).contains("reading docker.io/local/hello:1"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(
        stdout(host.ignite().args([
            "inspect",
            "image",
            &uid,
            "-t",
            "{{.ObjectMeta.Name}} {{.Spec.OCI}} {{.Status.ImageID}}",
        ]))
        .trim(),
        format!(
            "local/hello:1 containerd:local/hello:1 {}",
            hello_image.config_digest()
        )
    );
    assert_no_staging(&host);

    // Another namespace: not found in `default` (the error says where it looked), found
    // with --containerd-namespace or CONTAINERD_NAMESPACE.
    let out = ignite()
        .args(["image", "import", "containerd:local/team:1"])
        .assert()
        .failure();
    assert!(
        stderr_of(&out).contains(&format!(
            "containerd at {} has no image \"local/team:1\" in namespace default",
            containerd.address()
        )),
        "{}",
        stderr_of(&out)
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
        stdout(host.ignite().args([
            "inspect",
            "image",
            "local/team:1",
            "-t",
            "{{.Status.ImageID}}"
        ]))
        .trim(),
        team_image.config_digest()
    );
    let out = ignite()
        .env("CONTAINERD_NAMESPACE", "bad/namespace")
        .args(["image", "import", "containerd:local/not-imported:1"])
        .assert()
        .failure();
    assert!(
        stderr_of(&out).contains("CONTAINERD_NAMESPACE=\"bad/namespace\""),
        "{}",
        stderr_of(&out)
    );

    // A bare name: Docker Engine is not running, containerd has it.
    let (other, other_image) = busybox_archive(host.root(), "local/other:2", "other");
    containerd.ctr(
        "default",
        &["image", "import", "--no-unpack", other.to_str().unwrap()],
    );
    let out = ignite()
        .args(["image", "import", "local/other:2"])
        .assert()
        .success();
    assert!(
        stderr_of(&out).contains("local/other:2: found in containerd"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(
        stdout(host.ignite().args([
            "inspect",
            "image",
            "local/other:2",
            "-t",
            "{{.Spec.OCI}} {{.Status.ImageID}}"
        ]))
        .trim(),
        format!("containerd:local/other:2 {}", other_image.config_digest())
    );

    // The rebuild check: the tag now points at another image; the next import of the name
    // reads it again, and an unchanged tag reads nothing.
    let (again, again_image) = busybox_archive(host.root(), "local/other:2", "rebuilt");
    containerd.ctr(
        "default",
        &["image", "import", "--no-unpack", again.to_str().unwrap()],
    );
    let out = ignite()
        .args(["image", "import", "local/other:2"])
        .assert()
        .success();
    assert!(
        stderr_of(&out).contains("now points at"),
        "{}",
        stderr_of(&out)
    );
    assert_eq!(
        stdout(host.ignite().args([
            "inspect",
            "image",
            "local/other:2",
            "-t",
            "{{.Status.ImageID}}"
        ]))
        .trim(),
        again_image.config_digest()
    );
    let out = ignite()
        .args(["image", "import", "local/other:2"])
        .assert()
        .success();
    assert!(!stderr_of(&out).contains("reading"), "{}", stderr_of(&out));
    assert_no_staging(&host);
}

#[test]
fn runtime_containerd_needs_containerd_and_its_content_is_checked() {
    ignite_testkit::require_root!("a containerd of the test's own");
    let host = Host::empty(cargo_bin!("ignite"));

    // --runtime containerd with none running: the error names the socket and the fix.
    let socket = host.root().join("no-containerd.sock");
    let out = host
        .ignite()
        .env("CONTAINERD_ADDRESS", &socket)
        .args([
            "--runtime",
            "containerd",
            "image",
            "import",
            "local/hello:1",
        ])
        .assert()
        .failure();
    let stderr = stderr_of(&out);
    assert!(
        stderr.contains(&format!("no containerd at {}", socket.display()))
            && stderr.contains("start it, or set CONTAINERD_ADDRESS=/path/to/containerd.sock"),
        "{stderr}"
    );

    let containerd = Containerd::start();
    let ignite = || {
        let mut cmd = host.ignite();
        cmd.env("CONTAINERD_ADDRESS", containerd.address());
        cmd
    };
    let (archive, image) = busybox_archive(host.root(), "local/hello:1", "one");
    containerd.ctr(
        "default",
        &["image", "import", "--no-unpack", archive.to_str().unwrap()],
    );
    let layer = &image.layers[0].digest;

    // A layer changed in containerd's store (containerd serves it as it is): refused by its
    // digest, nothing imported, nothing left in staging.
    let blob = containerd.blob_path(layer);
    let original = std::fs::read(&blob).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 600;
    tampered[last] ^= 0x55;
    std::fs::write(&blob, &tampered).unwrap();
    let out = ignite()
        .args([
            "--runtime",
            "containerd",
            "image",
            "import",
            "local/hello:1",
        ])
        .assert()
        .failure();
    assert!(
        stderr_of(&out).contains("does not match its digest"),
        "{}",
        stderr_of(&out)
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
    let out = ignite()
        .args(["image", "import", "containerd:local/hello:1"])
        .assert()
        .failure();
    assert!(
        stderr_of(&out).contains(&format!("does not hold blob {layer}")),
        "{}",
        stderr_of(&out)
    );
    assert_no_staging(&host);

    // Imported again, it works (by --runtime, the registry never asked).
    containerd.ctr(
        "default",
        &["image", "import", "--no-unpack", archive.to_str().unwrap()],
    );
    let out = ignite()
        .args([
            "--runtime",
            "containerd",
            "image",
            "import",
            "local/hello:1",
        ])
        .assert()
        .success();
    assert!(
        stderr_of(&out).contains("local/hello:1: found in containerd"),
        "{}",
        stderr_of(&out)
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
    let out = host
        .ignite()
        .env("CONTAINERD_ADDRESS", containerd.address())
        .args([
            "--runtime",
            "containerd",
            "kernel",
            "import",
            "my/kernel:6.1",
        ])
        .assert()
        .success();
    assert!(
        stderr_of(&out).contains("my/kernel:6.1: found in containerd"),
        "{}",
        stderr_of(&out)
    );
    let listed = stdout(host.ignite().args(["kernel", "ls"]));
    assert!(
        listed.contains("my/kernel:6.1") && listed.contains(release),
        "{listed}"
    );

    // A VM of an image read from containerd (with the default kernel).
    let (archive, _) = busybox_archive(host.root(), "local/hello:1", "hello from containerd");
    containerd.ctr(
        "default",
        &["image", "import", "--no-unpack", archive.to_str().unwrap()],
    );
    let out = host
        .ignite()
        .env("CONTAINERD_ADDRESS", containerd.address())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "containerd:local/hello:1",
        ])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        "hello from containerd\n"
    );
}
