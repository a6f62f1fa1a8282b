//! `ignited daemon`: the reconcile loop over a manifest directory until SIGTERM or
//! SIGINT. VMs keep running when the daemon stops (each has its own supervisor); a
//! restarted daemon takes them over where they are.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use ignite_api::Configuration;
use ignite_runtime::reconcile::Reconciler;
use ignite_store::Store;

use crate::Global;
use crate::api::{self, Api};
use crate::reconcile_loop::{ReconcileLoop, Stats};

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

/// What `ignited daemon` and `ignited gitops` both start with: the Configuration, the
/// store, a stop flag raised by SIGTERM and SIGINT, and the API serving.
pub struct Setup {
    pub configuration: Option<Configuration>,
    pub root: PathBuf,
    pub store: Store,
    pub stop: Arc<AtomicBool>,
    pub stats: Arc<Mutex<Stats>>,
    pub supervisor: PathBuf,
}

pub fn set_up(global: &Global) -> anyhow::Result<Setup> {
    let configuration =
        ignite_runtime::config::load_configuration(global.ignite_config.as_deref())?;
    let root = ignite_store::resolve_root(global.root.as_deref());
    let store = Store::open(&root)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let supervisor = ignite_binary(global.ignite.as_deref())?;
    let stats = Arc::new(Mutex::new(Stats::default()));
    api::serve(
        &global.api_socket,
        global.api_group.as_deref(),
        Api {
            root: root.clone(),
            configuration: configuration.clone(),
            supervisor: supervisor.clone(),
            stats: stats.clone(),
        },
    )?;
    Ok(Setup {
        configuration,
        root,
        store,
        stop,
        stats,
        supervisor,
    })
}

impl Setup {
    pub fn reconciler<'a>(&'a self, source: &'a str) -> Reconciler<'a> {
        reconciler(
            &self.store,
            source,
            self.configuration.as_ref(),
            self.supervisor.clone(),
        )
    }
}

/// A reconciler for `source` with the Configuration's registry settings.
pub fn reconciler<'a>(
    store: &'a Store,
    source: &'a str,
    configuration: Option<&'a Configuration>,
    supervisor: PathBuf,
) -> Reconciler<'a> {
    Reconciler {
        store,
        source,
        configuration,
        import: ignite_runtime::images::ImportOptions {
            registry_config_dir: configuration.and_then(|c| c.spec.registry_config_dir.clone()),
            ..Default::default()
        },
        supervisor,
        progress: &ignite_oci::fetch::NoProgress,
    }
}

/// The `ignite` binary that supervises VMs: the flag, else beside ignited, else in PATH.
pub fn ignite_binary(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = flag {
        return Ok(path.to_path_buf());
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("ignite")))
        .filter(|p| p.is_file());
    beside
        .or_else(|| ignite_runtime::vms::find_in_path("ignite"))
        .context("cannot find the ignite binary (it supervises VMs): install it beside ignited or in PATH, or give --ignite")
}
