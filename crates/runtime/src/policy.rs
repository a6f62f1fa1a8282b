//! The host access policy for VMs that arrive declaratively (the REST API, GitOps, the
//! daemon's manifest directory). Host paths (`copyFiles`, an `ssh` public key, local
//! image and kernel sources) and block devices reach root's view of the host, so a
//! manifest from such a source may name one only when the Configuration's
//! `spec.hostAccess` allows it. The local CLI is not limited: its user is root already.
//!
//! Paths are judged after normalisation: they must be absolute, without `..`, and they
//! are resolved (symbolic links followed) before they are compared, component by
//! component, with the allowed prefixes (resolved too). A path that cannot be resolved is
//! refused.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use ignite_api::{HostAccess, ImageSource, Ssh, VmSpec};

/// Where a manifest came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Api,
    Gitops,
    ManifestDir,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Api => "the API",
            Origin::Gitops => "GitOps",
            Origin::ManifestDir => "the daemon's manifest directory",
        })
    }
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(
        "{field} {path}: host paths are not allowed for manifests from {origin}; allow a prefix in the Configuration's spec.hostAccess.paths"
    )]
    PathNotAllowed {
        field: String,
        path: String,
        origin: Origin,
    },
    #[error(
        "{field} {path}: block devices are not allowed for manifests from {origin}; list the device in the Configuration's spec.hostAccess.blockDevices"
    )]
    BlockDeviceNotAllowed {
        field: String,
        path: String,
        origin: Origin,
    },
    #[error(
        "{field} {source_name}: local container engines are not image sources for manifests from {origin}; allow them with the Configuration's spec.hostAccess.engines: true"
    )]
    EngineNotAllowed {
        field: String,
        source_name: String,
        origin: Origin,
    },
    #[error("{field} {path}: manifests from {origin} must give absolute host paths without '..'")]
    NotNormal {
        field: String,
        path: String,
        origin: Origin,
    },
    #[error(
        "{field} {path}: cannot resolve it ({reason}); manifests from {origin} may only name host paths that exist"
    )]
    Unresolvable {
        field: String,
        path: String,
        origin: Origin,
        reason: String,
    },
}

/// What a manifest from `origin` may use; `imported` says whether an image (`false`) or
/// a kernel (`true`) of that name is in the store already (then naming its local source
/// reads nothing of the host).
pub fn check_vm_spec(
    spec: &VmSpec,
    access: &HostAccess,
    origin: Origin,
    imported: &dyn Fn(bool, &str) -> bool,
) -> Result<(), PolicyError> {
    let judge = Judge { access, origin };
    for (i, f) in spec.copy_files.iter().enumerate() {
        judge.path(&format!("spec.copyFiles[{i}].hostPath"), &f.host_path)?;
    }
    if let Some(Ssh::PublicKey(key)) = &spec.ssh {
        judge.path("spec.ssh", key)?;
    }
    for (i, v) in spec.storage.volumes.iter().enumerate() {
        if let Some(b) = &v.block_device {
            judge.block_device(
                &format!("spec.storage.volumes[{i}].blockDevice.path"),
                &b.path,
            )?;
        }
    }
    let sources = [
        ("spec.image.oci", spec.image.as_ref().map(|i| &i.oci), false),
        (
            "spec.sandbox.oci",
            spec.sandbox.as_ref().map(|i| &i.oci),
            false,
        ),
        ("spec.kernel.oci", spec.kernel_ref(), true),
    ];
    for (field, source, kernel) in sources {
        let Some(source) = source else { continue };
        if matches!(
            source,
            ImageSource::DockerDaemon { .. } | ImageSource::Containerd { .. }
        ) && !access.engines
            && !imported(kernel, &source.image_name())
        {
            return Err(PolicyError::EngineNotAllowed {
                field: field.to_string(),
                source_name: source.to_string(),
                origin,
            });
        }
        let Some(path) = local_path(source) else {
            continue;
        };
        if imported(kernel, &source.image_name()) {
            continue;
        }
        judge.judge_path(field, &source.to_string(), path)?;
    }
    Ok(())
}

/// The host path a source reads, for local sources.
fn local_path(source: &ImageSource) -> Option<&Path> {
    match source {
        ImageSource::Registry(_)
        | ImageSource::DockerDaemon { .. }
        | ImageSource::Containerd { .. } => None,
        ImageSource::OciLayout { dir, .. } => Some(dir),
        ImageSource::DockerArchive { file } => Some(file),
        ImageSource::File(path) => Some(path),
    }
}

struct Judge<'a> {
    access: &'a HostAccess,
    origin: Origin,
}

impl Judge<'_> {
    /// `path`, resolved, when it is absolute and has no `..`.
    fn resolve(&self, field: &str, shown: &str, path: &Path) -> Result<PathBuf, PolicyError> {
        if !is_normal(path) {
            return Err(PolicyError::NotNormal {
                field: field.into(),
                path: shown.into(),
                origin: self.origin,
            });
        }
        std::fs::canonicalize(path).map_err(|e| PolicyError::Unresolvable {
            field: field.into(),
            path: shown.into(),
            origin: self.origin,
            reason: e.to_string(),
        })
    }

    fn path(&self, field: &str, path: &Path) -> Result<(), PolicyError> {
        self.judge_path(field, &path.display().to_string(), path)
    }

    /// `path` (shown as `shown`) under an allowed prefix.
    fn judge_path(&self, field: &str, shown: &str, path: &Path) -> Result<(), PolicyError> {
        let refused = || PolicyError::PathNotAllowed {
            field: field.into(),
            path: shown.into(),
            origin: self.origin,
        };
        if self.access.paths.is_empty() {
            return Err(refused());
        }
        let real = self.resolve(field, shown, path)?;
        let allowed = self
            .access
            .paths
            .iter()
            .filter(|p| is_normal(p))
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .any(|prefix| real.starts_with(prefix));
        if allowed { Ok(()) } else { Err(refused()) }
    }

    fn block_device(&self, field: &str, path: &Path) -> Result<(), PolicyError> {
        let shown = path.display().to_string();
        let refused = || PolicyError::BlockDeviceNotAllowed {
            field: field.into(),
            path: shown.clone(),
            origin: self.origin,
        };
        if self.access.block_devices.is_empty() {
            return Err(refused());
        }
        let real = self.resolve(field, &shown, path)?;
        let allowed = self
            .access
            .block_devices
            .iter()
            .filter(|p| is_normal(p))
            .filter_map(|p| std::fs::canonicalize(p).ok())
            .any(|d| d == real);
        if allowed { Ok(()) } else { Err(refused()) }
    }
}

/// Absolute, and no `..` component.
fn is_normal(path: &Path) -> bool {
    path.is_absolute() && !path.components().any(|c| c == Component::ParentDir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ignite_api::manifest;

    fn spec(yaml: &str) -> VmSpec {
        manifest::decode(yaml).unwrap()
    }

    fn never(_: bool, _: &str) -> bool {
        false
    }

    fn check(s: &VmSpec, access: &HostAccess) -> Result<(), String> {
        check_vm_spec(s, access, Origin::Api, &never).map_err(|e| e.to_string())
    }

    #[test]
    fn host_resources_are_denied_by_default() {
        let none = HostAccess::default();
        assert_eq!(
            check(
                &spec("copyFiles: [{hostPath: /etc/shadow, vmPath: /x}]"),
                &none
            )
            .unwrap_err(),
            "spec.copyFiles[0].hostPath /etc/shadow: host paths are not allowed for manifests from the API; allow a prefix in the Configuration's spec.hostAccess.paths"
        );
        assert_eq!(
            check(
                &spec("storage: {volumes: [{name: d, blockDevice: {path: /dev/vda}}]}"),
                &none
            )
            .unwrap_err(),
            "spec.storage.volumes[0].blockDevice.path /dev/vda: block devices are not allowed for manifests from the API; list the device in the Configuration's spec.hostAccess.blockDevices"
        );
        for (yaml, field) in [
            ("image: {oci: 'oci:/root/layout:x'}", "spec.image.oci"),
            (
                "image: {oci: 'docker-archive:/root/a.tar'}",
                "spec.image.oci docker-archive:/root/a.tar: host paths",
            ),
            ("kernel: {oci: /boot/vmlinuz}", "spec.kernel.oci"),
            ("ssh: /root/.ssh/id_rsa", "spec.ssh"),
        ] {
            let e = check(&spec(yaml), &none).unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
        // Registry images and generated keys need nothing of the host.
        check(&spec("image: {oci: busybox}\nssh: true"), &none).unwrap();
        // The local engines' sockets are root's: not without spec.hostAccess.engines.
        for yaml in [
            "image: {oci: 'docker-daemon:my/app:1'}",
            "kernel: {oci: 'docker-daemon:my/kernel:6.1'}",
            "image: {oci: 'containerd:my/app:1'}",
            "kernel: {oci: 'containerd:docker.io/my/kernel:6.1'}",
        ] {
            assert!(
                check(&spec(yaml), &none)
                    .unwrap_err()
                    .contains("local container engines are not image sources for manifests from the API; allow them with the Configuration's spec.hostAccess.engines: true"),
                "{yaml}"
            );
            let engines = HostAccess {
                engines: true,
                ..HostAccess::default()
            };
            check(&spec(yaml), &engines).unwrap();
        }
        // An engine's image imported already (under its own name) is not read again.
        let imported = |kernel: bool, name: &str| !kernel && name == "my/app:1";
        check_vm_spec(
            &spec("image: {oci: 'docker-daemon:my/app:1'}"),
            &none,
            Origin::Gitops,
            &imported,
        )
        .unwrap();
        // An image imported already is not read again.
        let imported = |kernel: bool, name: &str| !kernel && name == "oci:/root/layout:x";
        check_vm_spec(
            &spec("image: {oci: 'oci:/root/layout:x'}"),
            &none,
            Origin::Gitops,
            &imported,
        )
        .unwrap();
    }

    #[test]
    fn prefixes_are_compared_on_resolved_paths() {
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let a = allowed.path();
        std::fs::write(a.join("file"), "x").unwrap();
        std::fs::write(other.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(other.path().join("secret"), a.join("link")).unwrap();
        let access = HostAccess {
            paths: vec![a.to_path_buf()],
            block_devices: vec![],
            engines: false,
        };
        let copy = |p: &Path| {
            spec(&format!(
                "copyFiles: [{{hostPath: '{}', vmPath: /x}}]",
                p.display()
            ))
        };
        check(&copy(&a.join("file")), &access).unwrap();
        check(&copy(a), &access).unwrap();
        // A link inside the prefix to outside it, '..', relative paths, missing paths and
        // a sibling that shares the prefix's spelling: refused.
        let e = check(&copy(&a.join("link")), &access).unwrap_err();
        assert!(e.contains("host paths are not allowed"), "{e}");
        let e = check(
            &copy(
                &a.join("..")
                    .join(other.path().file_name().unwrap())
                    .join("secret"),
            ),
            &access,
        )
        .unwrap_err();
        assert!(e.contains("without '..'"), "{e}");
        let e = check(&copy(Path::new("file")), &access).unwrap_err();
        assert!(e.contains("absolute host paths"), "{e}");
        let e = check(&copy(&a.join("absent")), &access).unwrap_err();
        assert!(e.contains("cannot resolve it"), "{e}");
        let sibling = PathBuf::from(format!("{}-evil", a.display()));
        std::fs::create_dir(&sibling).unwrap();
        let e = check(&copy(&sibling), &access).unwrap_err();
        std::fs::remove_dir(&sibling).unwrap();
        assert!(e.contains("host paths are not allowed"), "{e}");
    }

    #[test]
    fn block_devices_must_be_listed_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("disk");
        std::fs::write(&dev, "").unwrap();
        std::os::unix::fs::symlink(&dev, dir.path().join("by-id")).unwrap();
        let access = HostAccess {
            paths: vec![dir.path().join("nothing-here")],
            block_devices: vec![dev.clone()],
            engines: false,
        };
        let vol = |p: &Path| {
            spec(&format!(
                "storage: {{volumes: [{{name: d, blockDevice: {{path: '{}'}}}}]}}",
                p.display()
            ))
        };
        check(&vol(&dev), &access).unwrap();
        check(&vol(&dir.path().join("by-id")), &access).unwrap();
        assert!(check(&vol(Path::new("/dev/null")), &access).is_err());
        // A prefix in paths does not allow devices.
        let e = check(&vol(dir.path()), &access).unwrap_err();
        assert!(e.contains("block devices are not allowed"), "{e}");
    }
}
