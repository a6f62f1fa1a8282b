//! Ignite's e2e/image_test.go: importing a tiny image, with the default runtime and with
//! `--runtime=docker`. Ignite pulls `hello-world:latest` from Docker Hub; here the same
//! kind of image (one small layer) comes from a registry on 127.0.0.1.

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;
use ignite_testkit::images::{Compression, Image, LayerBuilder};
use ignite_testkit::registry::Registry;

fn hello_world(registry: &Registry) -> String {
    let layer = LayerBuilder::new()
        .file("hello", b"Hello from a tiny image.\n", 0o755)
        .finish(Compression::Gzip);
    registry.push(
        "library/hello-world",
        "latest",
        &Image::new(vec![layer], &["/hello"]),
    );
    format!("{}/library/hello-world:latest", registry.host)
}

#[test]
fn test_import_tiny_image() {
    ignite_testkit::require_program!("docker-registry", "docker-registry");
    let host = Host::empty(cargo_bin!("ignite"));
    let registry = Registry::start(None);
    let image = hello_world(&registry);
    // Ignite removes it first and ignores whether that worked.
    let _ = host.ignite().args(["image", "rm", &image]).output();
    host.ignite()
        .args(["image", "import", &image])
        .assert()
        .success();
    assert!(ignite_testkit::stdout(host.ignite().args(["image", "ls"])).contains("hello-world"));
}

#[test]
fn test_docker_import_image() {
    ignite_testkit::require_root!("a dockerd of the test's own");
    ignite_testkit::require_program!("docker-registry", "docker-registry");
    let host = Host::empty(cargo_bin!("ignite"));
    let registry = Registry::start(None);
    let image = hello_world(&registry);
    let _ = host.ignite().args(["image", "rm", &image]).output();
    // `--runtime=docker` needs a running engine, as in Ignite: one of the test's own, which
    // lacks the image, so it comes from the registry.
    let docker = ignite_testkit::docker::DockerEngine::start();
    host.ignite()
        .env("DOCKER_HOST", docker.host())
        .args(["--runtime=docker", "image", "import", &image])
        .assert()
        .success();
    assert!(ignite_testkit::stdout(host.ignite().args(["image", "ls"])).contains("hello-world"));
}
