//! Kernel import from each kind of source, against Debian's real cloud kernel (downloaded by
//! scripts/setup.sh): the package itself, its bzImage with --modules, the extracted vmlinux,
//! and an Ignite-style kernel image in an OCI layout; the default kernel; rmk rules.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use ignite_api::{Vm, manifest};
use ignite_oci::fetch::NoProgress;
use ignite_runtime::kernels::{
    INITRAMFS_FILE, KernelImportOptions, MODULES_DIR, VMLINUX_FILE, default_kernel, import_kernel,
    is_default, kernel_dir,
};
use ignite_runtime::removal::remove_kernel;
use ignite_store::Store;
use ignite_testkit::images::{Compression, Image, LayerBuilder};
use ignite_testkit::kernel_deb;

/// The package unpacked with dpkg-deb, once.
fn unpacked() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Command::new("dpkg-deb")
                .arg("-x")
                .arg(kernel_deb())
                .arg(dir.path())
                .status()
                .unwrap()
                .success()
        );
        dir
    })
    .path()
}

fn vmlinuz() -> PathBuf {
    std::fs::read_dir(unpacked().join("boot"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        })
        .unwrap()
}

fn release() -> String {
    std::fs::read_dir(unpacked().join("lib/modules"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name()
        .to_string_lossy()
        .into_owned()
}

fn options(init: &Path) -> KernelImportOptions {
    KernelImportOptions {
        init: Some(init.to_path_buf()),
        ..KernelImportOptions::default()
    }
}

/// A stand-in for the guest init: any static x86-64 executable passes the init's checks
/// (busybox-static, which setup installs for the test images).
fn fake_init(dir: &Path) -> PathBuf {
    let p = dir.join("ignite-init");
    std::fs::copy("/bin/busybox", &p).expect("busybox-static is installed (scripts/setup.sh)");
    p
}

fn cpio_list(path: &Path) -> Vec<String> {
    let out = Command::new("cpio")
        .arg("-it")
        .arg("--quiet")
        .stdin(std::fs::File::open(path).unwrap())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn cpio_file(path: &Path, name: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new("cpio")
        .args(["-idm", "--quiet", name])
        .current_dir(dir.path())
        .stdin(std::fs::File::open(path).unwrap())
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read_to_string(dir.path().join(name)).unwrap()
}

fn check_kernel_files(store: &Store, kernel: &ignite_api::Kernel, with_modules: bool) {
    let dir = kernel_dir(store, kernel);
    assert_eq!(kernel.status.version, release());
    let vmlinux = std::fs::read(dir.join(VMLINUX_FILE)).unwrap();
    assert_eq!(&vmlinux[..4], b"\x7fELF");
    let initramfs = dir.join(INITRAMFS_FILE);
    let entries = cpio_list(&initramfs);
    assert!(entries.contains(&"init".to_string()), "{entries:?}");
    let modules = cpio_file(&initramfs, "etc/ignite/modules");
    if with_modules {
        assert!(
            dir.join(MODULES_DIR)
                .join(release())
                .join("kernel")
                .is_dir()
        );
        let order: Vec<&str> = modules.lines().collect();
        let pos = |m: &str| {
            order
                .iter()
                .position(|l| l.ends_with(&format!("/{m}.ko")))
                .unwrap_or_else(|| panic!("{m} in {order:?}"))
        };
        assert!(pos("virtio") < pos("virtio_blk") && pos("net_failover") < pos("virtio_net"));
        for line in &order {
            assert!(
                entries.contains(&format!("lib/modules/{}/{line}", release())),
                "{line} is in the archive"
            );
        }
    } else {
        assert!(modules.is_empty(), "{modules}");
    }
}

#[test]
fn imports_a_kernel_package() {
    ignite_testkit::require_root!("unpacking a kernel package");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let imported = import_kernel(
        &store,
        &kernel_deb().display().to_string(),
        &options(&fake_init(dir.path())),
        &NoProgress,
    )
    .unwrap();
    assert!(imported.fetched);
    check_kernel_files(&store, &imported.kernel, true);
    assert!(
        is_default(&imported.kernel),
        "the first kernel is the default"
    );
    // Again: instant, the same kernel.
    let again = import_kernel(
        &store,
        &kernel_deb().display().to_string(),
        &options(&fake_init(dir.path())),
        &NoProgress,
    )
    .unwrap();
    assert!(!again.fetched);
    assert_eq!(again.kernel.metadata.uid, imported.kernel.metadata.uid);
}

#[test]
fn imports_a_bzimage_or_vmlinux_file_with_modules() {
    ignite_testkit::require_root!("unpacking");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let init = fake_init(dir.path());
    let mut with_modules = options(&init);
    with_modules.modules = Some(unpacked().join("lib/modules"));
    let bz = import_kernel(
        &store,
        &vmlinuz().display().to_string(),
        &with_modules,
        &NoProgress,
    )
    .unwrap()
    .kernel;
    check_kernel_files(&store, &bz, true);

    // The extracted ELF, without modules, made the default on request.
    let elf = dir.path().join("vmlinux");
    std::fs::copy(kernel_dir(&store, &bz).join(VMLINUX_FILE), &elf).unwrap();
    let mut make_default = options(&init);
    make_default.default = true;
    let plain = import_kernel(
        &store,
        &elf.display().to_string(),
        &make_default,
        &NoProgress,
    )
    .unwrap()
    .kernel;
    check_kernel_files(&store, &plain, false);
    assert!(is_default(&plain));
    let bz = store
        .kernels()
        .get(bz.metadata.uid.as_ref().unwrap())
        .unwrap();
    assert!(!is_default(&bz), "only one kernel is the default");
    assert_eq!(
        default_kernel(&store).unwrap().unwrap().metadata.uid,
        plain.metadata.uid
    );

    // Not a kernel: a clear error, nothing registered.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0u8; 4096]).unwrap();
    let err = import_kernel(
        &store,
        &junk.display().to_string(),
        &options(&init),
        &NoProgress,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a usable kernel"), "{err}");
    assert_eq!(store.kernels().list().unwrap().objects.len(), 2);
}

#[test]
fn imports_an_ignite_style_kernel_image() {
    ignite_testkit::require_root!("unpacking");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let rel = release();
    let modules = unpacked().join("lib/modules").join(&rel);
    let mut layer = LayerBuilder::new()
        .dir("boot", 0o755)
        .file(
            &format!("boot/vmlinux-{rel}"),
            &std::fs::read(vmlinuz()).unwrap(),
            0o644,
        )
        .symlink("boot/vmlinux", &format!("vmlinux-{rel}"))
        .dir("lib", 0o755)
        .dir("lib/modules", 0o755)
        .dir(&format!("lib/modules/{rel}"), 0o755);
    for m in [
        "kernel/drivers/virtio/virtio.ko",
        "kernel/drivers/virtio/virtio_ring.ko",
        "kernel/drivers/block/virtio_blk.ko",
    ] {
        let mut path = format!("lib/modules/{rel}");
        for part in Path::new(m).parent().unwrap().components() {
            path = format!("{path}/{}", part.as_os_str().to_string_lossy());
            layer = layer.dir(&path, 0o755);
        }
        layer = layer.file(
            &format!("lib/modules/{rel}/{m}"),
            &std::fs::read(modules.join(m)).unwrap(),
            0o644,
        );
    }
    let image = Image::new(vec![layer.finish(Compression::Gzip)], &["sh"]);
    let layout = dir.path().join("kernel-layout");
    image.write_oci_layout(&layout, rel.as_str());
    let source = format!("oci:{}:{rel}", layout.display());
    let kernel = import_kernel(
        &store,
        &source,
        &options(&fake_init(dir.path())),
        &NoProgress,
    )
    .unwrap()
    .kernel;
    assert_eq!(kernel.status.version, rel);
    let order = cpio_file(
        &kernel_dir(&store, &kernel).join(INITRAMFS_FILE),
        "etc/ignite/modules",
    );
    assert!(order.contains("virtio_blk.ko"), "{order}");

    // An image without /boot/vmlinux is not a kernel image.
    let not_kernel = Image::new(
        vec![
            LayerBuilder::new()
                .file("hello", b"hi", 0o644)
                .finish(Compression::Gzip),
        ],
        &["sh"],
    );
    let layout = dir.path().join("not-kernel");
    not_kernel.write_oci_layout(&layout, "x");
    let err = import_kernel(
        &store,
        &format!("oci:{}:x", layout.display()),
        &options(&fake_init(dir.path())),
        &NoProgress,
    )
    .unwrap_err();
    assert!(err.to_string().contains("has no /boot/vmlinux"), "{err}");
}

#[test]
fn rmk_refuses_kernels_in_use() {
    ignite_testkit::require_root!("unpacking");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let kernel = import_kernel(
        &store,
        &vmlinuz().display().to_string(),
        &options(&fake_init(dir.path())),
        &NoProgress,
    )
    .unwrap()
    .kernel;
    // A VM that names no kernel uses the default one.
    let vm: Vm = manifest::decode("apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: web\nspec:\n  image: {oci: alpine}\n").unwrap();
    store.vms().create(vm).unwrap();
    let err = remove_kernel(&store, &kernel.metadata.name, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("is used by web"), "{err}");
    let (_, removed) = remove_kernel(&store, &kernel.metadata.name, true).unwrap();
    assert_eq!(removed.len(), 1);
    assert!(store.vms().list().unwrap().objects.is_empty());
    assert!(!kernel_dir(&store, &kernel).exists());
}
