//! What `ignited daemon` and `ignited gitops` both start with: the Configuration, the
//! store, the stop flag, the API, and the binary that supervises VMs (ignited itself).

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
    let supervisor = supervisor_program(global.ignite.as_deref())?;
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

/// The binary started as each VM's supervisor: the flag's, else ignited itself.
pub fn supervisor_program(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    match flag {
        Some(path) => Ok(path.to_path_buf()),
        None => std::env::current_exe()
            .context("cannot find the running ignited binary, which supervises VMs: give --ignite"),
    }
}
