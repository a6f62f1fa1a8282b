//! containerd's API on its Unix socket (`CONTAINERD_ADDRESS`, else
//! `/run/containerd/containerd.sock`), in one namespace (`CONTAINERD_NAMESPACE` or a flag,
//! else `default`). Used: `Version` to know it is containerd, `Images.Get` to resolve a
//! name to its target, `Content.Read` for the index, manifest, config and layer blobs.
//!
//! The client is stubs of our own over `h2` ([`grpc`]), not the `containerd-client` crate:
//! that crate brings tonic, tower, hyper and a `protoc` build step for three calls, and an
//! async runtime into a synchronous program. What containerd sends is checked like any
//! other source: every document and layer against its digest and size, sizes capped.

mod grpc;
mod proto;

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{EngineError, EngineKind};
use crate::blobs::{BlobStore, MAX_DOCUMENT_BYTES, check_document_size, verify_bytes};
use crate::digest::Digest;
use crate::error::{OciError, Result};
use crate::fetch::{
    FetchedImage, Layer, LayerLocation, Progress, is_index, parse_config, parse_manifest,
    select_platform,
};
use crate::spec::{Descriptor, Platform};

use grpc::{Channel, GrpcError, NOT_FOUND};

/// Where containerd's clients look for it.
pub const CONTAINERD_ADDRESS_ENV: &str = "CONTAINERD_ADDRESS";
/// The namespace containerd's clients (`ctr`, `nerdctl`) use.
pub const CONTAINERD_NAMESPACE_ENV: &str = "CONTAINERD_NAMESPACE";
pub const DEFAULT_NAMESPACE: &str = "default";
const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The header containerd reads the namespace from.
const NAMESPACE_HEADER: &str = "containerd-namespace";

/// containerd reached on its socket, in one namespace.
pub struct Containerd {
    socket: PathBuf,
    namespace: String,
    channel: Channel,
}

impl std::fmt::Debug for Containerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Containerd")
            .field("socket", &self.socket)
            .field("namespace", &self.namespace)
            .finish()
    }
}

/// An image in containerd's store: its name there and what it points at (a manifest or
/// an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerdImage {
    pub name: String,
    pub target: Descriptor,
}

/// An image resolved for one platform: enough to know its identity (the config digest)
/// before any layer is read.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    pub manifest_digest: Digest,
    pub manifest_bytes: Vec<u8>,
    pub config_digest: Digest,
}

impl Containerd {
    /// containerd's socket: `CONTAINERD_ADDRESS` (a path, or `unix://PATH`), else the default.
    pub fn socket_from_env() -> PathBuf {
        match std::env::var(CONTAINERD_ADDRESS_ENV) {
            Ok(value) if !value.is_empty() => {
                PathBuf::from(value.strip_prefix("unix://").unwrap_or(&value))
            }
            _ => PathBuf::from(DEFAULT_SOCKET),
        }
    }

    /// The namespace: `given` (a flag), else `CONTAINERD_NAMESPACE`, else `default`;
    /// checked against containerd's own rule for namespace names.
    pub fn namespace(given: Option<&str>) -> std::result::Result<String, EngineError> {
        let (value, variable) = match given {
            Some(value) => (value.to_string(), "--containerd-namespace"),
            None => match std::env::var(CONTAINERD_NAMESPACE_ENV) {
                Ok(value) if !value.is_empty() => (value, CONTAINERD_NAMESPACE_ENV),
                _ => return Ok(DEFAULT_NAMESPACE.to_string()),
            },
        };
        if valid_namespace(&value) {
            Ok(value)
        } else {
            Err(EngineError::Address {
                variable,
                value,
                reason: "a containerd namespace is letters and digits, parts joined by '.', '_' or '-', at most 76 characters".into(),
            })
        }
    }

    /// Connects to containerd at `socket` and checks it answers as containerd.
    pub fn connect(socket: &Path, namespace: &str) -> std::result::Result<Containerd, EngineError> {
        let unreachable = |reason: String| EngineError::Unreachable {
            engine: EngineKind::Containerd,
            socket: socket.to_path_buf(),
            reason,
            fix: format!("start it, or set {CONTAINERD_ADDRESS_ENV}=/path/to/containerd.sock"),
        };
        if !valid_namespace(namespace) {
            return Err(EngineError::Address {
                variable: CONTAINERD_NAMESPACE_ENV,
                value: namespace.to_string(),
                reason: "not a containerd namespace name".into(),
            });
        }
        let channel = Channel::connect(socket, vec![(NAMESPACE_HEADER, namespace.to_string())])
            .map_err(|e| unreachable(e.to_string()))?;
        let mut containerd = Containerd {
            socket: socket.to_path_buf(),
            namespace: namespace.to_string(),
            channel,
        };
        let version: proto::VersionResponse = containerd
            .channel
            .unary(proto::VERSION, &proto::Empty {})
            .map_err(|e| unreachable(format!("it does not answer as containerd: {e}")))?;
        tracing::debug!(
            "containerd {} at {} (namespace {namespace})",
            version.version,
            socket.display()
        );
        Ok(containerd)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn namespace_name(&self) -> &str {
        &self.namespace
    }

    fn api_error(&self, e: GrpcError) -> EngineError {
        EngineError::Api {
            engine: EngineKind::Containerd,
            socket: self.socket.clone(),
            message: format!("namespace {}: {e}", self.namespace),
        }
    }

    /// The image named exactly `name` in the namespace, if there is one.
    pub fn image(
        &mut self,
        name: &str,
    ) -> std::result::Result<Option<ContainerdImage>, EngineError> {
        let reply: std::result::Result<proto::GetImageResponse, _> = self.channel.unary(
            proto::IMAGES_GET,
            &proto::GetImageRequest {
                name: name.to_string(),
            },
        );
        let image = match reply {
            Ok(reply) => reply.image,
            Err(e) if e.code() == Some(NOT_FOUND) => return Ok(None),
            Err(e) => return Err(self.api_error(e)),
        };
        let Some(image) = image else {
            return Ok(None);
        };
        let target = image.target.ok_or_else(|| {
            self.api_error(GrpcError::Protocol {
                method: proto::IMAGES_GET,
                reason: format!("image {:?} has no target", image.name),
            })
        })?;
        let target = descriptor(target).map_err(|reason| {
            self.api_error(GrpcError::Protocol {
                method: proto::IMAGES_GET,
                reason: format!("image {:?}: {reason}", image.name),
            })
        })?;
        Ok(Some(ContainerdImage {
            name: image.name,
            target,
        }))
    }

    /// A blob's bytes as a stream (unchecked: the caller checks them against `desc`).
    pub fn read_blob(&mut self, desc: &Descriptor, what: &str) -> Result<BlobReader<'_>> {
        let socket = self.socket.clone();
        let namespace = self.namespace.clone();
        let stream = self
            .channel
            .server_stream(
                proto::CONTENT_READ,
                &proto::ReadContentRequest {
                    digest: desc.digest.to_string(),
                    offset: 0,
                    size: 0,
                },
            )
            .map_err(|e| blob_error(&socket, &namespace, what, &desc.digest, e))?;
        let what = what.to_string();
        let digest = desc.digest.clone();
        Ok(BlobReader {
            stream,
            chunk: Vec::new(),
            at: 0,
            expected_offset: 0,
            failure: Box::new(move |e| blob_error(&socket, &namespace, &what, &digest, e)),
        })
    }

    /// A small document (index, manifest, config), checked against `desc`.
    pub fn read_document(&mut self, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
        check_document_size(desc, what)?;
        let mut bytes = Vec::new();
        self.read_blob(desc, what)?
            .take(MAX_DOCUMENT_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| OciError::Source(format!("{what} from containerd: {e}")))?;
        verify_bytes(&bytes, desc, what)?;
        Ok(bytes)
    }

    /// The manifest of `image` for `platform` (through its index if it has one), and the
    /// digest of its config: the image's ID, as Docker's would be.
    pub fn resolve(
        &mut self,
        image: &ContainerdImage,
        platform: &Platform,
    ) -> Result<ResolvedImage> {
        let what = format!("containerd image {}", image.name);
        let mut desc = image.target.clone();
        let mut bytes = self.read_document(&desc, &format!("{what}: manifest"))?;
        if is_index(&bytes, Some(&desc.media_type)) {
            desc = select_platform(&bytes, platform, &what)?;
            bytes = self.read_document(&desc, &format!("{what}: manifest"))?;
        }
        let manifest = parse_manifest(&bytes, &format!("{what}: manifest"))?;
        Ok(ResolvedImage {
            manifest_digest: desc.digest,
            config_digest: manifest.config.digest,
            manifest_bytes: bytes,
        })
    }

    /// Reads a resolved image: its config checked against the manifest, each layer streamed
    /// into `blobs` (digest and size checked on the way in).
    pub fn fetch(
        &mut self,
        image: &ContainerdImage,
        resolved: &ResolvedImage,
        blobs: &BlobStore,
        progress: &dyn Progress,
    ) -> Result<FetchedImage> {
        let what = format!("containerd image {}", image.name);
        let manifest = parse_manifest(&resolved.manifest_bytes, &format!("{what}: manifest"))?;
        let config_bytes = self.read_document(&manifest.config, &format!("{what}: config"))?;
        let config = parse_config(&config_bytes, &manifest, &format!("{what}: config"))?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for (i, layer) in manifest.layers.iter().enumerate() {
            let layer_what = format!("{what}: layer {} ({})", i + 1, layer.digest);
            let bar = progress.layer(&short(&layer.digest), layer.size);
            let reader = Counting {
                inner: self.read_blob(layer, &layer_what)?,
                bar: bar.as_ref(),
            };
            let path = blobs.ingest(layer, &layer_what, reader)?;
            bar.finish();
            layers.push(Layer {
                descriptor: layer.clone(),
                location: LayerLocation::File(path),
            });
        }
        Ok(FetchedImage {
            manifest_digest: Some(resolved.manifest_digest.clone()),
            config_digest: manifest.config.digest.clone(),
            compressed_size: manifest.layers.iter().map(|l| l.size).sum(),
            config,
            layers,
            names: vec![image.name.clone()],
        })
    }
}

/// A blob read through `Content.Read`, chunk by chunk.
pub struct BlobReader<'a> {
    stream: grpc::Stream<'a>,
    chunk: Vec<u8>,
    at: usize,
    /// Where the next chunk must start: containerd says each chunk's offset.
    expected_offset: i64,
    failure: Box<dyn Fn(GrpcError) -> OciError + 'a>,
}

impl Read for BlobReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() {
            let next: Option<proto::ReadContentResponse> = self
                .stream
                .next()
                .map_err(|e| io::Error::other((self.failure)(e).to_string()))?;
            let Some(next) = next else {
                return Ok(0);
            };
            if next.offset != self.expected_offset {
                return Err(io::Error::other(format!(
                    "containerd sent bytes at offset {} where {} was next",
                    next.offset, self.expected_offset
                )));
            }
            self.expected_offset += next.data.len() as i64;
            self.chunk = next.data;
            self.at = 0;
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A reader that moves a progress bar.
struct Counting<'a, R> {
    inner: R,
    bar: &'a (dyn crate::fetch::LayerProgress + Send + Sync),
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.advance(n as u64);
        Ok(n)
    }
}

fn short(digest: &Digest) -> String {
    digest.hex().chars().take(12).collect()
}

fn blob_error(
    socket: &Path,
    namespace: &str,
    what: &str,
    digest: &Digest,
    e: GrpcError,
) -> OciError {
    if e.code() == Some(NOT_FOUND) {
        return OciError::Source(format!(
            "{what}: containerd at {} (namespace {namespace}) does not hold blob {digest}: its image was imported or pulled without this content (pull it again, e.g. `ctr --namespace {namespace} image pull --all-platforms NAME`)",
            socket.display()
        ));
    }
    EngineError::Api {
        engine: EngineKind::Containerd,
        socket: socket.to_path_buf(),
        message: format!("namespace {namespace}: {what}: {e}"),
    }
    .into()
}

/// containerd's descriptor as the OCI spec's, refusing what cannot be one.
fn descriptor(d: proto::Descriptor) -> std::result::Result<Descriptor, String> {
    let digest: Digest = d
        .digest
        .parse()
        .map_err(|e: crate::digest::DigestParseError| {
            format!("bad digest {:?}: {}", d.digest, e.0)
        })?;
    let size = u64::try_from(d.size).map_err(|_| format!("negative size {}", d.size))?;
    Ok(Descriptor {
        media_type: d.media_type,
        digest,
        size,
        platform: None,
        annotations: d.annotations.into_iter().collect(),
    })
}

/// containerd's rule (`namespaces.Validate`): labels of letters and digits joined by `.`,
/// `_` or `-`, at most 76 characters.
fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 76
        && name
            .split(['.', '_', '-'])
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_follow_containerds_rule() {
        for good in ["default", "k8s.io", "moby", "a-b_c.d", "x1"] {
            assert!(valid_namespace(good), "{good}");
        }
        for bad in [
            "",
            "a..b",
            "-a",
            "a-",
            "a/b",
            "a b",
            "a\r\nx: y",
            &"a".repeat(77),
        ] {
            assert!(!valid_namespace(bad), "{bad:?}");
        }
        assert_eq!(Containerd::namespace(Some("k8s.io")).unwrap(), "k8s.io");
        let err = Containerd::namespace(Some("a/b")).unwrap_err().to_string();
        assert!(err.contains("--containerd-namespace"), "{err}");
    }

    #[test]
    fn descriptors_from_containerd_are_checked() {
        let good = proto::Descriptor {
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 10,
            annotations: [("k".to_string(), "v".to_string())].into(),
        };
        let d = descriptor(good.clone()).unwrap();
        assert_eq!(d.size, 10);
        assert_eq!(d.annotations.get("k").map(String::as_str), Some("v"));
        let negative = proto::Descriptor {
            size: -1,
            ..good.clone()
        };
        assert!(descriptor(negative).unwrap_err().contains("negative size"));
        let bad = proto::Descriptor {
            digest: "sha256:../../etc".into(),
            ..good
        };
        assert!(descriptor(bad).unwrap_err().contains("bad digest"));
    }
}
