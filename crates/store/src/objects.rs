//! One directory per object: `<root>/<kind>/<uid>/metadata.json`, plus whatever files
//! the object owns (disks, keys, sockets, logs) beside it.

use std::collections::HashSet;
use std::fs::{self, DirBuilder};
use std::marker::PhantomData;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ignite_api::manifest;
use ignite_api::{Image, Kernel, Kind, ObjectMeta, Snapshot, Time, Uid, Vm};
use rand::RngExt;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::atomic::{sync_dir, write_atomic};
use crate::error::{Result, StoreError, io};
use crate::lock::LockGuard;
use crate::names::unique_name;

/// The file that holds an object, inside its directory.
pub const METADATA_FILE: &str = "metadata.json";
const DIR_MODE: u32 = 0o700;
/// Changes (to a new random token) whenever an object of the kind is written or removed.
const GENERATION_FILE: &str = ".generation";
/// Summaries of every object (see [`Collection::summaries`]).
const INDEX_FILE: &str = ".index";
const FILE_MODE: u32 = 0o644;

/// A kind of object the store keeps.
pub trait StoredObject: Serialize + DeserializeOwned + Clone + Send + Sync {
    const KIND: Kind;
    /// The directory of this kind under the state root.
    const DIR: &'static str;
    /// Does an object without a name get a generated one?
    const GENERATES_NAMES: bool;
    fn meta(&self) -> &ObjectMeta;
    fn meta_mut(&mut self) -> &mut ObjectMeta;
}

impl StoredObject for Vm {
    const KIND: Kind = Kind::Vm;
    const DIR: &'static str = "vms";
    const GENERATES_NAMES: bool = true;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl StoredObject for Image {
    const KIND: Kind = Kind::Image;
    const DIR: &'static str = "images";
    const GENERATES_NAMES: bool = false;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl StoredObject for Kernel {
    const KIND: Kind = Kind::Kernel;
    const DIR: &'static str = "kernels";
    const GENERATES_NAMES: bool = false;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl StoredObject for Snapshot {
    const KIND: Kind = Kind::Snapshot;
    const DIR: &'static str = "snapshots";
    const GENERATES_NAMES: bool = true;
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The state root.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root`, creating its directories if needed.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        let store = Store { root };
        for dir in [Vm::DIR, Image::DIR, Kernel::DIR, Snapshot::DIR, "locks"] {
            create_dir_all(&store.root.join(dir))?;
        }
        Ok(store)
    }

    /// Opens the store for reading only: nothing is created, and a missing root reads
    /// as empty (so `ps` on a fresh machine shows an empty table rather than failing).
    pub fn open_existing(root: impl Into<PathBuf>) -> Store {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn vms(&self) -> Collection<'_, Vm> {
        Collection::new(self)
    }

    pub fn images(&self) -> Collection<'_, Image> {
        Collection::new(self)
    }

    pub fn kernels(&self) -> Collection<'_, Kernel> {
        Collection::new(self)
    }

    pub fn snapshots(&self) -> Collection<'_, Snapshot> {
        Collection::new(self)
    }

    fn lock_path(&self, name: &str) -> Result<PathBuf> {
        let dir = self.root.join("locks");
        create_dir_all(&dir)?;
        Ok(dir.join(name))
    }
}

fn create_dir_all(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io("create directory", dir))
}

/// What a listing found: the objects, and the entries that could not be read.
#[derive(Debug)]
pub struct Listing<T> {
    pub objects: Vec<T>,
    pub damaged: Vec<StoreError>,
}

/// Summary lines of every object, as built by [`Collection::summaries`].
#[derive(Debug)]
pub struct Summaries {
    pub lines: Vec<String>,
    pub damaged: Vec<StoreError>,
}

/// The objects of one kind.
#[derive(Debug)]
pub struct Collection<'s, T> {
    store: &'s Store,
    kind: PhantomData<T>,
}

impl<'s, T: StoredObject> Collection<'s, T> {
    fn new(store: &'s Store) -> Self {
        Collection {
            store,
            kind: PhantomData,
        }
    }

    /// `<root>/<kind>`.
    pub fn dir(&self) -> PathBuf {
        self.store.root.join(T::DIR)
    }

    /// `<root>/<kind>/<uid>`: the object's own directory, for its files.
    pub fn object_dir(&self, uid: &Uid) -> PathBuf {
        self.dir().join(uid.as_str())
    }

    fn metadata_path(&self, uid: &Uid) -> PathBuf {
        self.object_dir(uid).join(METADATA_FILE)
    }

    /// Locks one object against concurrent changes (held until the guard drops).
    pub fn lock(&self, uid: &Uid) -> Result<LockGuard> {
        LockGuard::acquire(&self.store.lock_path(&format!("{}-{}.lock", T::DIR, uid))?)
    }

    /// Locks an object that must exist. Never leaves a lock file behind for an object
    /// that is not there.
    fn lock_existing(&self, uid: &Uid) -> Result<LockGuard> {
        let not_found = || StoreError::NotFound {
            kind: T::KIND,
            query: uid.to_string(),
        };
        if !self.metadata_path(uid).exists() {
            return Err(not_found());
        }
        let lock = self.lock(uid)?;
        if !self.metadata_path(uid).exists() {
            lock.remove()?;
            return Err(not_found());
        }
        Ok(lock)
    }

    /// Locks the whole kind: creation and removal take it, so names stay unique.
    pub fn lock_pool(&self) -> Result<LockGuard> {
        LockGuard::acquire(&self.store.lock_path(&format!("{}.lock", T::DIR))?)
    }

    /// Reads one object by its exact uid.
    pub fn get(&self, uid: &Uid) -> Result<T> {
        let path = self.metadata_path(uid);
        match fs::read_to_string(&path) {
            Ok(text) => decode(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(StoreError::NotFound {
                kind: T::KIND,
                query: uid.to_string(),
            }),
            Err(e) => Err(io("read", path)(e)),
        }
    }

    /// The uids present on disk, sorted. Directories whose names are not uids (temporary
    /// or foreign files) are ignored.
    pub fn uids(&self) -> Result<Vec<Uid>> {
        let dir = self.dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("list", dir)(e)),
        };
        let mut uids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("list", &dir))?;
            if let Some(uid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Uid>().ok())
            {
                uids.push(uid);
            }
        }
        uids.sort();
        Ok(uids)
    }

    /// Every object of this kind, sorted by uid. An object whose file is damaged is
    /// reported in `damaged` and the others are still listed; a directory that has no
    /// metadata yet (creation in progress) is skipped.
    pub fn list(&self) -> Result<Listing<T>> {
        let uids = self.uids()?;
        let read = |uid: &Uid| -> Option<Result<T>> {
            match self.get(uid) {
                Err(StoreError::NotFound { .. }) => None,
                other => Some(other),
            }
        };
        // Reading is I/O and parsing bound; spread it over the cores for large stores.
        let results: Vec<Result<T>> = if uids.len() >= 64 {
            let threads = std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8);
            let chunk = uids.len().div_ceil(threads);
            std::thread::scope(|s| {
                let handles: Vec<_> = uids
                    .chunks(chunk)
                    .map(|part| s.spawn(move || part.iter().filter_map(read).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("a reader thread does not panic"))
                    .collect()
            })
        } else {
            uids.iter().filter_map(read).collect()
        };
        let mut listing = Listing {
            objects: Vec::with_capacity(results.len()),
            damaged: Vec::new(),
        };
        for r in results {
            match r {
                Ok(o) => listing.objects.push(o),
                Err(e) => listing.damaged.push(e),
            }
        }
        Ok(listing)
    }

    /// Finds one object by a unique prefix of its uid or name. An exact uid or name wins
    /// over prefixes; several matches are an error that lists them.
    pub fn find(&self, query: &str) -> Result<T> {
        let objects = self.list()?.objects;
        find_in(objects, query)
    }

    /// Stores a new object. A missing uid is generated, and so is a missing name for kinds
    /// that generate names; `metadata.created` is set to now if unset. Names and uids are
    /// unique per kind.
    pub fn create(&self, mut object: T) -> Result<T> {
        let _pool = self.lock_pool()?;
        let existing = self.list()?;
        let mut names: HashSet<String> = HashSet::new();
        for o in &existing.objects {
            names.insert(o.meta().name.clone());
        }
        let meta = object.meta_mut();
        if meta.name.is_empty() {
            if !T::GENERATES_NAMES {
                return Err(StoreError::NameRequired { kind: T::KIND });
            }
            meta.name = unique_name(|n| names.contains(n));
        } else if let Some(other) = existing.objects.iter().find(|o| o.meta().name == meta.name) {
            return Err(StoreError::NameTaken {
                kind: T::KIND,
                name: meta.name.clone(),
                uid: other
                    .meta()
                    .uid
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
            });
        }
        let taken = |uid: &Uid| self.object_dir(uid).exists();
        let uid = match meta.uid.clone() {
            Some(uid) if taken(&uid) => {
                return Err(StoreError::UidTaken {
                    kind: T::KIND,
                    uid: uid.to_string(),
                });
            }
            Some(uid) => uid,
            None => loop {
                let uid = Uid::from_bytes(rand::rng().random());
                if !taken(&uid) {
                    break uid;
                }
            },
        };
        meta.uid = Some(uid.clone());
        if meta.created.is_none() {
            meta.created = Some(Time::now());
        }
        let dir = self.object_dir(&uid);
        create_dir_all(&dir)?;
        sync_dir(&self.dir())?;
        self.write(&uid, &object)?;
        Ok(object)
    }

    /// Replaces a stored object with `object` (matched by its uid).
    pub fn save(&self, object: &T) -> Result<()> {
        let uid = uid_of(object);
        let _lock = self.lock_existing(&uid)?;
        self.write(&uid, object)
    }

    /// Like [`Collection::save`], for a caller that already holds the object's lock.
    pub fn save_locked(&self, object: &T) -> Result<()> {
        let uid = uid_of(object);
        if !self.metadata_path(&uid).exists() {
            return Err(StoreError::NotFound {
                kind: T::KIND,
                query: uid.to_string(),
            });
        }
        self.write(&uid, object)
    }

    /// Reads, changes and writes back one object under its lock.
    pub fn update<E>(
        &self,
        uid: &Uid,
        change: impl FnOnce(&mut T) -> std::result::Result<(), E>,
    ) -> std::result::Result<T, E>
    where
        E: From<StoreError>,
    {
        let _lock = self.lock_existing(uid)?;
        let mut object = self.get(uid)?;
        change(&mut object)?;
        // The uid is the object's identity; a change may not move it.
        object.meta_mut().uid = Some(uid.clone());
        self.write(uid, &object)?;
        Ok(object)
    }

    /// Removes an object and every file in its directory.
    pub fn delete(&self, uid: &Uid) -> Result<()> {
        let _pool = self.lock_pool()?;
        let lock = self.lock(uid)?;
        let dir = self.object_dir(uid);
        self.bump_generation()?;
        // Removing the metadata first makes a half-removed object invisible rather than
        // damaged if removal is interrupted.
        match fs::remove_file(dir.join(METADATA_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", dir.join(METADATA_FILE))(e)),
        }
        match fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("remove", dir)(e)),
        }
        sync_dir(&self.dir())?;
        self.bump_generation()?;
        lock.remove()
    }

    fn write(&self, uid: &Uid, object: &T) -> Result<()> {
        let text = manifest::to_json(object);
        self.bump_generation()?;
        write_atomic(&self.metadata_path(uid), text.as_bytes(), FILE_MODE)?;
        self.bump_generation()
    }

    /// Marks every summary index of this kind stale. Done both before and after a change,
    /// so that an index rebuilt while the change was under way is never taken as current.
    fn bump_generation(&self) -> Result<()> {
        let token = format!("{:032x}", rand::rng().random::<u128>());
        write_atomic(
            &self.dir().join(GENERATION_FILE),
            token.as_bytes(),
            FILE_MODE,
        )
    }

    fn generation(&self) -> String {
        fs::read_to_string(self.dir().join(GENERATION_FILE)).unwrap_or_default()
    }

    /// One line per object, made by `summarize`, for listings that must stay fast with
    /// thousands of objects (`ignite ps`). The lines are kept in an index file that every
    /// write or removal through the store invalidates, so a listing reads two small files
    /// instead of one file per object. `format` names the line format: an index made with
    /// another format is rebuilt. Lines must not contain a newline.
    ///
    /// The index is a cache: when it is stale, missing or unwritable, the lines are built
    /// from the objects themselves. A damaged object keeps the index from being saved, so
    /// it is reported on every listing until it is fixed.
    pub fn summaries(&self, format: &str, summarize: impl Fn(&T) -> String) -> Result<Summaries> {
        let generation = self.generation();
        let header = format!("{format}\t{generation}");
        let index_path = self.dir().join(INDEX_FILE);
        if let Ok(text) = fs::read_to_string(&index_path)
            && let Some(body) = text
                .strip_prefix(&header)
                .and_then(|b| b.strip_prefix('\n'))
        {
            return Ok(Summaries {
                lines: body.lines().map(str::to_string).collect(),
                damaged: Vec::new(),
            });
        }
        let listing = self.list()?;
        let lines: Vec<String> = listing.objects.iter().map(&summarize).collect();
        // Saved only if no write happened while the lines were being built.
        if listing.damaged.is_empty() && self.dir().is_dir() && self.generation() == generation {
            let mut text = header;
            text.push('\n');
            for line in &lines {
                text.push_str(line);
                text.push('\n');
            }
            if let Err(e) = write_atomic(&index_path, text.as_bytes(), FILE_MODE) {
                tracing::debug!("not saving the summary index: {e}");
            }
        }
        Ok(Summaries {
            lines,
            damaged: listing.damaged,
        })
    }
}

fn uid_of<T: StoredObject>(object: &T) -> Uid {
    object
        .meta()
        .uid
        .clone()
        .expect("stored objects always have a uid")
}

fn decode<T: StoredObject>(path: &Path, text: &str) -> Result<T> {
    // Stored objects are JSON written by us: decode directly (the hot path of `ps`), and
    // only for a damaged file take the slower route that names the bad field.
    if let Ok(object) = serde_json::from_str(text) {
        return Ok(object);
    }
    match manifest::decode(text) {
        Ok(object) => Ok(object),
        Err(source) => Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Prefix matching over uids and names, as Ignite does it.
pub fn find_in<T: StoredObject>(objects: Vec<T>, query: &str) -> Result<T> {
    let not_found = || StoreError::NotFound {
        kind: T::KIND,
        query: query.to_string(),
    };
    if query.is_empty() {
        return Err(not_found());
    }
    let uid_of = |o: &T| o.meta().uid.as_ref().map_or("", |u| u.as_str()).to_string();
    let exact: Vec<&T> = objects
        .iter()
        .filter(|o| uid_of(o) == query || o.meta().name == query)
        .collect();
    if exact.len() == 1 {
        return Ok(exact[0].clone());
    }
    let matches: Vec<&T> = if exact.is_empty() {
        objects
            .iter()
            .filter(|o| uid_of(o).starts_with(query) || o.meta().name.starts_with(query))
            .collect()
    } else {
        exact
    };
    match matches.len() {
        0 => Err(not_found()),
        1 => Ok(matches[0].clone()),
        _ => Err(StoreError::Ambiguous {
            kind: T::KIND,
            query: query.to_string(),
            candidates: matches
                .iter()
                .map(|o| format!("{} ({})", uid_of(o), o.meta().name))
                .collect(),
        }),
    }
}
