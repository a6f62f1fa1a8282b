//! Local container engines as image sources: what a user just built with `docker build` is
//! read from the engine's own store through its API (never by running its CLI), then goes
//! through the same checked import as every other source.

mod docker;
mod http;

pub use docker::{DOCKER_HOST_ENV, DockerEngine, EngineImage};

use std::path::{Path, PathBuf};

/// Where containerd's clients look for it.
pub const CONTAINERD_ADDRESS_ENV: &str = "CONTAINERD_ADDRESS";
const CONTAINERD_DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";

/// containerd's socket: `CONTAINERD_ADDRESS` (a path, or `unix://PATH`), else the default.
pub fn containerd_socket_from_env() -> PathBuf {
    match std::env::var(CONTAINERD_ADDRESS_ENV) {
        Ok(value) if !value.is_empty() => {
            PathBuf::from(value.strip_prefix("unix://").unwrap_or(&value))
        }
        _ => PathBuf::from(CONTAINERD_DEFAULT_SOCKET),
    }
}

/// Whether containerd answers on `socket` (a connection is accepted).
pub fn containerd_reachable(socket: &Path) -> Result<(), EngineError> {
    std::os::unix::net::UnixStream::connect(socket)
        .map(drop)
        .map_err(|e| EngineError::Unreachable {
            engine: EngineKind::Containerd,
            socket: socket.to_path_buf(),
            reason: e.to_string(),
            fix: format!("start it, or set {CONTAINERD_ADDRESS_ENV}=/path/to/containerd.sock"),
        })
}

/// Which local engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EngineKind {
    Docker,
    Containerd,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Docker => "Docker Engine",
            EngineKind::Containerd => "containerd",
        })
    }
}

/// What went wrong talking to a local engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("no {engine} at {} ({reason}): {fix}", socket.display())]
    Unreachable {
        engine: EngineKind,
        socket: PathBuf,
        reason: String,
        fix: String,
    },
    #[error("{engine} at {} has no image {image:?}", socket.display())]
    NotFound {
        engine: EngineKind,
        socket: PathBuf,
        image: String,
    },
    #[error("{engine} at {}: {message}", socket.display())]
    Api {
        engine: EngineKind,
        socket: PathBuf,
        message: String,
    },
    #[error("{variable}={value:?}: {reason}")]
    Address {
        variable: &'static str,
        value: String,
        reason: String,
    },
    #[error("{image:?} is not an image name or ID a local engine can be asked for: {reason}")]
    BadName { image: String, reason: String },
}

impl EngineError {
    /// The engine is not there at all (as opposed to answering badly): a lookup that was
    /// not asked for this engine moves on to the next source.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, EngineError::Unreachable { .. })
    }
}
