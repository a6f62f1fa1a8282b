//! Writes an ext4 filesystem in place, file by file, through libext2fs (the way
//! e2fsprogs' own `mkfs.ext4 -d` does in misc/create_inode.c), so image layers go
//! straight from their tar streams into the root disk: no staging tree, and owners,
//! modes, device nodes and extended attributes kept without root.
//!
//! The filesystem is made by `mkfs.ext4` with the root disk's options and opened here.
//! Its size is an estimate; before each allocation the writer checks the free blocks
//! and inodes and, when they run short, closes the filesystem, grows it with
//! `resize2fs` (which keeps inode numbers) and reopens it, so nothing fails half-way.

use std::ffi::CString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::ext2fs::{self as ffi, Errcode, Filsys, Ino};
use crate::{BLOCK, DiskError, MIB, host_tools};

pub use crate::ext2fs::ROOT_INO;

/// Blocks kept free for directories, extent trees and xattr blocks between checks.
const RESERVE_BLOCKS: u64 = 1024;
const RESERVE_INODES: u64 = 64;
/// The longest name one directory entry holds.
const MAX_NAME: usize = 255;

/// What a new inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    Char { major: u32, minor: u32 },
    Block { major: u32, minor: u32 },
    Fifo,
}

/// An inode's owner, permissions (with setuid, setgid and sticky bits) and times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub perm: u32,
    pub mtime: i64,
}

/// An ext4 filesystem open for writing.
pub struct Ext4Writer {
    fs: Filsys,
    image: PathBuf,
    bytes: u64,
}

impl Ext4Writer {
    /// Makes an empty filesystem of `bytes` with room for `inodes` in `image` (created or
    /// truncated) and opens it.
    pub fn create(
        image: &Path,
        bytes: u64,
        inodes: u64,
        label: &str,
    ) -> Result<Ext4Writer, DiskError> {
        crate::make_ext4(image, bytes, inodes, label, None)?;
        let fs = open(image)?;
        Ok(Ext4Writer {
            fs,
            image: image.to_path_buf(),
            bytes,
        })
    }

    /// Free blocks and free inodes, as the allocator counts them.
    pub fn free(&self) -> (u64, u64) {
        ffi::free_counts(self.fs)
    }

    /// The filesystem's size in bytes (it grows when the estimate was short).
    pub fn size(&self) -> u64 {
        self.bytes
    }

    fn fail(&self, op: &'static str, code: Errcode) -> DiskError {
        DiskError::Ext2fs {
            op,
            path: self.image.clone(),
            message: ffi::message(code),
        }
    }

    fn check(&self, op: &'static str, code: Errcode) -> Result<(), DiskError> {
        if code == 0 {
            Ok(())
        } else {
            Err(self.fail(op, code))
        }
    }

    /// Grows the filesystem unless `blocks` more blocks and an inode (and the reserves)
    /// are free.
    fn ensure_room(&mut self, blocks: u64) -> Result<(), DiskError> {
        let (free_blocks, free_inodes) = ffi::free_counts(self.fs);
        if free_blocks >= blocks + RESERVE_BLOCKS && free_inodes >= RESERVE_INODES {
            return Ok(());
        }
        let more = (blocks + 2 * RESERVE_BLOCKS) * BLOCK;
        let bytes = (self.bytes + self.bytes / 2)
            .max(self.bytes + 2 * more + 64 * MIB)
            .div_ceil(MIB)
            * MIB;
        tracing::debug!(
            from = self.bytes,
            to = bytes,
            "the root disk estimate was short; growing it"
        );
        // SAFETY: the filesystem is open and no file handle on it is.
        let closed = unsafe { ffi::ext2fs_close2(self.fs, 0) };
        self.fs = std::ptr::null_mut();
        self.check("close", closed)?;
        crate::resize_ext4(&self.image, bytes)?;
        self.fs = open(&self.image)?;
        self.bytes = bytes;
        Ok(())
    }

    fn new_inode(&mut self, dir: Ino, mode: u16, blocks: u64) -> Result<Ino, DiskError> {
        self.ensure_room(blocks)?;
        let mut ino: Ino = 0;
        // SAFETY: open filesystem, valid out pointer.
        let code = unsafe {
            ffi::ext2fs_new_inode(
                self.fs,
                dir,
                i32::from(mode),
                std::ptr::null_mut(),
                &mut ino,
            )
        };
        self.check("allocate an inode", code)?;
        Ok(ino)
    }

    /// Writes a new inode of `mode` with one link's worth of bookkeeping, and marks it used.
    fn write_new(
        &mut self,
        ino: Ino,
        inode: &mut ffi::Inode,
        isdir: bool,
    ) -> Result<(), DiskError> {
        // SAFETY: open filesystem, a full 128-byte inode.
        let code = unsafe { ffi::ext2fs_write_new_inode(self.fs, ino, inode) };
        self.check("write a new inode", code)?;
        // SAFETY: `ino` was just allocated and written.
        unsafe { ffi::ext2fs_inode_alloc_stats2(self.fs, ino, 1, i32::from(isdir)) };
        Ok(())
    }

    /// Creates an unlinked regular file holding at most `size` bytes of `data`; all-zero
    /// 4 KiB blocks stay holes. Returns the inode and the bytes of the blocks written.
    /// The file gets its names and attributes later ([`Ext4Writer::link`],
    /// [`Ext4Writer::set_attrs`]).
    pub fn new_file(&mut self, data: &mut dyn Read, size: u64) -> Result<(Ino, u64), DiskError> {
        let blocks = size.div_ceil(BLOCK);
        // The extent tree: a block per 340 extents, for a file in the worst case split
        // into single-block extents by holes.
        let ino = self.new_inode(ROOT_INO, ffi::S_IFREG | 0o600, blocks + blocks / 340 + 1)?;
        let mut inode = ffi::Inode {
            i_mode: ffi::S_IFREG | 0o600,
            i_links_count: 1,
            ..Default::default()
        };
        let mut handle: ffi::ExtentHandle = std::ptr::null_mut();
        // SAFETY: an extent handle on the in-memory inode writes the empty extent header
        // into its i_block and sets EXT4_EXTENTS_FL (create_inode.c does the same).
        let code = unsafe { ffi::ext2fs_extent_open2(self.fs, ino, &mut inode, &mut handle) };
        self.check("start a file's extent tree", code)?;
        // SAFETY: the handle was just opened.
        unsafe { ffi::ext2fs_extent_free(handle) };
        self.write_new(ino, &mut inode, false)?;
        let written = self.write_data(ino, data, size)?;
        Ok((ino, written))
    }

    fn write_data(&mut self, ino: Ino, data: &mut dyn Read, size: u64) -> Result<u64, DiskError> {
        let mut file: ffi::File = std::ptr::null_mut();
        // SAFETY: open filesystem, an inode that exists, valid out pointer.
        let code = unsafe { ffi::ext2fs_file_open(self.fs, ino, ffi::FILE_WRITE, &mut file) };
        self.check("open a file", code)?;
        let result = self.copy_into(file, data, size);
        // SAFETY: `file` is open; close flushes it and frees the handle either way.
        let closed = unsafe { ffi::ext2fs_file_close(file) };
        let written = result?;
        self.check("close a file", closed)?;
        Ok(written)
    }

    fn copy_into(&self, file: ffi::File, data: &mut dyn Read, size: u64) -> Result<u64, DiskError> {
        let block = BLOCK as usize;
        let mut buf = vec![0u8; 256 * block];
        let mut offset: u64 = 0;
        let mut written: u64 = 0;
        let mut data = data.take(size);
        loop {
            let mut filled = 0;
            while filled < buf.len() {
                match data.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(DiskError::Read(e)),
                }
            }
            if filled == 0 {
                break;
            }
            // Runs of blocks with data are written; all-zero blocks are skipped (holes).
            let chunks: Vec<&[u8]> = buf[..filled].chunks(block).collect();
            let mut i = 0;
            while i < chunks.len() {
                if chunks[i].iter().all(|b| *b == 0) {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < chunks.len() && chunks[i].iter().any(|b| *b != 0) {
                    i += 1;
                }
                let from = start * block;
                let to = (i * block).min(filled);
                let at = offset + from as u64;
                let mut pos = 0u64;
                // SAFETY: open file handle, valid out pointer.
                let code = unsafe { ffi::ext2fs_file_llseek(file, at, 0, &mut pos) };
                self.check("seek in a file", code)?;
                let mut done: u32 = 0;
                // SAFETY: the buffer holds `to - from` readable bytes.
                let code = unsafe {
                    ffi::ext2fs_file_write(
                        file,
                        buf[from..to].as_ptr().cast(),
                        (to - from) as u32,
                        &mut done,
                    )
                };
                self.check("write a file", code)?;
                written += (to - from).div_ceil(block) as u64 * BLOCK;
            }
            offset += filled as u64;
            if filled < buf.len() {
                break;
            }
        }
        // SAFETY: open file handle.
        let code = unsafe { ffi::ext2fs_file_set_size2(file, offset) };
        self.check("set a file's size", code)?;
        Ok(written)
    }

    /// Frees an unlinked file made by [`Ext4Writer::new_file`] (a later layer replaced or
    /// deleted it) and its blocks.
    pub fn discard(&mut self, ino: Ino) -> Result<(), DiskError> {
        let mut inode = self.read(ino)?;
        // SAFETY: open filesystem; punching the whole range frees every data block.
        let code = unsafe {
            ffi::ext2fs_punch(self.fs, ino, &mut inode, std::ptr::null_mut(), 0, u64::MAX)
        };
        self.check("free a file's blocks", code)?;
        inode.i_links_count = 0;
        inode.i_dtime = inode.i_mtime.max(1);
        self.write(ino, &mut inode)?;
        // SAFETY: the inode was allocated by new_file and nothing links to it.
        unsafe { ffi::ext2fs_inode_alloc_stats2(self.fs, ino, -1, 0) };
        Ok(())
    }

    fn read(&self, ino: Ino) -> Result<ffi::Inode, DiskError> {
        let mut inode = ffi::Inode::default();
        // SAFETY: open filesystem, a full inode buffer.
        let code = unsafe { ffi::ext2fs_read_inode(self.fs, ino, &mut inode) };
        self.check("read an inode", code)?;
        Ok(inode)
    }

    fn write(&self, ino: Ino, inode: &mut ffi::Inode) -> Result<(), DiskError> {
        // SAFETY: open filesystem, a full inode buffer.
        let code = unsafe { ffi::ext2fs_write_inode(self.fs, ino, inode) };
        self.check("write an inode", code)
    }

    fn name(&self, name: &[u8]) -> Result<CString, DiskError> {
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(DiskError::Name {
                name: String::from_utf8_lossy(name).into_owned(),
                reason: "a name must have 1 to 255 bytes",
            });
        }
        CString::new(name).map_err(|_| DiskError::Name {
            name: String::from_utf8_lossy(name).into_owned(),
            reason: "a name cannot hold a NUL byte",
        })
    }

    /// Runs `op` (which links into `dir`) again after making room when the directory is full.
    fn in_dir(
        &mut self,
        dir: Ino,
        what: &'static str,
        mut op: impl FnMut(Filsys) -> Errcode,
    ) -> Result<(), DiskError> {
        for _ in 0..3 {
            self.ensure_room(8)?;
            let code = op(self.fs);
            if code != ffi::ET_DIR_NO_SPACE {
                return self.check(what, code);
            }
            // SAFETY: open filesystem, `dir` is a directory.
            let code = unsafe { ffi::ext2fs_expand_dir(self.fs, dir) };
            self.check("grow a directory", code)?;
        }
        Err(self.fail(what, ffi::ET_DIR_NO_SPACE))
    }

    /// Adds the name `name` in directory `dir` for `ino` (of `kind`); the inode's link
    /// count is set by [`Ext4Writer::set_attrs`].
    pub fn link(
        &mut self,
        dir: Ino,
        name: &[u8],
        ino: Ino,
        kind: FileKind,
    ) -> Result<(), DiskError> {
        let name = self.name(name)?;
        let ft = kind.dirent_type();
        self.in_dir(dir, "add a directory entry", |fs| {
            // SAFETY: open filesystem, NUL-terminated name.
            unsafe { ffi::ext2fs_link(fs, dir, name.as_ptr(), ino, ft) }
        })
    }

    /// Makes the directory `name` in `dir`; returns its inode.
    pub fn mkdir(&mut self, dir: Ino, name: &[u8]) -> Result<Ino, DiskError> {
        let name = self.name(name)?;
        let ino = self.new_inode(dir, ffi::S_IFDIR | 0o755, 2)?;
        self.in_dir(dir, "make a directory", |fs| {
            // SAFETY: open filesystem, NUL-terminated name, `ino` free until mkdir marks it.
            unsafe { ffi::ext2fs_mkdir(fs, dir, ino, name.as_ptr()) }
        })?;
        Ok(ino)
    }

    /// Makes a symlink to `target` in `dir` under `name`; returns its inode.
    pub fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8]) -> Result<Ino, DiskError> {
        let target_c = CString::new(target).map_err(|_| DiskError::Name {
            name: String::from_utf8_lossy(target).into_owned(),
            reason: "a symlink target cannot hold a NUL byte",
        })?;
        if target.is_empty() || target.len() >= BLOCK as usize {
            return Err(DiskError::Name {
                name: String::from_utf8_lossy(target).into_owned(),
                reason: "a symlink target must have 1 to 4095 bytes",
            });
        }
        let ino = self.new_inode(dir, ffi::S_IFLNK | 0o777, 2)?;
        // SAFETY: open filesystem; no name, so ext2fs_symlink links nothing (done below).
        let code =
            unsafe { ffi::ext2fs_symlink(self.fs, dir, ino, std::ptr::null(), target_c.as_ptr()) };
        self.check("make a symlink", code)?;
        self.link(dir, name, ino, FileKind::Symlink)?;
        Ok(ino)
    }

    /// Makes a device node or FIFO, unlinked; returns its inode.
    pub fn special(&mut self, kind: Special) -> Result<Ino, DiskError> {
        let (mode, dev) = match kind {
            Special::Char { major, minor } => (ffi::S_IFCHR, Some((major, minor))),
            Special::Block { major, minor } => (ffi::S_IFBLK, Some((major, minor))),
            Special::Fifo => (ffi::S_IFIFO, None),
        };
        let ino = self.new_inode(ROOT_INO, mode | 0o600, 0)?;
        let mut inode = ffi::Inode {
            i_mode: mode | 0o600,
            i_links_count: 1,
            ..Default::default()
        };
        if let Some((major, minor)) = dev {
            // The kernel's encodings (fs/ext4/inode.c): the old one when it fits, else the new.
            if major < 256 && minor < 256 {
                inode.i_block[0] = (major << 8) | minor;
            } else {
                inode.i_block[1] = (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12);
            }
        }
        self.write_new(ino, &mut inode, false)?;
        Ok(ino)
    }

    /// Sets an inode's owner, permissions, times and (for non-directories) link count.
    pub fn set_attrs(
        &mut self,
        ino: Ino,
        attrs: Attrs,
        links: Option<u16>,
    ) -> Result<(), DiskError> {
        let mut inode = self.read(ino)?;
        inode.i_mode = (inode.i_mode & 0o170000) | (attrs.perm & 0o7777) as u16;
        inode.i_uid = attrs.uid as u16;
        inode.l_i_uid_high = (attrs.uid >> 16) as u16;
        inode.i_gid = attrs.gid as u16;
        inode.l_i_gid_high = (attrs.gid >> 16) as u16;
        let time = attrs.mtime.clamp(0, i64::from(i32::MAX)) as u32;
        inode.i_mtime = time;
        inode.i_atime = time;
        inode.i_ctime = time;
        if let Some(links) = links {
            inode.i_links_count = links;
        }
        self.write(ino, &mut inode)
    }

    /// Sets extended attributes (`security.capability`, `user.*`, ...) on an inode.
    pub fn set_xattrs(&mut self, ino: Ino, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), DiskError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        self.ensure_room(4)?;
        let mut handle: ffi::XattrHandle = std::ptr::null_mut();
        // SAFETY: open filesystem, valid out pointer.
        let code = unsafe { ffi::ext2fs_xattrs_open(self.fs, ino, &mut handle) };
        self.check("open extended attributes", code)?;
        // SAFETY: the handle is open.
        let mut result = self.check("read extended attributes", unsafe {
            ffi::ext2fs_xattrs_read(handle)
        });
        for (key, value) in xattrs {
            if result.is_err() {
                break;
            }
            let Ok(key_c) = CString::new(key.as_slice()) else {
                result = Err(DiskError::Name {
                    name: String::from_utf8_lossy(key).into_owned(),
                    reason: "an extended attribute's name cannot hold a NUL byte",
                });
                break;
            };
            // SAFETY: open handle, NUL-terminated key, `value` readable for its length.
            let code = unsafe {
                ffi::ext2fs_xattr_set(handle, key_c.as_ptr(), value.as_ptr().cast(), value.len())
            };
            result = self.check("set an extended attribute", code);
        }
        // SAFETY: the handle is open; close frees it.
        let closed = unsafe { ffi::ext2fs_xattrs_close(&mut handle) };
        result?;
        self.check("write extended attributes", closed)
    }

    /// Writes everything out and closes the filesystem; returns its size in bytes.
    pub fn close(mut self) -> Result<u64, DiskError> {
        let fs = std::mem::replace(&mut self.fs, std::ptr::null_mut());
        // SAFETY: the filesystem is open; close2 writes the superblock, bitmaps and
        // group descriptors and frees it.
        let code = unsafe { ffi::ext2fs_close2(fs, 0) };
        self.check("close", code)?;
        Ok(self.bytes)
    }

    /// [`Ext4Writer::close`], then shrinks the filesystem to `fit` bytes (what its content
    /// needs with a margin) when the estimate it was made with left over a tenth more
    /// (`resize2fs` takes about 0.2 s on a 300 MB image: a disk of the size it should be is
    /// worth it).
    /// Returns its size in bytes.
    pub fn close_fitting(self, fit: u64) -> Result<u64, DiskError> {
        let image = self.image.clone();
        let bytes = self.close()?;
        // Never below what resize2fs can shrink it to (a filesystem grown while it was
        // written keeps the metadata of its larger size): forced below that minimum,
        // resize2fs fails half-way and leaves the filesystem broken.
        let floor = minimum_size(&image)?;
        tracing::debug!(bytes, fit, floor, "fitting the root disk to its content");
        let fit = fit.max(floor + floor / 10 + 4 * MIB).div_ceil(MIB) * MIB;
        if fit >= bytes - bytes / 10 {
            return Ok(bytes);
        }
        resize(&image, fit)?;
        Ok(fit)
    }
}

impl Drop for Ext4Writer {
    fn drop(&mut self) {
        if !self.fs.is_null() {
            // An abandoned write: free the handle without writing (the caller removes the file).
            // SAFETY: the filesystem is open and dropped exactly once.
            unsafe { ffi::ext2fs_free(self.fs) };
        }
    }
}

/// What a directory entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Regular,
    Directory,
    Symlink,
    Char,
    Block,
    Fifo,
}

impl FileKind {
    fn dirent_type(self) -> i32 {
        match self {
            FileKind::Regular => ffi::FT_REG_FILE,
            FileKind::Directory => ffi::FT_DIR,
            FileKind::Symlink => ffi::FT_SYMLINK,
            FileKind::Char => ffi::FT_CHRDEV,
            FileKind::Block => ffi::FT_BLKDEV,
            FileKind::Fifo => ffi::FT_FIFO,
        }
    }
}

fn open(image: &Path) -> Result<Filsys, DiskError> {
    use std::os::unix::ffi::OsStrExt;
    let fail = |op, code| DiskError::Ext2fs {
        op,
        path: image.to_path_buf(),
        message: ffi::message(code),
    };
    let path = CString::new(image.as_os_str().as_bytes()).map_err(|_| DiskError::Name {
        name: image.display().to_string(),
        reason: "a path cannot hold a NUL byte",
    })?;
    let mut fs: Filsys = std::ptr::null_mut();
    // SAFETY: NUL-terminated path, the library's own io manager, valid out pointer.
    let code = unsafe {
        ffi::ext2fs_open(
            path.as_ptr(),
            ffi::FLAG_RW | ffi::FLAG_64BITS,
            0,
            0,
            ffi::unix_io(),
            &mut fs,
        )
    };
    if code != 0 {
        return Err(fail("open", code));
    }
    // SAFETY: the filesystem was just opened.
    let code = unsafe { ffi::ext2fs_read_bitmaps(fs) };
    if code != 0 {
        // SAFETY: opened above, freed once.
        unsafe { ffi::ext2fs_free(fs) };
        return Err(fail("read the bitmaps of", code));
    }
    Ok(fs)
}

/// The smallest size in bytes `resize2fs` can shrink the filesystem image to (`-P`).
fn minimum_size(image: &Path) -> Result<u64, DiskError> {
    let output = host_tools::RESIZE2FS
        .command()?
        .arg("-P")
        .arg(image)
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| DiskError::Run {
            program: "resize2fs",
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let blocks = text
        .lines()
        .find_map(|l| l.strip_prefix("Estimated minimum size of the filesystem:"))
        .and_then(|n| n.trim().parse::<u64>().ok());
    match blocks {
        Some(blocks) if output.status.success() => Ok(blocks * BLOCK),
        _ => Err(DiskError::Failed {
            program: "resize2fs",
            path: image.to_path_buf(),
            output: format!(
                "no minimum size in its answer to -P: {}{}",
                text.trim(),
                String::from_utf8_lossy(&output.stderr).trim()
            ),
        }),
    }
}

/// `resize2fs` of a filesystem image to `bytes`, and the file to match (growing keeps
/// inode numbers; shrinking may move inodes and blocks).
pub(crate) fn resize(image: &Path, bytes: u64) -> Result<(), DiskError> {
    let set_len = || -> Result<(), DiskError> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(image)
            .map_err(|source| {
                DiskError::Io(host_tools::PathError::new(
                    "open",
                    image.to_path_buf(),
                    source,
                ))
            })?;
        file.set_len(bytes).map_err(|source| {
            DiskError::Io(host_tools::PathError::new(
                "size",
                image.to_path_buf(),
                source,
            ))
        })
    };
    let current = std::fs::metadata(image)
        .map_err(|source| {
            DiskError::Io(host_tools::PathError::new(
                "inspect",
                image.to_path_buf(),
                source,
            ))
        })?
        .len();
    let growing = bytes >= current;
    if growing {
        set_len()?;
    }
    let output = host_tools::RESIZE2FS
        .command()?
        .arg("-f")
        .arg(image)
        .arg(format!("{}K", bytes / 1024))
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| DiskError::Run {
            program: "resize2fs",
            source,
        })?;
    if output.status.success() {
        if !growing {
            set_len()?;
        }
        Ok(())
    } else {
        Err(DiskError::Failed {
            program: "resize2fs",
            path: image.to_path_buf(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}
