//! Where images come from besides registries and files: the host's local engines. A bare
//! name (`my/app:1`) is looked up in Docker Engine and containerd before the registry, as
//! `docker run` looks in its own store before pulling; `--runtime docker|containerd` asks
//! one engine first and requires it; `docker-daemon:NAME` and `containerd:NAME` name the
//! engine outright. What an engine gives goes through the same checked import as every
//! other source: Docker's export as a `docker save` archive, containerd's blobs each
//! against its digest.
//!
//! The engines' sockets are root-equivalent, so manifests from the API, GitOps or the
//! manifest directory reach them only where the host access policy allows
//! (`spec.hostAccess.engines`); the daemon's lookups are registry-only otherwise.

use std::fs;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use ignite_api::{Configuration, ImageReference, ImageSource};
use ignite_oci::FetchedImage;
use ignite_oci::blobs::BlobStore;
use ignite_oci::digest::Digest;
use ignite_oci::engine::{
    Containerd, ContainerdImage, DockerEngine, EngineImage, EngineKind, ResolvedImage,
};
use ignite_oci::fetch::Progress;
use ignite_oci::spec::Platform;
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
    /// containerd's namespace (`--containerd-namespace`); `None`: `CONTAINERD_NAMESPACE`,
    /// else `default`.
    pub containerd_namespace: Option<String>,
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
                containerd_namespace: None,
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
            containerd_namespace: None,
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
pub(crate) enum EngineHit {
    Docker {
        engine: DockerEngine,
        image: EngineImage,
    },
    Containerd {
        client: Box<Containerd>,
        image: ContainerdImage,
        resolved: ResolvedImage,
    },
}

impl EngineHit {
    /// The image's ID: its config's digest, whichever engine.
    pub fn id(&self) -> &Digest {
        match self {
            EngineHit::Docker { image, .. } => &image.id,
            EngineHit::Containerd { resolved, .. } => &resolved.config_digest,
        }
    }

    /// The names the engine gives the image.
    pub fn names(&self) -> Vec<String> {
        match self {
            EngineHit::Docker { image, .. } => image.repo_tags.clone(),
            EngineHit::Containerd { image, .. } => vec![image.name.clone()],
        }
    }

    pub fn socket(&self) -> &Path {
        match self {
            EngineHit::Docker { engine, .. } => engine.socket(),
            EngineHit::Containerd { client, .. } => client.socket(),
        }
    }

    /// The source an image read from here records: `docker-daemon:NAME` or
    /// `containerd:NAME`, with `name` as it was asked for.
    pub fn source(&self, name: &str) -> ImageSource {
        match self {
            EngineHit::Docker { .. } => ImageSource::DockerDaemon {
                reference: name.to_string(),
            },
            EngineHit::Containerd { .. } => ImageSource::Containerd {
                reference: name.to_string(),
            },
        }
    }
}

/// Looks `reference` up in the engines of `lookup`, in order. `None`: no engine has it
/// (the registry is next). An engine that is not running is skipped unless required.
pub(crate) fn find_in_engines(
    reference: &ImageReference,
    lookup: &EngineLookup,
    platform: &Platform,
) -> Result<Option<EngineHit>, ImageError> {
    let name = reference.familiar();
    for (i, kind) in lookup.engines.iter().enumerate() {
        let required = lookup.required && i == 0;
        let found = match kind {
            EngineKind::Docker => find_in_docker(&name, required)?,
            EngineKind::Containerd => find_in_containerd(
                &reference.normalized(),
                lookup.containerd_namespace.as_deref(),
                platform,
                required,
            )?,
        };
        match found {
            Some(hit) => {
                tracing::info!(
                    "{name}: found in {} at {} ({})",
                    kind,
                    hit.socket().display(),
                    short_id(&hit.id().to_string())
                );
                return Ok(Some(hit));
            }
            None if required => {
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
        .map(|image| EngineHit::Docker { engine, image }))
}

/// The image `name` in the containerd of `CONTAINERD_ADDRESS`, in `namespace` (else
/// `CONTAINERD_NAMESPACE`, else `default`), resolved for `platform`, if containerd is
/// running and has it. containerd names images in full (`docker.io/library/alpine:3`);
/// a name not found as written is asked again in that form.
pub(crate) fn find_in_containerd(
    name: &str,
    namespace: Option<&str>,
    platform: &Platform,
    required: bool,
) -> Result<Option<EngineHit>, ImageError> {
    let namespace = Containerd::namespace(namespace).map_err(ignite_oci::OciError::from)?;
    let socket = Containerd::socket_from_env();
    let mut client = match Containerd::connect(&socket, &namespace) {
        Ok(client) => client,
        Err(e) if e.is_unreachable() && !required => {
            tracing::debug!("not asking containerd: {e}");
            return Ok(None);
        }
        Err(e) => return Err(ignite_oci::OciError::from(e).into()),
    };
    let mut image = client.image(name).map_err(ignite_oci::OciError::from)?;
    if image.is_none()
        && let Ok(full) = ImageReference::parse(name).map(|r| r.normalized())
        && full != name
    {
        image = client.image(&full).map_err(ignite_oci::OciError::from)?;
    }
    let Some(image) = image else {
        return Ok(None);
    };
    let resolved = client.resolve(&image, platform)?;
    Ok(Some(EngineHit::Containerd {
        client: Box::new(client),
        image,
        resolved,
    }))
}

/// The engine's current image ID for an image that came from there by name, for the
/// rebuild check: `None` when the engine is gone or no longer has the name (the imported
/// image is used as it is).
pub(crate) fn current_in_engine(
    source: &ImageSource,
    lookup: &EngineLookup,
    platform: &Platform,
) -> Option<Digest> {
    let found = match source {
        ImageSource::DockerDaemon { reference } => find_in_docker(reference, false),
        ImageSource::Containerd { reference } => find_in_containerd(
            reference,
            lookup.containerd_namespace.as_deref(),
            platform,
            false,
        ),
        _ => return None,
    };
    match found {
        Ok(hit) => hit.map(|h| h.id().clone()),
        Err(e) => {
            tracing::debug!("not checking {source} against its engine: {e}");
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

/// Reads an image found in containerd: its layers stream into a blob store in the state
/// root's staging area (each checked against its digest), which goes when the returned
/// directory is dropped.
pub(crate) fn fetch_from_containerd(
    store: &Store,
    client: &mut Containerd,
    image: &ContainerdImage,
    resolved: &ResolvedImage,
    progress: &dyn Progress,
) -> Result<(FetchedImage, tempfile::TempDir), ImageError> {
    let staging = staging_dir(store)?;
    let blobs = BlobStore::open(staging.path().join("blobs"))?;
    tracing::info!(
        "reading {} ({}) from containerd (namespace {})",
        image.name,
        short_id(&resolved.config_digest.to_string()),
        client.namespace_name()
    );
    let fetched = client.fetch(image, resolved, &blobs, progress)?;
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
                required: true,
                containerd_namespace: None,
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
