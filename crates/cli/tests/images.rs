//! `ignite image import|ls|rm`, `ignite images` and `ignite rmi` through the binary.

use std::path::Path;

use assert_cmd::cargo::cargo_bin;
use ignite_api::{Vm, manifest};
use ignite_store::Store;
use ignite_testkit::images::{Compression, Image, LayerBuilder};
use ignite_testkit::stdout;
use predicates::prelude::*;

/// `ignite` with its state in `root`, plain logs and no colour.
fn ignite(root: &Path) -> assert_cmd::Command {
    ignite_testkit::ignite(cargo_bin!("ignite"), root)
}

fn layout(dir: &Path, content: &[u8]) -> String {
    let image = Image::new(
        vec![
            LayerBuilder::new()
                .file("hello", content, 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
    );
    let path = dir.join(format!("layout-{}", content.len()));
    image.write_oci_layout(&path, "v1");
    format!("oci:{}:v1", path.display())
}

fn vm_using(root: &Path, image: &str) {
    let vm: Vm = manifest::decode(&format!(
        "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: user-vm\nspec:\n  image: {{oci: \"{image}\"}}\n"
    ))
    .unwrap();
    Store::open(root).unwrap().vms().create(vm).unwrap();
}

#[test]
fn import_list_inspect_and_remove() {
    ignite_testkit::require_root!("importing images");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let source = layout(dir.path(), b"hi\n");
    let uid = stdout(ignite(&root).args(["image", "import", &source]));
    let uid = uid.trim();
    assert_eq!(uid.len(), 16, "{uid}");
    // Importing again is a no-op that names the same image.
    let assert = ignite(&root)
        .args(["image", "import", &source])
        .assert()
        .success();
    assert_eq!(
        String::from_utf8_lossy(&assert.get_output().stdout).trim(),
        uid
    );
    assert!(String::from_utf8_lossy(&assert.get_output().stderr).contains("already imported"));

    let table = stdout(ignite(&root).arg("images"));
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("IMAGE ID\t"), "{table}");
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(uid) && row.contains(&source) && row.contains("ago"),
        "{row}"
    );
    // The same table each way, but for the age, which may cross a second between calls.
    let ageless = |t: &str| -> String {
        t.lines()
            .map(|l| {
                l.split('\t')
                    .filter(|field| !field.ends_with(" ago"))
                    .collect::<Vec<_>>()
                    .join("\t")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    for args in [&["image"][..], &["image", "ls"], &["image", "list"]] {
        assert_eq!(ageless(&stdout(ignite(&root).args(args))), ageless(&table));
    }
    assert_eq!(stdout(ignite(&root).args(["images", "-q"])).trim(), uid);
    let inspect = stdout(ignite(&root).args([
        "inspect",
        "image",
        &uid[..6],
        "-t",
        "{{.Status.Config.Cmd}} {{.Status.Platform}}",
    ]));
    assert_eq!(inspect, "[sh] linux/amd64\n");

    assert_eq!(stdout(ignite(&root).args(["rmi", uid])).trim(), uid);
    assert_eq!(stdout(ignite(&root).args(["images", "-q"])), "");
    assert_eq!(
        std::fs::read_dir(root.join("rootfs")).unwrap().count(),
        0,
        "the root disk went too"
    );
}

#[test]
fn rmi_refuses_images_in_use_unless_forced() {
    ignite_testkit::require_root!("importing images");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let source = layout(dir.path(), b"in use\n");
    ignite(&root)
        .args(["image", "import", &source])
        .assert()
        .success();
    vm_using(&root, &source);
    ignite(&root)
        .args(["rmi", &source])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is used by user-vm").and(predicate::str::contains("-f")));
    assert_eq!(
        stdout(ignite(&root).args(["images", "-q"])).lines().count(),
        1,
        "nothing was removed"
    );
    assert_eq!(
        stdout(ignite(&root).args(["ps", "-a", "-q"]))
            .lines()
            .count(),
        1
    );
    ignite(&root)
        .args(["image", "rm", "-f", &source])
        .assert()
        .success();
    assert_eq!(stdout(ignite(&root).args(["images", "-q"])), "");
    assert_eq!(
        stdout(ignite(&root).args(["ps", "-a", "-q"])),
        "",
        "the VM went with it"
    );
}

#[test]
fn import_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    ignite(&root)
        .args(["image", "import", "Bad//Name"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "invalid image reference \"Bad//Name\"",
        ));
    ignite(&root)
        .args(["image", "import", &format!("oci:{}", dir.path().display())])
        .assert()
        .failure()
        .stderr(predicate::str::contains("is not an OCI image layout"));
    ignite(&root)
        .args(["image", "import", "docker-archive:/nonexistent.tar"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("/nonexistent.tar"));
    ignite(&root)
        .args(["image", "import", "alpine", "--platform", "amd64"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("unknown platform"));
    ignite(&root)
        .args(["rmi", "nothing"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("can't find Image"));
}

/// The bytes allocated on disk under `dir` (holes not counted).
fn allocated(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += allocated(&entry.path());
        }
    }
    total
}

/// Runs `ignite` on `root` with `args`, killing it (and failing the test) if `root` grows
/// past `bound` bytes on disk. Returns its exit status and stderr.
fn run_bounded(root: &Path, args: &[&str], bound: u64) -> (std::process::ExitStatus, String) {
    use std::io::Read;
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin!("ignite"))
        .env("IGNITE_ROOT", root)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        let used = allocated(root);
        if used > bound {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the import wrote {used} bytes into the state root (bound {bound}): killed");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    (status, reader.join().unwrap())
}

#[test]
fn a_sparse_file_declaring_a_terabyte_is_refused_before_it_is_written() {
    ignite_testkit::require_root!("importing images");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let canary = dir.path().join("canary");
    std::fs::write(&canary, "precious").unwrap();
    let layer = LayerBuilder::new()
        .file("hello", b"hi\n", 0o644)
        .sparse_file("big", 1 << 40, &[1u8; 512])
        .finish(Compression::Gzip);
    assert!(layer.blob.len() < 4096, "{} bytes", layer.blob.len());
    let layout_dir = dir.path().join("layout");
    Image::new(vec![layer], &["sh"]).write_oci_layout(&layout_dir, "v1");
    let source = format!("oci:{}:v1", layout_dir.display());
    let (status, stderr) = run_bounded(&root, &["image", "import", &source], 64 << 20);
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("refusing entry \"big\": it declares a file of 1099511627776 bytes, more than the 68719476736 bytes one file may have"),
        "{stderr}"
    );
    assert!(allocated(&root) < 64 << 20);
    assert_eq!(std::fs::read(&canary).unwrap(), b"precious");
    assert_eq!(stdout(ignite(&root).args(["images", "-q"])), "");
}

/// The peak resident memory of `ignite` run on `root` with `args` (GNU time's report),
/// with its exit status and stderr.
fn run_measured(root: &Path, args: &[&str]) -> (bool, String, u64) {
    ignite_testkit::require_program("/usr/bin/time", "time");
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(assert_cmd::cargo::cargo_bin!("ignite"))
        .args(args)
        .env("IGNITE_ROOT", root)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let kib: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .unwrap_or_else(|| panic!("no peak RSS in {stderr}"))
        .parse()
        .unwrap();
    (out.status.success(), stderr, kib * 1024)
}

#[test]
fn a_huge_pax_header_is_refused_before_it_is_buffered() {
    ignite_testkit::require_root!("importing images");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let canary = dir.path().join("canary");
    std::fs::write(&canary, "precious").unwrap();
    // Claims 2 GiB; 768 MiB of it are there (under a megabyte compressed), so a reader
    // that buffers it whole grows by that much before it finds the stream short.
    let layer = ignite_testkit::images::pax_bomb_layer(2 << 30, 768 << 20);
    assert!(layer.blob.len() < 2 << 20, "{} bytes", layer.blob.len());
    let layout_dir = dir.path().join("layout");
    Image::new(vec![layer], &["sh"]).write_oci_layout(&layout_dir, "v1");
    let source = format!("oci:{}:v1", layout_dir.display());
    let (ok, stderr, peak) = run_measured(&root, &["image", "import", &source]);
    assert!(peak < 300 << 20, "peak RSS {peak} bytes: {stderr}");
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("its tar stream holds a PAX extended header of 2147483648 bytes at offset 0, more than the 1048576 bytes accepted"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&canary).unwrap(), b"precious");
    assert_eq!(stdout(ignite(&root).args(["images", "-q"])), "");
}

/// The root disks in a state root, by file name.
fn root_disks(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("rootfs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_pull_keeps_the_root_disk_that_vms_of_the_old_image_use() {
    ignite_testkit::require_root!("importing images");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let vmlinux = dir.path().join("vmlinux");
    std::fs::write(&vmlinux, ignite_testkit::images::fake_vmlinux("6.1.0-fake")).unwrap();
    ignite(&root)
        .args(["kernel", "import"])
        .arg(&vmlinux)
        .assert()
        .success();
    // v1 of the image, a VM made from it (created, not started).
    let layout_dir = dir.path().join("layout");
    let image = |content: &[u8]| {
        let _ = std::fs::remove_dir_all(&layout_dir);
        let image = Image::new(
            vec![
                LayerBuilder::new()
                    .file("hello", content, 0o644)
                    .finish(Compression::Gzip),
            ],
            &["sh"],
        );
        image.write_oci_layout(&layout_dir, "app");
        image.config_digest()
    };
    let v1 = image(b"version 1\n");
    let source = format!("oci:{}:app", layout_dir.display());
    ignite(&root)
        .args(["create", "--name", "old-vm", "--network", "none", &source])
        .assert()
        .success();
    let v1_disk = format!("{}.ext4", v1.trim_start_matches("sha256:"));
    assert_eq!(root_disks(&root), std::slice::from_ref(&v1_disk));

    // The tag moves to v2; a pull re-imports the name.
    let v2 = image(b"version 2\n");
    let v2_disk = format!("{}.ext4", v2.trim_start_matches("sha256:"));
    ignite(&root)
        .args(["image", "import", "--pull", &source])
        .assert()
        .success()
        .stderr(predicate::str::contains("keeping the root disk"));
    let mut both = vec![v1_disk.clone(), v2_disk.clone()];
    both.sort();
    assert_eq!(root_disks(&root), both, "the old VM's disk is kept");

    // A VM whose backing disk is gone does not "start": it says why.
    let kept = root.join("rootfs").join(&v1_disk);
    let aside = dir.path().join("aside.ext4");
    std::fs::rename(&kept, &aside).unwrap();
    ignite(&root)
        .args(["start", "old-vm"])
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "VM old-vm did not start: its root disk {}",
            root.display()
        )))
        .stderr(predicate::str::contains(format!(
            "is an overlay on {}, which is missing: remove the VM (ignite rm) and create it again",
            kept.display()
        )));
    std::fs::rename(&aside, &kept).unwrap();
    // Nor does one whose VMM exits at once (QEMU cannot load the stand-in kernel).
    let out = ignite(&root)
        .env("IGNITE_ACCEL", "tcg")
        .env("IGNITE_WARM_STARTS", "off")
        .args(["start", "old-vm"])
        .assert()
        .failure();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("VM old-vm did not start: its VMM exited at once"),
        "{stderr}"
    );

    // Removing the last VM that uses it removes it.
    ignite(&root).args(["rm", "old-vm"]).assert().success();
    assert_eq!(root_disks(&root), [v2_disk]);
}

/// `ignite` under a 2 GiB address-space limit and a 60 s timeout: a source that reads
/// forever fails instead of eating the machine.
fn ignite_limited(root: &Path) -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -v 2097152; exec \"$0\" \"$@\"")
        .arg(assert_cmd::cargo::cargo_bin!("ignite"))
        .env("IGNITE_ROOT", root)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .timeout(std::time::Duration::from_secs(60));
    cmd
}

#[test]
fn layout_files_that_are_links_to_devices_or_fifos_are_refused() {
    ignite_testkit::require_root!("importing images");
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    std::fs::write(&canary, "precious").unwrap();
    let image = Image::new(
        vec![
            LayerBuilder::new()
                .file("hello", b"hi\n", 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
    );
    let blob = |layout: &Path, digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let mkfifo = |p: &Path| {
        std::fs::remove_file(p).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(p)
                .status()
                .unwrap()
                .success()
        );
    };
    let link_to_zero = |p: &Path| {
        std::fs::remove_file(p).unwrap();
        std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    };
    type Plant<'a> = Box<dyn Fn(&Path) + 'a>;
    let cases: Vec<(&str, Plant, &str)> = vec![
        (
            "index-zero",
            Box::new(|l: &Path| link_to_zero(&l.join("index.json"))),
            "index.json (LAYOUT/index.json): it is a symlink, not a regular file",
        ),
        (
            "index-fifo",
            Box::new(|l: &Path| mkfifo(&l.join("index.json"))),
            "index.json (LAYOUT/index.json): it is a FIFO, not a regular file",
        ),
        (
            "manifest-zero",
            Box::new(|l: &Path| link_to_zero(&blob(l, &image.manifest_digest()))),
            "it is a symlink, not a regular file",
        ),
        (
            "layer-fifo",
            Box::new(|l: &Path| mkfifo(&blob(l, &image.layers[0].digest))),
            "it is a FIFO, not a regular file",
        ),
    ];
    for (name, plant, needle) in cases {
        let root = dir.path().join(format!("state-{name}"));
        let layout_dir = dir.path().join(format!("layout-{name}"));
        image.write_oci_layout(&layout_dir, "v1");
        plant(&layout_dir);
        let needle = needle.replace("LAYOUT", &layout_dir.display().to_string());
        ignite_limited(&root)
            .args([
                "image",
                "import",
                &format!("oci:{}:v1", layout_dir.display()),
            ])
            .assert()
            .failure()
            .stderr(predicate::str::contains(needle))
            .stderr(predicate::str::contains(
                "an image source's files must be plain files",
            ));
        assert_eq!(stdout(ignite(&root).args(["images", "-q"])), "");
    }
    assert_eq!(std::fs::read(&canary).unwrap(), b"precious");
}

/// An IPv4 address of this host that is not loopback (`hostname -I`).
fn non_loopback_ipv4() -> std::net::Ipv4Addr {
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::Ipv4Addr>().ok())
        .find(|a| !a.is_loopback())
        .expect("this test needs a non-loopback IPv4 address on the host (hostname -I)")
}

#[test]
fn registry_credentials_never_go_to_a_plain_http_token_realm_elsewhere() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    // The attacker's token service: a plain-HTTP listener on a non-loopback address,
    // recording every request it gets.
    let ip = non_loopback_ipv4();
    let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
    let realm = format!("http://{}/token", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let service = {
        let (seen, stop) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        conn.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                            .unwrap();
                        let mut buf = [0u8; 8192];
                        let n = conn.read(&mut buf).unwrap_or(0);
                        seen.lock()
                            .unwrap()
                            .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                        let _ = conn.write_all(
                            b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        })
    };
    let registry = ignite_testkit::registry::Registry::start_with_token_realm(
        "alice",
        "s3cret-password",
        &realm,
    );
    let config = tempfile::tempdir().unwrap();
    registry.write_docker_config(config.path());
    ignite(&root)
        .args(["image", "import", "--registry-config-dir"])
        .arg(config.path())
        .arg(format!("{}/app:v1", registry.host))
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "refusing its token service {realm:?}: it is plain HTTP, which would carry the credentials in clear text"
        )));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    service.join().unwrap();
    let seen = seen.lock().unwrap();
    assert!(
        seen.is_empty(),
        "the token service at {realm} was sent: {seen:?}"
    );
}

#[test]
fn a_docker_archive_with_a_huge_pax_header_is_refused_before_it_is_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    // A tar whose first header is a PAX header claiming 2 GiB, followed by 768 MiB of
    // zeros that take no disk (a sparse file).
    let archive = dir.path().join("image.tar");
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/bomb").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(2 << 30);
    h.set_cksum();
    std::fs::write(&archive, h.as_bytes()).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&archive)
        .unwrap()
        .set_len(768 << 20)
        .unwrap();
    let (ok, stderr, peak) = run_measured(
        &root,
        &[
            "image",
            "import",
            &format!("docker-archive:{}", archive.display()),
        ],
    );
    assert!(peak < 300 << 20, "peak RSS {peak} bytes: {stderr}");
    assert!(!ok, "{stderr}");
    assert!(
        stderr.contains("holds a PAX extended header of 2147483648 bytes at offset 0, more than the 1048576 bytes accepted"),
        "{stderr}"
    );
}

/// A small image pushed to `registry` as `app:v1`.
fn push_small_image(registry: &ignite_testkit::registry::Registry) -> String {
    let image = Image::new(
        vec![
            LayerBuilder::new()
                .file("hello", b"over https\n", 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
    );
    registry.push("app", "v1", &image)
}

/// `ignite image import` with registry certificates read from `certs_dir` only (never the
/// host's /etc/docker/certs.d).
fn import_with_certs(root: &Path, certs_dir: &Path, reference: &str) -> assert_cmd::assert::Assert {
    ignite(root)
        .env("IGNITE_REGISTRY_CERTS_DIR", certs_dir)
        .args(["image", "import", reference])
        .assert()
}

#[test]
fn an_https_registry_with_a_private_ca_is_trusted_once_its_ca_is_in_certs_d() {
    ignite_testkit::require_root!("importing images");
    ignite_testkit::require_program!("docker-registry", "docker-registry");
    ignite_testkit::require_program!("openssl", "openssl");
    let registry =
        ignite_testkit::registry::Registry::start_tls(None, ignite_testkit::registry::Tls::Server);
    let reference = push_small_image(&registry);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let certs = dir.path().join("certs.d");
    std::fs::create_dir(&certs).unwrap();

    // Without the CA: refused, saying which registry, why and where the CA goes (and not
    // retried over plain HTTP, although the registry is on loopback).
    let failed = import_with_certs(&root, &certs, &reference).failure();
    let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "registry {}: its TLS certificate is not trusted",
            registry.host
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "put the certificate of the CA that signed it in {}/{}/ca.crt",
            certs.display(),
            registry.host
        )),
        "{stderr}"
    );

    registry.install_certs(&certs, false);
    let id = stdout(
        ignite(&root)
            .env("IGNITE_REGISTRY_CERTS_DIR", &certs)
            .args(["image", "import", &reference]),
    );
    assert_eq!(id.trim().len(), 16, "{id}");

    // A broken CA file is named, with what it must hold.
    let bad = certs.join(&registry.host).join("broken.crt");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let failed = import_with_certs(&root, &certs, &format!("{}/app:v2", registry.host)).failure();
    let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!("{}: it holds no PEM certificate", bad.display())),
        "{stderr}"
    );
}

#[test]
fn a_registry_requiring_client_certificates_is_reached_with_the_cert_and_key_pair() {
    ignite_testkit::require_root!("importing images");
    ignite_testkit::require_program!("docker-registry", "docker-registry");
    ignite_testkit::require_program!("openssl", "openssl");
    let registry = ignite_testkit::registry::Registry::start_tls(
        None,
        ignite_testkit::registry::Tls::ClientCertRequired,
    );
    let reference = push_small_image(&registry);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let certs = dir.path().join("certs.d");

    // The CA alone: the registry refuses the connection, and the user is told why.
    registry.install_certs(&certs, false);
    let failed = import_with_certs(&root, &certs, &reference).failure();
    let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "registry {}: it refused the TLS connection",
            registry.host
        )),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("it probably requires a client certificate it trusts and none is configured"),
        "{stderr}"
    );

    // A key that is not the certificate's is refused before any connection.
    let host_dir = certs.join(&registry.host);
    std::fs::copy(
        &registry.tls_files().client_cert,
        host_dir.join("client.cert"),
    )
    .unwrap();
    let other_key = dir.path().join("other.key");
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&other_key)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::copy(&other_key, host_dir.join("client.key")).unwrap();
    let failed = import_with_certs(&root, &certs, &reference).failure();
    let stderr = String::from_utf8_lossy(&failed.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "{}: it cannot be used with the client certificate",
            host_dir.join("client.key").display()
        )),
        "{stderr}"
    );

    // The pair: imported.
    registry.install_certs(&certs, true);
    let id = stdout(
        ignite(&root)
            .env("IGNITE_REGISTRY_CERTS_DIR", &certs)
            .args(["image", "import", &reference]),
    );
    assert_eq!(id.trim().len(), 16, "{id}");
}

/// What `debugfs` says of every path of a root disk that an import must keep: type, mode,
/// owner, links, size, device numbers, symlink target, extended attributes, mtime and a
/// hash of the content.
fn disk_listing(disk: &Path) -> Vec<String> {
    use ignite_testkit::ext4;
    let mut out = Vec::new();
    for path in ext4::all_paths(disk) {
        let stat = ext4::stat(disk, &path).unwrap();
        let mut line = vec![path.clone()];
        for name in ["Type:", "Mode:", "User:", "Group:", "Links:", "Size:"] {
            line.push(format!(
                "{name}{}",
                ext4::field(&stat, name).unwrap_or_default()
            ));
        }
        for keep in ["Device major/minor number:", "Fast link dest:", "mtime:"] {
            if let Some(l) = stat.lines().find(|l| l.contains(keep)) {
                line.push(l.trim().to_string());
            }
        }
        let xattrs = std::process::Command::new("debugfs")
            .args(["-R", &format!("ea_list {path}")])
            .arg(disk)
            .output()
            .unwrap();
        line.push(String::from_utf8_lossy(&xattrs.stdout).trim().to_string());
        if stat.contains("Type: regular") {
            let content = ext4::read_file(disk, &path).unwrap();
            line.push(ignite_testkit::images::sha256(&content));
        }
        out.push(line.join(" "));
    }
    out
}

#[test]
fn root_and_rootless_imports_give_identical_disks() {
    ignite_testkit::require_root!("importing as root and as another user");
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    // Two layers: owners, a setuid file, a device node, a hardlink pair, a symlink, file
    // capabilities and a user xattr; then whiteouts, an opaque directory, a replaced file
    // and a whiteout of one name of a hardlinked file.
    let capability: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let base = LayerBuilder::new()
        .dir("etc", 0o755)
        .file_full(
            "etc/shadow",
            b"root:*:19000:0:99999:7:::\n",
            0o640,
            0,
            42,
            1_600_000_000,
            &[],
        )
        .file("etc/motd", b"deleted by the next layer\n", 0o644)
        .file("etc/hostname", b"base\n", 0o644)
        .dir("usr", 0o755)
        .dir("usr/bin", 0o755)
        .file_full(
            "usr/bin/sudo",
            b"#!/bin/sh\n",
            0o4755,
            0,
            0,
            1_600_000_001,
            &[],
        )
        .file_full(
            "usr/bin/ping",
            b"ping",
            0o755,
            0,
            0,
            1_600_000_002,
            &[("security.capability", capability), ("user.note", b"kept")],
        )
        .file_full(
            "usr/bin/both",
            b"two names\n",
            0o755,
            1000,
            1000,
            1_600_000_003,
            &[],
        )
        .hardlink("usr/bin/both-link", "usr/bin/both")
        .hardlink("usr/bin/both-gone", "usr/bin/both")
        .symlink("bin", "usr/bin")
        .dir("dev", 0o755)
        .char_device("dev/null", 1, 3)
        .dir("opt", 0o755)
        .dir("opt/app", 0o750)
        .file("opt/app/old", b"hidden by the opaque marker\n", 0o644)
        .finish(Compression::Gzip);
    let top = LayerBuilder::new()
        .whiteout("etc", "motd")
        .whiteout("usr/bin", "both-gone")
        .file("etc/hostname", b"top\n", 0o600)
        .opaque("opt/app")
        .file_full("opt/app/new", b"new\n", 0o644, 33, 33, 1_600_000_004, &[])
        .finish(Compression::Zstd);
    let image = Image::new(vec![base, top], &["sh"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let layout = dir.path().join("layout");
    image.write_oci_layout(&layout, "v1");
    let source = format!("oci:{}:v1", layout.display());

    let as_root = dir.path().join("root-state");
    ignite(&as_root)
        .args(["image", "import", &source])
        .assert()
        .success();
    // The same import by another user (nobody), in a state root of its own.
    let as_user = dir.path().join("user-state");
    std::fs::create_dir(&as_user).unwrap();
    std::os::unix::fs::chown(&as_user, Some(65534), Some(65534)).unwrap();
    let mut cmd = std::process::Command::new(cargo_bin!("ignite"));
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &as_user)
        .env("IGNITE_ROOT", &as_user)
        .env("NO_COLOR", "1")
        .args(["image", "import", &source])
        .uid(65534)
        .gid(65534);
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let disk = |state: &Path| {
        let disks = root_disks(state);
        assert_eq!(disks.len(), 1, "{disks:?}");
        state.join("rootfs").join(&disks[0])
    };
    let (root_disk, user_disk) = (disk(&as_root), disk(&as_user));
    assert!(ignite_testkit::ext4::fsck_clean(&root_disk));
    assert!(ignite_testkit::ext4::fsck_clean(&user_disk));
    let (root_listing, user_listing) = (disk_listing(&root_disk), disk_listing(&user_disk));
    assert_eq!(root_listing, user_listing);
    // And the disk is what the layers say.
    let find = |path: &str| {
        root_listing
            .iter()
            .find(|l| l.split(' ').next() == Some(path))
            .unwrap_or_else(|| panic!("{path} in {root_listing:#?}"))
            .clone()
    };
    let shadow = find("/etc/shadow");
    assert!(shadow.contains("Mode:0640 User:0 Group:42"), "{shadow}");
    assert!(find("/usr/bin/sudo").contains("Mode:04755"));
    let ping = find("/usr/bin/ping");
    assert!(
        ping.contains("security.capability") && ping.contains("user.note"),
        "{ping}"
    );
    let null = find("/dev/null");
    assert!(null.contains("Device major/minor number: 01:03"), "{null}");
    assert!(find("/usr/bin/both").contains("User:1000 Group:1000 Links:2"));
    assert!(find("/bin").contains("Fast link dest: \"usr/bin\""));
    assert!(find("/opt/app").contains("Mode:0750"));
    assert!(find("/opt/app/new").contains("User:33"));
    assert!(find("/etc/hostname").contains("Mode:0600"));
    let paths: Vec<&str> = root_listing
        .iter()
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    for gone in ["/etc/motd", "/usr/bin/both-gone", "/opt/app/old"] {
        assert!(!paths.contains(&gone), "{gone} in {paths:?}");
    }
    assert_eq!(
        ignite_testkit::ext4::read_file(&root_disk, "/etc/hostname").unwrap(),
        b"top\n"
    );
}
