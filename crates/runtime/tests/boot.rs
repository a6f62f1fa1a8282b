//! Real boots under QEMU (TCG): Debian's cloud kernel with the initramfs its import built,
//! holding the static ignite-init. The guest loads its virtio modules, finds its disk and
//! hands over to the image's own init.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ignite_oci::fetch::NoProgress;
use ignite_runtime::images::{ImportOptions, import_image, rootfs_path};
use ignite_runtime::kernels::{
    BZIMAGE_FILE, INITRAMFS_FILE, KernelImportOptions, import_kernel, kernel_dir,
};
use ignite_store::Store;
use ignite_testkit::images::{Compression, Image, LayerBuilder};
use ignite_testkit::kernel_deb;

/// The static guest init that scripts/test.sh builds before the tests.
fn guest_init() -> PathBuf {
    if let Some(p) = std::env::var_os("IGNITE_INIT") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/x86_64-unknown-linux-gnu/release/ignite-init");
    assert!(
        p.is_file(),
        "no static ignite-init at {}: run scripts/test.sh (it builds it), or set IGNITE_INIT",
        p.display()
    );
    p
}

fn kernel(store: &Store) -> PathBuf {
    let options = KernelImportOptions {
        init: Some(guest_init()),
        ..KernelImportOptions::default()
    };
    let kernel = import_kernel(
        store,
        &kernel_deb().display().to_string(),
        &options,
        &NoProgress,
    )
    .unwrap()
    .kernel;
    kernel_dir(store, &kernel)
}

/// Boots the kernel with `disk` as its first virtio disk (changes are not kept) and returns
/// the console and whether the guest powered off by itself, within two minutes.
fn boot(kernel: &Path, disk: &Path) -> (String, bool) {
    ignite_testkit::require_program("qemu-system-x86_64", "qemu-system-x86");
    let start = Instant::now();
    let mut child = Command::new("qemu-system-x86_64")
        // Under TCG the guest calibrates its timers against a clock that drifts with host load,
        // and hangs most of the time here; counting instructions makes the clock steady.
        .args([
            "-M",
            "microvm,acpi=on",
            "-accel",
            "tcg",
            "-icount",
            "shift=auto",
            "-cpu",
            "max",
            "-m",
            "256",
            "-smp",
            "1",
        ])
        .args(["-no-user-config", "-nographic", "-no-reboot"])
        .arg("-kernel")
        .arg(kernel.join(BZIMAGE_FILE))
        .arg("-initrd")
        .arg(kernel.join(INITRAMFS_FILE))
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-drive")
        .arg(format!(
            "id=root,file={},format=raw,if=none,snapshot=on",
            disk.display()
        ))
        .args(["-device", "virtio-blk-device,drive=root"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = start + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    eprintln!("guest ran for {:?}", start.elapsed());
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        output.status.success(),
    )
}

#[test]
fn guest_loads_its_modules_and_sees_its_disk() {
    ignite_testkit::require_root("unpacking a kernel package");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let kdir = kernel(&store);
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
    let (console, powered_off) = boot(&kdir, &blank);
    assert!(
        console.contains("ignite-init: v"),
        "the init ran:\n{console}"
    );
    let loaded = console
        .lines()
        .find_map(|l| {
            l.strip_prefix("ignite-init: loaded ")
                .and_then(|r| r.split(' ').next())
                .and_then(|n| n.parse::<u32>().ok())
        })
        .unwrap_or_else(|| panic!("no module report:\n{console}"));
    assert!(
        loaded >= 10,
        "the guest loaded {loaded} modules:\n{console}"
    );
    assert!(!console.contains("cannot load module"), "{console}");
    assert!(
        console.contains("block devices: vda"),
        "the virtio disk appeared:\n{console}"
    );
    // A blank disk is no root filesystem: one clear line, then power-off.
    assert!(
        console.contains("ignite-init: cannot mount the root disk /dev/vda"),
        "{console}"
    );
    assert!(
        powered_off,
        "QEMU exited by the guest's power-off:\n{console}"
    );
}

#[test]
fn vm_mode_hands_over_to_the_images_init() {
    ignite_testkit::require_root("importing images");
    ignite_testkit::require_program("busybox", "busybox-static");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let kdir = kernel(&store);
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let layer = LayerBuilder::new()
        .dir("bin", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .dir("sbin", 0o755)
        .file(
            "sbin/init",
            b"#!/bin/sh\necho \"hello from the image's init, pid $$, root $(busybox cat /proc/mounts | busybox grep ' / ')\"\nbusybox poweroff -f\n",
            0o755,
        )
        .dir("proc", 0o755)
        .dir("dev", 0o755)
        .dir("sys", 0o755)
        .finish(Compression::Gzip);
    let layout = dir.path().join("layout");
    Image::new(vec![layer], &["/sbin/init"]).write_oci_layout(&layout, "busybox");
    let image = import_image(
        &store,
        &format!("oci:{}:busybox", layout.display()),
        &ImportOptions::default(),
        &NoProgress,
    )
    .unwrap()
    .image;
    let disk = rootfs_path(&store, image.status.image_id.as_ref().unwrap());
    let (console, powered_off) = boot(&kdir, &disk);
    assert!(
        console.contains("ignite-init: starting the image's /sbin/init"),
        "{console}"
    );
    assert!(
        console.contains("hello from the image's init, pid 1, root /dev/vda / ext4"),
        "{console}"
    );
    assert!(powered_off, "{console}");
}
