//! What `ignited daemon` and `ignited gitops` both start with: the Configuration, the
//! store, the stop flag, the API, and the `ignite` binary that supervises VMs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use ignite_api::Configuration;
use ignite_runtime::reconcile::Reconciler;
use ignite_store::Store;

use crate::Global;
use crate::api::{self, Api};
use crate::reconcile_loop::Stats;

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
        crate::reconciler::reconciler(
            &self.store,
            source,
            self.configuration.as_ref(),
            self.supervisor.clone(),
        )
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
