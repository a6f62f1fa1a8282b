//! A real boot under QEMU (TCG): Debian's cloud kernel with the initramfs its import built,
//! holding the static ignite-init; the guest loads its virtio modules and sees its disk.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use ignite_oci::fetch::NoProgress;
use ignite_runtime::kernels::{
    BZIMAGE_FILE, INITRAMFS_FILE, KernelImportOptions, import_kernel, kernel_dir,
};
use ignite_store::Store;
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

#[test]
fn guest_loads_its_modules_and_sees_its_disk() {
    ignite_testkit::require_root("unpacking a kernel package");
    ignite_testkit::require_program("qemu-system-x86_64", "qemu-system-x86");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("state")).unwrap();
    let options = KernelImportOptions {
        init: Some(guest_init()),
        ..KernelImportOptions::default()
    };
    let kernel = import_kernel(
        &store,
        &kernel_deb().display().to_string(),
        &options,
        &NoProgress,
    )
    .unwrap()
    .kernel;
    let kdir = kernel_dir(&store, &kernel);
    let disk = dir.path().join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(16 << 20)
        .unwrap();
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
        .arg(kdir.join(BZIMAGE_FILE))
        .arg("-initrd")
        .arg(kdir.join(INITRAMFS_FILE))
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .arg("-drive")
        .arg(format!(
            "id=root,file={},format=raw,if=none",
            disk.display()
        ))
        .args(["-device", "virtio-blk-device,drive=root"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Bounded: a guest that does not power off within two minutes fails the test.
    let deadline = start + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let console = String::from_utf8_lossy(&output.stdout);
    eprintln!("guest booted and powered off in {:?}", start.elapsed());
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
    assert!(
        output.status.success(),
        "QEMU exited by the guest's power-off:\n{console}"
    );
}
