//! Applies image layers to a directory, treating every layer as hostile.
//!
//! - Entry names with `..` or an absolute path are refused.
//! - Parent directories are resolved one component at a time; symlinks met on the way are
//!   followed as if the directory were the root (`/x` means `<root>/x`), and a link that
//!   would climb above the root is refused. Nothing is ever written outside the root.
//! - The entry itself is never followed: an existing symlink in its place is replaced.
//! - Hardlinks must point at an existing non-directory inside the root.
//! - Whiteouts (`.wh.<name>`) delete from lower layers; opaque markers (`.wh..wh..opq`)
//!   hide what lower layers put in a directory but keep what this layer adds. Markers are
//!   never written out.
//! - Every layer's uncompressed stream is hashed: that is its `diff_id`.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

use crate::digest::{Digest, HashingReader};
use crate::error::{OciError, Result, io};
use crate::targuard::{ExtendedHeaderTooLarge, TarGuard};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const MAX_SYMLINK_HOPS: usize = 40;
/// The most an image may unpack to; a small layer can decompress to a great deal.
pub const MAX_UNPACKED_BYTES: u64 = 64 << 30;
/// The largest single file a layer may hold (its apparent size, holes included).
pub const MAX_ENTRY_BYTES: u64 = MAX_UNPACKED_BYTES;
/// Holes are kept at this granularity: an all-zero block is skipped, not written.
const HOLE_BLOCK: usize = 4096;
/// Bytes after a layer's end-of-archive marker that are still hashed (padding).
const MAX_TRAILER_BYTES: u64 = 1 << 20;

/// What unpacking produced, for sizing the root disk.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    /// File data, rounded up to 4 KiB blocks (holes, kept as holes, not counted).
    pub data_bytes: u64,
    /// The files' sizes with their holes (what a guest sees), capped like `data_bytes`.
    pub apparent_bytes: u64,
    pub inodes: u64,
    /// Entries that need root to create (device nodes, ownership) and were skipped.
    pub skipped_privileged: u64,
}

/// Applies layers to one root directory.
pub struct Unpacker {
    root: PathBuf,
    privileged: bool,
    pub stats: UnpackStats,
}

/// How a layer's bytes are compressed, told by their first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn sniff_compression(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

impl Unpacker {
    /// `root` must be an empty directory owned by this process.
    pub fn new(root: impl Into<PathBuf>) -> Unpacker {
        Unpacker {
            root: root.into(),
            privileged: rustix::process::geteuid().is_root(),
            stats: UnpackStats::default(),
        }
    }

    /// Applies one layer (compressed or not) and returns the digest of its uncompressed
    /// stream (its `diff_id`).
    pub fn apply(&mut self, layer: &str, reader: impl Read) -> Result<Digest> {
        let mut buffered = BufReader::with_capacity(1 << 20, reader);
        let head = buffered.fill_buf().map_err(|e| self.read_error(layer, e))?;
        let decompressed: Box<dyn Read> = match sniff_compression(head) {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
            Compression::Zstd => Box::new(
                zstd::stream::read::Decoder::with_buffer(buffered)
                    .map_err(|e| self.read_error(layer, e))?,
            ),
            Compression::None => Box::new(buffered),
        };
        let mut hashing = HashingReader::new(decompressed);
        {
            // The guard refuses oversized extended headers before the crate buffers them.
            let mut archive = tar::Archive::new(TarGuard::new(&mut hashing));
            let mut layer_state = LayerState::default();
            let entries = archive.entries().map_err(|e| self.read_error(layer, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| self.read_error(layer, e))?;
                self.apply_entry(layer, entry, &mut layer_state)?;
            }
        }
        // The diff_id covers the whole stream, including padding after the archive's end
        // (bounded: trailing bytes are never written anywhere, but need not be endless).
        io::copy(&mut (&mut hashing).take(MAX_TRAILER_BYTES), &mut io::sink())
            .map_err(|e| self.read_error(layer, e))?;
        Ok(hashing.finish().0)
    }

    /// Refuses a file of `declared` bytes that is larger than one file may be, or that
    /// would take the image past [`MAX_UNPACKED_BYTES`].
    fn check_size(&self, declared: u64) -> std::result::Result<(), String> {
        if declared > MAX_ENTRY_BYTES {
            return Err(format!(
                "it declares a file of {declared} bytes, more than the {MAX_ENTRY_BYTES} bytes one file may have (a sparse or compressed layer can claim any size: this one is hostile or broken)"
            ));
        }
        let total = self.stats.apparent_bytes.saturating_add(declared);
        if total > MAX_UNPACKED_BYTES {
            return Err(format!(
                "its {declared} bytes would take the image to {total} bytes unpacked, more than the {MAX_UNPACKED_BYTES} bytes accepted"
            ));
        }
        Ok(())
    }

    fn read_error(&self, layer: &str, e: io::Error) -> OciError {
        if let Some(too_large) = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<ExtendedHeaderTooLarge>())
        {
            return OciError::Invalid {
                what: format!("layer {layer}"),
                reason: too_large.to_string(),
            };
        }
        OciError::Invalid {
            what: format!("layer {layer}"),
            reason: format!("it is not a readable tar stream: {e}"),
        }
    }

    fn apply_entry<R: Read>(
        &mut self,
        layer: &str,
        mut entry: tar::Entry<'_, R>,
        state: &mut LayerState,
    ) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let entry_name = String::from_utf8_lossy(&raw).into_owned();
        let hostile = |reason: &str| OciError::HostileLayer {
            layer: layer.to_string(),
            entry: entry_name.clone(),
            reason: reason.to_string(),
        };
        let components = clean_components(Path::new(OsStr::from_bytes(&raw))).map_err(&hostile)?;
        let Some((name, parents)) = components.split_last() else {
            return Ok(()); // "./": the root itself
        };
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        let parent = self.resolve_dir(parents, true).map_err(|r| hostile(&r))?;
        let name_str = name.to_string_lossy();
        if let Some(target) = name_str.strip_prefix(WHITEOUT_PREFIX) {
            if name_str == OPAQUE_MARKER {
                return self.make_opaque(&parent, state);
            }
            if target.is_empty()
                || target == "."
                || target == ".."
                || target.starts_with(WHITEOUT_PREFIX)
            {
                return Err(hostile("malformed whiteout"));
            }
            return remove_any(&parent.join(target));
        }
        let path = parent.join(name);
        self.stats.inodes += 1;
        match kind {
            EntryType::Directory => {
                match fs::symlink_metadata(&path) {
                    Ok(m) if m.is_dir() => {}
                    Ok(_) => {
                        remove_any(&path)?;
                        fs::create_dir(&path).map_err(io("create directory", &path))?;
                    }
                    Err(_) => fs::create_dir(&path).map_err(io("create directory", &path))?,
                }
                self.stats.data_bytes += 4096;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // The size a file declares (for a sparse one, its size with the holes) is
                // checked before a byte is written: a tiny layer can declare terabytes.
                let declared = entry.size();
                self.check_size(declared).map_err(|r| hostile(&r))?;
                replace_existing(&path)?;
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .mode(0o600)
                    .open(&path)
                    .map_err(io("create", &path))?;
                let written = write_keeping_holes(&mut entry, &mut file, declared)
                    .map_err(io("write", &path))?;
                self.stats.apparent_bytes += declared;
                self.stats.data_bytes += written;
                if self.stats.data_bytes > MAX_UNPACKED_BYTES {
                    return Err(OciError::TooLarge {
                        what: format!("the image unpacked (at layer {layer})"),
                        limit: MAX_UNPACKED_BYTES,
                    });
                }
            }
            EntryType::Symlink => {
                replace_existing(&path)?;
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| hostile("a symlink without a target"))?
                    .into_owned();
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .map_err(io("create symlink", &path))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| hostile("a hardlink without a target"))?
                    .into_owned();
                let target_components = clean_components(Path::new(OsStr::from_bytes(&target)))
                    .map_err(|r| hostile(&format!("its hardlink target {}", r)))?;
                let Some((target_name, target_parents)) = target_components.split_last() else {
                    return Err(hostile("a hardlink to the root directory"));
                };
                let target_dir = self
                    .resolve_dir(target_parents, false)
                    .map_err(|r| hostile(&format!("its hardlink target: {r}")))?;
                let source = target_dir.join(target_name);
                match fs::symlink_metadata(&source) {
                    Ok(m) if m.is_dir() => return Err(hostile("a hardlink to a directory")),
                    Ok(_) => {}
                    Err(_) => return Err(hostile("a hardlink to a file the image does not have")),
                }
                if source != path {
                    replace_existing(&path)?;
                    fs::hard_link(&source, &path).map_err(io("create hardlink", &path))?;
                }
                state.created.insert(path);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                replace_existing(&path)?;
                let header = entry.header();
                let (file_type, needs_root) = match kind {
                    EntryType::Char => (rustix::fs::FileType::CharacterDevice, true),
                    EntryType::Block => (rustix::fs::FileType::BlockDevice, true),
                    _ => (rustix::fs::FileType::Fifo, false),
                };
                if needs_root && !self.privileged {
                    self.stats.skipped_privileged += 1;
                    return Ok(());
                }
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let mode = rustix::fs::Mode::from_raw_mode(header.mode().unwrap_or(0o644) & 0o7777);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    &path,
                    file_type,
                    mode,
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| io("create device node", &path)(e.into()))?;
            }
            other => {
                tracing::warn!(layer, entry = %entry_name, "skipping tar entry of unsupported type {other:?}");
                return Ok(());
            }
        }
        self.apply_metadata(&path, &mut entry, kind)?;
        state.created.insert(path);
        Ok(())
    }

    fn apply_metadata<R: Read>(
        &mut self,
        path: &Path,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
    ) -> Result<()> {
        let header = entry.header().clone();
        if self.privileged {
            let uid = header.uid().unwrap_or(0);
            let gid = header.gid().unwrap_or(0);
            std::os::unix::fs::lchown(path, Some(uid as u32), Some(gid as u32))
                .map_err(io("set owner of", path))?;
        } else if header.uid().unwrap_or(0) != 0 || header.gid().unwrap_or(0) != 0 {
            self.stats.skipped_privileged += 1;
        }
        if kind != EntryType::Symlink {
            let mode = header.mode().unwrap_or(0o644) & 0o7777;
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .map_err(io("set mode of", path))?;
        }
        if let Ok(Some(extensions)) = entry.pax_extensions() {
            for ext in extensions.flatten() {
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    let name = OsStr::from_bytes(name);
                    if let Err(e) = rustix::fs::lsetxattr(
                        path,
                        name,
                        ext.value_bytes(),
                        rustix::fs::XattrFlags::empty(),
                    ) {
                        tracing::warn!(path = %path.display(), "cannot set extended attribute {}: {e}", name.to_string_lossy());
                    }
                }
            }
        }
        if kind != EntryType::Directory {
            let mtime = header.mtime().unwrap_or(0) as i64;
            let ts = rustix::fs::Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                },
            };
            let _ = rustix::fs::utimensat(
                rustix::fs::CWD,
                path,
                &ts,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            );
        }
        Ok(())
    }

    /// Removes everything in `dir` that this layer did not create.
    fn make_opaque(&self, dir: &Path, state: &LayerState) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io("list", dir)(e)),
        };
        for entry in entries {
            let path = entry.map_err(io("list", dir))?.path();
            if !state.created.contains(&path) {
                remove_any(&path)?;
            }
        }
        Ok(())
    }

    /// Resolves directory components below the root, following symlinks as if the root
    /// were `/`. Missing directories are created when `create` is set.
    fn resolve_dir(
        &self,
        components: &[OsString],
        create: bool,
    ) -> std::result::Result<PathBuf, String> {
        let mut resolved: Vec<OsString> = Vec::new();
        let mut pending: Vec<OsString> = components.iter().rev().cloned().collect();
        let mut hops = 0;
        while let Some(component) = pending.pop() {
            if component == ".." {
                if resolved.pop().is_none() {
                    return Err("a symlink on its path climbs out of the image root".into());
                }
                continue;
            }
            if component == "." || component.is_empty() {
                continue;
            }
            let candidate: PathBuf = self
                .root
                .join(resolved.iter().collect::<PathBuf>())
                .join(&component);
            match fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err("too many levels of symlinks on its path".into());
                    }
                    let target = fs::read_link(&candidate).map_err(|e| e.to_string())?;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    for part in target.components().rev() {
                        match part {
                            Component::Normal(p) => pending.push(p.to_os_string()),
                            Component::ParentDir => pending.push("..".into()),
                            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                        }
                    }
                }
                Ok(m) if m.is_dir() => resolved.push(component),
                Ok(_) => {
                    if !create {
                        return Err(format!("{} is not a directory", candidate.display()));
                    }
                    // A later layer turns a file into a directory.
                    remove_any(&candidate).map_err(|e| e.to_string())?;
                    fs::create_dir(&candidate).map_err(|e| e.to_string())?;
                    resolved.push(component);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    fs::create_dir(&candidate).map_err(|e| e.to_string())?;
                    fs::set_permissions(&candidate, fs::Permissions::from_mode(0o755))
                        .map_err(|e| e.to_string())?;
                    resolved.push(component);
                }
                Err(e) => return Err(format!("{}: {e}", candidate.display())),
            }
        }
        Ok(self.root.join(resolved.iter().collect::<PathBuf>()))
    }
}

#[derive(Default)]
struct LayerState {
    created: HashSet<PathBuf>,
}

/// Copies at most `limit` bytes of `from` into `file`, skipping all-zero 4 KiB blocks so
/// they stay holes (a sparse entry's holes, and zeros written out in full alike). Returns
/// the bytes of the blocks written.
fn write_keeping_holes(from: &mut impl Read, file: &mut fs::File, limit: u64) -> io::Result<u64> {
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

/// Splits an entry name into components, refusing absolute names and `..`.
fn clean_components(path: &Path) -> std::result::Result<Vec<OsString>, &'static str> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p.to_os_string()),
            Component::CurDir => {}
            Component::ParentDir => return Err("its name contains '..'"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("its name is an absolute path");
            }
        }
    }
    Ok(out)
}

/// Makes room for a new entry: removes a file, symlink or directory tree in its place.
fn replace_existing(path: &Path) -> Result<()> {
    remove_any(path)
}

fn remove_any(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path).map_err(io("remove", path)),
        Ok(_) => fs::remove_file(path).map_err(io("remove", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("inspect", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_cleaned() {
        assert_eq!(
            clean_components(Path::new("./etc/passwd")).unwrap(),
            ["etc", "passwd"]
        );
        assert!(clean_components(Path::new("/etc/passwd")).is_err());
        assert!(clean_components(Path::new("a/../../b")).is_err());
        assert!(clean_components(Path::new("./")).unwrap().is_empty());
    }

    #[test]
    fn zeros_stay_holes_and_sizes_are_checked_first() {
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

        let mut unpacker = Unpacker::new(dir.path());
        assert!(unpacker.check_size(16 << 30).is_ok());
        assert!(unpacker.check_size(MAX_ENTRY_BYTES + 1).is_err());
        unpacker.stats.apparent_bytes = MAX_UNPACKED_BYTES - 10;
        assert!(unpacker.check_size(10).is_ok());
        let err = unpacker.check_size(11).unwrap_err();
        assert!(
            err.contains("more than the 68719476736 bytes accepted"),
            "{err}"
        );
    }

    #[test]
    fn compression_is_sniffed() {
        assert_eq!(sniff_compression(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            sniff_compression(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(sniff_compression(b"etc/"), Compression::None);
    }
}
