//! The blob store: every blob once, by digest (`<dir>/sha256/<hex>`), shared by all images.
//! A blob is only ever visible under its name after its size and digest were checked;
//! downloads land in `<hex>.partial` first, which a later attempt resumes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::{Digest, HashingReader};
use crate::error::{OciError, Result, io};
use crate::spec::Descriptor;

/// Manifests, indexes and configs are small JSON documents; anything bigger is refused.
pub const MAX_DOCUMENT_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn open(dir: impl Into<PathBuf>) -> Result<BlobStore> {
        let dir = dir.into();
        let sha = dir.join("sha256");
        fs::create_dir_all(&sha).map_err(io("create directory", &sha))?;
        Ok(BlobStore { dir })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("sha256").join(digest.hex())
    }

    fn partial_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("sha256")
            .join(format!("{}.partial", digest.hex()))
    }

    /// Is the blob present (and of the expected size)?
    pub fn has(&self, desc: &Descriptor) -> bool {
        fs::metadata(self.path(&desc.digest)).is_ok_and(|m| m.len() == desc.size)
    }

    /// Stores a blob read from `reader`, checking its size and digest against `desc`.
    pub fn ingest<'a>(
        &self,
        desc: &Descriptor,
        what: &str,
        reader: impl Read + 'a,
    ) -> Result<PathBuf> {
        let mut reader = Some(reader);
        self.ingest_resumable(desc, what, move |offset| {
            Ok(if offset == 0 {
                reader.take().map(|r| Box::new(r) as Box<dyn Read + 'a>)
            } else {
                None
            })
        })
        .map(|(path, _)| path)
    }

    /// Stores a blob, resuming a partial download: `open(offset)` returns a reader that
    /// starts at `offset`, or `None` if the source cannot resume (then it is asked again
    /// from 0). Returns the blob's path and how many bytes were fetched now.
    pub fn ingest_resumable<'a>(
        &self,
        desc: &Descriptor,
        what: &str,
        mut open: impl FnMut(u64) -> Result<Option<Box<dyn Read + 'a>>>,
    ) -> Result<(PathBuf, u64)> {
        let final_path = self.path(&desc.digest);
        if self.has(desc) {
            return Ok((final_path, 0));
        }
        let partial = self.partial_path(&desc.digest);
        let mut offset = fs::metadata(&partial).map_or(0, |m| m.len());
        if offset > desc.size {
            offset = 0;
        }
        let source = if offset > 0 { open(offset)? } else { None };
        let (mut source, offset) = match source {
            Some(s) => (s, offset),
            None => (
                open(0)?.ok_or_else(|| OciError::Source(format!("cannot read {what}")))?,
                0,
            ),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .read(true)
            .truncate(offset == 0)
            .open(&partial)
            .map_err(io("open", &partial))?;
        // One hash over what an earlier attempt fetched and what is fetched now.
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut done = 0u64;
        while done < offset {
            let n = file.read(&mut buf).map_err(io("read", &partial))?;
            if n == 0 {
                break;
            }
            let n = n.min((offset - done) as usize);
            hasher.update(&buf[..n]);
            done += n as u64;
        }
        let mut fetched = 0u64;
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(OciError::Source(format!(
                        "{what}: transfer interrupted after {} of {} bytes: {e}; run the import again to resume",
                        offset + fetched,
                        desc.size
                    )));
                }
            };
            fetched += n as u64;
            if offset + fetched > desc.size {
                drop(file);
                let _ = fs::remove_file(&partial);
                return Err(OciError::SizeMismatch {
                    what: what.to_string(),
                    expected: desc.size,
                    actual: offset + fetched,
                });
            }
            hasher.update(&buf[..n]);
            file.write_all(&buf[..n]).map_err(io("write", &partial))?;
        }
        let total = offset + fetched;
        if total != desc.size {
            return Err(OciError::SizeMismatch {
                what: what.to_string(),
                expected: desc.size,
                actual: total,
            });
        }
        file.sync_all().map_err(io("sync", &partial))?;
        let actual = Digest::from_sha256(hasher);
        if actual != desc.digest {
            drop(file);
            let _ = fs::remove_file(&partial);
            return Err(OciError::DigestMismatch {
                what: what.to_string(),
                expected: desc.digest.clone(),
                actual,
            });
        }
        fs::rename(&partial, &final_path).map_err(io("rename", &partial))?;
        Ok((final_path, fetched))
    }

    /// Reads a small JSON blob (manifest, config), checking size and digest.
    pub fn read_document(&self, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
        check_document_size(desc, what)?;
        let path = self.path(&desc.digest);
        let bytes = fs::read(&path).map_err(io("read", &path))?;
        verify_bytes(&bytes, desc, what)?;
        Ok(bytes)
    }

    /// Stores a small document already in memory.
    pub fn put_document(&self, desc: &Descriptor, what: &str, bytes: &[u8]) -> Result<PathBuf> {
        verify_bytes(bytes, desc, what)?;
        self.ingest(desc, what, bytes)
    }

    /// Removes blobs that no one needs any more.
    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io("remove", path)(e)),
            _ => Ok(()),
        }
    }
}

pub(crate) fn check_document_size(desc: &Descriptor, what: &str) -> Result<()> {
    if desc.size > MAX_DOCUMENT_BYTES {
        return Err(OciError::TooLarge {
            what: what.to_string(),
            limit: MAX_DOCUMENT_BYTES,
        });
    }
    Ok(())
}

/// Checks a document in memory against its descriptor.
pub fn verify_bytes(bytes: &[u8], desc: &Descriptor, what: &str) -> Result<()> {
    if bytes.len() as u64 != desc.size {
        return Err(OciError::SizeMismatch {
            what: what.to_string(),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    let actual = Digest::of(bytes);
    if actual != desc.digest {
        return Err(OciError::DigestMismatch {
            what: what.to_string(),
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(())
}

pub fn digest_of_file(path: &Path) -> Result<Digest> {
    let file = File::open(path).map_err(io("open", path))?;
    let mut r = HashingReader::new(io::BufReader::with_capacity(1 << 20, file));
    io::copy(&mut r, &mut io::sink()).map_err(io("read", path))?;
    Ok(r.finish().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: String::new(),
            digest: Digest::of(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        }
    }

    #[test]
    fn resumes_a_partial_download() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let blob: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let desc = descriptor(&blob);
        // An earlier attempt got 40,000 bytes.
        fs::write(store.partial_path(&desc.digest), &blob[..40_000]).unwrap();
        let mut asked = Vec::new();
        let (path, fetched) = store
            .ingest_resumable(&desc, "test blob", |offset| {
                asked.push(offset);
                Ok(Some(Box::new(&blob[offset as usize..]) as Box<dyn Read>))
            })
            .unwrap();
        assert_eq!(asked, [40_000]);
        assert_eq!(fetched, 60_000);
        assert_eq!(fs::read(path).unwrap(), blob);
        assert!(!store.partial_path(&desc.digest).exists());
        // Present now: nothing is fetched again.
        let (_, fetched) = store
            .ingest_resumable(&desc, "test blob", |_| panic!("no fetch"))
            .unwrap();
        assert_eq!(fetched, 0);
    }

    #[test]
    fn starts_over_when_the_source_cannot_resume() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let blob = vec![9u8; 5000];
        let desc = descriptor(&blob);
        fs::write(store.partial_path(&desc.digest), &blob[..1000]).unwrap();
        let (_, fetched) = store
            .ingest_resumable(&desc, "test blob", |offset| {
                Ok((offset == 0).then(|| Box::new(&blob[..]) as Box<dyn Read>))
            })
            .unwrap();
        assert_eq!(fetched, 5000);
    }

    #[test]
    fn refuses_wrong_size_and_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let blob = vec![1u8; 100];
        let desc = descriptor(&blob);
        let err = store
            .ingest(&desc, "blob", &blob[..50])
            .unwrap_err()
            .to_string();
        assert!(err.contains("truncated"), "{err}");
        let long = [1u8; 150];
        let err = store
            .ingest(&desc, "blob", &long[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("oversized"), "{err}");
        let other = [2u8; 100];
        let err = store
            .ingest(&desc, "blob", &other[..])
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not match its digest"), "{err}");
        assert!(!store.path(&desc.digest).exists());
        assert!(
            !store.partial_path(&desc.digest).exists(),
            "a corrupt partial is not kept"
        );
    }
}
