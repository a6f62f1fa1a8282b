//! Declarative operation (ARCHITECTURE §8): making the stored VMs match a set of
//! manifests. [`manifests`] reads the desired state, [`plan`] compares it with the store,
//! and [`Reconciler`] carries the plan out with the same operations as the CLI. `ignite
//! apply` runs it once; `ignited daemon` and `ignited gitops` run it in a loop.

pub mod files;
pub mod manifests;
pub mod placement;
pub mod plan;
pub mod status;

use std::path::PathBuf;

use ignite_api::{Configuration, Vm};
use ignite_oci::fetch::Progress;
use ignite_store::{Store, StoreError};

use crate::config::effective_vm_spec;
use crate::images::ImportOptions;
use crate::vms::{self, CreateRequest, DriverOptions, StartOptions, VmError};
pub use manifests::{Desired, ManifestSet};
pub use plan::{APPLIED_SPEC_ANNOTATION, Action, SOURCE_LABEL};

/// Carries out actions for one manager (`source`: `apply`, `daemon`, `gitops`).
pub struct Reconciler<'a> {
    pub store: &'a Store,
    pub source: &'a str,
    pub configuration: Option<&'a Configuration>,
    pub import: ImportOptions,
    /// The binary started as each VM's supervisor (see [`StartOptions::supervisor_program`]).
    pub supervisor_program: PathBuf,
    pub progress: &'a dyn Progress,
}

impl Reconciler<'_> {
    /// The actions that would bring the store in line with `desired`.
    pub fn plan(&self, desired: &[Desired], prune: bool) -> Result<Vec<Action>, VmError> {
        let actual: Vec<Vm> = self
            .store
            .vms()
            .list()?
            .objects
            .into_iter()
            .map(|vm| vms::repair(self.store, vm))
            .collect();
        Ok(plan::plan(
            desired,
            &actual,
            vms::is_running,
            self.source,
            prune,
        ))
    }

    /// Carries out one action; `desired` is the manifest it serves (none for removals).
    pub fn execute(&self, action: &Action, desired: Option<&Desired>) -> Result<(), VmError> {
        let manifest = || {
            desired.ok_or_else(|| VmError::Spec(format!("no manifest for VM {}", action.name())))
        };
        match action {
            Action::Create { start, .. } => {
                let vm = self.create(manifest()?)?;
                if *start {
                    self.start(vm)?;
                }
            }
            Action::Recreate { name, start, .. } => {
                let d = manifest()?;
                vms::remove_vm(self.store, self.find(name)?, true)?;
                let vm = self.create(d)?;
                if *start {
                    self.start(vm)?;
                }
            }
            Action::Update { name, restart, .. } => {
                let d = manifest()?;
                let vm = self.find(name)?;
                let effective = self.effective_spec(d);
                let uid = vms::uid_of(&vm);
                let vm = self
                    .store
                    .vms()
                    .update(&uid, |v| -> Result<(), StoreError> {
                        v.spec.cpus = effective.cpus;
                        v.spec.memory = effective.memory;
                        v.spec.copy_files = effective.copy_files.clone();
                        v.spec.command = effective.command.clone();
                        v.spec.mode = effective.mode;
                        v.spec.network.ports = effective.network.ports.clone();
                        if let (Some(k), Some(e)) =
                            (v.spec.kernel.as_mut(), effective.kernel.as_ref())
                        {
                            k.cmd_line = e.cmd_line.clone();
                        }
                        v.metadata.annotations.insert(
                            APPLIED_SPEC_ANNOTATION.into(),
                            plan::applied_spec(&d.vm.spec),
                        );
                        Ok(())
                    })?;
                if *restart {
                    let vm = vms::stop_vm(self.store, vm, false)?;
                    self.start(vm)?;
                }
            }
            Action::Start { name } => self.start(self.find(name)?)?,
            Action::Stop { name } => {
                vms::stop_vm(self.store, self.find(name)?, false)?;
            }
            Action::Remove { name } => {
                vms::remove_vm(self.store, self.find(name)?, true)?;
            }
        }
        Ok(())
    }

    fn find(&self, name: &str) -> Result<Vm, VmError> {
        self.store
            .vms()
            .list()?
            .objects
            .into_iter()
            .find(|v| v.metadata.name == name)
            .ok_or_else(|| VmError::NotFound(format!("VM {name} is gone")))
    }

    fn effective_spec(&self, d: &Desired) -> ignite_api::VmSpec {
        effective_vm_spec(d.vm.spec.clone(), None, self.configuration)
    }

    /// Makes the VM a manifest describes (stopped), labelled as this manager's.
    pub fn create(&self, d: &Desired) -> Result<Vm, VmError> {
        let mut meta = d.vm.metadata.clone();
        meta.uid = None;
        meta.created = None;
        meta.labels.insert(SOURCE_LABEL.into(), self.source.into());
        meta.annotations.insert(
            APPLIED_SPEC_ANNOTATION.into(),
            plan::applied_spec(&d.vm.spec),
        );
        vms::create_vm(
            self.store,
            CreateRequest {
                meta,
                spec: self.effective_spec(d),
                import: self.import.clone(),
                progress: self.progress,
                driver: DriverOptions::new(None, self.configuration),
                auto_remove: false,
            },
        )
    }

    pub fn start(&self, vm: Vm) -> Result<(), VmError> {
        vms::start_vm(
            self.store,
            vm,
            &StartOptions::new(&self.supervisor_program, None, self.configuration)?,
        )
        .map(drop)
    }
}
