//! Writing an image out as a directory tree (kernel images: the host reads their files).
//! File data streams into numbered files in a private directory beside the tree; once
//! every layer is applied, the tree is made and each file moved to its first name.
//! A normal user cannot make device nodes or give files away, so those are counted and
//! skipped here (root disks keep them: see `ignite-disk`'s writer).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::tree::{Kind, NodeId, ROOT, Tree};
use super::{HOLE_BLOCK, SinkResult, UnpackStats, Unpacker};
use crate::error::{Result, io};

/// File data in a private directory until the tree is made.
pub struct DirSink {
    root: PathBuf,
    data: tempfile::TempDir,
    next: u64,
}

impl super::Sink for DirSink {
    type Data = PathBuf;

    fn write_file(&mut self, data: &mut dyn Read, size: u64) -> SinkResult<(PathBuf, u64)> {
        self.next += 1;
        let path = self.data.path().join(self.next.to_string());
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io("create", &path))?;
        let written = write_keeping_holes(data, &mut file, size).map_err(io("write", &path))?;
        Ok((path, written))
    }

    fn discard(&mut self, data: PathBuf) -> SinkResult<()> {
        fs::remove_file(&data).map_err(io("remove", &data))?;
        Ok(())
    }
}

impl Unpacker<DirSink> {
    /// Unpacks into `root`, an empty directory owned by this process, keeping file data in
    /// a private directory beside it until [`Unpacker::finish`].
    pub fn new(root: impl Into<PathBuf>) -> Result<Unpacker<DirSink>> {
        let root = root.into();
        let beside = root.parent().unwrap_or(Path::new("/"));
        let data = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(beside)
            .map_err(io("create a directory in", beside))?;
        Ok(Unpacker::with_sink(DirSink {
            root,
            data,
            next: 0,
        }))
    }

    /// Makes the tree under the root.
    pub fn finish(self) -> Result<UnpackStats> {
        let (tree, sink, mut stats) = self.into_parts();
        let mut writer = DirWriter {
            tree: &tree,
            privileged: rustix::process::geteuid().is_root(),
            first_names: HashMap::new(),
            skipped: 0,
        };
        writer.dir(ROOT, &sink.root)?;
        stats.skipped_privileged = writer.skipped;
        Ok(stats)
    }
}

struct DirWriter<'a> {
    tree: &'a Tree<PathBuf>,
    privileged: bool,
    /// Where each inode got its first name (later names are hardlinks to it).
    first_names: HashMap<NodeId, PathBuf>,
    skipped: u64,
}

impl DirWriter<'_> {
    /// Makes the entries of directory `id` in `path` (which exists), depth first; a
    /// directory's own attributes are set after its entries, so a read-only one is filled.
    fn dir(&mut self, id: NodeId, path: &Path) -> Result<()> {
        for (name, child) in self.tree.children(id) {
            let target = path.join(OsStr::from_bytes(name));
            if let Some(first) = self.first_names.get(&child) {
                fs::hard_link(first, &target).map_err(io("create hardlink", &target))?;
                continue;
            }
            let node = self.tree.node(child);
            match &node.kind {
                Kind::Dir(_) => {
                    fs::create_dir(&target).map_err(io("create directory", &target))?;
                    self.dir(child, &target)?;
                }
                Kind::File { data, .. } => {
                    fs::rename(data, &target).map_err(io("move a file to", &target))?;
                }
                Kind::Symlink(to) => {
                    std::os::unix::fs::symlink(OsStr::from_bytes(to), &target)
                        .map_err(io("create symlink", &target))?;
                }
                Kind::Char { major, minor } | Kind::Block { major, minor } => {
                    if !self.privileged {
                        self.skipped += 1;
                        continue;
                    }
                    let file_type = if matches!(node.kind, Kind::Char { .. }) {
                        rustix::fs::FileType::CharacterDevice
                    } else {
                        rustix::fs::FileType::BlockDevice
                    };
                    mknod(&target, file_type, rustix::fs::makedev(*major, *minor))?;
                }
                Kind::Fifo => mknod(&target, rustix::fs::FileType::Fifo, 0)?,
            }
            self.first_names.insert(child, target.clone());
            self.attributes(child, &target)?;
        }
        Ok(())
    }

    fn attributes(&mut self, id: NodeId, path: &Path) -> Result<()> {
        let node = self.tree.node(id);
        let meta = &node.meta;
        let symlink = matches!(node.kind, Kind::Symlink(_));
        if self.privileged {
            std::os::unix::fs::lchown(path, Some(meta.uid), Some(meta.gid))
                .map_err(io("set owner of", path))?;
        } else if meta.uid != 0 || meta.gid != 0 {
            self.skipped += 1;
        }
        if !symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(meta.mode))
                .map_err(io("set mode of", path))?;
        }
        for (name, value) in &meta.xattrs {
            let name = OsStr::from_bytes(name);
            if let Err(e) =
                rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
            {
                tracing::warn!(path = %path.display(), "cannot set extended attribute {}: {e}", name.to_string_lossy());
            }
        }
        let time = rustix::fs::Timespec {
            tv_sec: meta.mtime,
            tv_nsec: 0,
        };
        let ts = rustix::fs::Timestamps {
            last_access: time,
            last_modification: time,
        };
        let _ = rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &ts,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        );
        Ok(())
    }
}

fn mknod(path: &Path, file_type: rustix::fs::FileType, dev: rustix::fs::Dev) -> Result<()> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        file_type,
        rustix::fs::Mode::from_raw_mode(0o600),
        dev,
    )
    .map_err(|e| io("create device node", path)(e.into()))
}

/// Copies at most `limit` bytes of `from` into `file`, skipping all-zero 4 KiB blocks so
/// they stay holes (a sparse entry's holes, and zeros written out in full alike). Returns
/// the bytes of the blocks written.
pub(super) fn write_keeping_holes(
    from: &mut (impl Read + ?Sized),
    file: &mut fs::File,
    limit: u64,
) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom, Write};
    let mut buf = vec![0u8; 256 * HOLE_BLOCK];
    let mut offset: u64 = 0;
    let mut written: u64 = 0;
    let mut from = from.take(limit);
    loop {
        // Fill the buffer (or reach the end), so blocks line up with the file's.
        let mut filled = 0;
        while filled < buf.len() {
            match from.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if filled == 0 {
            break;
        }
        for block in buf[..filled].chunks(HOLE_BLOCK) {
            if block.iter().any(|b| *b != 0) {
                file.seek(SeekFrom::Start(offset))?;
                file.write_all(block)?;
                written += HOLE_BLOCK as u64;
            }
            offset += block.len() as u64;
        }
        if filled < buf.len() {
            break;
        }
    }
    file.set_len(offset)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeros_stay_holes() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = fs::File::create(&path).unwrap();
        // 64 MiB of zeros, then one data block, then a partial zero tail.
        let data = io::repeat(0)
            .take(64 << 20)
            .chain(&[7u8; 4096][..])
            .chain(io::repeat(0).take(100));
        let written = write_keeping_holes(&mut { data }, &mut file, u64::MAX).unwrap();
        assert_eq!(written, 4096);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), (64 << 20) + 4096 + 100);
        assert!(meta.blocks() * 512 < 1 << 20, "{} blocks", meta.blocks());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes[64 << 20], 7);
        // Never more than the limit.
        let mut file = fs::File::create(dir.path().join("g")).unwrap();
        write_keeping_holes(&mut io::repeat(1), &mut file, 10_000).unwrap();
        assert_eq!(fs::metadata(dir.path().join("g")).unwrap().len(), 10_000);
    }
}
