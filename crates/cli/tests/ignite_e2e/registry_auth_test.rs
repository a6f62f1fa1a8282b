//! Ignite's e2e/registry_auth_test.go: importing an OS image and a kernel image from
//! registries that require a user name and password, over HTTP and over HTTPS, with the
//! credentials from `--registry-config-dir`, from `registryConfigDir` in an
//! `--ignite-config` file, or from nowhere.
//!
//! Ignite's registries (e2e/util/setup-private-registry.sh: Docker's `registry:2` with
//! htpasswd on 127.5.0.1:5080 and, with a self-signed certificate, :5443) are the test
//! registry here (Debian's `docker-registry` on 127.0.0.1, htpasswd), plain and with TLS.
//! Ignite's test lists both registries in containerd's insecure-registries variable, which
//! also skips certificate checks; here the HTTP one needs nothing (loopback) and the HTTPS
//! one's CA is where a user would put it, `certs.d/HOST:PORT/ca.crt` (the certs.d
//! directory is the test's own, through `IGNITE_REGISTRY_CERTS_DIR`). Ignite's OS and
//! kernel images are small images of the test's own, the kernel one laid out as Ignite's
//! are (/boot/vmlinux, /lib/modules/RELEASE). These imports boot nothing: no namespace.

use std::path::Path;

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::Host;
use ignite_testkit::images::{Compression, Image, LayerBuilder, fake_vmlinux};
use ignite_testkit::registry::{Registry, Tls};

/// The runtimes of Ignite's case table; each case is run with both as Ignite runs it. The
/// engine named must run (the test starts its own), and lacks the images, which then come
/// from the registry.
const RUNTIMES: [&str; 2] = ["containerd", "docker"];

struct Case {
    name: &'static str,
    runtime: &'static str,
    /// `--registry-config-dir`: the directory with the credentials, or the empty one.
    registry_config_flag: Option<Dir>,
    /// An `--ignite-config` Configuration naming the directory with the credentials.
    ignite_config: bool,
    want_err: bool,
}

#[derive(Clone, Copy)]
enum Dir {
    WithCredentials,
    Empty,
}

/// Ignite's case table, for each runtime.
fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for runtime in RUNTIMES {
        let case = |name, registry_config_flag, ignite_config, want_err| Case {
            name,
            runtime,
            registry_config_flag,
            ignite_config,
            want_err,
        };
        cases.extend([
            case("no auth info", None, false, true),
            case(
                "registry config flag",
                Some(Dir::WithCredentials),
                false,
                false,
            ),
            case("registry config in ignite config", None, true, false),
            // The flag overrides the configuration, here with a directory without
            // credentials: the import fails, although the configuration's is right.
            case(
                "flag override registry config",
                Some(Dir::Empty),
                true,
                true,
            ),
            // A directory without a config.json: no credentials, the import fails.
            case("invalid registry config", Some(Dir::Empty), false, true),
        ]);
    }
    cases
}

/// Stands in for `weaveworks/ignite-ubuntu`: what an import unpacks, not what boots.
fn os_image() -> Image {
    let layer = LayerBuilder::new()
        .dir("etc", 0o755)
        .file("etc/os-release", b"ID=ignite-e2e\n", 0o644)
        .dir("sbin", 0o755)
        .file("sbin/init", b"#!/bin/sh\n", 0o755)
        .finish(Compression::Gzip);
    Image::new(vec![layer], &["/sbin/init"])
}

/// Stands in for `weaveworks/ignite-kernel`: an OCI image with /boot/vmlinux and its
/// /lib/modules, which `ignite image import` imports as an image like any other.
fn kernel_image() -> Image {
    let release = "6.1.0-e2e";
    let layer = LayerBuilder::new()
        .dir("boot", 0o755)
        .file("boot/vmlinux", &fake_vmlinux(release), 0o644)
        .dir("lib", 0o755)
        .dir("lib/modules", 0o755)
        .dir(&format!("lib/modules/{release}"), 0o755)
        .file(&format!("lib/modules/{release}/modules.dep"), b"", 0o644)
        .finish(Compression::Gzip);
    Image::new(vec![layer], &["/bin/sh"])
}

/// Ignite's `registryConfigContent`: both registries' credentials, keyed by URL as
/// Ignite's test keys them.
fn write_registry_config(dir: &Path, http: &Registry, https: &Registry) {
    let config = format!(
        "{{\"auths\": {{\"http://{}\": {{\"auth\": \"{}\"}}, \"https://{}\": {{\"auth\": \"{}\"}}}}}}",
        http.host,
        http.basic_auth(),
        https.host,
        https.basic_auth()
    );
    std::fs::write(dir.join("config.json"), config).unwrap();
}

/// Starts both registries, pushes the images to the one of `kind`, and runs every case
/// against it.
fn pull_from_auth_registry(kind: &str) {
    ignite_testkit::require_root!("importing images");
    ignite_testkit::require_program!("docker-registry", "docker-registry");
    ignite_testkit::require_program!("htpasswd", "apache2-utils");
    ignite_testkit::require_program!("openssl", "openssl");
    // setup-private-registry.sh's users.
    let http = Registry::start(Some(("http_testuser", "http_testpassword")));
    let https = Registry::start_tls(Some(("https_testuser", "https_testpassword")), Tls::Server);
    let registry = if kind == "https" { &https } else { &http };
    let os = registry.push("weaveworks/ignite-ubuntu", "test", &os_image());
    let kernel = registry.push("weaveworks/ignite-kernel", "test", &kernel_image());

    let files = tempfile::tempdir().unwrap();
    let empty_dir = files.path().join("empty");
    let rc_dir = files.path().join("registry-config");
    let certs_dir = files.path().join("certs.d");
    for d in [&empty_dir, &rc_dir, &certs_dir] {
        std::fs::create_dir(d).unwrap();
    }
    write_registry_config(&rc_dir, &http, &https);
    https.install_certs(&certs_dir, false);
    let ignite_config = files.path().join("ignite-config.yaml");
    std::fs::write(
        &ignite_config,
        format!(
            "---\napiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nmetadata:\n  name: test-config\nspec:\n  registryConfigDir: {}\n",
            rc_dir.display()
        ),
    )
    .unwrap();

    // `--runtime` names an engine that must be running, as in Ignite: engines of the
    // test's own, whose stores lack these images (so they come from the registry).
    let docker = ignite_testkit::docker::DockerEngine::start();
    let containerd = ignite_testkit::docker::Containerd::start();
    let mut failures = Vec::new();
    for case in cases() {
        // A state root per case: Ignite removes both images before each one.
        let host = Host::empty(cargo_bin!("ignite"));
        let mut args: Vec<String> = vec!["--runtime".into(), case.runtime.into()];
        if let Some(dir) = case.registry_config_flag {
            let dir = match dir {
                Dir::WithCredentials => &rc_dir,
                Dir::Empty => &empty_dir,
            };
            args.extend(["--registry-config-dir".into(), dir.display().to_string()]);
        }
        if case.ignite_config {
            args.extend([
                "--ignite-config".into(),
                ignite_config.display().to_string(),
            ]);
        }
        for image in [&os, &kernel] {
            let out = ignite_testkit::ignite(host.ignite_binary(), &host.state())
                // No credentials but the case's: not the running user's ~/.docker.
                .env("DOCKER_CONFIG", &empty_dir)
                .env("IGNITE_REGISTRY_CERTS_DIR", &certs_dir)
                .env("DOCKER_HOST", docker.host())
                .env("CONTAINERD_ADDRESS", containerd.address())
                .args(["image", "import", image])
                .args(&args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            let failed = !out.status.success();
            // A failure must be the missing credentials, not anything else.
            let expected_failure = stderr.contains(&format!(
                "registry {}: it asks for a user name and password, and none is configured",
                registry.host
            ));
            if failed != case.want_err || (failed && !expected_failure) {
                failures.push(format!(
                    "{kind}_{} - {}: import of {image}: expected error {}, got {}:\n{stderr}",
                    case.name, case.runtime, case.want_err, out.status
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn test_pull_from_auth_registry_http() {
    pull_from_auth_registry("http");
}

#[test]
fn test_pull_from_auth_registry_https() {
    pull_from_auth_registry("https");
}
