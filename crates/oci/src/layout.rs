//! `oci:DIR[:TAG]`: an OCI image layout on disk (`oci-layout`, `index.json`, `blobs/`).

use std::path::{Path, PathBuf};

use crate::blobs::{MAX_DOCUMENT_BYTES, check_document_size, verify_bytes};
use crate::digest::Digest;
use crate::error::{OciError, Result};
use crate::fetch::{
    FetchedImage, Layer, LayerLocation, is_index, parse_config, parse_manifest, read_small_file,
    select_platform,
};
use crate::spec::{Descriptor, Index, Platform};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Where containerd's `ctr image export` writes the full name (`ref.name` holds the tag).
const CONTAINERD_NAME: &str = "io.containerd.image.name";

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs/sha256").join(digest.hex())
}

fn read_doc(dir: &Path, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    check_document_size(desc, what)?;
    let bytes = read_small_file(&blob_path(dir, &desc.digest), MAX_DOCUMENT_BYTES, what)?;
    verify_bytes(&bytes, desc, what)?;
    Ok(bytes)
}

/// Reads the image tagged `tag` (or the only image) from the layout at `dir`.
pub fn fetch(dir: &Path, tag: Option<&str>, platform: &Platform) -> Result<FetchedImage> {
    let source = format!("oci:{}", dir.display());
    if !dir.join("oci-layout").is_file() {
        return Err(OciError::Source(format!(
            "{} is not an OCI image layout (it has no oci-layout file)",
            dir.display()
        )));
    }
    let index_bytes = read_small_file(&dir.join("index.json"), MAX_DOCUMENT_BYTES, "index.json")?;
    let index: Index = serde_json::from_slice(&index_bytes).map_err(|e| OciError::Invalid {
        what: format!("{source}/index.json"),
        reason: e.to_string(),
    })?;
    let chosen = match tag {
        Some(tag) => index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).is_some_and(|r| r == tag)),
        None if index.manifests.len() == 1 => index.manifests.first(),
        None => None,
    };
    let Some(desc) = chosen.cloned() else {
        let tags: Vec<&str> = index
            .manifests
            .iter()
            .filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str))
            .collect();
        return Err(OciError::Source(format!(
            "{source} has no image {}; its tags are: {}",
            tag.map_or_else(
                || "without a tag (it holds several)".to_string(),
                |t| format!("tagged {t:?}")
            ),
            if tags.is_empty() {
                "(none)".to_string()
            } else {
                tags.join(", ")
            }
        )));
    };
    // A full reference names the image (`docker.io/library/alpine:3`); a bare tag does not.
    let names: Vec<String> = [CONTAINERD_NAME, REF_NAME]
        .iter()
        .filter_map(|key| desc.annotations.get(*key))
        .filter(|name| name.contains('/') || name.contains(':'))
        .take(1)
        .cloned()
        .collect();
    let mut manifest_desc = desc;
    let mut bytes = read_doc(dir, &manifest_desc, "manifest")?;
    if is_index(&bytes, Some(&manifest_desc.media_type)) {
        manifest_desc = select_platform(&bytes, platform, &source)?;
        bytes = read_doc(dir, &manifest_desc, "manifest")?;
    }
    let manifest = parse_manifest(&bytes, "manifest")?;
    let config_bytes = read_doc(dir, &manifest.config, "image config")?;
    let config = parse_config(&config_bytes, &manifest, "image config")?;
    let layers = manifest
        .layers
        .iter()
        .map(|d| Layer {
            descriptor: d.clone(),
            location: LayerLocation::File(blob_path(dir, &d.digest)),
        })
        .collect();
    Ok(FetchedImage {
        manifest_digest: Some(manifest_desc.digest),
        config_digest: manifest.config.digest.clone(),
        compressed_size: manifest.layers.iter().map(|l| l.size).sum(),
        config,
        layers,
        names,
    })
}
