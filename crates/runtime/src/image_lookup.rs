//! Where images come from besides registries and files: the host's local engines. A bare
//! name (`my/app:1`) is looked up in Docker Engine (and containerd) before the registry, as
//! `docker run` looks in its own store before pulling; `--runtime docker|containerd` asks
//! one engine first and requires it; `docker-daemon:NAME` names the engine outright. What an
//! engine gives goes through the same checked import as a `docker save` archive.
//!
//! The engines' sockets are root-equivalent, so manifests from the API, GitOps or the
//! manifest directory reach them only where the host access policy allows
//! (`spec.hostAccess.engines`); the daemon's lookups are registry-only otherwise.

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;

use ignite_api::{Configuration, ImageReference};
use ignite_oci::FetchedImage;
use ignite_oci::engine::{DockerEngine, EngineImage, EngineKind};
use ignite_store::Store;

use crate::images::{ImageError, io, staging_dir};

/// Which local engines a bare image name is looked up in, before the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineLookup {
    /// Asked in this order; the registry comes after them.
    pub engines: Vec<EngineKind>,
    /// The first engine must answer (`--runtime`): its absence is an error, not a reason
    /// to move on.
    pub required: bool,
}

impl EngineLookup {
    /// No engine: registries only (the daemon's lookups unless the policy allows engines).
    pub fn registry_only() -> EngineLookup {
        EngineLookup::default()
    }

    /// The local CLI's lookup: `--runtime ENGINE` first and required; else the
    /// Configuration's `engineLookup` order; else its `runtime` first, then the other
    /// engine; else Docker Engine then containerd.
    pub fn for_cli(
        runtime: Option<EngineKind>,
        configuration: Option<&Configuration>,
    ) -> EngineLookup {
        if let Some(engine) = runtime {
            return EngineLookup {
                engines: vec![engine],
                required: true,
            };
        }
        let spec = configuration.map(|c| &c.spec);
        let engines = match (
            spec.and_then(|s| s.engine_lookup.as_ref()),
            spec.and_then(|s| s.runtime.as_deref())
                .and_then(engine_named),
        ) {
            (Some(order), _) => order.iter().filter_map(|e| engine_named(e)).collect(),
            (None, Some(EngineKind::Containerd)) => {
                vec![EngineKind::Containerd, EngineKind::Docker]
            }
            (None, _) => vec![EngineKind::Docker, EngineKind::Containerd],
        };
        EngineLookup {
            engines,
            required: false,
        }
    }

    /// The daemon's lookup for manifests: the CLI's order where the host access policy
    /// lets manifests reach the local engines, the registry only otherwise.
    pub fn for_manifests(configuration: Option<&Configuration>) -> EngineLookup {
        if configuration.is_some_and(|c| c.spec.host_access.engines) {
            Self::for_cli(None, configuration)
        } else {
            Self::registry_only()
        }
    }

    pub fn uses_engines(&self) -> bool {
        !self.engines.is_empty()
    }
}

/// `docker` or `containerd`, as the Configuration writes them (validated there).
fn engine_named(name: &str) -> Option<EngineKind> {
    match name {
        "docker" => Some(EngineKind::Docker),
        "containerd" => Some(EngineKind::Containerd),
        _ => None,
    }
}

/// An image found in a local engine.
#[derive(Debug)]
pub(crate) struct EngineHit {
    pub engine: DockerEngine,
    pub image: EngineImage,
}

/// Looks `reference` up in the engines of `lookup`, in order. `None`: no engine has it
/// (the registry is next). An engine that is not running is skipped unless required.
pub(crate) fn find_in_engines(
    reference: &ImageReference,
    lookup: &EngineLookup,
) -> Result<Option<EngineHit>, ImageError> {
    let name = reference.familiar();
    for (i, kind) in lookup.engines.iter().enumerate() {
        let required = lookup.required && i == 0;
        let found = match kind {
            EngineKind::Docker => find_in_docker(&name, required)?,
            // containerd's image store is not read yet: --runtime containerd requires it
            // to be running, as Ignite did, and the image then comes from the registry.
            EngineKind::Containerd => {
                if required {
                    let socket = ignite_oci::engine::containerd_socket_from_env();
                    ignite_oci::engine::containerd_reachable(&socket)
                        .map_err(ignite_oci::OciError::from)?;
                    tracing::info!(
                        "{name}: images are not read from containerd's store yet; asking the registry"
                    );
                } else {
                    tracing::debug!("containerd's image store is not read yet");
                }
                None
            }
        };
        match found {
            Some(hit) => {
                tracing::info!(
                    "{name}: found in {} at {} ({})",
                    kind,
                    hit.engine.socket().display(),
                    short_id(&hit.image.id.to_string())
                );
                return Ok(Some(hit));
            }
            None if required && *kind == EngineKind::Docker => {
                tracing::info!("{name}: not in {kind}; asking the registry");
            }
            None => {}
        }
    }
    Ok(None)
}

/// The image `name` (a name or an ID) in the Docker Engine of `DOCKER_HOST`, if it is
/// running and has it.
pub(crate) fn find_in_docker(name: &str, required: bool) -> Result<Option<EngineHit>, ImageError> {
    let socket = DockerEngine::socket_from_env().map_err(ignite_oci::OciError::from)?;
    let engine = match DockerEngine::connect(&socket) {
        Ok(engine) => engine,
        Err(e) if e.is_unreachable() && !required => {
            tracing::debug!("not asking Docker Engine: {e}");
            return Ok(None);
        }
        Err(e) => return Err(ignite_oci::OciError::from(e).into()),
    };
    Ok(engine
        .inspect(name)
        .map_err(ignite_oci::OciError::from)?
        .map(|image| EngineHit { engine, image }))
}

/// Docker Engine's current image for `name`, for the rebuild check of an image that came
/// from there: `None` when the engine is gone or no longer has the name (the imported
/// image is used as it is).
pub(crate) fn current_in_docker(name: &str) -> Option<EngineImage> {
    match find_in_docker(name, false) {
        Ok(hit) => hit.map(|h| h.image),
        Err(e) => {
            tracing::debug!("not checking {name} against Docker Engine: {e}");
            None
        }
    }
}

/// Exports `name` (as the engine resolved it to `image`) into the state root's staging area
/// and reads it as a `docker save` archive: every layer is then checked against the
/// digests the archive declares. The layers are read from the export, which goes when the
/// returned directory is dropped (after the import, whether it succeeded or not).
pub(crate) fn export_from_docker(
    store: &Store,
    engine: &DockerEngine,
    name: &str,
    image: &EngineImage,
) -> Result<(FetchedImage, tempfile::TempDir), ImageError> {
    let staging = staging_dir(store)?;
    let file = staging.path().join("image.tar");
    let out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&file)
        .map_err(io("create", &file))?;
    tracing::info!(
        "exporting {name} ({}) from Docker Engine",
        short_id(&image.id.to_string())
    );
    // Asked by ID: a tag moved between the lookup and the export cannot swap the image.
    let stream = engine
        .export(&image.id.to_string())
        .map_err(ignite_oci::OciError::from)?;
    let fetched = ignite_oci::archive::save_and_fetch(stream, out, &file)?;
    if fetched.config_digest != image.id {
        return Err(ignite_oci::OciError::DigestMismatch {
            what: format!("the image Docker Engine exported for {name}"),
            expected: image.id.clone(),
            actual: fetched.config_digest,
        }
        .into());
    }
    Ok((fetched, staging))
}

/// `sha256:0123456789ab`'s first 12 hex digits, as `docker images` shows IDs.
pub(crate) fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_asks_runtime_first_and_requires_it() {
        assert_eq!(
            EngineLookup::for_cli(Some(EngineKind::Docker), None),
            EngineLookup {
                engines: vec![EngineKind::Docker],
                required: true
            }
        );
        let default = EngineLookup::for_cli(None, None);
        assert_eq!(
            default.engines,
            [EngineKind::Docker, EngineKind::Containerd]
        );
        assert!(!default.required);
        let config = |yaml: &str| -> Configuration {
            ignite_api::manifest::decode(&format!(
                "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec: {yaml}\n"
            ))
            .unwrap()
        };
        let none = EngineLookup::for_cli(None, Some(&config("{engineLookup: []}")));
        assert!(!none.uses_engines());
        assert_eq!(
            EngineLookup::for_cli(None, Some(&config("{runtime: containerd}"))).engines,
            [EngineKind::Containerd, EngineKind::Docker]
        );
        assert_eq!(
            EngineLookup::for_cli(None, Some(&config("{engineLookup: [docker]}"))).engines,
            [EngineKind::Docker]
        );
        // Manifests reach engines only where the policy says so.
        assert!(!EngineLookup::for_manifests(None).uses_engines());
        assert!(!EngineLookup::for_manifests(Some(&config("{runtime: docker}"))).uses_engines());
        assert!(
            EngineLookup::for_manifests(Some(&config("{hostAccess: {engines: true}}")))
                .uses_engines()
        );
        assert!(!EngineLookup::registry_only().uses_engines());
        assert_eq!(short_id("sha256:0123456789abcdef"), "0123456789ab");
    }
}
