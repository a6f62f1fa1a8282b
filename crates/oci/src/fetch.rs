//! Turning a source into what unpacking needs: the image configuration and, for each
//! layer, a way to read its (checked) bytes.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{OciError, Result, io};
use crate::spec::{Descriptor, ImageConfiguration, Index, Manifest, ManifestKind, Platform, media};

/// Reports transfer progress, per layer. The CLI draws bars; libraries stay silent.
pub trait Progress: Sync {
    fn layer(&self, id: &str, total: u64) -> Box<dyn LayerProgress + Send + Sync>;
}

pub trait LayerProgress {
    fn advance(&self, bytes: u64);
    fn finish(&self);
}

/// Progress that is not shown.
pub struct NoProgress;

impl Progress for NoProgress {
    fn layer(&self, _: &str, _: u64) -> Box<dyn LayerProgress + Send + Sync> {
        Box::new(NoProgress)
    }
}

impl LayerProgress for NoProgress {
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// An image ready to unpack.
pub struct FetchedImage {
    /// The manifest's digest, when the source has a manifest.
    pub manifest_digest: Option<Digest>,
    /// The config's digest: the image's identity (same content, same id, whatever the source).
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    pub layers: Vec<Layer>,
    /// Size of the compressed layers.
    pub compressed_size: u64,
    /// The names the source itself gives the image, as written there (a `docker save`
    /// archive's `RepoTags`; an OCI layout's full reference annotation). Empty for
    /// registries, whose name is the one asked for.
    pub names: Vec<String>,
}

/// One layer: its descriptor and where its bytes are.
pub struct Layer {
    pub descriptor: Descriptor,
    pub location: LayerLocation,
}

pub enum LayerLocation {
    /// A whole file (blob store or OCI layout).
    File(PathBuf),
    /// A byte range of a file (an entry of a `docker save` archive).
    Range {
        file: PathBuf,
        offset: u64,
        len: u64,
    },
}

impl Layer {
    pub fn open(&self) -> Result<Box<dyn Read + Send>> {
        match &self.location {
            LayerLocation::File(path) => Ok(Box::new(open_regular(path, "layer", true)?)),
            LayerLocation::Range { file, offset, len } => {
                use std::io::{Seek, SeekFrom};
                let mut f = open_regular(file, "docker archive", false)?;
                f.seek(SeekFrom::Start(*offset))
                    .map_err(io("seek in", file))?;
                Ok(Box::new(f.take(*len)))
            }
        }
    }
}

/// Checks a layer's media type: only tar layers (plain, gzip, zstd) can be unpacked.
pub fn check_layer_type(desc: &Descriptor) -> Result<()> {
    let t = desc.media_type.as_str();
    let ok = t.is_empty()
        || t == media::OCI_LAYER
        || t == media::OCI_LAYER_GZIP
        || t == media::OCI_LAYER_ZSTD
        || t == media::DOCKER_LAYER_GZIP
        || t == "application/vnd.docker.image.rootfs.diff.tar";
    if ok {
        Ok(())
    } else {
        Err(OciError::UnsupportedLayer {
            layer: desc.digest.to_string(),
            media_type: t.to_string(),
        })
    }
}

/// Parses a manifest document, and checks it has what an image needs.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<Manifest> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| OciError::Invalid {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    if m.schema_version != 2 {
        return Err(OciError::Invalid {
            what: what.to_string(),
            reason: format!(
                "schemaVersion {} is not supported (only 2)",
                m.schema_version
            ),
        });
    }
    for layer in &m.layers {
        check_layer_type(layer)?;
    }
    Ok(m)
}

pub fn parse_config(bytes: &[u8], manifest: &Manifest, what: &str) -> Result<ImageConfiguration> {
    let config: ImageConfiguration =
        serde_json::from_slice(bytes).map_err(|e| OciError::Invalid {
            what: what.to_string(),
            reason: e.to_string(),
        })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(OciError::Invalid {
            what: what.to_string(),
            reason: format!(
                "it lists {} layer diff_ids but the manifest has {} layers",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    Ok(config)
}

/// Is this document an index (manifest list) rather than a manifest?
pub fn is_index(bytes: &[u8], declared_type: Option<&str>) -> bool {
    if let Some(t) = declared_type
        && media::is_index(t)
    {
        return true;
    }
    serde_json::from_slice::<ManifestKind>(bytes)
        .map(|k| k.media_type.as_deref().is_some_and(media::is_index) || k.manifests.is_some())
        .unwrap_or(false)
}

/// Picks the manifest for `platform` from an index.
pub fn select_platform(
    index_bytes: &[u8],
    platform: &Platform,
    reference: &str,
) -> Result<Descriptor> {
    let index: Index = serde_json::from_slice(index_bytes).map_err(|e| OciError::Invalid {
        what: format!("image index of {reference}"),
        reason: e.to_string(),
    })?;
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .collect();
    match candidates.first() {
        Some(d) => Ok((*d).clone()),
        None => Err(OciError::NoPlatform {
            reference: reference.to_string(),
            wanted: platform.to_string(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

pub(crate) fn read_small_file(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path, what, true)?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    if bytes.len() as u64 > limit {
        return Err(OciError::TooLarge {
            what: format!("{what} ({})", path.display()),
            limit,
        });
    }
    Ok(bytes)
}

/// Opens a file of an image source for reading, refusing anything but a regular file (a
/// FIFO or device would block or never end); with `nofollow`, a symlink is refused too
/// (`O_NOFOLLOW`). `O_NONBLOCK` keeps the open of a FIFO from hanging.
pub(crate) fn open_regular(path: &Path, what: &str, nofollow: bool) -> Result<File> {
    use rustix::fs::OFlags;
    use std::os::unix::fs::OpenOptionsExt;
    let mut flags = OFlags::NONBLOCK;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    let refuse = |kind: &str| OciError::Invalid {
        what: format!("{what} ({})", path.display()),
        reason: format!(
            "it is {kind}, not a regular file: an image source's files must be plain files (replace it with the file itself)"
        ),
    };
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if nofollow && e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(refuse("a symlink"));
        }
        Err(e) => return Err(io("open", path)(e)),
    };
    let kind = file.metadata().map_err(io("inspect", path))?.file_type();
    if !kind.is_file() {
        use std::os::unix::fs::FileTypeExt;
        return Err(refuse(if kind.is_fifo() {
            "a FIFO"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_dir() {
            "a directory"
        } else {
            "a special file"
        }));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read_and_documents_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("index.json");
        std::fs::write(&file, b"{}").unwrap();
        assert_eq!(read_small_file(&file, 10, "index.json").unwrap(), b"{}");
        let err = read_small_file(&file, 1, "index.json").unwrap_err();
        assert!(matches!(err, OciError::TooLarge { limit: 1, .. }), "{err}");
        let zero = dir.path().join("zero");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let err = read_small_file(&zero, 1 << 20, "index.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("it is a symlink, not a regular file"), "{err}");
        // Followed where asked (a source path the user gave), and still refused: a device.
        let err = open_regular(&zero, "docker archive", false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("it is a device"), "{err}");
        let err = open_regular(dir.path(), "layer", true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("it is a directory"), "{err}");
    }
}
