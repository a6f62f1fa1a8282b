//! An image's root disk, written straight from its layers: file data streams from each
//! layer into the ext4 filesystem as the layer is read (the unpacker's [`Sink`]), and the
//! names, owners, modes, device nodes, links and extended attributes of the image as the
//! layers left it are written once all are applied. No staging tree, no root needed.

use std::collections::HashMap;
use std::io::Read;

use ignite_disk::{Attrs, DiskError, Ext4Writer, FileKind, ROOT_INO, Special};
use ignite_oci::unpack::{Kind, Meta, NodeId, ROOT, Sink, SinkResult, Tree};

/// Regular files go into the filesystem as unlinked inodes while their layer streams.
pub(crate) struct DiskSink {
    pub writer: Ext4Writer,
}

impl Sink for DiskSink {
    type Data = u32;

    fn write_file(&mut self, data: &mut dyn Read, size: u64) -> SinkResult<(u32, u64)> {
        Ok(self.writer.new_file(data, size)?)
    }

    fn discard(&mut self, ino: u32) -> SinkResult<()> {
        Ok(self.writer.discard(ino)?)
    }
}

/// Writes the image's names and attributes (its files' data is already in place).
pub(crate) fn write_tree(tree: &Tree<u32>, writer: &mut Ext4Writer) -> Result<(), DiskError> {
    let mut out = TreeWriter {
        tree,
        writer,
        inodes: HashMap::new(),
    };
    out.dir(ROOT, ROOT_INO)?;
    // Non-directories last, once every name is linked: their link counts are known.
    let done: Vec<(NodeId, u32)> = out.inodes.iter().map(|(k, v)| (*k, *v)).collect();
    for (id, ino) in done {
        let node = tree.node(id);
        let links = u16::try_from(node.links).map_err(|_| DiskError::Name {
            name: format!("inode {ino}"),
            reason: "more than 65535 hardlinks to one file",
        })?;
        if matches!(node.kind, Kind::Symlink(_)) {
            // A symlink's permissions mean nothing; Linux makes every one 0777.
            let meta = Meta {
                mode: 0o777,
                ..node.meta.clone()
            };
            out.attributes(ino, &meta, Some(links))?;
        } else {
            out.attributes(ino, &node.meta, Some(links))?;
        }
    }
    Ok(())
}

struct TreeWriter<'a> {
    tree: &'a Tree<u32>,
    writer: &'a mut Ext4Writer,
    /// The inode of each non-directory given its first name.
    inodes: HashMap<NodeId, u32>,
}

impl TreeWriter<'_> {
    fn dir(&mut self, id: NodeId, ino: u32) -> Result<(), DiskError> {
        for (name, child) in self.tree.children(id) {
            let node = self.tree.node(child);
            let kind = match &node.kind {
                Kind::Dir(_) => {
                    let dir = self.writer.mkdir(ino, name)?;
                    self.dir(child, dir)?;
                    self.attributes(dir, &node.meta, None)?;
                    continue;
                }
                Kind::File { .. } => FileKind::Regular,
                Kind::Symlink(_) => FileKind::Symlink,
                Kind::Char { .. } => FileKind::Char,
                Kind::Block { .. } => FileKind::Block,
                Kind::Fifo => FileKind::Fifo,
            };
            if let Some(existing) = self.inodes.get(&child) {
                self.writer.link(ino, name, *existing, kind)?;
                continue;
            }
            let new = match &node.kind {
                Kind::File { data, .. } => {
                    self.writer.link(ino, name, *data, kind)?;
                    *data
                }
                Kind::Symlink(target) => self.writer.symlink(ino, name, target)?,
                Kind::Char { major, minor } => self.special(
                    ino,
                    name,
                    Special::Char {
                        major: *major,
                        minor: *minor,
                    },
                    kind,
                )?,
                Kind::Block { major, minor } => self.special(
                    ino,
                    name,
                    Special::Block {
                        major: *major,
                        minor: *minor,
                    },
                    kind,
                )?,
                Kind::Fifo => self.special(ino, name, Special::Fifo, kind)?,
                Kind::Dir(_) => unreachable!("directories are made above"),
            };
            self.inodes.insert(child, new);
        }
        Ok(())
    }

    fn special(
        &mut self,
        dir: u32,
        name: &[u8],
        special: Special,
        kind: FileKind,
    ) -> Result<u32, DiskError> {
        let ino = self.writer.special(special)?;
        self.writer.link(dir, name, ino, kind)?;
        Ok(ino)
    }

    fn attributes(&mut self, ino: u32, meta: &Meta, links: Option<u16>) -> Result<(), DiskError> {
        self.writer.set_attrs(
            ino,
            Attrs {
                uid: meta.uid,
                gid: meta.gid,
                perm: meta.mode,
                mtime: meta.mtime,
            },
            links,
        )?;
        self.writer.set_xattrs(ino, &meta.xattrs)
    }
}
