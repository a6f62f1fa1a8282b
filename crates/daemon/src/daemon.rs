//! `ignited daemon`: the reconcile loop over a manifest directory until SIGTERM or
//! SIGINT. VMs keep running when the daemon stops (each has its own supervisor); a
//! restarted daemon takes them over where they are.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::Global;
use crate::reconcile_loop::ReconcileLoop;
use crate::setup::set_up;

/// The value of the source label on VMs the daemon makes.
pub const SOURCE: &str = "daemon";

/// Ignite's manifest directory, the default.
pub const MANIFEST_DIR: &str = "/etc/firecracker/manifests";
/// Our former default, still followed where it is the only one there.
pub const LEGACY_MANIFEST_DIR: &str = "/etc/ignite/manifests";

/// Which directory is followed without `--manifest-dir`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultDir {
    /// Ignite's (made if missing).
    Ignite,
    /// Only the former default exists: it is followed, so existing hosts keep working.
    Legacy,
    /// Both exist: Ignite's is followed and the former one is not (said at warn).
    IgniteNotLegacy,
}

/// One directory is followed, never both: two directories could hold two manifests of
/// one VM, and which one wins would be a surprise.
pub fn choose_default_dir(ignite_exists: bool, legacy_exists: bool) -> DefaultDir {
    match (ignite_exists, legacy_exists) {
        (false, true) => DefaultDir::Legacy,
        (true, true) => DefaultDir::IgniteNotLegacy,
        _ => DefaultDir::Ignite,
    }
}

/// The directory `ignited daemon` follows without `--manifest-dir`, said in the log.
pub fn default_manifest_dir() -> PathBuf {
    let (ignite, legacy) = (Path::new(MANIFEST_DIR), Path::new(LEGACY_MANIFEST_DIR));
    match choose_default_dir(ignite.is_dir(), legacy.is_dir()) {
        DefaultDir::Ignite => ignite.to_path_buf(),
        DefaultDir::Legacy => {
            tracing::info!(
                "following {LEGACY_MANIFEST_DIR}, the former default, as {MANIFEST_DIR} (the default now, as Ignite's) does not exist; move the manifests there or give --manifest-dir"
            );
            legacy.to_path_buf()
        }
        DefaultDir::IgniteNotLegacy => {
            tracing::warn!(
                "following {MANIFEST_DIR}; {LEGACY_MANIFEST_DIR} (the former default) exists too and is not followed: move its manifests, or give --manifest-dir {LEGACY_MANIFEST_DIR}"
            );
            ignite.to_path_buf()
        }
    }
}

pub fn run(
    dir: &Path,
    placement: Option<ignite_runtime::reconcile::placement::Placement>,
    global: &Global,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the manifest directory {}", dir.display()))?;
    // The directory given on the command line may be a link the administrator made: it is
    // resolved once, here. Links inside it are refused (see manifests::load).
    let dir = &std::fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve the manifest directory {}", dir.display()))?;
    let setup = set_up(global)?;
    tracing::info!(
        "keeping the VMs in line with {} (state in {}){}",
        dir.display(),
        setup.root.display(),
        placement
            .as_ref()
            .map_or(String::new(), |p| format!(", as host {}", p.host))
    );
    let mut reconcile = ReconcileLoop::new(
        setup.reconciler(SOURCE),
        dir.to_path_buf(),
        Duration::from_secs(global.resync.max(1)),
        ignite_runtime::policy::Origin::ManifestDir,
    );
    reconcile.placement = placement;
    reconcile.run(&setup.stop, |l| {
        *setup.stats.lock().expect("stats lock") = l.stats.clone();
    });
    let _ = std::fs::remove_file(&global.api_socket);
    tracing::info!("stopping; the VMs keep running");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_directory_is_ignites_unless_only_the_former_one_exists() {
        assert_eq!(choose_default_dir(false, false), DefaultDir::Ignite);
        assert_eq!(choose_default_dir(true, false), DefaultDir::Ignite);
        assert_eq!(choose_default_dir(false, true), DefaultDir::Legacy);
        assert_eq!(choose_default_dir(true, true), DefaultDir::IgniteNotLegacy);
    }
}
