//! Importing OCI images as root disks, listing and removing them.
//!
//! An import resolves the source, fetches what is missing into the shared blob store,
//! unpacks the layers into a private staging directory (checking every blob's digest and
//! every layer's diff_id on the way), builds the ext4 root disk from it, and only then
//! registers the Image. A failed or interrupted import registers nothing and leaves no
//! staging behind; blobs already fetched stay for the next attempt.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use ignite_api::{Image, ImageRunConfig, ImageSource, ObjectMeta, Size, Vm};
use ignite_disk::{DiskFormat, TreeSize};
use ignite_oci::blobs::BlobStore;
use ignite_oci::digest::HashingReader;
use ignite_oci::fetch::{FetchedImage, Progress};
use ignite_oci::registry::RegistryClient;
use ignite_oci::registry::credentials::{CredentialStore, default_config_dir};
use ignite_oci::spec::Platform;
use ignite_oci::unpack::{UnpackStats, Unpacker};
use ignite_oci::{OciError, layout};
use ignite_store::{Store, StoreError};

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

/// Imports `source` (see [`ImageSource`]) unless an Image of that name exists.
pub fn import_image(
    store: &Store,
    source: &str,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Imported, ImageError> {
    let source = ImageSource::parse(source)?;
    let name = match &options.name {
        Some(name) => match ImageSource::parse(name)? {
            named @ ImageSource::Registry(_) => named.image_name(),
            _ => {
                return Err(ImageError::Source(ignite_api::SourceError::new(format!(
                    "--name {name:?} must be an image reference such as ignite/debian:bookworm"
                ))));
            }
        },
        None => source.image_name(),
    };
    let existing = find_by_name(store, &name)?;
    if let Some(image) = &existing
        && !options.pull
    {
        return Ok(Imported {
            image: image.clone(),
            fetched: false,
        });
    }
    let existing_id = existing
        .as_ref()
        .and_then(|i| i.status.oci_source.id.clone());
    let Some(fetched) = fetch_source(store, &source, options, progress, existing_id.as_deref())?
    else {
        tracing::info!("{name} is up to date");
        return Ok(Imported {
            image: existing.expect("only an existing image is up to date"),
            fetched: false,
        });
    };
    let image_id = fetched.config_digest.to_string();
    let disk = rootfs_path(store, &image_id);
    let unpacked = if disk.exists() {
        None
    } else {
        Some(build_rootfs(store, &source, &fetched, &disk)?)
    };
    let disk_size = fs::metadata(&disk).map_err(io("read", &disk))?.len();
    let content_id = content_id(&source, &fetched);
    let run = fetched.config.config.clone().unwrap_or_default();
    let fill = |image: &mut Image| {
        image.status.oci_source.id = Some(content_id.clone());
        image.status.oci_source.size = Size::from_bytes(fetched.compressed_size);
        image.status.image_id = Some(image_id.clone());
        image.status.platform = Some(format!(
            "{}/{}",
            fetched.config.os, fetched.config.architecture
        ));
        image.status.config = Some(ImageRunConfig {
            entrypoint: run.entrypoint.clone().unwrap_or_default(),
            cmd: run.cmd.clone().unwrap_or_default(),
            env: run.env.clone().unwrap_or_default(),
            working_dir: run.working_dir.clone().unwrap_or_default(),
            user: run.user.clone().unwrap_or_default(),
        });
        if let Some(bytes) = unpacked {
            image.status.unpacked_size = Some(Size::from_bytes(bytes));
        }
        image.status.disk_size = Some(Size::from_bytes(disk_size));
    };
    let image = match existing {
        Some(old) => {
            let old_id = old.status.image_id.clone();
            let uid = old.metadata.uid.clone().expect("stored images have a uid");
            let updated = store
                .images()
                .update(&uid, |image| -> Result<(), ImageError> {
                    fill(image);
                    Ok(())
                })?;
            if let Some(old_id) = old_id {
                remove_unused_rootfs(store, &old_id)?;
            }
            updated
        }
        None => {
            let mut image = Image::new(
                ObjectMeta {
                    name: name.clone(),
                    ..ObjectMeta::default()
                },
                source.clone(),
            );
            fill(&mut image);
            match store.images().create(image) {
                Ok(image) => image,
                // Another import of the same name won the race; theirs is as good.
                Err(StoreError::NameTaken { .. }) => {
                    find_by_name(store, &name)?.ok_or(StoreError::NotFound {
                        kind: ignite_api::Kind::Image,
                        query: name.clone(),
                    })?
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(Imported {
        image,
        fetched: true,
    })
}

/// Resolves a source and gets what unpacking needs: from a registry into the blob store,
/// from a local layout or archive in place. `None` when `current_id` (the content id of an
/// existing import) is still what the registry serves.
pub(crate) fn fetch_source(
    store: &Store,
    source: &ImageSource,
    options: &ImportOptions,
    progress: &dyn Progress,
    current_id: Option<&str>,
) -> Result<Option<FetchedImage>, ImageError> {
    let platform = match &options.platform {
        Some(p) => Platform::parse(p).ok_or_else(|| ImageError::Platform(p.clone()))?,
        None => Platform::host(),
    };
    Ok(Some(match source {
        ImageSource::Registry(reference) => {
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
            client.fetch(reference, &platform, &blobs, progress)?
        }
        ImageSource::OciLayout { dir, tag } => layout::fetch(dir, tag.as_deref(), &platform)?,
        ImageSource::DockerArchive { file } => ignite_oci::archive::fetch(file)?,
        ImageSource::File(path) => {
            return Err(ImageError::Source(ignite_api::SourceError::new(format!(
                "{} is a file, not an image; for `docker save` output use docker-archive:{}",
                path.display(),
                path.display()
            ))));
        }
    }))
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

/// Unpacks every layer into a staging directory and builds the root disk at `disk`.
/// Returns the unpacked size.
fn build_rootfs(
    store: &Store,
    source: &ImageSource,
    fetched: &FetchedImage,
    disk: &Path,
) -> Result<u64, ImageError> {
    let staging = staging_dir(store)?;
    let tree = staging.path().join("rootfs");
    let stats = unpack_layers(source, fetched, &tree)?;
    let rootfs_dir = disk.parent().expect("root disks live in a directory");
    fs::create_dir_all(rootfs_dir).map_err(io("create directory", rootfs_dir))?;
    let partial = staging.path().join("image.ext4");
    tracing::info!("building the root disk");
    ignite_disk::build_ext4(
        &tree,
        TreeSize {
            data_bytes: stats.data_bytes,
            inodes: stats.inodes,
        },
        &partial,
        ignite_disk::ROOT_LABEL,
    )?;
    fs::rename(&partial, disk).map_err(io("move the root disk to", disk))?;
    Ok(stats.data_bytes)
}

/// Applies an image's layers, in order, to a new directory `tree`, checking every blob's
/// size and digest and every layer's diff_id.
pub(crate) fn unpack_layers(
    source: &ImageSource,
    fetched: &FetchedImage,
    tree: &Path,
) -> Result<UnpackStats, ImageError> {
    fs::create_dir(tree).map_err(io("create directory", tree))?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(tree, fs::Permissions::from_mode(0o755))
        .map_err(io("set mode of", tree))?;
    let mut unpacker = Unpacker::new(tree);
    for (i, layer) in fetched.layers.iter().enumerate() {
        let desc = &layer.descriptor;
        let label = format!("{} of {source}", desc.digest);
        tracing::info!(
            layer = i + 1,
            of = fetched.layers.len(),
            "unpacking layer {}",
            &desc.digest.hex()[..12]
        );
        let mut reader = HashingReader::new(layer.open()?.take(desc.size + 1));
        let unpacked = unpacker.apply(&label, &mut reader);
        // Whatever the archive format left unread still counts towards the blob's digest,
        // which is checked first: a blob that is not what the manifest says explains any
        // unpacking error it causes.
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(io("read layer", tree))?;
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
    if unpacker.stats.skipped_privileged > 0 {
        tracing::warn!(
            "not running as root: {} device nodes and file owners were not kept; import as root for a faithful root disk",
            unpacker.stats.skipped_privileged
        );
    }
    Ok(unpacker.stats)
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
fn rootfs_used_by_vms(store: &Store) -> Result<std::collections::HashSet<String>, ImageError> {
    Ok(store
        .vms()
        .list()?
        .objects
        .iter()
        .filter_map(|vm| {
            let uid = vm.metadata.uid.as_ref()?;
            let dir = store.vms().object_dir(uid);
            let backing = ignite_disk::backing_file(&dir.join(DiskFormat::Qcow2.root_disk_file()))?;
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
