//! Images (and kernels) straight from the local Docker Engine, through the `ignite` binary
//! and a dockerd of the test's own: `docker-daemon:` by name and by ID, bare names found in
//! the engine before the registry, `--runtime docker`'s requirement, names from
//! `docker save` archives' tags, and the rebuild loop (`docker build`, run, rebuild, run).

use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::docker::DockerEngine;
use ignite_testkit::{Host, stdout};

/// A build context: a static busybox in /bin and a Dockerfile ending with `extra` lines.
fn busybox_context(dir: &Path, extra: &str) -> PathBuf {
    let ctx = dir.join(format!(
        "ctx-{}",
        ignite_testkit::images::sha256(extra.as_bytes())
    ));
    std::fs::create_dir_all(ctx.join("bin")).unwrap();
    std::fs::copy("/bin/busybox", ctx.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", ctx.join("bin/sh")).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nCOPY bin /bin\n{extra}\n"),
    )
    .unwrap();
    ctx
}

/// Image names in the state root, sorted.
fn image_names(host: &Host) -> Vec<String> {
    let mut names: Vec<String> = stdout(host.ignite().args(["image", "ls", "-q"]))
        .lines()
        .map(|uid| {
            stdout(
                host.ignite()
                    .args(["inspect", "image", uid, "-t", "{{.ObjectMeta.Name}}"]),
            )
            .trim()
            .to_string()
        })
        .collect();
    names.sort();
    names
}

/// What an import left in the state root's staging area (nothing, after any import).
fn staging_left(host: &Host) -> Vec<String> {
    std::fs::read_dir(host.state().join("tmp"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn docker_daemon_images_by_name_and_by_id_named_as_docker_names_them() {
    ignite_testkit::require_root!("a dockerd of the test's own");
    let engine = DockerEngine::start();
    let host = Host::empty(cargo_bin!("ignite"));
    let ctx = busybox_context(host.root(), "CMD [\"echo\", \"hello\"]");
    let id = engine.build("local/hello:1", &ctx);
    engine.run(&["tag", "local/hello:1", "local/hello:also"]);

    // By name: named as asked, the engine's image ID is the image's.
    let uid = stdout(host.ignite().env("DOCKER_HOST", engine.host()).args([
        "image",
        "import",
        "-q",
        "docker-daemon:local/hello:1",
    ]));
    let inspect = stdout(host.ignite().args([
        "inspect",
        "image",
        uid.trim(),
        "-t",
        "{{.ObjectMeta.Name}} {{.Spec.OCI}} {{.Status.ImageID}}",
    ]));
    assert_eq!(
        inspect.trim(),
        format!("local/hello:1 docker-daemon:local/hello:1 {id}")
    );
    assert!(staging_left(&host).is_empty(), "{:?}", staging_left(&host));

    // By ID: named by every tag the engine gives it; the same content is not exported again.
    host.ignite()
        .env("DOCKER_HOST", engine.host())
        .args(["image", "import", &format!("docker-daemon:{id}")])
        .assert()
        .success();
    assert_eq!(image_names(&host), ["local/hello:1", "local/hello:also"]);
    let disks = std::fs::read_dir(host.state().join("rootfs"))
        .unwrap()
        .count();
    assert_eq!(disks, 1, "one root disk for one image ID");

    // A name the engine lacks is a clear error, and nothing is stored.
    let out = host
        .ignite()
        .env("DOCKER_HOST", engine.host())
        .args(["image", "import", "docker-daemon:local/absent:1"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("has no image \"local/absent:1\""),
        "{stderr}"
    );
    assert_eq!(image_names(&host).len(), 2);
    assert!(staging_left(&host).is_empty(), "{:?}", staging_left(&host));
}

#[test]
fn runtime_docker_without_an_engine_is_a_clear_error_and_without_runtime_the_registry_is_asked() {
    ignite_testkit::require_root!("a registry on 127.0.0.1");
    let host = Host::empty(cargo_bin!("ignite"));
    let socket = host.root().join("no-engine.sock");
    let out = host
        .ignite()
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .args(["--runtime", "docker", "image", "import", "local/hello:1"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("no Docker Engine at {}", socket.display()))
            && stderr.contains("start it, or set DOCKER_HOST=unix:///path/to/docker.sock"),
        "{stderr}"
    );
    // DOCKER_HOST over TCP is not an image source.
    let out = host
        .ignite()
        .env("DOCKER_HOST", "tcp://127.0.0.1:2375")
        .args(["image", "import", "docker-daemon:local/hello:1"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("DOCKER_HOST=\"tcp://127.0.0.1:2375\""),
        "{stderr}"
    );

    // Without --runtime and with no engine running, a bare name comes from the registry.
    let registry = ignite_testkit::registry::Registry::start(None);
    let image = ignite_testkit::images::Image::new(
        vec![
            ignite_testkit::images::LayerBuilder::new()
                .file("hello", b"from the registry\n", 0o644)
                .finish(ignite_testkit::images::Compression::Gzip),
        ],
        &["sh"],
    );
    registry.push("app", "v1", &image);
    let reference = format!("{}/app:v1", registry.host);
    host.ignite()
        .env("DOCKER_HOST", format!("unix://{}", socket.display()))
        .args(["image", "import", &reference])
        .assert()
        .success();
    assert_eq!(image_names(&host), [reference]);
}

#[test]
fn docker_save_archives_are_named_by_their_tags() {
    ignite_testkit::require_root!("a dockerd of the test's own");
    let engine = DockerEngine::start();
    let host = Host::empty(cargo_bin!("ignite"));
    let ctx = busybox_context(host.root(), "CMD [\"true\"]");
    engine.build("local/saved:1", &ctx);
    engine.run(&["tag", "local/saved:1", "registry.example/team/saved:2"]);
    let archive = host.root().join("saved.tar");
    engine.run(&[
        "save",
        "-o",
        &archive.display().to_string(),
        "local/saved:1",
        "registry.example/team/saved:2",
    ]);
    host.ignite()
        .args([
            "image",
            "import",
            &format!("docker-archive:{}", archive.display()),
        ])
        .assert()
        .success();
    assert_eq!(
        image_names(&host),
        ["local/saved:1", "registry.example/team/saved:2"]
    );
    // --name overrides.
    host.ignite()
        .args([
            "image",
            "import",
            "--name",
            "mine:1",
            &format!("docker-archive:{}", archive.display()),
        ])
        .assert()
        .success();
    assert_eq!(
        image_names(&host),
        ["local/saved:1", "mine:1", "registry.example/team/saved:2"]
    );
}

#[test]
fn a_kernel_built_with_docker_imports_with_runtime_docker() {
    ignite_testkit::require_root!("a dockerd of the test's own");
    let engine = DockerEngine::start();
    let host = Host::empty(cargo_bin!("ignite"));
    let ctx = host.root().join("kernel-ctx");
    let release = "6.1.0-test-engine";
    std::fs::create_dir_all(ctx.join("boot")).unwrap();
    std::fs::create_dir_all(ctx.join(format!("lib/modules/{release}"))).unwrap();
    std::fs::write(
        ctx.join("boot/vmlinux"),
        ignite_testkit::images::fake_vmlinux(release),
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY boot /boot\nCOPY lib /lib\n",
    )
    .unwrap();
    engine.build("my/kernel:6.1", &ctx);
    let out = host
        .ignite()
        .env("DOCKER_HOST", engine.host())
        .args(["--runtime", "docker", "kernel", "import", "my/kernel:6.1"])
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("my/kernel:6.1: found in Docker Engine"),
        "{stderr}"
    );
    let listed = stdout(host.ignite().args(["kernel", "ls"]));
    assert!(
        listed.contains("my/kernel:6.1") && listed.contains(release),
        "{listed}"
    );
}

#[test]
fn build_run_rebuild_run_picks_up_the_change() {
    ignite_testkit::require_root!("booting VMs");
    let engine = DockerEngine::start();
    let host = Host::new(cargo_bin!("ignite"));
    let first = busybox_context(
        host.root(),
        "CMD [\"/bin/busybox\", \"echo\", \"first build\"]",
    );
    let first_id = engine.build("local/app:dev", &first);
    let run = || {
        host.ignite()
            .env("DOCKER_HOST", engine.host())
            .args(["run", "--rm", "--network", "none", "local/app:dev"])
            .assert()
            .success()
    };
    let out = run();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        "first build\n"
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("local/app:dev: found in Docker Engine"),
        "{stderr}"
    );

    let second = busybox_context(
        host.root(),
        "CMD [\"/bin/busybox\", \"echo\", \"second build\"]",
    );
    let second_id = engine.build("local/app:dev", &second);
    assert_ne!(first_id, second_id);
    let out = run();
    assert_eq!(
        String::from_utf8_lossy(&out.get_output().stdout),
        "second build\n"
    );
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(stderr.contains("now points at"), "{stderr}");
    assert_eq!(
        stdout(host.ignite().args([
            "inspect",
            "image",
            "local/app:dev",
            "-t",
            "{{.Status.ImageID}}"
        ]))
        .trim(),
        second_id
    );
    // The first build's disk went with the last VM that used it; the same ID is not
    // imported twice.
    let disks = std::fs::read_dir(host.state().join("rootfs"))
        .unwrap()
        .count();
    assert_eq!(disks, 1);
    let out = run();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!stderr.contains("exporting"), "{stderr}");
}
