//! Disk images. The root disk of an image is an ext4 filesystem written in place through
//! libext2fs from the image's layers ([`Ext4Writer`]): no mount, no loop device, no staging
//! tree and no root needed, with owners, modes and device nodes kept. Directory trees
//! (a kernel's modules, test volumes) are built with `mkfs.ext4 -d`.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use ignite_host_tools as host_tools;

#[allow(unsafe_code)]
mod ext2fs;
mod qcow2;
mod root_disk;
#[allow(unsafe_code)]
mod writer;
pub use root_disk::{
    DiskFormat, backing_file, copy_disk_layer, create_root_disk, create_root_disk_on_layer,
};
pub use writer::{Attrs, Ext4Writer, FileKind, ROOT_INO, Special};

const BLOCK: u64 = 4096;
const MIB: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
    #[error(transparent)]
    Missing(#[from] ignite_host_tools::MissingTool),
    #[error("cannot run {program}: {source}")]
    Run {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("libext2fs cannot {op} {}: {message}", path.display())]
    Ext2fs {
        op: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{name:?} cannot go into an ext4 filesystem: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("cannot read a file's data: {0}")]
    Read(#[source] std::io::Error),
    #[error("{program} failed on {}: {output}", path.display())]
    Failed {
        program: &'static str,
        path: PathBuf,
        output: String,
    },
}

/// What goes into the filesystem, as counted while unpacking.
#[derive(Debug, Clone, Copy)]
pub struct TreeSize {
    /// File and directory data, in whole blocks.
    pub data_bytes: u64,
    /// Files, directories, links and device nodes.
    pub inodes: u64,
}

/// The filesystem size for a tree: its data plus room for metadata and the journal, with
/// a margin (the VM's own disk is grown to its `--size` at boot, so little more is needed).
pub fn ext4_size_for(tree: TreeSize) -> u64 {
    let inode_tables = inode_count(tree) * 256;
    let metadata = tree.data_bytes / 32 + inode_tables;
    let journal = if tree.data_bytes < 128 * MIB {
        4 * MIB
    } else {
        32 * MIB
    };
    let total = tree.data_bytes + tree.data_bytes / 10 + metadata + journal + 8 * MIB;
    total.div_ceil(MIB) * MIB
}

/// The inodes to make room for in a filesystem for `tree`.
pub fn inode_count(tree: TreeSize) -> u64 {
    (tree.inodes + tree.inodes / 4 + 2048).next_multiple_of(64)
}

/// The label of image root disks.
pub const ROOT_LABEL: &str = "root";

/// Builds `image` (an ext4 filesystem labelled `label`) from the directory `tree`. Grows
/// and retries if the estimate was short. Returns the image's size in bytes.
pub fn build_ext4(
    tree: &Path,
    size: TreeSize,
    image: &Path,
    label: &str,
) -> Result<u64, DiskError> {
    let mut bytes = ext4_size_for(size);
    let inodes = inode_count(size);
    for attempt in 0..4 {
        match make_ext4(image, bytes, inodes, label, Some(tree)) {
            Ok(()) => return Ok(bytes),
            Err(DiskError::Failed { output, .. })
                if attempt < 3
                    && (output.contains("Could not allocate") || output.contains("No space")) =>
            {
                tracing::debug!(bytes, "the root disk estimate was short; growing it");
                bytes = (bytes * 2).div_ceil(MIB) * MIB;
            }
            Err(e) => {
                let _ = std::fs::remove_file(image);
                return Err(e);
            }
        }
    }
    unreachable!("the last attempt returns")
}

/// Makes `image` an ext4 filesystem of `bytes` with `inodes` inodes: the root disk's
/// options (4 KiB blocks, 256-byte inodes, no reserved blocks, root-owned root, no
/// orphan file), filled from `tree` when given.
pub(crate) fn make_ext4(
    image: &Path,
    bytes: u64,
    inodes: u64,
    label: &str,
    tree: Option<&Path>,
) -> Result<(), DiskError> {
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(image)
        .map_err(|source| {
            DiskError::Io(ignite_host_tools::PathError::new(
                "create",
                image.to_path_buf(),
                source,
            ))
        })?;
    file.set_len(bytes).map_err(|source| {
        DiskError::Io(ignite_host_tools::PathError::new(
            "size",
            image.to_path_buf(),
            source,
        ))
    })?;
    drop(file);
    let mut command = host_tools::MKFS_EXT4.command()?;
    command
        .args([
            "-q",
            "-F",
            "-b",
            &BLOCK.to_string(),
            "-I",
            "256",
            "-m",
            "0",
            "-L",
            label,
        ])
        .args(["-N", &inodes.to_string()])
        // Kernels before 5.15 cannot write to a filesystem with an orphan file.
        .args(["-O", "^orphan_file", "-E", "root_owner=0:0"]);
    if let Some(tree) = tree {
        command.arg("-d").arg(tree);
    }
    let output = command
        .arg(image)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| DiskError::Run {
            program: "mkfs.ext4",
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&output.stderr).to_string()
        + &String::from_utf8_lossy(&output.stdout);
    Err(DiskError::Failed {
        program: "mkfs.ext4",
        path: image.to_path_buf(),
        output: text.trim().to_string(),
    })
}

pub(crate) use writer::resize as resize_ext4;

/// Counts what `tree` holds, for [`build_ext4`], without following symlinks.
pub fn measure_tree(tree: &Path) -> Result<TreeSize, DiskError> {
    let mut size = TreeSize {
        data_bytes: 0,
        inodes: 0,
    };
    let mut pending = vec![tree.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| {
            DiskError::Io(ignite_host_tools::PathError::new(
                "list",
                dir.clone(),
                source,
            ))
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| {
                DiskError::Io(ignite_host_tools::PathError::new(
                    "list",
                    dir.clone(),
                    source,
                ))
            })?;
            let meta = entry.metadata().map_err(|source| {
                DiskError::Io(ignite_host_tools::PathError::new(
                    "inspect",
                    entry.path(),
                    source,
                ))
            })?;
            size.inodes += 1;
            size.data_bytes += meta.len().div_ceil(BLOCK) * BLOCK;
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(size)
}

/// Runs `e2fsck -fn` (check only, change nothing) and returns its report on failure.
pub fn check_ext4(image: &Path) -> Result<(), DiskError> {
    let output = host_tools::E2FSCK
        .command()?
        .args(["-f", "-n"])
        .arg(image)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| DiskError::Run {
            program: "e2fsck",
            source,
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DiskError::Failed {
            program: "e2fsck",
            path: image.to_path_buf(),
            output: String::from_utf8_lossy(&output.stdout).trim().to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_filesystem_that_checks_clean() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), "test\n").unwrap();
        std::fs::write(tree.join("big"), vec![7u8; 20 << 20]).unwrap();
        let image = dir.path().join("root.ext4");
        // A deliberately short estimate: the build must grow and succeed.
        let size = build_ext4(
            &tree,
            TreeSize {
                data_bytes: 4096,
                inodes: 3,
            },
            &image,
            ROOT_LABEL,
        )
        .unwrap();
        assert!(
            size > ext4_size_for(TreeSize {
                data_bytes: 4096,
                inodes: 3
            })
        );
        assert_eq!(std::fs::metadata(&image).unwrap().len(), size);
        check_ext4(&image).unwrap();
        let listing = host_tools::DEBUGFS
            .command()
            .unwrap()
            .args(["-R", "cat /etc/hostname"])
            .arg(&image)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&listing.stdout), "test\n");
    }

    #[test]
    fn sizes_have_room_for_metadata() {
        let s = ext4_size_for(TreeSize {
            data_bytes: 200 * MIB,
            inodes: 10_000,
        });
        assert!(s > 220 * MIB && s < 300 * MIB, "{s}");
        assert_eq!(s % MIB, 0);
    }
}
