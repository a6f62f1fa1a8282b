//! `ignited daemon`: the reconcile loop over a manifest directory until SIGTERM or
//! SIGINT. VMs keep running when the daemon stops (each has its own supervisor); a
//! restarted daemon takes them over where they are.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;

use crate::Global;
use crate::reconcile_loop::ReconcileLoop;
use crate::setup::set_up;

/// The value of the source label on VMs the daemon makes.
pub const SOURCE: &str = "daemon";

pub fn run(dir: &Path, global: &Global) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the manifest directory {}", dir.display()))?;
    // The directory given on the command line may be a link the administrator made: it is
    // resolved once, here. Links inside it are refused (see manifests::load).
    let dir = &std::fs::canonicalize(dir)
        .with_context(|| format!("cannot resolve the manifest directory {}", dir.display()))?;
    let setup = set_up(global)?;
    tracing::info!(
        "keeping the VMs in line with {} (state in {})",
        dir.display(),
        setup.root.display()
    );
    let mut reconcile = ReconcileLoop::new(
        setup.reconciler(SOURCE),
        dir.to_path_buf(),
        Duration::from_secs(global.resync.max(1)),
        ignite_runtime::policy::Origin::ManifestDir,
    );
    reconcile.run(&setup.stop, |l| {
        *setup.stats.lock().expect("stats lock") = l.stats.clone();
    });
    let _ = std::fs::remove_file(&global.api_socket);
    tracing::info!("stopping; the VMs keep running");
    Ok(())
}
