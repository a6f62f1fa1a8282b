//! The image's filesystem as the layers build it: names, inodes and their metadata, kept in
//! memory while file data streams straight to its destination (a root disk, or files
//! beside a directory tree). Layers are applied to this model, with every hostile-layer
//! rule, before anything is written out; whiteouts and replaced files only ever drop names.

use std::collections::BTreeMap;

/// A node's index in its [`Tree`]; never reused.
pub type NodeId = usize;

/// The root directory.
pub const ROOT: NodeId = 0;

/// What a tar header says about an inode besides its kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    pub uid: u32,
    pub gid: u32,
    /// Permission bits with setuid, setgid and sticky (`0o7777`).
    pub mode: u32,
    pub mtime: i64,
    /// Extended attributes (`SCHILY.xattr.*` records), in the layer's order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug)]
pub enum Kind<D> {
    Dir(BTreeMap<Vec<u8>, NodeId>),
    /// A regular file whose data its sink holds.
    File {
        data: D,
        size: u64,
    },
    Symlink(Vec<u8>),
    Char {
        major: u32,
        minor: u32,
    },
    Block {
        major: u32,
        minor: u32,
    },
    Fifo,
}

#[derive(Debug)]
pub struct Node<D> {
    pub meta: Meta,
    pub kind: Kind<D>,
    /// The names this inode has (hardlinks); always 1 for a directory.
    pub links: u32,
}

/// The image's filesystem.
#[derive(Debug)]
pub struct Tree<D> {
    nodes: Vec<Option<Node<D>>>,
}

impl<D> Default for Tree<D> {
    fn default() -> Self {
        Tree {
            nodes: vec![Some(Node {
                meta: Meta {
                    mode: 0o755,
                    ..Meta::default()
                },
                kind: Kind::Dir(BTreeMap::new()),
                links: 1,
            })],
        }
    }
}

impl<D> Tree<D> {
    pub fn node(&self, id: NodeId) -> &Node<D> {
        self.nodes[id]
            .as_ref()
            .expect("a node reached by a name exists")
    }

    pub(crate) fn node_mut(&mut self, id: NodeId) -> &mut Node<D> {
        self.nodes[id]
            .as_mut()
            .expect("a node reached by a name exists")
    }

    /// The entries of directory `dir` (sorted by name), empty for anything else.
    pub fn children(&self, dir: NodeId) -> impl Iterator<Item = (&[u8], NodeId)> {
        let map = match &self.node(dir).kind {
            Kind::Dir(map) => Some(map),
            _ => None,
        };
        map.into_iter()
            .flat_map(|m| m.iter().map(|(k, v)| (k.as_slice(), *v)))
    }

    pub fn child(&self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        match &self.node(dir).kind {
            Kind::Dir(map) => map.get(name).copied(),
            _ => None,
        }
    }

    /// The node at `path` (`/`-separated, from the root), following no symlink.
    pub fn lookup(&self, path: &str) -> Option<NodeId> {
        path.split('/')
            .filter(|c| !c.is_empty())
            .try_fold(ROOT, |dir, name| self.child(dir, name.as_bytes()))
    }

    pub(crate) fn add(&mut self, node: Node<D>) -> NodeId {
        self.nodes.push(Some(node));
        self.nodes.len() - 1
    }

    /// Names `id` as `name` in `dir` (which has no such name), counting the link.
    pub(crate) fn insert(&mut self, dir: NodeId, name: Vec<u8>, id: NodeId) {
        if let Kind::Dir(map) = &mut self.node_mut(dir).kind {
            map.insert(name, id);
        }
        if !matches!(self.node(id).kind, Kind::Dir(_)) || self.node(id).links == 0 {
            self.node_mut(id).links += 1;
        }
    }

    /// Drops the name `name` from `dir`. Returns the data of every file that lost its last
    /// name (a directory's whole subtree goes with it), for the sink to free.
    pub(crate) fn remove(&mut self, dir: NodeId, name: &[u8]) -> Vec<D> {
        let removed = match &mut self.node_mut(dir).kind {
            Kind::Dir(map) => map.remove(name),
            _ => None,
        };
        let mut freed = Vec::new();
        let mut pending: Vec<NodeId> = removed.into_iter().collect();
        while let Some(id) = pending.pop() {
            let node = self.node_mut(id);
            node.links -= 1;
            if node.links > 0 {
                continue;
            }
            match self.nodes[id].take().map(|n| n.kind) {
                Some(Kind::Dir(map)) => pending.extend(map.into_values()),
                Some(Kind::File { data, .. }) => freed.push(data),
                _ => {}
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tree: &mut Tree<u32>, data: u32) -> NodeId {
        tree.add(Node {
            meta: Meta::default(),
            kind: Kind::File { data, size: 1 },
            links: 0,
        })
    }

    #[test]
    fn names_drop_and_the_last_frees_the_data() {
        let mut tree: Tree<u32> = Tree::default();
        let dir = tree.add(Node {
            meta: Meta::default(),
            kind: Kind::Dir(BTreeMap::new()),
            links: 0,
        });
        tree.insert(ROOT, b"d".to_vec(), dir);
        let a = file(&mut tree, 7);
        tree.insert(dir, b"a".to_vec(), a);
        tree.insert(ROOT, b"a-link".to_vec(), a);
        let b = file(&mut tree, 8);
        tree.insert(dir, b"b".to_vec(), b);
        assert_eq!(tree.node(a).links, 2);
        assert_eq!(tree.lookup("/d/a"), Some(a));
        // A whiteout of one name of a hardlinked file only drops that name.
        assert!(tree.remove(ROOT, b"a-link").is_empty());
        assert_eq!(tree.node(a).links, 1);
        tree.insert(ROOT, b"a-link".to_vec(), a);
        // Removing the directory frees what only it named.
        let mut freed = tree.remove(ROOT, b"d");
        freed.sort();
        assert_eq!(freed, [8]);
        assert_eq!(tree.node(a).links, 1);
        assert_eq!(tree.lookup("d"), None);
        assert_eq!(tree.remove(ROOT, b"a-link"), [7]);
    }
}
