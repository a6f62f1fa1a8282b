//! A VM's own root disk, made from its image's shared ext4 in the format its VMM reads:
//! a qcow2 overlay backed by the ext4 (instant whatever the size, blocks shared until
//! written), or a raw copy (a reflink where the filesystem has them, sparse otherwise).

use std::io::Read;
use std::path::{Path, PathBuf};

use ignite_host_tools as host_tools;

use crate::DiskError;

/// How a disk's blocks are laid out in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    /// Every format, for readers that look for a VM's root disk whatever its VMM.
    pub const ALL: [DiskFormat; 2] = [DiskFormat::Qcow2, DiskFormat::Raw];

    /// The file name of a VM's root disk in this format, inside the VM's directory.
    pub fn root_disk_file(self) -> &'static str {
        match self {
            DiskFormat::Raw => "root.raw",
            DiskFormat::Qcow2 => "root.qcow2",
        }
    }
}

/// Makes `dest`, a disk of `size` bytes (at least `base`'s size) whose content starts as
/// `base`'s. A failure leaves no `dest` behind.
pub fn create_root_disk(
    format: DiskFormat,
    base: &Path,
    dest: &Path,
    size: u64,
) -> Result<(), DiskError> {
    refuse_existing(dest)?;
    let made = match format {
        DiskFormat::Raw => raw_copy(base, dest, size),
        DiskFormat::Qcow2 => qcow2_overlay(base, dest, size),
    };
    if made.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    made
}

/// A VM's root disk on top of another VM's disk layer (a snapshot's), in `format`: a
/// qcow2 overlay on the qcow2 layer, or a raw copy of a raw one.
pub fn create_root_disk_on_layer(
    format: DiskFormat,
    layer: &Path,
    dest: &Path,
    size: u64,
) -> Result<(), DiskError> {
    refuse_existing(dest)?;
    let made = match format {
        DiskFormat::Raw => raw_copy(layer, dest, size),
        DiskFormat::Qcow2 => overlay(layer, "qcow2", dest, size),
    };
    if made.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    made
}

/// A disk is made where nothing is: what is there (a file, a link) is neither replaced
/// nor, on a failure, removed.
fn refuse_existing(dest: &Path) -> Result<(), DiskError> {
    if dest.symlink_metadata().is_ok() {
        return Err(DiskError::Failed {
            program: "ignite",
            path: dest.to_path_buf(),
            output: "the disk exists already".into(),
        });
    }
    Ok(())
}

/// A point-in-time copy of a disk that is not being written (its VM is paused and its
/// VMM has flushed it): shares blocks where the filesystem can (reflinks), keeps holes,
/// owner-only (it holds the guest's data). `dest` must not exist.
pub fn copy_disk_layer(src: &Path, dest: &Path) -> Result<(), DiskError> {
    refuse_existing(dest)?;
    let copied = cp(src, dest).and_then(|()| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dest, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
            DiskError::Io(ignite_host_tools::PathError::new(
                "restrict",
                dest.to_path_buf(),
                source,
            ))
        })
    });
    if copied.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    copied
}

fn cp(base: &Path, dest: &Path) -> Result<(), DiskError> {
    let out = host_tools::CP
        .command()?
        .args(["--reflink=auto", "--sparse=always", "--"])
        .arg(base)
        .arg(dest)
        .output()
        .map_err(|source| DiskError::Run {
            program: "cp",
            source,
        })?;
    if !out.status.success() {
        return Err(DiskError::Failed {
            program: "cp",
            path: dest.to_path_buf(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}

fn raw_copy(base: &Path, dest: &Path, size: u64) -> Result<(), DiskError> {
    cp(base, dest)?;
    let io = |action| {
        move |source| {
            DiskError::Io(ignite_host_tools::PathError::new(
                action,
                dest.to_path_buf(),
                source,
            ))
        }
    };
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(dest)
        .map_err(io("open"))?;
    if file.metadata().map_err(io("read"))?.len() < size {
        file.set_len(size).map_err(io("grow"))?;
    }
    Ok(())
}

fn qcow2_overlay(base: &Path, dest: &Path, size: u64) -> Result<(), DiskError> {
    overlay(base, "raw", dest, size)
}

/// What `qemu-img create -f qcow2 -F FORMAT -b BASE DEST SIZE` makes, written directly
/// ([`crate::qcow2`]). The base must be a file; its name is recorded as given.
fn overlay(base: &Path, base_format: &str, dest: &Path, size: u64) -> Result<(), DiskError> {
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| DiskError::Io(ignite_host_tools::PathError::new(action, path, source))
    };
    let meta = std::fs::metadata(base).map_err(io("read", base))?;
    if !meta.is_file() {
        return Err(DiskError::Failed {
            program: "qcow2",
            path: base.to_path_buf(),
            output: "a disk's base must be a regular file".into(),
        });
    }
    crate::qcow2::write_overlay(dest, base, base_format, size).map_err(io("create", dest))
}

/// The backing file a qcow2 disk names in its header (`None` for raw disks, unreadable
/// files and headers that do not parse). The file is opened without following a link and
/// only its first 64 KiB are read.
pub fn backing_file(disk: &Path) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(disk)
        .ok()?;
    let mut head = Vec::new();
    file.take(64 << 10).read_to_end(&mut head).ok()?;
    if head.len() < 20 || &head[..4] != b"QFI\xfb" {
        return None;
    }
    let offset = u64::from_be_bytes(head[8..16].try_into().ok()?) as usize;
    let len = u32::from_be_bytes(head[16..20].try_into().ok()?) as usize;
    if offset == 0 || len == 0 || len > 1023 {
        return None;
    }
    let name = head.get(offset..offset.checked_add(len)?)?;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_qcow2_header_names_its_backing_file_and_bad_headers_name_none() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("d.qcow2");
        let mut head = vec![0u8; 200];
        head[..4].copy_from_slice(b"QFI\xfb");
        head[8..16].copy_from_slice(&100u64.to_be_bytes());
        head[16..20].copy_from_slice(&9u32.to_be_bytes());
        head[100..109].copy_from_slice(b"/base.raw");
        std::fs::write(&disk, &head).unwrap();
        assert_eq!(backing_file(&disk), Some(PathBuf::from("/base.raw")));
        head[16..20].copy_from_slice(&5000u32.to_be_bytes());
        std::fs::write(&disk, &head).unwrap();
        assert_eq!(backing_file(&disk), None);
        std::fs::write(&disk, b"raw bytes, no header").unwrap();
        assert_eq!(backing_file(&disk), None);
        let link = dir.path().join("link.qcow2");
        std::os::unix::fs::symlink(&disk, &link).unwrap();
        assert_eq!(backing_file(&link), None, "links are not followed");
    }

    #[test]
    fn a_raw_root_disk_is_a_grown_copy_and_a_failure_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.ext4");
        std::fs::write(&base, b"filesystem").unwrap();
        let dest = dir.path().join(DiskFormat::Raw.root_disk_file());
        create_root_disk(DiskFormat::Raw, &base, &dest, 1 << 20).unwrap();
        let bytes = std::fs::read(&dest).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert!(bytes.starts_with(b"filesystem"));
        let missing = dir.path().join("missing.ext4");
        let dest2 = dir.path().join("other.raw");
        assert!(create_root_disk(DiskFormat::Raw, &missing, &dest2, 1 << 20).is_err());
        assert!(!dest2.exists());
    }

    #[test]
    fn a_qcow2_root_disk_is_an_overlay_that_names_its_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.ext4");
        std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
        let dest = dir.path().join(DiskFormat::Qcow2.root_disk_file());
        create_root_disk(DiskFormat::Qcow2, &base, &dest, 2 << 20).unwrap();
        assert_eq!(backing_file(&dest), Some(base.clone()));
        // QEMU's own tools read it as the overlay qemu-img makes, and find it sound.
        let theirs = dir.path().join("theirs.qcow2");
        let qemu_img = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new("qemu-img")
                .args(args)
                .output()
                .expect(
                    "qemu-img (qemu-utils, installed by scripts/setup.sh) compares the overlay",
                );
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        };
        qemu_img(&[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            "-F".as_ref(),
            "raw".as_ref(),
            "-b".as_ref(),
            base.as_os_str(),
            theirs.as_os_str(),
            "2097152".as_ref(),
        ]);
        let info = |disk: &Path| {
            qemu_img(&["info".as_ref(), "--output=json".as_ref(), disk.as_os_str()])
                .replace(&*disk.to_string_lossy(), "DISK")
                .lines()
                .filter(|l| !l.contains("actual-size") && !l.contains("dirty-flag"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(info(&dest), info(&theirs));
        assert!(qemu_img(&["check".as_ref(), dest.as_os_str()]).contains("No errors"));
        assert_eq!(
            std::fs::metadata(&dest).unwrap().len(),
            std::fs::metadata(&theirs).unwrap().len()
        );
        // What is there already is neither replaced nor removed.
        std::fs::write(&theirs, b"kept").unwrap();
        assert!(create_root_disk(DiskFormat::Qcow2, &base, &theirs, 2 << 20).is_err());
        assert_eq!(std::fs::read(&theirs).unwrap(), b"kept");
        assert_eq!(backing_file(&base), None, "a raw disk has no backing file");
        assert_eq!(backing_file(&dir.path().join("absent")), None);
    }
}
