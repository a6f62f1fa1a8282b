//! What to do to make the VMs match the manifests: a pure comparison of the desired VMs
//! with the stored ones, so it can be printed (`--dry-run`) and tested without VMs.
//!
//! A VM made from a manifest carries the manifest's spec as written, in an annotation; a
//! later manifest is compared with that (not with the stored spec, which has defaults and
//! resolved choices filled in). Fields read when a VM starts are applied by a restart;
//! anything else (image, kernel, disk, VMM, network mode, volumes, SSH) by a recreate.

use std::collections::BTreeSet;

use ignite_api::{Vm, VmSpec};

use super::manifests::Desired;

/// The label that says which manager made a VM (`apply`, `daemon`, `gitops`): only its
/// own VMs are pruned by a manager.
pub const SOURCE_LABEL: &str = "ignite.rs/source";
/// The manifest's spec as last applied (JSON).
pub const APPLIED_SPEC_ANNOTATION: &str = "ignite.rs/applied-spec";

/// Spec fields a restart applies (read by the supervisor at every start).
const RESTART_FIELDS: &[&str] = &[
    "cpus",
    "memory",
    "copyFiles",
    "command",
    "mode",
    "env",
    "entrypoint",
    "workingDir",
    "user",
    "tty",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create {
        name: String,
        start: bool,
    },
    Recreate {
        name: String,
        why: String,
        start: bool,
    },
    /// Restart-applied fields changed: update the stored spec; restart when it runs.
    Update {
        name: String,
        why: String,
        restart: bool,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    Remove {
        name: String,
    },
}

impl Action {
    pub fn name(&self) -> &str {
        match self {
            Action::Create { name, .. }
            | Action::Recreate { name, .. }
            | Action::Update { name, .. }
            | Action::Start { name }
            | Action::Stop { name }
            | Action::Remove { name } => name,
        }
    }

    /// What was (or would be) done, for people: `created VM web`.
    pub fn describe(&self, done: bool) -> String {
        let (past, future) = match self {
            Action::Create { start: true, .. } => ("created and started", "create and start"),
            Action::Create { .. } => ("created", "create"),
            Action::Recreate { .. } => ("recreated", "recreate"),
            Action::Update { restart: true, .. } => ("updated and restarted", "update and restart"),
            Action::Update { .. } => ("updated", "update"),
            Action::Start { .. } => ("started", "start"),
            Action::Stop { .. } => ("stopped", "stop"),
            Action::Remove { .. } => ("removed", "remove"),
        };
        let why = match self {
            Action::Recreate { why, .. } | Action::Update { why, .. } => format!(" ({why})"),
            Action::Remove { .. } => " (its manifest is gone)".to_string(),
            _ => String::new(),
        };
        if done {
            format!("{past} VM {}{why}", self.name())
        } else {
            format!("would {future} VM {}{why}", self.name())
        }
    }
}

/// The manifest's spec as recorded on VMs made from it.
pub fn applied_spec(spec: &VmSpec) -> String {
    serde_json::to_string(spec).expect("specs serialise")
}

/// The actions that bring `actual` in line with `desired`. `running` says whether a stored
/// VM runs now. With `prune`, VMs of `source` without a manifest are removed.
pub fn plan(
    desired: &[Desired],
    actual: &[Vm],
    running: impl Fn(&Vm) -> bool,
    source: &str,
    prune: bool,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for d in desired {
        let name = d.name().to_string();
        let Some(vm) = actual.iter().find(|v| v.metadata.name == name) else {
            actions.push(Action::Create {
                name,
                start: d.running,
            });
            continue;
        };
        let is_running = running(vm);
        let before = vm
            .metadata
            .annotations
            .get(APPLIED_SPEC_ANNOTATION)
            .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok());
        let now = serde_json::to_value(&d.vm.spec).expect("specs serialise");
        let changed = match &before {
            // A VM not made from a manifest: adopted as it is.
            None => BTreeSet::new(),
            Some(before) => changed_fields(before, &now),
        };
        if !changed.is_empty() {
            let why = format!(
                "{} changed",
                changed
                    .iter()
                    .map(|f| format!("spec.{f}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if changed.iter().all(|f| restart_applies(f)) {
                actions.push(Action::Update {
                    name: name.clone(),
                    why,
                    restart: is_running && d.running,
                });
                if !is_running && d.running {
                    actions.push(Action::Start { name });
                } else if is_running && !d.running {
                    actions.push(Action::Stop { name });
                }
            } else {
                actions.push(Action::Recreate {
                    name,
                    why,
                    start: d.running,
                });
            }
            continue;
        }
        if d.running && !is_running {
            actions.push(Action::Start { name });
        } else if !d.running && is_running {
            actions.push(Action::Stop { name });
        }
    }
    if prune {
        for vm in actual {
            let ours = vm.metadata.labels.get(SOURCE_LABEL).map(String::as_str) == Some(source);
            if ours && !desired.iter().any(|d| d.name() == vm.metadata.name) {
                actions.push(Action::Remove {
                    name: vm.metadata.name.clone(),
                });
            }
        }
    }
    actions
}

/// The top-level spec fields whose values differ (`network.ports` and `kernel.cmdLine` count
/// as restart fields when they are all that changed in theirs).
fn changed_fields(before: &serde_json::Value, now: &serde_json::Value) -> BTreeSet<String> {
    let empty = serde_json::Map::new();
    let (a, b) = (
        before.as_object().unwrap_or(&empty),
        now.as_object().unwrap_or(&empty),
    );
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let mut changed = BTreeSet::new();
    for key in keys {
        let (x, y) = (a.get(key), b.get(key));
        if x == y {
            continue;
        }
        let only = |field: &str| {
            let strip = |v: Option<&serde_json::Value>| {
                let mut v = v.cloned().unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.remove(field);
                    if o.is_empty() {
                        return serde_json::Value::Null;
                    }
                }
                v
            };
            strip(x) == strip(y)
        };
        match key.as_str() {
            "network" if only("ports") => changed.insert("network.ports".to_string()),
            "kernel" if only("cmdLine") => changed.insert("kernel.cmdLine".to_string()),
            _ => changed.insert(key.clone()),
        };
    }
    changed
}

/// Whether a changed field is applied by a restart.
pub fn restart_applies(field: &str) -> bool {
    RESTART_FIELDS.contains(&field) || field == "network.ports" || field == "kernel.cmdLine"
}

#[cfg(test)]
mod tests {
    use super::*;
    use ignite_api::ObjectMeta;
    use std::path::PathBuf;

    fn desired(name: &str, yaml_spec: &str, running: bool) -> Desired {
        let text = format!(
            "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\nspec:\n{yaml_spec}"
        );
        Desired {
            vm: ignite_api::manifest::decode(&text).unwrap(),
            running,
            file: PathBuf::from(format!("{name}.yaml")),
            text,
        }
    }

    fn stored(d: &Desired, source: &str) -> Vm {
        let mut meta = ObjectMeta {
            name: d.name().into(),
            ..ObjectMeta::default()
        };
        meta.labels.insert(SOURCE_LABEL.into(), source.into());
        meta.annotations
            .insert(APPLIED_SPEC_ANNOTATION.into(), applied_spec(&d.vm.spec));
        Vm::new(meta, d.vm.spec.clone())
    }

    const BASE: &str = "  image: {oci: busybox}\n  cpus: 1\n";

    #[test]
    fn new_manifests_are_created_and_started_unless_stopped() {
        let a = desired("a", BASE, true);
        let b = desired("b", BASE, false);
        let p = plan(&[a, b], &[], |_| false, "apply", false);
        assert_eq!(
            p,
            [
                Action::Create {
                    name: "a".into(),
                    start: true
                },
                Action::Create {
                    name: "b".into(),
                    start: false
                }
            ]
        );
    }

    #[test]
    fn running_follows_status_running() {
        let a = desired("a", BASE, true);
        let b = desired("b", BASE, false);
        let actual = [stored(&a, "apply"), stored(&b, "apply")];
        assert_eq!(
            plan(&[a.clone(), b.clone()], &actual, |_| false, "apply", false),
            [Action::Start { name: "a".into() }]
        );
        assert_eq!(
            plan(&[a, b], &actual, |_| true, "apply", false),
            [Action::Stop { name: "b".into() }]
        );
    }

    #[test]
    fn restart_fields_update_in_place_and_others_recreate() {
        let old = desired("a", BASE, true);
        let actual = [stored(&old, "apply")];
        let more_cpus = desired(
            "a",
            "  image: {oci: busybox}\n  cpus: 2\n  memory: 1GB\n",
            true,
        );
        assert_eq!(
            plan(&[more_cpus], &actual, |_| true, "apply", false),
            [Action::Update {
                name: "a".into(),
                why: "spec.cpus, spec.memory changed".into(),
                restart: true
            }]
        );
        let ports = desired(
            "a",
            "  image: {oci: busybox}\n  cpus: 1\n  network: {ports: [{hostPort: 80, vmPort: 80}]}\n",
            true,
        );
        assert!(matches!(
            &plan(&[ports], &actual, |_| false, "apply", false)[..],
            [Action::Update { restart: false, .. }, Action::Start { .. }]
        ));
        let image = desired("a", "  image: {oci: alpine}\n  cpus: 1\n", true);
        assert_eq!(
            plan(&[image], &actual, |_| true, "apply", false),
            [Action::Recreate {
                name: "a".into(),
                why: "spec.image changed".into(),
                start: true
            }]
        );
        let mode = desired(
            "a",
            "  image: {oci: busybox}\n  cpus: 1\n  network: {mode: none}\n",
            true,
        );
        assert!(matches!(
            &plan(&[mode], &actual, |_| true, "apply", false)[..],
            [Action::Recreate { why, .. }] if why == "spec.network changed"
        ));
        // Unchanged and running: nothing.
        assert!(plan(&[old], &actual, |_| true, "apply", false).is_empty());
    }

    #[test]
    fn prune_removes_only_the_managers_own_vms() {
        let a = desired("a", BASE, true);
        let gone = desired("gone", BASE, true);
        let other = desired("other", BASE, true);
        let mut handmade = stored(&desired("handmade", BASE, true), "apply");
        handmade.metadata.labels.clear();
        let actual = [
            stored(&a, "apply"),
            stored(&gone, "apply"),
            stored(&other, "daemon"),
            handmade,
        ];
        assert!(plan(std::slice::from_ref(&a), &actual, |_| true, "apply", false).is_empty());
        assert_eq!(
            plan(&[a], &actual, |_| true, "apply", true),
            [Action::Remove {
                name: "gone".into()
            }]
        );
    }

    #[test]
    fn actions_read_well() {
        let a = Action::Recreate {
            name: "web".into(),
            why: "spec.image changed".into(),
            start: true,
        };
        assert_eq!(a.describe(true), "recreated VM web (spec.image changed)");
        assert_eq!(
            a.describe(false),
            "would recreate VM web (spec.image changed)"
        );
        assert!(restart_applies("network.ports") && !restart_applies("image"));
    }
}
