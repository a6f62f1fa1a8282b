//! Where an image comes from, in skopeo's words: a registry reference (`alpine`,
//! `docker://alpine`), `oci:DIR[:TAG]` (an OCI image layout) or `docker-archive:FILE`
//! (`docker save` output).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::reference::ImageReference;

/// Why an image source was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(String);

impl SourceError {
    pub fn new(message: impl Into<String>) -> SourceError {
        SourceError(message.into())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Registry(ImageReference),
    OciLayout {
        dir: PathBuf,
        tag: Option<String>,
    },
    DockerArchive {
        file: PathBuf,
    },
    /// `docker-daemon:NAME[:TAG]` or `docker-daemon:IMAGE-ID` (skopeo's name): an image in
    /// the local Docker Engine's store, read through its API.
    DockerDaemon {
        reference: String,
    },
    /// `containerd:NAME[:TAG]`: an image in the local containerd's store (in the namespace
    /// of `--containerd-namespace`/`CONTAINERD_NAMESPACE`), read through its API.
    Containerd {
        reference: String,
    },
    /// A local file (a path starting with `/`, `./` or `../`, or `file:PATH`): for kernels,
    /// a vmlinux, a bzImage or a kernel `.deb`.
    File(PathBuf),
}

impl ImageSource {
    pub fn parse(input: &str) -> Result<ImageSource, SourceError> {
        if let Some(rest) = input.strip_prefix("oci:") {
            // The tag follows the last ':' unless that ':' is part of the directory path.
            let (dir, tag) = match rest.rsplit_once(':') {
                Some((dir, tag)) if !tag.contains('/') && !dir.is_empty() => {
                    (dir, Some(tag.to_string()))
                }
                _ => (rest, None),
            };
            if dir.is_empty() {
                return Err(SourceError(
                    "oci: needs a directory, e.g. oci:/path/to/layout:tag".into(),
                ));
            }
            return Ok(ImageSource::OciLayout {
                dir: PathBuf::from(dir),
                tag: tag.filter(|t| !t.is_empty()),
            });
        }
        if let Some(file) = input.strip_prefix("docker-archive:") {
            if file.is_empty() {
                return Err(SourceError(
                    "docker-archive: needs a file, e.g. docker-archive:/tmp/image.tar".into(),
                ));
            }
            return Ok(ImageSource::DockerArchive {
                file: PathBuf::from(file),
            });
        }
        if let Some(reference) = input.strip_prefix("docker-daemon:") {
            if reference.is_empty() {
                return Err(SourceError(
                    "docker-daemon: needs an image name or ID, e.g. docker-daemon:my/app:1".into(),
                ));
            }
            return Ok(ImageSource::DockerDaemon {
                reference: reference.to_string(),
            });
        }
        if let Some(reference) = input.strip_prefix("containerd:") {
            if reference.is_empty() {
                return Err(SourceError(
                    "containerd: needs an image name, e.g. containerd:my/app:1".into(),
                ));
            }
            return Ok(ImageSource::Containerd {
                reference: reference.to_string(),
            });
        }
        if let Some(path) = input.strip_prefix("file:") {
            if path.is_empty() {
                return Err(SourceError(
                    "file: needs a path, e.g. file:/boot/vmlinuz".into(),
                ));
            }
            return Ok(ImageSource::File(PathBuf::from(path)));
        }
        if input.starts_with('/') || input.starts_with("./") || input.starts_with("../") {
            return Ok(ImageSource::File(PathBuf::from(input)));
        }
        let reference = input.strip_prefix("docker://").unwrap_or(input);
        ImageReference::parse(reference)
            .map(ImageSource::Registry)
            .map_err(|e| {
                SourceError(format!(
                    "{e}; other sources are oci:DIR[:TAG], docker-archive:FILE, docker-daemon:NAME and containerd:NAME"
                ))
            })
    }

    /// The name an Image imported from here gets, when the source says it before it is
    /// read: a registry reference's, and a `docker-daemon:` name's (`local/app:1`); the
    /// source as written otherwise (an archive or layout may name its image itself).
    pub fn image_name(&self) -> String {
        match self {
            ImageSource::DockerDaemon { reference } if !is_image_id(reference) => {
                ImageReference::parse(reference)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| self.to_string())
            }
            ImageSource::Containerd { reference } => ImageReference::parse(reference)
                .map(|r| r.familiar())
                .unwrap_or_else(|_| self.to_string()),
            _ => self.to_string(),
        }
    }

    /// The registry reference, for registry sources.
    pub fn reference(&self) -> Option<&ImageReference> {
        match self {
            ImageSource::Registry(r) => Some(r),
            _ => None,
        }
    }
}

/// Whether `s` is written as engines write image IDs: `sha256:<hex>`, or 12 to 64 lower-case
/// hex digits.
pub fn is_image_id(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (12..=64).contains(&hex.len())
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::Registry(r) => write!(f, "{r}"),
            ImageSource::OciLayout { dir, tag: Some(t) } => write!(f, "oci:{}:{t}", dir.display()),
            ImageSource::OciLayout { dir, tag: None } => write!(f, "oci:{}", dir.display()),
            ImageSource::DockerArchive { file } => write!(f, "docker-archive:{}", file.display()),
            ImageSource::DockerDaemon { reference } => write!(f, "docker-daemon:{reference}"),
            ImageSource::Containerd { reference } => write!(f, "containerd:{reference}"),
            ImageSource::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for ImageSource {
    type Err = SourceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageSource::parse(s)
    }
}

impl Serialize for ImageSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ImageSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        ImageSource::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_source_kind() {
        assert_eq!(
            ImageSource::parse("alpine").unwrap().to_string(),
            "alpine:latest"
        );
        assert_eq!(
            ImageSource::parse("docker://alpine:3").unwrap().to_string(),
            "alpine:3"
        );
        assert_eq!(
            ImageSource::parse("oci:/tmp/layout:v1").unwrap(),
            ImageSource::OciLayout {
                dir: "/tmp/layout".into(),
                tag: Some("v1".into())
            }
        );
        assert_eq!(
            ImageSource::parse("oci:/tmp/layout").unwrap(),
            ImageSource::OciLayout {
                dir: "/tmp/layout".into(),
                tag: None
            }
        );
        assert_eq!(
            ImageSource::parse("docker-archive:/tmp/a.tar").unwrap(),
            ImageSource::DockerArchive {
                file: "/tmp/a.tar".into()
            }
        );
        assert_eq!(
            ImageSource::parse("/boot/vmlinuz").unwrap(),
            ImageSource::File("/boot/vmlinuz".into())
        );
        assert_eq!(
            ImageSource::parse("file:k.deb").unwrap(),
            ImageSource::File("k.deb".into())
        );
        assert_eq!(
            ImageSource::parse("docker-daemon:local/hello:1").unwrap(),
            ImageSource::DockerDaemon {
                reference: "local/hello:1".into()
            }
        );
        assert_eq!(
            ImageSource::parse("docker-daemon:sha256:ab")
                .unwrap()
                .to_string(),
            "docker-daemon:sha256:ab"
        );
        assert_eq!(
            ImageSource::parse("containerd:docker.io/local/hello:1").unwrap(),
            ImageSource::Containerd {
                reference: "docker.io/local/hello:1".into()
            }
        );
        assert_eq!(
            ImageSource::parse("containerd:docker.io/local/hello:1")
                .unwrap()
                .image_name(),
            "local/hello:1"
        );
        for bad in [
            "oci:",
            "docker-archive:",
            "docker-daemon:",
            "containerd:",
            "Bad//Ref",
            "file:",
        ] {
            assert!(ImageSource::parse(bad).is_err(), "{bad}");
        }
    }
}
