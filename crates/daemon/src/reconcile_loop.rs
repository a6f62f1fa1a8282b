//! The reconcile loop of `ignited daemon` and `ignited gitops`: level-triggered (every
//! pass compares all manifests with all VMs, on a change of the manifest directory and at
//! least every resync interval), one VM at a time, failures retried with exponential
//! backoff and written into the manifest's `status.error`, and nothing a manifest or an
//! action does takes the daemon down. With a placement (`--host`), only the manifests
//! placed on this host are run; a VM whose manifest is placed on another host now is
//! removed here (it has moved), and one whose manifest names no host (unless adopted) or
//! an invalid one is left as it is.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ignite_runtime::policy::{self, Origin};
use ignite_runtime::reconcile::placement::{HOST_LABEL, HostName, Placement, Split};
use ignite_runtime::reconcile::status::{ObservedStatus, write_back};
use ignite_runtime::reconcile::{Action, Reconciler, manifests};
use ignite_runtime::vms;

const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(250);

/// Counters for `/metrics`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub passes: u64,
    pub actions: u64,
    pub errors: u64,
}

pub struct ReconcileLoop<'a> {
    pub reconciler: Reconciler<'a>,
    pub dir: PathBuf,
    pub resync: Duration,
    pub stats: Stats,
    /// Whether status goes back into the manifests (not for a read-only Git clone).
    pub write_status: bool,
    /// Where the manifests come from, for the host access policy.
    pub origin: Origin,
    /// The host this loop runs VMs for; none runs every manifest.
    pub placement: Option<Placement>,
    retry: HashMap<String, (Instant, Duration)>,
    errors: HashMap<String, String>,
    reported: BTreeSet<(PathBuf, String)>,
    /// What was said about manifests not run here (said once, again when it changes).
    placement_notes: BTreeSet<String>,
    placement_summary: String,
}

impl<'a> ReconcileLoop<'a> {
    pub fn new(
        reconciler: Reconciler<'a>,
        dir: PathBuf,
        resync: Duration,
        origin: Origin,
    ) -> ReconcileLoop<'a> {
        ReconcileLoop {
            reconciler,
            dir,
            resync,
            stats: Stats::default(),
            write_status: true,
            origin,
            placement: None,
            retry: HashMap::new(),
            errors: HashMap::new(),
            reported: BTreeSet::new(),
            placement_notes: BTreeSet::new(),
            placement_summary: String::new(),
        }
    }

    /// Passes until `stop` is set.
    pub fn run(&mut self, stop: &AtomicBool, mut after_pass: impl FnMut(&mut Self)) {
        while !stop.load(Ordering::Relaxed) {
            let seen = fingerprint(&self.dir);
            self.pass();
            after_pass(self);
            let deadline = Instant::now() + self.resync;
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                if fingerprint(&self.dir) != seen {
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
    }

    /// One comparison of every manifest with every VM, and what follows from it.
    pub fn pass(&mut self) {
        self.stats.passes += 1;
        let set = manifests::load(&self.dir);
        let now: BTreeSet<(PathBuf, String)> = set.errors.iter().cloned().collect();
        for (file, error) in now.difference(&self.reported) {
            tracing::error!("{}: {error}", file.display());
        }
        self.reported = now;
        let (desired, untouchable, moved) = match self.placement.clone() {
            None => (set.vms, BTreeSet::new(), BTreeMap::new()),
            Some(placement) => {
                let split = placement.split(set.vms);
                self.report_placement(&placement, &split);
                let untouchable: BTreeSet<String> =
                    split.untouchable().map(str::to_string).collect();
                let moved: BTreeMap<String, HostName> = split
                    .elsewhere
                    .iter()
                    .map(|(d, h)| (d.name().to_string(), h.clone()))
                    .collect();
                (split.here, untouchable, moved)
            }
        };
        let actions = match self.reconciler.plan(&desired, true) {
            // A VM whose manifest is unplaced or unreadably placed is not pruned: that
            // manifest is still there, just not this host's to run.
            Ok(a) => a
                .into_iter()
                .filter(|a| !(matches!(a, Action::Remove { .. }) && untouchable.contains(a.name())))
                .collect::<Vec<_>>(),
            Err(e) => {
                tracing::error!("cannot compare the manifests with the VMs: {e}");
                self.stats.errors += 1;
                return;
            }
        };
        // One VM at a time, its actions in order; a failure ends that VM's turn.
        let mut by_vm: BTreeMap<String, Vec<Action>> = BTreeMap::new();
        for action in actions {
            by_vm
                .entry(action.name().to_string())
                .or_default()
                .push(action);
        }
        for (name, actions) in by_vm {
            if self
                .retry
                .get(&name)
                .is_some_and(|(at, _)| Instant::now() < *at)
            {
                continue;
            }
            let manifest = desired.iter().find(|d| d.name() == name);
            for action in &actions {
                self.stats.actions += 1;
                let refused = match (action, manifest) {
                    (
                        Action::Create { .. } | Action::Recreate { .. } | Action::Update { .. },
                        Some(d),
                    ) => check_host_access(
                        self.reconciler.store,
                        self.reconciler.configuration,
                        &d.vm.spec,
                        self.origin,
                    )
                    .err(),
                    _ => None,
                };
                let result = match refused {
                    Some(e) => Ok(Err(e)),
                    None => catch_unwind(AssertUnwindSafe(|| {
                        self.reconciler.execute(action, manifest)
                    })),
                };
                let failure = match result {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some("an internal error (a panic); see the daemon's log".into()),
                };
                match failure {
                    None => {
                        match (action, moved.get(&name)) {
                            (Action::Remove { .. }, Some(host)) => tracing::info!(
                                "removed VM {name}: its manifest places it on host {host} now (its disk does not move)"
                            ),
                            _ => tracing::info!("{}", action.describe(true)),
                        }
                        self.retry.remove(&name);
                        self.errors.remove(&name);
                    }
                    Some(error) => {
                        self.stats.errors += 1;
                        let delay = self
                            .retry
                            .get(&name)
                            .map_or(FIRST_RETRY, |(_, d)| (*d * 2).min(MAX_RETRY));
                        tracing::error!(
                            "cannot {}: {error} (retrying in {delay:?})",
                            action.describe(false).trim_start_matches("would ")
                        );
                        self.retry
                            .insert(name.clone(), (Instant::now() + delay, delay));
                        self.errors.insert(name.clone(), error);
                        break;
                    }
                }
            }
        }
        // Forget VMs that no longer have a manifest.
        self.retry
            .retain(|n, _| desired.iter().any(|d| d.name() == n));
        self.errors
            .retain(|n, _| desired.iter().any(|d| d.name() == n));
        self.record_statuses(&desired);
    }

    /// Says which manifests this host does not run and why: each once, and a summary
    /// when the counts change.
    fn report_placement(&mut self, placement: &Placement, split: &Split) {
        let mut notes = BTreeSet::new();
        for d in &split.unplaced {
            notes.insert(format!(
                "{}: VM {} has no {HOST_LABEL} label and is not run on this host ({}): label it with the host that should run it, or start one ignited with --adopt-unplaced",
                d.file.display(),
                d.name(),
                placement.host
            ));
        }
        for (d, e) in &split.invalid {
            notes.insert(format!(
                "{}: VM {} is run nowhere: its label {HOST_LABEL} is refused: {e}",
                d.file.display(),
                d.name()
            ));
        }
        for note in notes.difference(&self.placement_notes) {
            tracing::warn!("{note}");
        }
        self.placement_notes = notes;
        let summary = format!(
            "host {}: {} manifest(s) placed here{}, {} on other hosts, {} unplaced, {} with an invalid {HOST_LABEL}",
            placement.host,
            split.here.len(),
            if placement.adopt_unplaced {
                " (with the unplaced ones)"
            } else {
                ""
            },
            split.elsewhere.len(),
            split.unplaced.len(),
            split.invalid.len()
        );
        if summary != self.placement_summary {
            tracing::info!("{summary}");
            self.placement_summary = summary;
        }
    }

    /// Each VM's last error (or none) into its stored status, for `ignite inspect`, and,
    /// unless the manifests are read-only, the status into each manifest.
    fn record_statuses(&self, desired: &[manifests::Desired]) {
        let store = self.reconciler.store;
        let Ok(list) = store.vms().list() else {
            return;
        };
        for d in desired {
            let error = self.errors.get(d.name()).cloned();
            let vm = list.objects.iter().find(|v| v.metadata.name == d.name());
            if let Some(vm) = vm.filter(|v| v.status.error != error) {
                let _ = store.vms().update(
                    &vms::uid_of(vm),
                    |v| -> Result<(), ignite_store::StoreError> {
                        v.status.error = error.clone();
                        Ok(())
                    },
                );
            }
            if !self.write_status {
                continue;
            }
            let status = ObservedStatus {
                running: d.running,
                ip_addresses: vm
                    .filter(|v| vms::is_running(v))
                    .map(|v| v.status.ip_addresses().to_vec())
                    .unwrap_or_default(),
                error,
            };
            if let Err(e) = write_back(&d.file, &d.text, &status) {
                tracing::warn!("cannot write the status into {}: {e}", d.file.display());
            }
        }
    }
}

/// The host access policy (`spec.hostAccess` of the Configuration) on a manifest's spec,
/// as the error an action would fail with.
pub fn check_host_access(
    store: &ignite_store::Store,
    configuration: Option<&ignite_api::Configuration>,
    spec: &ignite_api::VmSpec,
    origin: Origin,
) -> Result<(), vms::VmError> {
    let none = ignite_api::HostAccess::default();
    let access = configuration.map_or(&none, |c| &c.spec.host_access);
    let imported = |kernel: bool, name: &str| {
        if kernel {
            store
                .kernels()
                .list()
                .is_ok_and(|l| l.objects.iter().any(|k| k.metadata.name == name))
        } else {
            store
                .images()
                .list()
                .is_ok_and(|l| l.objects.iter().any(|i| i.metadata.name == name))
        }
    };
    policy::check_vm_spec(spec, access, origin, &imported)
        .map_err(|e| vms::VmError::Denied(e.to_string()))
}

/// What changes when a manifest is added, edited, renamed over or removed.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            match entry.metadata() {
                Ok(m) if m.is_dir() => walk(&path, out),
                Ok(m) => out.push((path, m.len(), m.modified().ok())),
                Err(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}
