//! `docker-archive:FILE`: what `docker save` writes. Both layouts are read: the old one
//! (`manifest.json`, `<id>.json`, `<id>/layer.tar`) and the OCI one of Docker 25+
//! (`manifest.json` pointing into `blobs/sha256/`). Entries are read in place, by offset.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::blobs::MAX_DOCUMENT_BYTES;
use crate::digest::Digest;
use crate::error::{OciError, Result, io};
use crate::fetch::{FetchedImage, Layer, LayerLocation};
use crate::spec::{Descriptor, ImageConfiguration, media};

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ArchiveManifest {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Where each regular file of the archive is: name -> (offset, length).
struct TarIndex {
    file: PathBuf,
    entries: HashMap<String, (u64, u64)>,
    links: HashMap<String, String>,
}

impl TarIndex {
    fn build(path: &Path) -> Result<TarIndex> {
        let f = crate::fetch::open_regular(path, "docker archive", false)?;
        Self::scan(BufReader::new(f), path)
    }

    /// Indexes the archive read from `reader`, which `path` holds (or will hold: offsets
    /// are positions in the stream).
    fn scan(reader: impl Read, path: &Path) -> Result<TarIndex> {
        // Oversized extended headers are refused before the tar crate buffers them.
        let mut archive = tar::Archive::new(crate::targuard::TarGuard::new(reader));
        let mut entries = HashMap::new();
        let mut links = HashMap::new();
        let bad = |e: std::io::Error| OciError::Invalid {
            what: format!("docker archive {}", path.display()),
            reason: format!("it is not a readable tar file: {e}"),
        };
        for entry in archive.entries().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let name = normalize(&String::from_utf8_lossy(&entry.path_bytes()));
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    entries.insert(name, (entry.raw_file_position(), entry.size()));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(target) = entry.link_name_bytes() {
                        let target = String::from_utf8_lossy(&target).into_owned();
                        // Old `docker save` links a repeated layer to `../<id>/layer.tar`.
                        let resolved = if entry.header().entry_type() == tar::EntryType::Symlink {
                            let base = Path::new(&name).parent().unwrap_or(Path::new(""));
                            normalize(&base.join(&target).to_string_lossy())
                        } else {
                            normalize(&target)
                        };
                        links.insert(name, resolved);
                    }
                }
                _ => {}
            }
        }
        Ok(TarIndex {
            file: path.to_path_buf(),
            entries,
            links,
        })
    }

    fn locate(&self, name: &str) -> Result<(u64, u64)> {
        let mut name = normalize(name);
        for _ in 0..8 {
            if let Some(found) = self.entries.get(&name) {
                return Ok(*found);
            }
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        Err(OciError::Invalid {
            what: format!("docker archive {}", self.file.display()),
            reason: format!("manifest.json names {name:?}, which the archive does not contain"),
        })
    }

    fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>> {
        let (offset, len) = self.locate(name)?;
        if len > limit {
            return Err(OciError::TooLarge {
                what: format!("{name} in {}", self.file.display()),
                limit,
            });
        }
        let mut f = crate::fetch::open_regular(&self.file, "docker archive", false)?;
        f.seek(SeekFrom::Start(offset))
            .map_err(io("seek in", &self.file))?;
        let mut buf = Vec::with_capacity(len as usize);
        f.take(len)
            .read_to_end(&mut buf)
            .map_err(io("read", &self.file))?;
        Ok(buf)
    }
}

/// Resolves `.` and `..` inside archive names (they never leave the archive: these are
/// names to look up, not paths to write).
fn normalize(name: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

/// The most names (`RepoTags`) one image may bring.
const MAX_NAMES: usize = 64;

/// Reads the image in the archive at `file` (its first image if it holds several).
pub fn fetch(file: &Path) -> Result<FetchedImage> {
    fetch_indexed(TarIndex::build(file)?)
}

/// Copies a `docker save` stream into `out` (a new file at `path`) and reads the image in
/// it, indexing the archive in the same pass as the copy instead of reading it back.
pub fn save_and_fetch(stream: impl Read, out: File, path: &Path) -> Result<FetchedImage> {
    let mut tee = Tee {
        inner: stream,
        out: std::io::BufWriter::with_capacity(1 << 20, out),
    };
    let index = TarIndex::scan(&mut tee, path)?;
    // What follows the end-of-archive marker is kept too: the file is the stream as sent.
    std::io::copy(&mut tee.inner, &mut tee.out).map_err(io("write", path))?;
    // Flushed, not synced: the export lives only as long as this import.
    tee.out
        .into_inner()
        .map_err(|e| io("write", path)(e.into_error()))?;
    fetch_indexed(index)
}

/// Passes what is read from `inner` on, writing it to `out` on the way.
struct Tee<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: std::io::Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

fn fetch_indexed(index: TarIndex) -> Result<FetchedImage> {
    let file = index.file.clone();
    let file = file.as_path();
    let what = format!("docker archive {}", file.display());
    let manifests: Vec<ArchiveManifest> =
        serde_json::from_slice(&index.read("manifest.json", MAX_DOCUMENT_BYTES)?).map_err(|e| {
            OciError::Invalid {
                what: format!("manifest.json of {what}"),
                reason: e.to_string(),
            }
        })?;
    let Some(manifest) = manifests.into_iter().next() else {
        return Err(OciError::Invalid {
            what,
            reason: "manifest.json lists no image".into(),
        });
    };
    tracing::debug!(tags = ?manifest.repo_tags, "reading docker archive");
    if manifest
        .repo_tags
        .as_ref()
        .is_some_and(|tags| tags.len() > MAX_NAMES)
    {
        return Err(OciError::Invalid {
            what: format!("manifest.json of {what}"),
            reason: format!("it gives the image more than {MAX_NAMES} names"),
        });
    }
    let config_bytes = index.read(&manifest.config, MAX_DOCUMENT_BYTES)?;
    let config_digest = Digest::of(&config_bytes);
    // The config's name carries its digest (`<hex>.json` or `blobs/sha256/<hex>`).
    let named_hex = Path::new(&manifest.config)
        .file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".json").to_string())
        .unwrap_or_default();
    if named_hex.len() == 64 && named_hex != config_digest.hex() {
        return Err(OciError::DigestMismatch {
            what: format!("image config {} in {what}", manifest.config),
            expected: format!("sha256:{named_hex}").parse().map_err(
                |e: crate::digest::DigestParseError| OciError::Invalid {
                    what: what.clone(),
                    reason: e.to_string(),
                },
            )?,
            actual: config_digest,
        });
    }
    let config: ImageConfiguration =
        serde_json::from_slice(&config_bytes).map_err(|e| OciError::Invalid {
            what: format!("image config of {what}"),
            reason: e.to_string(),
        })?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(OciError::Invalid {
            what,
            reason: format!(
                "the config lists {} layers but manifest.json {}",
                config.rootfs.diff_ids.len(),
                manifest.layers.len()
            ),
        });
    }
    let mut layers = Vec::new();
    let mut compressed_size = 0;
    for (name, diff_id) in manifest.layers.iter().zip(&config.rootfs.diff_ids) {
        let (offset, len) = index.locate(name)?;
        // Layers are stored uncompressed unless their blob name says otherwise: the digest
        // to check is the one in the name when there is one, else the diff_id.
        let digest = Path::new(name)
            .file_name()
            .and_then(|n| {
                format!("sha256:{}", n.to_string_lossy())
                    .parse::<Digest>()
                    .ok()
            })
            .unwrap_or_else(|| diff_id.clone());
        compressed_size += len;
        layers.push(Layer {
            descriptor: Descriptor {
                media_type: media::OCI_LAYER.to_string(),
                digest,
                size: len,
                platform: None,
                annotations: Default::default(),
            },
            location: LayerLocation::Range {
                file: file.to_path_buf(),
                offset,
                len,
            },
        });
    }
    Ok(FetchedImage {
        manifest_digest: None,
        config_digest,
        config,
        layers,
        compressed_size,
        names: manifest.repo_tags.unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    }

    /// An archive in `docker save`'s old layout, manifest.json last, as Docker streams it.
    fn archive() -> (Vec<u8>, Vec<u8>, String) {
        let mut layer = tar::Builder::new(Vec::new());
        append(&mut layer, "hello", b"hi\n");
        let layer = layer.into_inner().unwrap();
        let diff_id = Digest::of(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let config_hex = Digest::of(config.as_bytes()).hex().to_string();
        let mut out = tar::Builder::new(Vec::new());
        append(&mut out, "0123/layer.tar", &layer);
        append(&mut out, &format!("{config_hex}.json"), config.as_bytes());
        let manifest = format!(
            r#"[{{"Config":"{config_hex}.json","RepoTags":["local/app:1"],"Layers":["0123/layer.tar"]}}]"#
        );
        append(&mut out, "manifest.json", manifest.as_bytes());
        (out.into_inner().unwrap(), layer, config_hex)
    }

    #[test]
    fn a_stream_is_saved_and_indexed_in_one_pass() {
        let (stream, layer, config_hex) = archive();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        let out = File::create(&path).unwrap();
        let fetched = save_and_fetch(std::io::Cursor::new(stream.clone()), out, &path).unwrap();
        assert_eq!(
            std::fs::read(&path).unwrap(),
            stream,
            "the file is the stream"
        );
        assert_eq!(fetched.config_digest.hex(), config_hex);
        assert_eq!(fetched.names, ["local/app:1"]);
        let mut read = Vec::new();
        fetched.layers[0]
            .open()
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, layer);
        // The same archive read back from the file gives the same image.
        let again = fetch(&path).unwrap();
        assert_eq!(again.config_digest, fetched.config_digest);
    }

    #[test]
    fn a_cut_stream_is_refused() {
        let (stream, _, _) = archive();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("image.tar");
        let out = File::create(&path).unwrap();
        let cut = stream[..stream.len() / 2].to_vec();
        assert!(save_and_fetch(std::io::Cursor::new(cut), out, &path).is_err());
    }
}
