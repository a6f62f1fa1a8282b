//! Against Debian's real cloud kernel (downloaded by scripts/setup.sh): vmlinux extraction
//! from its bzImage and from the same kernel recompressed in every format a bzImage uses,
//! version detection, the module closure a guest needs, and initramfs archives.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use ignite_kernel::bzimage::{Compression, extract_vmlinux, payload};
use ignite_kernel::cpio::CpioWriter;
use ignite_kernel::modules::{GUEST_MODULES, ModuleIndex, modinfo};
use ignite_kernel::version::kernel_release;

/// The unpacked kernel package, once per test run.
fn debian_kernel() -> &'static (PathBuf, tempfile::TempDir) {
    static KERNEL: OnceLock<(PathBuf, tempfile::TempDir)> = OnceLock::new();
    KERNEL.get_or_init(|| {
        let deb = ignite_testkit::kernel_deb();
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("dpkg-deb")
            .arg("-x")
            .arg(&deb)
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "dpkg-deb -x {}", deb.display());
        (deb, dir)
    })
}

fn boot_file(prefix: &str) -> PathBuf {
    let boot = debian_kernel().1.path().join("boot");
    std::fs::read_dir(&boot)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix}* in {}", boot.display()))
}

fn release_dir() -> PathBuf {
    let modules = debian_kernel().1.path().join("lib/modules");
    std::fs::read_dir(&modules)
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path()
}

fn vmlinux() -> &'static Vec<u8> {
    static VMLINUX: OnceLock<Vec<u8>> = OnceLock::new();
    VMLINUX.get_or_init(|| extract_vmlinux(&std::fs::read(boot_file("vmlinuz-")).unwrap()).unwrap())
}

#[test]
fn extracts_debians_lz4_kernel_and_reads_its_release() {
    ignite_testkit::require_kernel_deb!();
    let bz = std::fs::read(boot_file("vmlinuz-")).unwrap();
    assert_eq!(
        payload(&bz).unwrap().1,
        Compression::Lz4,
        "Debian 12's cloud kernel is LZ4-compressed"
    );
    let elf = vmlinux();
    assert_eq!(&elf[..4], b"\x7fELF");
    assert!(
        elf.len() > bz.len(),
        "the vmlinux is larger than its compressed form"
    );
    let release = kernel_release(elf).unwrap();
    assert_eq!(
        release,
        release_dir().file_name().unwrap().to_string_lossy()
    );
    // An ELF given as is comes back unchanged.
    assert_eq!(&extract_vmlinux(elf).unwrap(), elf);
}

/// Builds a bzImage around `vmlinux` compressed by `tool`, reusing Debian's setup code.
fn recompressed_bzimage(tool: &[&str]) -> Vec<u8> {
    let original = std::fs::read(boot_file("vmlinuz-")).unwrap();
    let setup_sects = match original[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let setup_len = (setup_sects + 1) * 512;
    let mut child = Command::new(tool[0])
        .args(&tool[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} is missing ({e}): scripts/setup.sh installs it", tool[0]));
    let mut stdin = child.stdin.take().unwrap();
    let input = vmlinux().clone();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&input).unwrap();
    });
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(output.status.success(), "{tool:?}");
    let mut payload = output.stdout;
    payload.extend_from_slice(&(vmlinux().len() as u32).to_le_bytes());
    let mut image = original[..setup_len].to_vec();
    image[0x248..0x24c].copy_from_slice(&0u32.to_le_bytes());
    image[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    image.extend_from_slice(&payload);
    image
}

#[test]
fn extracts_every_bzimage_compression() {
    ignite_testkit::require_kernel_deb!();
    ignite_testkit::require_program!("xz", "xz-utils");
    ignite_testkit::require_program!("lzma", "xz-utils");
    ignite_testkit::require_program!("zstd", "zstd");
    ignite_testkit::require_program!("lz4", "lz4");
    ignite_testkit::require_program!("bzip2", "bzip2");
    let cases: &[(&[&str], Compression)] = &[
        (&["gzip", "-1", "-c"], Compression::Gzip),
        (
            &[
                "xz",
                "-1",
                "-c",
                "--check=crc32",
                "--x86",
                "--lzma2=preset=1",
            ],
            Compression::Xz,
        ),
        (&["zstd", "-1", "-c", "-q"], Compression::Zstd),
        (&["lz4", "-l", "-1", "-c", "-q"], Compression::Lz4),
        (&["bzip2", "-1", "-c"], Compression::Bzip2),
        (&["lzma", "-1", "-c"], Compression::Lzma),
    ];
    for (tool, compression) in cases {
        let image = recompressed_bzimage(tool);
        assert_eq!(payload(&image).unwrap().1, *compression);
        let extracted = extract_vmlinux(&image).unwrap_or_else(|e| panic!("{compression:?}: {e}"));
        assert!(
            &extracted == vmlinux(),
            "{compression:?} gives back the same vmlinux"
        );
    }
    // LZO is recognised and refused with a way out.
    let mut lzo = recompressed_bzimage(&["gzip", "-1", "-c"]);
    let setup_len = (lzo[0x1f1] as usize + 1) * 512;
    lzo[setup_len..setup_len + 4].copy_from_slice(&[0x89, b'L', b'Z', b'O']);
    let err = extract_vmlinux(&lzo).unwrap_err().to_string();
    assert!(
        err.contains("LZO") && err.contains("uncompressed vmlinux"),
        "{err}"
    );
}

#[test]
fn guest_modules_close_over_their_dependencies() {
    ignite_testkit::require_kernel_deb!();
    let index = ModuleIndex::scan(&release_dir()).unwrap();
    assert!(index.len() > 1000, "{} modules", index.len());
    let closure = index.closure(GUEST_MODULES).unwrap();
    assert!(closure.missing.is_empty(), "{:?}", closure.missing);
    let order = &closure.load_order;
    let at = |m: &str| {
        order
            .iter()
            .position(|x| x == m)
            .unwrap_or_else(|| panic!("{m} not in {order:?}"))
    };
    assert!(at("virtio") < at("virtio_blk") && at("virtio") < at("virtio_mmio"));
    assert!(at("failover") < at("net_failover") && at("net_failover") < at("virtio_net"));
    assert!(at("vsock") < at("vmw_vsock_virtio_transport_common"));
    assert!(at("vmw_vsock_virtio_transport_common") < at("vmw_vsock_virtio_transport"));
    // Every module appears once and every dependency comes first.
    for (i, m) in order.iter().enumerate() {
        let info =
            modinfo(&std::fs::read(release_dir().join(index.path(m).unwrap())).unwrap()).unwrap();
        for (k, v) in info {
            if k == "depends" {
                for dep in v.split(',').filter(|d| !d.is_empty()) {
                    assert!(
                        order[..i].contains(&dep.replace('-', "_")),
                        "{dep} must come before {m}"
                    );
                }
            }
        }
    }
    // ext4 and serial are built in; a module that does not exist is reported.
    let closure = index.closure(&["ext4", "no_such_module"]).unwrap();
    assert_eq!(closure.missing, ["no_such_module"]);
}

#[test]
fn initramfs_archives_read_back_with_cpio() {
    ignite_testkit::require_program!("cpio", "cpio");
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("initrd.cpio");
    let mut w = CpioWriter::new(std::fs::File::create(&archive).unwrap());
    w.dir("lib", 0o755).unwrap();
    w.dir("lib/modules", 0o755).unwrap();
    w.file("init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
    w.file("lib/modules/odd-size.ko", 0o644, &[7u8; 1001])
        .unwrap();
    w.symlink("sbin", "lib").unwrap();
    w.finish().unwrap();
    assert_eq!(std::fs::metadata(&archive).unwrap().len() % 512, 0);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let status = Command::new("cpio")
        .args(["-idm", "--quiet"])
        .current_dir(&out)
        .stdin(std::fs::File::open(&archive).unwrap())
        .status()
        .unwrap_or_else(|e| panic!("cpio is missing ({e}): scripts/setup.sh installs it"));
    assert!(status.success());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::read(out.join("init")).unwrap(),
        b"#!/bin/sh\necho hi\n"
    );
    assert_eq!(
        std::fs::metadata(out.join("init"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );
    assert_eq!(
        std::fs::read(out.join("lib/modules/odd-size.ko")).unwrap(),
        vec![7u8; 1001]
    );
    assert_eq!(
        std::fs::read_link(out.join("sbin")).unwrap(),
        Path::new("lib")
    );
}
