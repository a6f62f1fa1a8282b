//! The host's Configuration (`/etc/ignite/config.yaml`, or `--ignite-config`) and how it
//! layers under flags and manifests: flags > `--config` manifest > Configuration
//! `vmDefaults` > built-in defaults.

use std::path::{Path, PathBuf};

use ignite_api::manifest::{self, DecodeError};
use ignite_api::validation::{ValidationError, validate_configuration};
use ignite_api::{Configuration, VmSpec};

/// Where the Configuration is read from when `--ignite-config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/ignite/config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the Ignite configuration {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the Ignite configuration {} is invalid: {source}", path.display())]
    Decode {
        path: PathBuf,
        #[source]
        source: DecodeError,
    },
    #[error("the Ignite configuration {} is invalid: {source}", path.display())]
    Invalid {
        path: PathBuf,
        #[source]
        source: ValidationError,
    },
}

/// The Configuration in force: the file named by `flag`, else the default file if it
/// exists, else none (built-in defaults only). A named file must exist.
pub fn load_configuration(flag: Option<&Path>) -> Result<Option<Configuration>, ConfigError> {
    let default = Path::new(DEFAULT_CONFIG_PATH);
    let path = match flag {
        Some(p) => p,
        None if default.exists() => default,
        None => return Ok(None),
    };
    read_configuration(path).map(Some)
}

/// Reads and validates one Configuration file.
pub fn read_configuration(path: &Path) -> Result<Configuration, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config: Configuration = manifest::decode(&text).map_err(|source| ConfigError::Decode {
        path: path.to_path_buf(),
        source,
    })?;
    validate_configuration(&config).map_err(|source| ConfigError::Invalid {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(config)
}

/// The VM spec that results from all layers. `flags` holds only what was given on the
/// command line; `manifest` is the spec of a `--config` file.
pub fn effective_vm_spec(
    flags: VmSpec,
    manifest: Option<VmSpec>,
    configuration: Option<&Configuration>,
) -> VmSpec {
    let mut spec = flags;
    if let Some(m) = manifest {
        spec = spec.layered_over(m);
    }
    if let Some(c) = configuration {
        spec = spec.layered_over(c.spec.vm_defaults.clone());
        // Ignite's `networkPlugin: cni` (or `--network-plugin cni`): the mode of VMs that
        // name none. `docker-bridge` leaves the default (bridge as root).
        if spec.network.mode.is_none() && c.spec.network_plugin.as_deref() == Some("cni") {
            spec.network.mode = Some(ignite_api::NetworkMode::Cni);
        }
    }
    spec.layered_over(VmSpec::builtin_defaults())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ignite_api::Size;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let p = dir.join("config.yaml");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn reads_and_layers_the_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nmetadata:\n  name: host\nspec:\n  vmDefaults:\n    cpus: 2\n    memory: 1GB\n    diskSize: 8GB\n",
        );
        let config = load_configuration(Some(&path)).unwrap().unwrap();
        let manifest = VmSpec {
            memory: Some(Size::from_mib(2048)),
            cpus: Some(3),
            ..VmSpec::default()
        };
        let flags = VmSpec {
            cpus: Some(4),
            ..VmSpec::default()
        };
        let spec = effective_vm_spec(flags, Some(manifest), Some(&config));
        assert_eq!(spec.cpus(), 4);
        assert_eq!(spec.memory(), Size::from_mib(2048));
        assert_eq!(spec.disk_size(), Size::from_mib(8192));
        assert!(spec.kernel.unwrap().cmd_line.is_some());
    }

    #[test]
    fn errors_name_the_file_and_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.yaml");
        let e = load_configuration(Some(&missing)).unwrap_err().to_string();
        assert!(e.contains("nope.yaml"), "{e}");

        let path = write(
            dir.path(),
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  vmDefaults:\n    cpus: 0\n",
        );
        let e = load_configuration(Some(&path)).unwrap_err().to_string();
        assert!(
            e.contains("config.yaml") && e.contains("spec.vmDefaults.cpus"),
            "{e}"
        );

        let path = write(
            dir.path(),
            "apiVersion: ignite.weave.works/v1alpha4\nkind: Configuration\nspec:\n  colour: blue\n",
        );
        let e = load_configuration(Some(&path)).unwrap_err().to_string();
        assert!(e.contains("colour"), "{e}");
    }
}
