//! `ignite kernel import|ls|rm`, `ignite kernels` and `ignite rmk` through the binary.

use std::path::Path;

use assert_cmd::cargo::cargo_bin;
use ignite_testkit::kernel_deb;
use predicates::prelude::*;

/// `ignite` with its state in `root`, plain logs and no colour.
fn ignite(root: &Path) -> assert_cmd::Command {
    ignite_testkit::ignite(cargo_bin!("ignite"), root)
}

#[test]
fn import_list_and_remove_a_kernel() {
    ignite_testkit::require_root!("unpacking a kernel package");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let out = ignite(&root)
        .args(["kernel", "import"])
        .arg(kernel_deb())
        .assert()
        .success();
    let uid = String::from_utf8_lossy(&out.get_output().stdout)
        .trim()
        .to_string();
    assert_eq!(uid.len(), 16);
    let table = String::from_utf8(
        ignite(&root)
            .arg("kernels")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert!(table.starts_with("KERNEL ID\t"), "{table}");
    assert!(
        table.contains("cloud-amd64 (default)") && table.contains(&uid),
        "{table}"
    );
    ignite(&root)
        .args(["inspect", "kernel", &uid, "-t", "{{.Status.Version}}"])
        .assert()
        .success()
        .stdout(predicate::str::contains("cloud-amd64"));
    ignite(&root).args(["rmk", &uid]).assert().success();
    ignite(&root)
        .args(["kernel", "ls", "-q"])
        .assert()
        .success()
        .stdout("");
    ignite(&root)
        .args(["kernel", "import", "/nonexistent/vmlinuz"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("/nonexistent/vmlinuz"));
}

/// A file outside any state root whose content must survive an attack.
struct Canary {
    dir: tempfile::TempDir,
}

impl Canary {
    const CONTENT: &'static [u8] = b"precious host data\n";

    fn new() -> Canary {
        let dir = tempfile::Builder::new()
            .prefix("ignite-canary-")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(dir.path().join("victim"), Self::CONTENT).unwrap();
        Canary { dir }
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    fn assert_intact(&self) {
        self.assert_intact_with(&[]);
    }

    /// Intact, with `others` (which the test put there) beside the victim.
    fn assert_intact_with(&self, others: &[&str]) {
        assert_eq!(
            std::fs::read(self.path().join("victim")).unwrap(),
            Self::CONTENT,
            "the host file outside the state root was changed"
        );
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut expected: Vec<String> = others.iter().map(|s| s.to_string()).collect();
        expected.push("victim".into());
        expected.sort();
        assert_eq!(names, expected, "files appeared outside the state root");
    }
}

/// An Ignite-style kernel image in an OCI layout (tag `kernel`): /boot/vmlinux with the
/// given release in its banner, plus what `extra` adds under /lib/modules.
fn kernel_layout(
    dir: &std::path::Path,
    release: &str,
    extra: impl FnOnce(ignite_testkit::images::LayerBuilder) -> ignite_testkit::images::LayerBuilder,
) -> String {
    use ignite_testkit::images::{Compression, Image, LayerBuilder, fake_vmlinux};
    let layer = LayerBuilder::new()
        .dir("boot", 0o755)
        .file("boot/vmlinux", &fake_vmlinux(release), 0o644)
        .dir("lib", 0o755)
        .dir("lib/modules", 0o755);
    let image = Image::new(vec![extra(layer).finish(Compression::Gzip)], &["sh"]);
    let layout = dir.join("kernel-layout");
    image.write_oci_layout(&layout, "kernel");
    format!("oci:{}:kernel", layout.display())
}

#[test]
fn a_kernel_release_that_climbs_out_of_the_state_root_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let canary = Canary::new();
    // `1/../../..` climbs from modules/<release> (both the image's and the kernel's copy)
    // to `/`, then down to the canary: source and destination are the host directory.
    let release = format!("1{}{}", "/..".repeat(20), canary.path().display());
    let source = kernel_layout(dir.path(), &release, |l| l.dir("lib/modules/1", 0o755));
    ignite(&root)
        .args(["kernel", "import", &source])
        .assert()
        .failure()
        .stderr(predicate::str::contains(format!(
            "the kernel's release {release:?} (from its `Linux version` banner) holds a character other than letters, digits and . _ + ~ -"
        )))
        .stderr(predicate::str::contains("refusing this kernel image"));
    canary.assert_intact();
    ignite(&root)
        .args(["kernel", "ls", "-q"])
        .assert()
        .success()
        .stdout("");
}

/// Every byte under `dir`, for checking that a secret went nowhere.
fn any_file_contains(dir: &std::path::Path, needle: &[u8]) -> Option<std::path::PathBuf> {
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            if let Some(p) = any_file_contains(&path, needle) {
                return Some(p);
            }
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                return Some(path);
            }
        }
    }
    None
}

#[test]
fn kernel_module_symlinks_to_host_directories_are_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let canary = Canary::new();
    let secret = format!("TOP-SECRET-{}", std::process::id());
    let host = canary.path().join("host-modules");
    let rel = "6.1.0-linktest";
    std::fs::create_dir_all(host.join(rel).join("kernel")).unwrap();
    for d in [host.clone(), host.join(rel)] {
        std::fs::write(d.join("secret"), &secret).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d.join("secret"), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    // lib/modules/<release> -> a host directory; and lib/modules/<release> as the only
    // entry but a link to the host's modules root.
    let cases = [(host.join(rel), "a"), (host.clone(), "b")];
    for (target, case) in cases {
        let root = dir.path().join(format!("state-{case}"));
        let image_dir = dir.path().join(format!("image-{case}"));
        std::fs::create_dir(&image_dir).unwrap();
        let link = target.display().to_string();
        let source = kernel_layout(&image_dir, rel, |l| {
            l.symlink(&format!("lib/modules/{rel}"), &link)
        });
        let out = ignite(&root)
            .args(["kernel", "import", &source])
            .assert()
            .success();
        let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
        assert!(
            stderr.contains(&format!(
                "ignoring lib/modules/{rel} -> {link}: it is a symlink that leads to no directory inside the kernel image"
            )),
            "{stderr}"
        );
        for disk in glob_ext4(&root) {
            assert!(
                ignite_testkit::ext4::read_file(&disk, "/secret").is_none()
                    && ignite_testkit::ext4::read_file(&disk, "/kernel").is_none(),
                "{} holds the host's files",
                disk.display()
            );
        }
        assert_eq!(any_file_contains(&root, secret.as_bytes()), None);
    }
    canary.assert_intact_with(&["host-modules"]);
}

fn glob_ext4(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            out.extend(glob_ext4(&path));
        } else if path.extension().is_some_and(|e| e == "ext4") {
            out.push(path);
        }
    }
    out
}

/// Makes a file immutable (`chattr +i`) until dropped: renaming it away fails, even for
/// root, which is how a re-import is made to fail halfway.
struct Immutable(std::path::PathBuf);

impl Immutable {
    fn set(path: std::path::PathBuf) -> Immutable {
        ignite_testkit::require_program("chattr", "e2fsprogs");
        let ok = std::process::Command::new("chattr")
            .arg("+i")
            .arg(&path)
            .status()
            .unwrap()
            .success();
        assert!(ok, "chattr +i {}", path.display());
        Immutable(path)
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&self.0)
            .status();
    }
}

#[test]
fn a_failed_kernel_re_import_leaves_the_previous_kernel_intact() {
    ignite_testkit::require_root!("importing kernels");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let image_dir = dir.path().join("image");
    let write = |release: &str| {
        let _ = std::fs::remove_dir_all(&image_dir);
        std::fs::create_dir(&image_dir).unwrap();
        kernel_layout(&image_dir, release, |l| l)
    };
    let source = write("6.1.0-one");
    let uid = String::from_utf8(
        ignite(&root)
            .args(["kernel", "import", &source])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    let kdir = root.join("kernels").join(uid.trim());
    let files = ["vmlinux", "initramfs.cpio"];
    let before: Vec<Vec<u8>> = files
        .iter()
        .map(|f| std::fs::read(kdir.join(f)).unwrap())
        .collect();
    let version = || {
        String::from_utf8(
            ignite(&root)
                .args(["inspect", "kernel", uid.trim(), "-t", "{{.Status.Version}}"])
                .assert()
                .success()
                .get_output()
                .stdout
                .clone(),
        )
        .unwrap()
    };
    let intact = || {
        for (f, old) in files.iter().zip(&before) {
            assert_eq!(&std::fs::read(kdir.join(f)).unwrap(), old, "{f} changed");
        }
        assert!(version().contains("6.1.0-one"));
    };

    // New content that cannot be installed: the kernel's initramfs cannot be replaced.
    write("6.1.0-two");
    let out = {
        let _pinned = Immutable::set(kdir.join("initramfs.cpio"));
        ignite(&root)
            .args(["kernel", "import", "--pull", &source])
            .assert()
            .failure()
    };
    intact();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains(&format!(
            "cannot move aside the previous {}",
            kdir.join("initramfs.cpio").display()
        )),
        "{stderr}"
    );
    // New content that is refused: nothing of it is installed.
    write("6.1/../../x");
    ignite(&root)
        .args(["kernel", "import", "--pull", &source])
        .assert()
        .failure()
        .stderr(predicate::str::contains("refusing this kernel image"));
    intact();
    // And a good re-import replaces it.
    write("6.1.0-three");
    ignite(&root)
        .args(["kernel", "import", "--pull", &source])
        .assert()
        .success();
    assert!(version().contains("6.1.0-three"));
    assert_ne!(std::fs::read(kdir.join("vmlinux")).unwrap(), before[0]);
}

#[test]
fn a_huge_sparse_module_is_refused_before_it_is_copied_or_read() {
    ignite_testkit::require_program!("/usr/bin/time", "time");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    let rel = "6.1.0-bigmodule";
    let base = format!("lib/modules/{rel}");
    let source = kernel_layout(dir.path(), rel, |l| {
        let mut l = l.dir(&base, 0o755);
        for d in ["kernel", "kernel/drivers", "kernel/drivers/block"] {
            l = l.dir(&format!("{base}/{d}"), 0o755);
        }
        // 1 GiB, stored as 512 bytes: within the unpacking caps, far beyond any module.
        l.sparse_file(
            &format!("{base}/kernel/drivers/block/virtio_blk.ko"),
            1 << 30,
            &[1u8; 512],
        )
    });
    let out = std::process::Command::new("/usr/bin/time")
        .arg("-v")
        .arg(assert_cmd::cargo::cargo_bin!("ignite"))
        .args(["kernel", "import", &source])
        .env("IGNITE_ROOT", &root)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let peak_kib: u64 = stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .unwrap()
        .parse()
        .unwrap();
    assert!(peak_kib < 300 << 10, "peak RSS {peak_kib} KiB: {stderr}");
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("virtio_blk.ko is 1073741824 bytes: more than a kernel's modules hold (at most 268435456 bytes a file"),
        "{stderr}"
    );
    assert!(stderr.contains("refusing this kernel image"), "{stderr}");
    ignite(&root)
        .args(["kernel", "ls", "-q"])
        .assert()
        .success()
        .stdout("");
}

/// A dynamically linked ignite-init (what `cargo build --workspace` leaves beside the
/// `ignite` binary) is refused by name with how to build the static one, and never shadows
/// the installed static init in the search order.
#[test]
fn a_dynamically_linked_guest_init_is_refused_and_passed_over() {
    ignite_testkit::require_root!("unpacking a kernel package");
    let dynamic = assert_cmd::cargo::cargo_bin("ignite-init");
    assert!(
        dynamic.is_file(),
        "no {}: cargo build --workspace --bins builds it",
        dynamic.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    ignite(&root)
        .env("IGNITE_INIT", &dynamic)
        .args(["kernel", "import"])
        .arg(kernel_deb())
        .assert()
        .failure()
        .stderr(predicate::str::contains("is dynamically linked"))
        .stderr(predicate::str::contains(dynamic.display().to_string()))
        .stderr(predicate::str::contains("crt-static"));
    ignite(&root)
        .args(["kernel", "ls", "-q"])
        .assert()
        .success()
        .stdout("");

    // An installation whose bin/ also holds a dynamic ignite-init: the static one in
    // lib/ignite wins. Hard links, so that the binary finds itself in bin/.
    let prefix = dir.path().join("prefix");
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::create_dir_all(prefix.join("lib/ignite")).unwrap();
    let binary = prefix.join("bin/ignite");
    std::fs::copy(assert_cmd::cargo::cargo_bin("ignite"), &binary).unwrap();
    std::fs::copy(&dynamic, prefix.join("bin/ignite-init")).unwrap();
    let static_init = ignite_testkit::guest_init();
    std::fs::copy(&static_init, prefix.join("lib/ignite/ignite-init")).unwrap();
    let out = std::process::Command::new(&binary)
        .env("IGNITE_ROOT", &root)
        .env_remove("IGNITE_INIT")
        .args(["kernel", "import"])
        .arg(kernel_deb())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let carries = |uid: &str, init: &std::path::Path| {
        let initramfs =
            std::fs::read(root.join("kernels").join(uid).join("initramfs.cpio")).unwrap();
        let wanted = std::fs::read(init).unwrap();
        initramfs.windows(4096).any(|w| w == &wanted[4096..8192])
    };
    assert!(
        carries(&uid, &static_init),
        "the kernel's initramfs does not carry the static init"
    );
    ignite(&root).args(["rmk", &uid]).assert().success();

    // Only the dynamic one beside the binary: passed over with a warning, never used.
    std::fs::remove_dir_all(prefix.join("lib")).unwrap();
    let out = std::process::Command::new(&binary)
        .env("IGNITE_ROOT", &root)
        .env_remove("IGNITE_INIT")
        .args(["kernel", "import"])
        .arg(kernel_deb())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("passing over") && stderr.contains("dynamically linked"),
        "{stderr}"
    );
    if out.status.success() {
        let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(!carries(&uid, &dynamic), "the dynamic init was used");
    }
}
