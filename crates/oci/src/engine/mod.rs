//! Local container engines as image sources: what a user just built with `docker build` is
//! read from the engine's own store through its API (never by running its CLI), then goes
//! through the same checked import as every other source: Docker Engine's (and Podman's)
//! HTTP API, containerd's gRPC API.

mod containerd;
mod docker;
mod http;

pub use containerd::{
    CONTAINERD_ADDRESS_ENV, CONTAINERD_NAMESPACE_ENV, Containerd, ContainerdImage,
    DEFAULT_NAMESPACE, ResolvedImage,
};
pub use docker::{DOCKER_HOST_ENV, DockerEngine, EngineImage};

use std::path::PathBuf;

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
    #[error("{engine} at {} has no image {image:?}{}", socket.display(), namespace.as_ref().map(|n| format!(" in namespace {n}")).unwrap_or_default())]
    NotFound {
        engine: EngineKind,
        socket: PathBuf,
        image: String,
        /// containerd's namespace.
        namespace: Option<String>,
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
