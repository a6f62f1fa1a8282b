//! Docker Engine's API on its Unix socket (`DOCKER_HOST=unix://PATH`, else
//! `/var/run/docker.sock`); Podman's Docker-compatible service speaks the same. Used: `_ping`
//! for the API version, `images/{name}/json` to resolve a name to its image ID and tags,
//! `images/{name}/get` for the image as `docker save` writes it.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::http::{Response, request};
use super::{EngineError, EngineKind};
use crate::blobs::MAX_DOCUMENT_BYTES;
use crate::digest::Digest;

/// Where the Docker client looks for its engine.
pub const DOCKER_HOST_ENV: &str = "DOCKER_HOST";
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The newest API version asked for; older engines are asked in their own version.
const API_VERSION: (u32, u32) = (1, 41);
/// The oldest API version with everything used here.
const MIN_API_VERSION: (u32, u32) = (1, 25);
/// The largest image archive taken from an engine.
pub const MAX_ARCHIVE_BYTES: u64 = 64 << 30;

/// A Docker Engine (or Podman's Docker-compatible service) reached on its socket.
#[derive(Debug, Clone)]
pub struct DockerEngine {
    socket: PathBuf,
    /// `/v1.NN`, from the engine's `_ping`.
    prefix: String,
}

/// An image in an engine's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineImage {
    /// The image ID: the digest of its configuration.
    pub id: Digest,
    /// Its names (`repo:tag`), as `docker images` lists them.
    pub repo_tags: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Inspect {
    id: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct ApiMessage {
    message: String,
}

impl DockerEngine {
    /// The socket `DOCKER_HOST` names (only `unix://` is supported), else the default one.
    pub fn socket_from_env() -> Result<PathBuf, EngineError> {
        match std::env::var(DOCKER_HOST_ENV) {
            Ok(value) if !value.is_empty() => match value.strip_prefix("unix://") {
                Some(path) if path.starts_with('/') => Ok(PathBuf::from(path)),
                _ => Err(EngineError::Address {
                    variable: DOCKER_HOST_ENV,
                    value,
                    reason: "only a local engine on a Unix socket (unix:///path/to/docker.sock) can be an image source".into(),
                }),
            },
            _ => Ok(PathBuf::from(DEFAULT_SOCKET)),
        }
    }

    /// Connects to the engine at `socket` and agrees on an API version.
    pub fn connect(socket: &Path) -> Result<DockerEngine, EngineError> {
        let unreachable = |reason: String| EngineError::Unreachable {
            engine: EngineKind::Docker,
            socket: socket.to_path_buf(),
            reason,
            fix: format!("start it, or set {DOCKER_HOST_ENV}=unix:///path/to/docker.sock"),
        };
        let reply = request(socket, "GET", "/_ping").map_err(|e| unreachable(e.to_string()))?;
        let status = reply.status;
        let version = reply.header("api-version").map(str::to_string);
        drop(reply);
        if status != 200 {
            return Err(unreachable(format!("it answered _ping with HTTP {status}")));
        }
        let version = version.as_deref().and_then(parse_version).ok_or_else(|| {
            unreachable("its _ping reply names no API version: is this a Docker Engine?".into())
        })?;
        if version < MIN_API_VERSION {
            return Err(EngineError::Api {
                engine: EngineKind::Docker,
                socket: socket.to_path_buf(),
                message: format!(
                    "API version {}.{} is older than {}.{}, the oldest supported: upgrade the engine",
                    version.0, version.1, MIN_API_VERSION.0, MIN_API_VERSION.1
                ),
            });
        }
        let (major, minor) = version.min(API_VERSION);
        Ok(DockerEngine {
            socket: socket.to_path_buf(),
            prefix: format!("/v{major}.{minor}"),
        })
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The image a name or ID stands for in the engine's store; `None` when it has none.
    pub fn inspect(&self, image: &str) -> Result<Option<EngineImage>, EngineError> {
        let path = format!("{}/images/{}/json", self.prefix, api_name(image)?);
        let reply = self.call(&path)?;
        if reply.status == 404 {
            return Ok(None);
        }
        let body = self.success(reply, image)?;
        let inspect: Inspect = serde_json::from_slice(&body)
            .map_err(|e| self.api(format!("its description of {image:?} is not readable: {e}")))?;
        let id = inspect
            .id
            .parse::<Digest>()
            .map_err(|e| self.api(format!("image ID {:?}: {e}", inspect.id)))?;
        Ok(Some(EngineImage {
            id,
            repo_tags: inspect
                .repo_tags
                .unwrap_or_default()
                .into_iter()
                .filter(|t| t != "<none>:<none>")
                .collect(),
        }))
    }

    /// The image as `docker save` would write it, as a stream of at most
    /// [`MAX_ARCHIVE_BYTES`] (reading past that is an error).
    pub fn export(&self, image: &str) -> Result<impl Read + use<>, EngineError> {
        let path = format!("{}/images/{}/get", self.prefix, api_name(image)?);
        let reply = self.call(&path)?;
        if reply.status == 404 {
            return Err(EngineError::NotFound {
                engine: EngineKind::Docker,
                socket: self.socket.clone(),
                image: image.to_string(),
                namespace: None,
            });
        }
        if reply.status != 200 {
            let status = reply.status;
            let message = error_message(reply);
            return Err(self.api(format!(
                "exporting {image:?} failed (HTTP {status}): {message}"
            )));
        }
        Ok(Capped {
            inner: reply.body,
            left: MAX_ARCHIVE_BYTES,
        })
    }

    fn call(&self, path: &str) -> Result<Response, EngineError> {
        request(&self.socket, "GET", path).map_err(|e| EngineError::Unreachable {
            engine: EngineKind::Docker,
            socket: self.socket.clone(),
            reason: e.to_string(),
            fix: "check that the engine is running".into(),
        })
    }

    fn success(&self, reply: Response, image: &str) -> Result<Vec<u8>, EngineError> {
        let status = reply.status;
        if status != 200 {
            let message = error_message(reply);
            return Err(self.api(format!(
                "asking for {image:?} failed (HTTP {status}): {message}"
            )));
        }
        reply
            .read_body(MAX_DOCUMENT_BYTES)
            .map_err(|e| self.api(format!("reading its reply about {image:?}: {e}")))
    }

    fn api(&self, message: String) -> EngineError {
        EngineError::Api {
            engine: EngineKind::Docker,
            socket: self.socket.clone(),
            message,
        }
    }
}

/// A stream that fails once it has given `left` bytes and has more.
struct Capped<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the engine's export is larger than the {MAX_ARCHIVE_BYTES} bytes accepted"
                    ),
                )),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.left -= n as u64;
        Ok(n)
    }
}

/// The engine's `{"message": ...}`, or the start of whatever it sent.
fn error_message(reply: Response) -> String {
    let body = reply.read_body(64 << 10).unwrap_or_default();
    match serde_json::from_slice::<ApiMessage>(&body) {
        Ok(m) => m.message,
        Err(_) => String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
    }
}

/// `1.41` as (1, 41).
fn parse_version(v: &str) -> Option<(u32, u32)> {
    let (major, minor) = v.trim().split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// A name or ID as it goes into the API's path: only the characters image references and
/// IDs are made of, so nothing a user typed can change the request.
fn api_name(image: &str) -> Result<&str, EngineError> {
    let bad = |reason: &str| EngineError::BadName {
        image: image.to_string(),
        reason: reason.to_string(),
    };
    if image.is_empty() || image.len() > 512 {
        return Err(bad("it must be 1 to 512 characters"));
    }
    if !image
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-/:@".contains(&b))
    {
        return Err(bad(
            "only letters, digits and . _ - / : @ appear in image names and IDs",
        ));
    }
    if image.starts_with(['/', '.', '-']) || image.split('/').any(|p| p == ".." || p == ".") {
        return Err(bad("it is not an image name"));
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_they_reach_a_path() {
        for good in [
            "local/hello:1",
            "hello",
            "sha256:aaa56a50cfd2503562ccfe77afe95ccac3722948a10a79d2039b5628892e1105",
            "aaa56a50cfd2",
            "127.0.0.1:5000/x/y@sha256:00",
        ] {
            assert_eq!(api_name(good).unwrap(), good);
        }
        for bad in [
            "",
            "../../containers/json",
            "a/../b",
            "a?b=c",
            "a b",
            "a%2e",
            "/abs",
            "-x",
            "a#b",
        ] {
            assert!(api_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("1.41"), Some((1, 41)));
        assert_eq!(parse_version(" 1.24 "), Some((1, 24)));
        assert_eq!(parse_version("x"), None);
        assert!((1, 24) < MIN_API_VERSION && (1, 43).min(API_VERSION) == (1, 41));
    }
}
