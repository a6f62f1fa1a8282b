//! Applies image layers to a model of the image's filesystem ([`Tree`]), treating every
//! layer as hostile, while each file's data streams straight to a [`Sink`]: the root disk
//! (written in place, see `ignite-disk`'s writer) or files beside a directory tree
//! ([`DirSink`], for kernels). Nothing is staged and read back.
//!
//! - Entry names with `..` or an absolute path are refused.
//! - Parent directories are resolved one component at a time; symlinks met on the way are
//!   followed as if the image's root were `/` (`/x` means `<root>/x`), and a link that
//!   would climb above the root is refused.
//! - The entry itself is never followed: an existing symlink in its place is replaced.
//! - Hardlinks must point at an existing non-directory inside the image.
//! - Whiteouts (`.wh.<name>`) delete from lower layers (one name: a hardlinked file keeps
//!   its other names); opaque markers (`.wh..wh..opq`) hide what lower layers put in a
//!   directory but keep what this layer adds. Markers are never written out.
//! - Owners, modes (setuid included), device nodes, symlinks, hardlinks, mtimes and
//!   extended attributes come from the tar headers, whoever runs the import.
//! - Every layer's uncompressed stream is hashed: that is its `diff_id`.

mod dir;
mod tree;

use std::collections::{BTreeMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use tar::EntryType;

use crate::digest::{Digest, HashingReader};
use crate::error::{OciError, Result};
use crate::targuard::{ExtendedHeaderTooLarge, TarGuard};

pub use dir::DirSink;
pub use tree::{Kind, Meta, Node, NodeId, ROOT, Tree};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const MAX_SYMLINK_HOPS: usize = 40;
/// The most an image may unpack to; a small layer can decompress to a great deal.
pub const MAX_UNPACKED_BYTES: u64 = 64 << 30;
/// The largest single file a layer may hold (its apparent size, holes included).
pub const MAX_ENTRY_BYTES: u64 = MAX_UNPACKED_BYTES;
/// Holes are kept at this granularity: an all-zero block is skipped, not written.
pub const HOLE_BLOCK: usize = 4096;
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
    /// Entries that need root to create (device nodes, ownership) and were skipped (only
    /// a directory tree written by a normal user skips them).
    pub skipped_privileged: u64,
}

/// Where files' data goes as it streams out of a layer.
pub trait Sink {
    /// A stored file's data (a handle the sink understands).
    type Data;
    /// Stores at most `size` bytes of `data`, all-zero 4 KiB blocks as holes; returns the
    /// handle and the bytes of the blocks written.
    fn write_file(&mut self, data: &mut dyn Read, size: u64) -> SinkResult<(Self::Data, u64)>;
    /// Frees a file no name refers to any more.
    fn discard(&mut self, data: Self::Data) -> SinkResult<()>;
}

pub type SinkError = Box<dyn std::error::Error + Send + Sync>;
pub type SinkResult<T> = std::result::Result<T, SinkError>;

/// Applies layers to one image.
pub struct Unpacker<S: Sink> {
    sink: S,
    tree: Tree<S::Data>,
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

impl<S: Sink> Unpacker<S> {
    pub fn with_sink(sink: S) -> Unpacker<S> {
        Unpacker {
            sink,
            tree: Tree::default(),
            stats: UnpackStats::default(),
        }
    }

    /// The image as applied so far.
    pub fn tree(&self) -> &Tree<S::Data> {
        &self.tree
    }

    /// The image and the sink holding its files' data, to be written out.
    pub fn into_parts(self) -> (Tree<S::Data>, S, UnpackStats) {
        (self.tree, self.sink, self.stats)
    }

    /// Applies one layer (compressed or not) and returns the digest of its uncompressed
    /// stream (its `diff_id`). The layer is decompressed on a thread of its own while this
    /// one hashes, parses and writes what comes out (two cores: about a third faster).
    pub fn apply(&mut self, layer: &str, reader: impl Read + Send) -> Result<Digest> {
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel(DECODED_CHUNKS);
            scope.spawn(move || decompress(reader, &tx));
            let mut hashing = HashingReader::new(ChannelReader {
                rx,
                chunk: Vec::new(),
                at: 0,
            });
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
            // The diff_id covers the whole stream, including padding after the archive's
            // end (bounded: trailing bytes are never written anywhere, but need not be
            // endless). Returning drops the channel, which stops the decompressing thread.
            io::copy(&mut (&mut hashing).take(MAX_TRAILER_BYTES), &mut io::sink())
                .map_err(|e| self.read_error(layer, e))?;
            Ok(hashing.finish().0)
        })
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
        let meta = read_meta(&mut entry);
        let parent = self
            .resolve_dir(parents, Some(&meta))
            .map_err(|r| hostile(&r))?;
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if name.as_slice() == OPAQUE_MARKER.as_bytes() {
                return self
                    .make_opaque(parent, state)
                    .map_err(|e| self.write_error(layer, &entry_name, e));
            }
            if target.is_empty()
                || target == b"."
                || target == b".."
                || target.starts_with(WHITEOUT_PREFIX.as_bytes())
            {
                return Err(hostile("malformed whiteout"));
            }
            return self
                .remove(parent, target)
                .map_err(|e| self.write_error(layer, &entry_name, e));
        }
        self.stats.inodes += 1;
        let new_kind = match kind {
            EntryType::Directory => {
                self.stats.data_bytes += 4096;
                match self.tree.child(parent, name) {
                    Some(id) if matches!(self.tree.node(id).kind, Kind::Dir(_)) => {
                        // A later layer's entry for a directory sets its attributes.
                        self.tree.node_mut(id).meta = meta;
                        state.created.insert((parent, name.clone()));
                        return Ok(());
                    }
                    _ => Kind::Dir(BTreeMap::new()),
                }
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                // The size a file declares (for a sparse one, its size with the holes) is
                // checked before a byte is written: a tiny layer can declare terabytes.
                let declared = entry.size();
                self.check_size(declared).map_err(|r| hostile(&r))?;
                let (data, written) = self
                    .sink
                    .write_file(&mut entry, declared)
                    .map_err(|e| self.write_error(layer, &entry_name, e))?;
                self.stats.apparent_bytes += declared;
                self.stats.data_bytes += written;
                let kind = Kind::File {
                    data,
                    size: declared,
                };
                if self.stats.data_bytes > MAX_UNPACKED_BYTES {
                    return Err(OciError::TooLarge {
                        what: format!("the image unpacked (at layer {layer})"),
                        limit: MAX_UNPACKED_BYTES,
                    });
                }
                kind
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| hostile("a symlink without a target"))?
                    .into_owned();
                if target.is_empty() {
                    return Err(hostile("a symlink without a target"));
                }
                Kind::Symlink(target)
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
                    .resolve_dir(target_parents, None)
                    .map_err(|r| hostile(&format!("its hardlink target: {r}")))?;
                let source = match self.tree.child(target_dir, target_name) {
                    Some(id) if matches!(self.tree.node(id).kind, Kind::Dir(_)) => {
                        return Err(hostile("a hardlink to a directory"));
                    }
                    Some(id) => id,
                    None => return Err(hostile("a hardlink to a file the image does not have")),
                };
                if (target_dir, target_name) != (parent, name) {
                    self.remove(parent, name)
                        .map_err(|e| self.write_error(layer, &entry_name, e))?;
                    self.tree.insert(parent, name.clone(), source);
                }
                state.created.insert((parent, name.clone()));
                return Ok(());
            }
            EntryType::Char | EntryType::Block => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                if kind == EntryType::Char {
                    Kind::Char { major, minor }
                } else {
                    Kind::Block { major, minor }
                }
            }
            EntryType::Fifo => Kind::Fifo,
            other => {
                tracing::warn!(layer, entry = %entry_name, "skipping tar entry of unsupported type {other:?}");
                return Ok(());
            }
        };
        // The entry replaces whatever had its name (never followed).
        self.remove(parent, name)
            .map_err(|e| self.write_error(layer, &entry_name, e))?;
        let id = self.tree.add(Node {
            meta,
            kind: new_kind,
            links: 0,
        });
        self.tree.insert(parent, name.clone(), id);
        state.created.insert((parent, name.clone()));
        Ok(())
    }

    fn write_error(&self, layer: &str, entry: &str, source: SinkError) -> OciError {
        OciError::Write {
            layer: layer.to_string(),
            entry: entry.to_string(),
            source,
        }
    }

    /// Drops the name `name` from `dir`, freeing the data of files left without a name.
    fn remove(&mut self, dir: NodeId, name: &[u8]) -> SinkResult<()> {
        for data in self.tree.remove(dir, name) {
            self.sink.discard(data)?;
        }
        Ok(())
    }

    /// Removes everything in `dir` that this layer did not create.
    fn make_opaque(&mut self, dir: NodeId, state: &LayerState) -> SinkResult<()> {
        let hidden: Vec<Vec<u8>> = self
            .tree
            .children(dir)
            .filter(|(name, _)| !state.created.contains(&(dir, name.to_vec())))
            .map(|(name, _)| name.to_vec())
            .collect();
        for name in hidden {
            self.remove(dir, &name)?;
        }
        Ok(())
    }

    /// Resolves directory components below the root, following symlinks as if the root
    /// were `/`. Missing directories (and files in the way) are made directories when
    /// `create` gives their attributes.
    fn resolve_dir(
        &mut self,
        components: &[Vec<u8>],
        create: Option<&Meta>,
    ) -> std::result::Result<NodeId, String> {
        // The directories walked through, root first: `..` steps back along them.
        let mut resolved: Vec<NodeId> = vec![ROOT];
        let mut shown: Vec<Vec<u8>> = Vec::new();
        let mut pending: Vec<Vec<u8>> = components.iter().rev().cloned().collect();
        let mut hops = 0;
        while let Some(component) = pending.pop() {
            if component == b".." {
                if resolved.len() == 1 {
                    return Err("a symlink on its path climbs out of the image root".into());
                }
                resolved.pop();
                shown.pop();
                continue;
            }
            if component == b"." || component.is_empty() {
                continue;
            }
            let dir = *resolved.last().expect("the root stays");
            let shown_path = || {
                let mut p = shown.join(&b'/');
                p.push(b'/');
                p.extend_from_slice(&component);
                String::from_utf8_lossy(&p).into_owned()
            };
            match self.tree.child(dir, &component) {
                Some(id) => match &self.tree.node(id).kind {
                    Kind::Symlink(target) => {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS {
                            return Err("too many levels of symlinks on its path".into());
                        }
                        if target.starts_with(b"/") {
                            resolved.truncate(1);
                            shown.clear();
                        }
                        for part in target.split(|b| *b == b'/').rev() {
                            if !part.is_empty() && part != b"." {
                                pending.push(part.to_vec());
                            }
                        }
                    }
                    Kind::Dir(_) => {
                        resolved.push(id);
                        shown.push(component);
                    }
                    _ => {
                        let Some(meta) = create else {
                            return Err(format!("{} is not a directory", shown_path()));
                        };
                        // A later layer turns a file into a directory.
                        self.remove(dir, &component).map_err(|e| e.to_string())?;
                        let id = self.new_dir(dir, &component, meta);
                        resolved.push(id);
                        shown.push(component);
                    }
                },
                None => {
                    let Some(meta) = create else {
                        return Err(format!("{} does not exist", shown_path()));
                    };
                    let id = self.new_dir(dir, &component, meta);
                    resolved.push(id);
                    shown.push(component);
                }
            }
        }
        Ok(*resolved.last().expect("the root stays"))
    }

    /// A directory the layer did not list but needs: root's, mode 0755, the entry's time.
    fn new_dir(&mut self, parent: NodeId, name: &[u8], entry: &Meta) -> NodeId {
        let id = self.tree.add(Node {
            meta: Meta {
                uid: 0,
                gid: 0,
                mode: 0o755,
                mtime: entry.mtime,
                xattrs: Vec::new(),
            },
            kind: Kind::Dir(BTreeMap::new()),
            links: 0,
        });
        self.tree.insert(parent, name.to_vec(), id);
        self.stats.inodes += 1;
        id
    }
}

/// An entry's owner, mode, mtime and extended attributes.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Meta {
    let header = entry.header();
    let mut meta = Meta {
        uid: header.uid().unwrap_or(0) as u32,
        gid: header.gid().unwrap_or(0) as u32,
        mode: header.mode().unwrap_or(0o644) & 0o7777,
        mtime: header.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Ok(Some(extensions)) = entry.pax_extensions() {
        for ext in extensions.flatten() {
            if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                meta.xattrs
                    .retain(|(existing, _)| existing.as_slice() != name);
                meta.xattrs
                    .push((name.to_vec(), ext.value_bytes().to_vec()));
            }
        }
    }
    meta
}

#[derive(Default)]
struct LayerState {
    /// (directory, name) of what this layer created, which its opaque markers keep.
    created: HashSet<(NodeId, Vec<u8>)>,
}

/// Decompressed chunks in flight between the threads (each [`DECODED_CHUNK`] bytes).
const DECODED_CHUNKS: usize = 8;
const DECODED_CHUNK: usize = 256 << 10;

type Chunk = io::Result<Vec<u8>>;

/// Decompresses `reader` (compression told by its first bytes) into chunks on `tx`, until
/// its end, an error (sent on), or the receiver hanging up.
fn decompress(reader: impl Read, tx: &std::sync::mpsc::SyncSender<Chunk>) {
    let mut buffered = BufReader::with_capacity(1 << 20, reader);
    let head = match buffered.fill_buf() {
        Ok(head) => head,
        Err(e) => {
            let _ = tx.send(Err(e));
            return;
        }
    };
    let mut decompressed: Box<dyn Read> = match sniff_compression(head) {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => match zstd::stream::read::Decoder::with_buffer(buffered) {
            Ok(d) => Box::new(d),
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        },
        Compression::None => Box::new(buffered),
    };
    loop {
        let mut chunk = vec![0u8; DECODED_CHUNK];
        let mut filled = 0;
        while filled < chunk.len() {
            match decompressed.read(&mut chunk[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
        if filled == 0 {
            return;
        }
        chunk.truncate(filled);
        if tx.send(Ok(chunk)).is_err() {
            return;
        }
    }
}

/// The decompressed stream, read back from the decompressing thread's chunks.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Chunk>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk?;
                    self.at = 0;
                }
                // The sender is gone: the end of the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Splits an entry name into components, refusing absolute names and `..`.
fn clean_components(path: &Path) -> std::result::Result<Vec<Vec<u8>>, &'static str> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p.as_bytes().to_vec()),
            Component::CurDir => {}
            Component::ParentDir => return Err("its name contains '..'"),
            Component::RootDir | Component::Prefix(_) => {
                return Err("its name is an absolute path");
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_cleaned() {
        assert_eq!(
            clean_components(Path::new("./etc/passwd")).unwrap(),
            [b"etc".to_vec(), b"passwd".to_vec()]
        );
        assert!(clean_components(Path::new("/etc/passwd")).is_err());
        assert!(clean_components(Path::new("a/../../b")).is_err());
        assert!(clean_components(Path::new("./")).unwrap().is_empty());
    }

    #[test]
    fn sizes_are_checked_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let mut unpacker = Unpacker::new(root).unwrap();
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
