//! Importing OCI images as root disks, listing and removing them.
//!
//! An import resolves the source, fetches what is missing into the shared blob store,
//! writes the layers straight into a new ext4 root disk (checking every blob's digest and
//! every layer's diff_id on the way; see `root_disk`), and only then registers the Image.
//! The disk is written in a private directory and moved into place when complete: a failed
//! or interrupted import registers nothing and leaves nothing behind; blobs already
//! fetched stay for the next attempt.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ignite_api::is_image_id as looks_like_image_id;
use ignite_api::{Image, ImageRunConfig, ImageSource, ObjectMeta, Size, Vm};
use ignite_disk::{DiskFormat, TreeSize};
use ignite_oci::blobs::BlobStore;
use ignite_oci::digest::Digest;
use ignite_oci::digest::HashingReader;
use ignite_oci::engine::{Containerd, DockerEngine, EngineError, EngineKind};
use ignite_oci::fetch::{FetchedImage, Progress};
use ignite_oci::registry::RegistryClient;
use ignite_oci::registry::credentials::{CredentialStore, default_config_dir};
use ignite_oci::spec::Platform;
use ignite_oci::unpack::{Sink, Unpacker};
use ignite_oci::{OciError, layout};
use ignite_store::{Store, StoreError};

use crate::image_lookup::{
    EngineHit, EngineLookup, current_in_engine, export_from_docker, fetch_from_containerd,
    find_in_containerd, find_in_docker, find_in_engines, short_id,
};

/// The file name of a root disk under `<root>/rootfs/`.
const ROOTFS_DIR: &str = "rootfs";
const BLOBS_DIR: &str = "blobs";
const STAGING_DIR: &str = "tmp";
/// Registries reached over plain HTTP, besides loopback ones: `host[:port],...`.
pub const INSECURE_REGISTRIES_ENV: &str = "IGNITE_INSECURE_REGISTRIES";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Source(#[from] ignite_api::SourceError),
    #[error(transparent)]
    Oci(#[from] OciError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Disk(#[from] ignite_disk::DiskError),
    #[error(transparent)]
    GuestInit(#[from] crate::guest_init::GuestInitError),
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
    #[error("unknown platform {0:?}: use os/arch[/variant], e.g. linux/amd64")]
    Platform(String),
    #[error("{image} is used by {}: remove them first, or use -f to remove them too", vms.join(", "))]
    InUse { image: String, vms: Vec<String> },
}

pub(crate) fn io(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ImageError {
    let path = path.into();
    move |source| ImageError::Io(ignite_host_tools::PathError::new(action, path, source))
}

/// How to import.
#[derive(Debug, Default, Clone)]
pub struct ImportOptions {
    /// Ask the registry again even if an image of that name exists (a moved tag).
    pub pull: bool,
    /// `os/arch[/variant]`; the host's by default.
    pub platform: Option<String>,
    /// Where Docker's `config.json` with registry credentials is.
    pub registry_config_dir: Option<PathBuf>,
    /// Store the image under this name (an image reference) instead of its source's.
    pub name: Option<String>,
    /// The local engines a bare name is looked up in before the registry.
    pub lookup: EngineLookup,
}

/// What an import did.
#[derive(Debug)]
pub struct Imported {
    pub image: Image,
    /// False when an existing Image was reused as it was.
    pub fetched: bool,
}

/// Where an image's root disk is: one per image id (config digest), shared by all names.
pub fn rootfs_path(store: &Store, image_id: &str) -> PathBuf {
    let hex = image_id.strip_prefix("sha256:").unwrap_or(image_id);
    store.root().join(ROOTFS_DIR).join(format!("{hex}.ext4"))
}

/// Finds an Image by its exact name.
fn find_by_name(store: &Store, name: &str) -> Result<Option<Image>, ImageError> {
    Ok(store
        .images()
        .list()?
        .objects
        .into_iter()
        .find(|i| i.metadata.name == name))
}

/// Imports `source` (see [`ImageSource`]) unless an Image of that name exists. The name is
/// `--name`'s, else a registry reference's own, else the names the source gives (a `docker
/// save` archive's tags, an OCI layout's reference, the engine's tags for an ID), else the
/// source as written. A bare name may come from a local engine (see [`EngineLookup`]); an
/// image that came from Docker Engine is checked against it and imported again when its
/// tag now points at another image.
pub fn import_image(
    store: &Store,
    source: &str,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Imported, ImageError> {
    let source = ImageSource::parse(source)?;
    let explicit = match &options.name {
        Some(name) => Some(reference_name(name).ok_or_else(|| {
            ImageError::Source(ignite_api::SourceError::new(format!(
                "--name {name:?} must be an image reference such as ignite/debian:bookworm"
            )))
        })?),
        None => None,
    };
    // The name known before anything is read: an import of a name that exists reads nothing.
    let known_name = explicit.clone().or_else(|| match &source {
        ImageSource::Registry(_) => Some(source.image_name()),
        ImageSource::DockerDaemon { reference } if !looks_like_image_id(reference) => {
            Some(source.image_name())
        }
        ImageSource::Containerd { .. } => Some(source.image_name()),
        _ => None,
    });
    let existing = find_by_name(store, known_name.as_deref().unwrap_or(&source.image_name()))?;
    let mut pull = options.pull;
    if let Some(image) = &existing
        && !pull
    {
        match engine_update(image, options) {
            Some(newer) => {
                tracing::info!(
                    "{} now points at {} in {} (imported: {}): importing it",
                    image.metadata.name,
                    short_id(&newer.to_string()),
                    engine_of(&image.spec.oci),
                    short_id(image.status.image_id.as_deref().unwrap_or("-"))
                );
                pull = true;
            }
            None => {
                return Ok(Imported {
                    image: image.clone(),
                    fetched: false,
                });
            }
        }
    }
    let existing_id = existing
        .as_ref()
        .and_then(|i| i.status.oci_source.id.clone());
    let options = ImportOptions {
        pull,
        ..options.clone()
    };
    let fetched = match resolve_engine(&source, &options)? {
        Some((used, hit)) => {
            // Content already imported under another name is not exported again.
            if let Some(donor) = image_with_id(store, &hit.id().to_string())? {
                let names =
                    known_name.map_or_else(|| names_or(&hit.names(), &used), |name| vec![name]);
                let fill = |image: &mut Image| {
                    image.spec.oci = used.clone();
                    image.status = donor.status.clone();
                };
                return Ok(Imported {
                    image: store_named_all(store, &names, &used, &fill)?,
                    fetched: false,
                });
            }
            fetch_from_engine(store, used, hit, progress)?
        }
        None => {
            let Some(fetched) =
                fetch_source(store, &source, &options, progress, existing_id.as_deref())?
            else {
                tracing::info!("{} is up to date", source.image_name());
                return Ok(Imported {
                    image: existing.expect("only an existing image is up to date"),
                    fetched: false,
                });
            };
            fetched
        }
    };
    let names = match known_name {
        Some(name) => vec![name],
        None => names_or(&fetched.image.names, &fetched.source),
    };
    let image_id = fetched.image.config_digest.to_string();
    let disk = rootfs_path(store, &image_id);
    let unpacked = if disk.exists() {
        None
    } else {
        Some(build_rootfs(store, &fetched.source, &fetched.image, &disk)?)
    };
    // Images of the same content share a root disk, and what was seen building it.
    let has_init = match &unpacked {
        Some((_, has_init)) => Some(*has_init),
        None => store.images().list()?.objects.iter().find_map(|i| {
            (i.status.image_id.as_deref() == Some(image_id.as_str()))
                .then_some(i.status.has_init)
                .flatten()
        }),
    };
    let disk_size = fs::metadata(&disk).map_err(io("read", &disk))?.len();
    let content_id = content_id(&fetched.source, &fetched.image);
    let run = fetched.image.config.config.clone().unwrap_or_default();
    let fill = |image: &mut Image| {
        image.spec.oci = fetched.source.clone();
        image.status.oci_source.id = Some(content_id.clone());
        image.status.oci_source.size = Size::from_bytes(fetched.image.compressed_size);
        image.status.image_id = Some(image_id.clone());
        image.status.platform = Some(format!(
            "{}/{}",
            fetched.image.config.os, fetched.image.config.architecture
        ));
        image.status.config = Some(ImageRunConfig {
            entrypoint: run.entrypoint.clone().unwrap_or_default(),
            cmd: run.cmd.clone().unwrap_or_default(),
            env: run.env.clone().unwrap_or_default(),
            working_dir: run.working_dir.clone().unwrap_or_default(),
            user: run.user.clone().unwrap_or_default(),
        });
        if let Some((bytes, _)) = unpacked {
            image.status.unpacked_size = Some(Size::from_bytes(bytes));
        }
        image.status.has_init = has_init;
        image.status.disk_size = Some(Size::from_bytes(disk_size));
    };
    Ok(Imported {
        image: store_named_all(store, &names, &fetched.source, &fill)?,
        fetched: true,
    })
}

/// [`store_named`] for each of `names` (at least one); returns the first's Image.
fn store_named_all(
    store: &Store,
    names: &[String],
    source: &ImageSource,
    fill: &dyn Fn(&mut Image),
) -> Result<Image, ImageError> {
    let mut first = None;
    for name in names {
        let image = store_named(store, name, source, fill)?;
        first.get_or_insert(image);
    }
    first.ok_or_else(|| {
        ImageError::Source(ignite_api::SourceError::new(format!(
            "{source} gives the image no name: import it with --name"
        )))
    })
}

/// Creates or updates the Image `name` with `fill`; an update removes the root disk of the
/// content it replaces unless something still uses it.
fn store_named(
    store: &Store,
    name: &str,
    source: &ImageSource,
    fill: &dyn Fn(&mut Image),
) -> Result<Image, ImageError> {
    if let Some(old) = find_by_name(store, name)? {
        let old_id = old.status.image_id.clone();
        let uid = old.metadata.uid.clone().expect("stored images have a uid");
        let updated = store
            .images()
            .update(&uid, |image| -> Result<(), ImageError> {
                fill(image);
                Ok(())
            })?;
        if let Some(old_id) = old_id
            && Some(&old_id) != updated.status.image_id.as_ref()
        {
            remove_unused_rootfs(store, &old_id)?;
        }
        return Ok(updated);
    }
    let mut image = Image::new(
        ObjectMeta {
            name: name.to_string(),
            ..ObjectMeta::default()
        },
        source.clone(),
    );
    fill(&mut image);
    match store.images().create(image) {
        Ok(image) => Ok(image),
        // Another import of the same name won the race; theirs is as good.
        Err(StoreError::NameTaken { .. }) => {
            Ok(find_by_name(store, name)?.ok_or(StoreError::NotFound {
                kind: ignite_api::Kind::Image,
                query: name.to_string(),
            })?)
        }
        Err(e) => Err(e.into()),
    }
}

/// The names a source gives, as Images are named; the source as written when it gives none.
fn names_or(given: &[String], source: &ImageSource) -> Vec<String> {
    let mut names: Vec<String> = given.iter().filter_map(|n| reference_name(n)).collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        names.push(source.image_name());
    }
    names
}

/// The Image (any name) whose content is `image_id`, if one is imported.
fn image_with_id(store: &Store, image_id: &str) -> Result<Option<Image>, ImageError> {
    Ok(store
        .images()
        .list()?
        .objects
        .into_iter()
        .find(|i| i.status.image_id.as_deref() == Some(image_id)))
}

/// `name` as an Image is named: a reference in its familiar form (`local/hello:1`,
/// `alpine:latest`); `None` for what is not a reference (an image ID, a path).
fn reference_name(name: &str) -> Option<String> {
    if looks_like_image_id(name) {
        return None;
    }
    ignite_api::ImageReference::parse(name)
        .ok()
        .map(|r| r.familiar())
}

/// For an image that came from a local engine by name: the engine's image ID for that
/// name when it is another than the one imported (the user rebuilt it). One question to
/// the engine (two or three for containerd, which answers with the manifest); an engine
/// that is gone, or a lookup that may not use engines, changes nothing.
fn engine_update(image: &Image, options: &ImportOptions) -> Option<Digest> {
    match &image.spec.oci {
        ImageSource::DockerDaemon { reference } if !looks_like_image_id(reference) => {}
        ImageSource::Containerd { .. } => {}
        _ => return None,
    }
    if !options.lookup.uses_engines() {
        return None;
    }
    let platform = options
        .platform
        .as_deref()
        .and_then(Platform::parse)
        .unwrap_or_else(Platform::host);
    let current = current_in_engine(&image.spec.oci, &options.lookup, &platform)?;
    (image.status.image_id.as_deref() != Some(current.to_string().as_str())).then_some(current)
}

/// The engine an engine source names, for the log.
fn engine_of(source: &ImageSource) -> EngineKind {
    match source {
        ImageSource::Containerd { .. } => EngineKind::Containerd,
        _ => EngineKind::Docker,
    }
}

/// What a source gave, ready to unpack: the image, the source actually read (a bare name
/// found in a local engine becomes `docker-daemon:NAME`), and what must live until the
/// layers are read.
pub(crate) struct Fetched {
    pub image: FetchedImage,
    pub source: ImageSource,
    _export: Option<tempfile::TempDir>,
}

/// Resolves a source and gets what unpacking needs: from a registry into the blob store,
/// from a local layout or archive in place, from a local engine through an export into
/// staging. `None` when `current_id` (the content id of an existing import) is still
/// what the registry serves.
pub(crate) fn fetch_source(
    store: &Store,
    source: &ImageSource,
    options: &ImportOptions,
    progress: &dyn Progress,
    current_id: Option<&str>,
) -> Result<Option<Fetched>, ImageError> {
    let platform = match &options.platform {
        Some(p) => Platform::parse(p).ok_or_else(|| ImageError::Platform(p.clone()))?,
        None => Platform::host(),
    };
    let local = |image: FetchedImage| {
        Ok(Some(Fetched {
            image,
            source: source.clone(),
            _export: None,
        }))
    };
    match source {
        ImageSource::Registry(_)
        | ImageSource::DockerDaemon { .. }
        | ImageSource::Containerd { .. } => {
            if let Some((used, hit)) = resolve_engine(source, options)? {
                if let Some(id) = current_id
                    && id == format!("docker://{}", hit.id())
                {
                    return Ok(None);
                }
                return fetch_from_engine(store, used, hit, progress).map(Some);
            }
            let ImageSource::Registry(reference) = source else {
                unreachable!("an engine source resolves in its engine or fails")
            };
            let config_dir = default_config_dir(options.registry_config_dir.as_deref());
            let credentials = CredentialStore::load(config_dir.as_deref())?;
            let insecure = std::env::var(INSECURE_REGISTRIES_ENV)
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            let client = RegistryClient::new(credentials, insecure);
            if let Some(id) = current_id {
                // --pull: nothing to do when the tag still points at what we have.
                let current = client.resolve(reference)?;
                if id.ends_with(&current.to_string()) {
                    return Ok(None);
                }
            }
            let blobs = BlobStore::open(store.root().join(BLOBS_DIR))?;
            local(client.fetch(reference, &platform, &blobs, progress)?)
        }
        ImageSource::OciLayout { dir, tag } => {
            local(layout::fetch(dir, tag.as_deref(), &platform)?)
        }
        ImageSource::DockerArchive { file } => local(ignite_oci::archive::fetch(file)?),
        ImageSource::File(path) => Err(ImageError::Source(ignite_api::SourceError::new(format!(
            "{} is a file, not an image; for `docker save` output use docker-archive:{}",
            path.display(),
            path.display()
        )))),
    }
}

/// Where an engine source is: `docker-daemon:NAME` in Docker Engine and
/// `containerd:NAME` in containerd (which must have it), a bare name in the engines
/// `options.lookup` allows (the source becomes `docker-daemon:NAME` or `containerd:NAME`).
/// `None`: not an engine's.
fn resolve_engine(
    source: &ImageSource,
    options: &ImportOptions,
) -> Result<Option<(ImageSource, EngineHit)>, ImageError> {
    let platform = match &options.platform {
        Some(p) => Platform::parse(p).ok_or_else(|| ImageError::Platform(p.clone()))?,
        None => Platform::host(),
    };
    match source {
        ImageSource::DockerDaemon { reference } => {
            let hit = find_in_docker(reference, true)?.ok_or_else(|| {
                OciError::from(EngineError::NotFound {
                    engine: EngineKind::Docker,
                    socket: DockerEngine::socket_from_env().unwrap_or_default(),
                    image: reference.clone(),
                    namespace: None,
                })
            })?;
            Ok(Some((source.clone(), hit)))
        }
        ImageSource::Containerd { reference } => {
            let namespace = options.lookup.containerd_namespace.as_deref();
            let hit =
                find_in_containerd(reference, namespace, &platform, true)?.ok_or_else(|| {
                    OciError::from(EngineError::NotFound {
                        engine: EngineKind::Containerd,
                        socket: Containerd::socket_from_env(),
                        image: reference.clone(),
                        namespace: Containerd::namespace(namespace).ok(),
                    })
                })?;
            Ok(Some((source.clone(), hit)))
        }
        ImageSource::Registry(reference) => {
            Ok(find_in_engines(reference, &options.lookup, &platform)?
                .map(|hit| (hit.source(&reference.familiar()), hit)))
        }
        _ => Ok(None),
    }
}

/// Reads an image found in an engine: Docker's through an export, containerd's blob by
/// blob. Exported by ID, Docker's archive names nothing: the image is named by the name
/// asked for, or by the engine's tags when it was asked for by ID.
fn fetch_from_engine(
    store: &Store,
    used: ImageSource,
    hit: EngineHit,
    progress: &dyn Progress,
) -> Result<Fetched, ImageError> {
    let (image, export) = match (&used, hit) {
        (ImageSource::DockerDaemon { reference }, EngineHit::Docker { engine, image }) => {
            let (mut fetched, export) = export_from_docker(store, &engine, reference, &image)?;
            fetched.names = if looks_like_image_id(reference) {
                image.repo_tags.clone()
            } else {
                vec![reference.clone()]
            };
            (fetched, export)
        }
        (
            ImageSource::Containerd { .. },
            EngineHit::Containerd {
                mut client,
                image,
                resolved,
            },
        ) => fetch_from_containerd(store, &mut client, &image, &resolved, progress)?,
        _ => unreachable!("an engine's hit is recorded as that engine's source"),
    };
    Ok(Fetched {
        image,
        source: used,
        _export: Some(export),
    })
}

/// The content id recorded for an import: `oci://<registry>/<repo>@<manifest digest>` for
/// registry images, `docker://<config digest>` otherwise.
pub(crate) fn content_id(source: &ImageSource, fetched: &FetchedImage) -> String {
    match (source, &fetched.manifest_digest) {
        (ImageSource::Registry(r), Some(d)) => {
            format!("oci://{}/{}@{d}", r.domain(), r.repository())
        }
        _ => format!("docker://{}", fetched.config_digest),
    }
}

/// A private directory under `<root>/tmp` for one import, removed when dropped. Those
/// left by imports that were killed are removed first.
pub(crate) fn staging_dir(store: &Store) -> Result<tempfile::TempDir, ImageError> {
    let staging_root = store.root().join(STAGING_DIR);
    fs::create_dir_all(&staging_root).map_err(io("create directory", &staging_root))?;
    remove_abandoned_staging(&staging_root);
    tempfile::Builder::new()
        .prefix(&format!("import-{}-", std::process::id()))
        .tempdir_in(&staging_root)
        .map_err(io("create a staging directory in", &staging_root))
}

/// Writes every layer into a new root disk at `disk`. Returns the unpacked size, and
/// whether the image has a /sbin/init (a link counts, as the guest's init often is one,
/// into /lib/systemd or busybox).
fn build_rootfs(
    store: &Store,
    source: &ImageSource,
    fetched: &FetchedImage,
    disk: &Path,
) -> Result<(u64, bool), ImageError> {
    let staging = staging_dir(store)?;
    let rootfs_dir = disk.parent().expect("root disks live in a directory");
    fs::create_dir_all(rootfs_dir).map_err(io("create directory", rootfs_dir))?;
    let partial = staging.path().join("image.ext4");
    // Sized from the compressed layers (gzip'd filesystems rarely grow more than 4x); the
    // writer grows the filesystem if that was short.
    let compressed: u64 = fetched.layers.iter().map(|l| l.descriptor.size).sum();
    let estimate = TreeSize {
        data_bytes: compressed.saturating_mul(4),
        inodes: compressed / 4096 + 4096,
    };
    let writer = ignite_disk::Ext4Writer::create(
        &partial,
        ignite_disk::ext4_size_for(estimate),
        ignite_disk::inode_count(estimate),
        ignite_disk::ROOT_LABEL,
    )?;
    let mut unpacker = Unpacker::with_sink(crate::root_disk::DiskSink { writer });
    unpack_layers(source, fetched, &mut unpacker)?;
    let (tree, sink, stats) = unpacker.into_parts();
    // Looked up without following links: only real directories are looked into (/sbin is
    // often a link to usr/sbin); an init that is a link counts.
    let real_dir = |p: &str| {
        tree.lookup(p)
            .is_some_and(|id| matches!(tree.node(id).kind, ignite_oci::unpack::Kind::Dir(_)))
    };
    let present = |p: &str| tree.lookup(p).is_some();
    let has_init = (real_dir("sbin") && present("sbin/init"))
        || (real_dir("usr") && real_dir("usr/sbin") && present("usr/sbin/init"));
    tracing::info!("writing the root disk's directories");
    let mut writer = sink.writer;
    crate::root_disk::write_tree(&tree, &mut writer)?;
    // What the content needs, with the margin root disks always had (VMs grow their own
    // disk at boot).
    writer.close_fitting(ignite_disk::ext4_size_for(TreeSize {
        data_bytes: stats.data_bytes,
        inodes: stats.inodes,
    }))?;
    fs::rename(&partial, disk).map_err(io("move the root disk to", disk))?;
    Ok((stats.data_bytes, has_init))
}

/// Applies an image's layers, in order, checking every blob's size and digest and every
/// layer's diff_id.
pub(crate) fn unpack_layers<S: Sink>(
    source: &ImageSource,
    fetched: &FetchedImage,
    unpacker: &mut Unpacker<S>,
) -> Result<(), ImageError> {
    for (i, layer) in fetched.layers.iter().enumerate() {
        let desc = &layer.descriptor;
        let label = format!("{} of {source}", desc.digest);
        tracing::info!(
            layer = i + 1,
            of = fetched.layers.len(),
            "unpacking layer {}",
            &desc.digest.hex()[..12]
        );
        let blob = layer.open()?;
        let mut reader = HashingReader::new(blob.take(desc.size + 1));
        let unpacked = unpacker.apply(&label, &mut reader);
        // Whatever the archive format left unread still counts towards the blob's digest,
        // which is checked first: a blob that is not what the manifest says explains any
        // unpacking error it causes.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| OciError::Invalid {
            what: format!("layer {label}"),
            reason: format!("cannot read it: {e}"),
        })?;
        let (digest, size) = reader.finish();
        if size != desc.size {
            return Err(OciError::SizeMismatch {
                what: format!("layer {label}"),
                expected: desc.size,
                actual: size,
            }
            .into());
        }
        if digest != desc.digest {
            return Err(OciError::DigestMismatch {
                what: format!("layer {label}"),
                expected: desc.digest.clone(),
                actual: digest,
            }
            .into());
        }
        let diff_id = unpacked?;
        let expected = &fetched.config.rootfs.diff_ids[i];
        if &diff_id != expected {
            return Err(OciError::DigestMismatch {
                what: format!("uncompressed layer {label} (its diff_id)"),
                expected: expected.clone(),
                actual: diff_id,
            }
            .into());
        }
    }
    Ok(())
}

/// Removes staging directories left by imports that were killed (their process is gone).
fn remove_abandoned_staging(staging_root: &Path) {
    let Ok(entries) = fs::read_dir(staging_root) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("import-")
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            tracing::debug!("removing the staging directory of an interrupted import: {name}");
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Removes a root disk no Image refers to any more and no VM is backed by.
pub(crate) fn remove_unused_rootfs(store: &Store, image_id: &str) -> Result<(), ImageError> {
    remove_rootfs_if_unused(store, &rootfs_path(store, image_id))
}

/// The file name of a root disk (`<64 hex>.ext4`), when `path` names one.
fn rootfs_name(path: &Path) -> Option<&str> {
    let name = path.file_name()?.to_str()?;
    let hex = name.strip_suffix(".ext4")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(name)
}

/// The root disks (by file name) that VMs' overlays are backed by.
/// Snapshots' disk layers count too: they are overlays on the image's disk as it was.
fn rootfs_used_by_vms(store: &Store) -> Result<std::collections::HashSet<String>, ImageError> {
    let vm_layers = store.vms().list()?.objects.into_iter().filter_map(|vm| {
        let dir = store.vms().object_dir(vm.metadata.uid.as_ref()?);
        Some(dir.join(DiskFormat::Qcow2.root_disk_file()))
    });
    let snapshot_layers = store
        .snapshots()
        .list()?
        .objects
        .into_iter()
        .filter_map(|s| {
            let files = crate::vms::snapshot::SnapshotFiles::new(store, s.metadata.uid.as_ref()?);
            Some(files.disk_layer(DiskFormat::Qcow2))
        });
    Ok(vm_layers
        .chain(snapshot_layers)
        .filter_map(|layer| {
            let backing = ignite_disk::backing_file(&layer)?;
            rootfs_name(&backing).map(str::to_string)
        })
        .collect())
}

/// Removes the root disk `disk` (a `<root>/rootfs/<hex>.ext4`, or the backing file a
/// removed VM named) unless an Image refers to it or a VM's overlay is backed by it.
pub(crate) fn remove_rootfs_if_unused(store: &Store, disk: &Path) -> Result<(), ImageError> {
    let Some(name) = rootfs_name(disk) else {
        return Ok(());
    };
    let path = store.root().join(ROOTFS_DIR).join(name);
    let used_by_image = store
        .images()
        .list()?
        .objects
        .iter()
        .filter_map(|i| i.status.image_id.as_deref())
        .any(|id| rootfs_path(store, id) == path);
    if used_by_image {
        return Ok(());
    }
    if rootfs_used_by_vms(store)?.contains(name) {
        tracing::info!(
            "keeping the root disk {}: VMs made from the image's earlier content still use it (it goes with the last of them)",
            path.display()
        );
        return Ok(());
    }
    match fs::remove_file(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", path)(e)),
        _ => Ok(()),
    }
}

/// The VMs that use an image.
pub fn vms_using(store: &Store, image: &Image) -> Result<Vec<Vm>, ImageError> {
    Ok(store
        .vms()
        .list()?
        .objects
        .into_iter()
        .filter(|vm| {
            vm.spec
                .image_ref()
                .is_some_and(|r| r.to_string() == image.metadata.name)
                || (image.status.oci_source.id.is_some()
                    && vm.status.image.id == image.status.oci_source.id)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_disk_names() {
        let hex = "ab".repeat(32);
        let disk = PathBuf::from(format!("/state/rootfs/{hex}.ext4"));
        assert_eq!(rootfs_name(&disk), Some(format!("{hex}.ext4").as_str()));
        for bad in ["/x/abc.ext4", "/x/../../etc/passwd", "/x/", "/x/zz.raw"] {
            assert_eq!(rootfs_name(Path::new(bad)), None, "{bad}");
        }
        assert_eq!(
            rootfs_name(Path::new(&format!("/x/{}.ext4", "g".repeat(64)))),
            None
        );
    }
}
