//! `/metrics` in Prometheus' text format: VMs by state, each VM's boot time and resource
//! figures (vCPUs, memory, disk, and the resident memory of its supervisor and VMM), and
//! the reconcile loop's passes, actions and errors.

use std::fmt::Write;

use ignite_api::{ProcessRef, Vm, VmMemoryStatus};
use ignite_runtime::vms;
use ignite_store::Store;

use crate::reconcile_loop::Stats;

pub fn render(store: &Store, stats: &Stats) -> String {
    let vms: Vec<Vm> = store
        .vms()
        .list()
        .map(|l| l.objects)
        .unwrap_or_default()
        .into_iter()
        .map(|vm| vms::repair(store, vm))
        .collect();
    let running = vms.iter().filter(|v| vms::is_running(v)).count();
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    family(
        "ignite_vms",
        "gauge",
        "VMs by state.",
        vec![
            ("{state=\"running\"}".into(), running as f64),
            ("{state=\"stopped\"}".into(), (vms.len() - running) as f64),
        ],
    );
    family(
        "ignite_reconcile_passes_total",
        "counter",
        "Comparisons of the manifests with the VMs.",
        vec![(String::new(), stats.passes as f64)],
    );
    family(
        "ignite_reconcile_actions_total",
        "counter",
        "Actions the reconcile loop took (create, start, stop, update, recreate, remove).",
        vec![(String::new(), stats.actions as f64)],
    );
    family(
        "ignite_reconcile_errors_total",
        "counter",
        "Reconcile actions or passes that failed.",
        vec![(String::new(), stats.errors as f64)],
    );
    let per_vm = |value: &dyn Fn(&Vm) -> Option<f64>| -> Vec<(String, f64)> {
        vms.iter()
            .filter_map(|vm| Some((labels(vm), value(vm)?)))
            .collect()
    };
    family(
        "ignite_vm_running",
        "gauge",
        "1 while the VM runs.",
        per_vm(&|vm| Some(f64::from(u8::from(vms::is_running(vm))))),
    );
    family(
        "ignite_vm_boot_seconds",
        "gauge",
        "Seconds from starting the VMM to the guest agent's first answer, last start.",
        per_vm(&|vm| vm.status.boot_millis.map(|ms| ms as f64 / 1000.0)),
    );
    family(
        "ignite_vm_vcpus",
        "gauge",
        "vCPUs of the VM.",
        per_vm(&|vm| Some(vm.spec.cpus() as f64)),
    );
    family(
        "ignite_vm_memory_bytes",
        "gauge",
        "Memory of the VM.",
        per_vm(&|vm| Some(vm.spec.memory().bytes() as f64)),
    );
    family(
        "ignite_vm_disk_bytes",
        "gauge",
        "Size of the VM's root disk.",
        per_vm(&|vm| Some(vm.spec.disk_size().bytes() as f64)),
    );
    family(
        "ignite_vm_supervisor_resident_bytes",
        "gauge",
        "Resident memory of the VM's supervisor.",
        per_vm(&|vm| rss(vm.status.supervisor.as_ref()?)),
    );
    let memory: Vec<(String, VmMemoryStatus)> = vms
        .iter()
        .filter_map(|vm| Some((labels(vm), vms::host_memory::vm_memory(store, vm)?)))
        .collect();
    let of_memory = |value: &dyn Fn(&VmMemoryStatus) -> Option<u64>| -> Vec<(String, f64)> {
        memory
            .iter()
            .filter_map(|(labels, m)| Some((labels.clone(), value(m)? as f64)))
            .collect()
    };
    family(
        "ignite_vm_vmm_resident_bytes",
        "gauge",
        "Resident memory of the VM's VMM process (guest memory it touched included).",
        of_memory(&|m| Some(m.vmm_resident_bytes)),
    );
    family(
        "ignite_vm_vmm_proportional_bytes",
        "gauge",
        "The VMM's proportional set size: pages shared with other VMs divided among them.",
        of_memory(&|m| m.vmm_proportional_bytes),
    );
    family(
        "ignite_vm_guest_free_bytes",
        "gauge",
        "Free memory the guest's balloon driver last reported.",
        of_memory(&|m| m.guest_free_bytes),
    );
    family(
        "ignite_vm_guest_total_bytes",
        "gauge",
        "The guest's total memory as its balloon driver last reported it.",
        of_memory(&|m| m.guest_total_bytes),
    );
    // What `ignite stats` shows, from each VM's cgroup and tap.
    let usage: Vec<(String, vms::stats::VmStats)> = vms
        .iter()
        .filter_map(|vm| Some((labels(vm), vms::stats::read(vm)?)))
        .collect();
    let of_usage = |value: &dyn Fn(&vms::stats::VmStats) -> Option<f64>| -> Vec<(String, f64)> {
        usage
            .iter()
            .filter_map(|(labels, u)| Some((labels.clone(), value(u)?)))
            .collect()
    };
    for (name, kind, help, value) in [
        (
            "ignite_vm_cpu_seconds_total",
            "counter",
            "CPU time used by the VM's supervisor and VMM (its cgroup).",
            (&|u: &vms::stats::VmStats| u.cpu_micros.map(|m| m as f64 / 1e6))
                as &dyn Fn(&vms::stats::VmStats) -> Option<f64>,
        ),
        (
            "ignite_vm_cgroup_memory_bytes",
            "gauge",
            "Memory in use by the VM's cgroup.",
            &|u| u.memory_bytes.map(|b| b as f64),
        ),
        (
            "ignite_vm_cgroup_memory_limit_bytes",
            "gauge",
            "The VM's cgroup memory limit.",
            &|u| u.memory_limit.map(|b| b as f64),
        ),
        (
            "ignite_vm_block_read_bytes_total",
            "counter",
            "Bytes the VM's cgroup read from block devices.",
            &|u| u.block_read_bytes.map(|b| b as f64),
        ),
        (
            "ignite_vm_block_write_bytes_total",
            "counter",
            "Bytes the VM's cgroup wrote to block devices.",
            &|u| u.block_write_bytes.map(|b| b as f64),
        ),
        (
            "ignite_vm_network_receive_bytes_total",
            "counter",
            "Bytes the guest received through its tap.",
            &|u| u.net_input_bytes.map(|b| b as f64),
        ),
        (
            "ignite_vm_network_transmit_bytes_total",
            "counter",
            "Bytes the guest sent through its tap.",
            &|u| u.net_output_bytes.map(|b| b as f64),
        ),
    ] {
        family(name, kind, help, of_usage(value));
    }
    out
}

fn labels(vm: &Vm) -> String {
    let escape = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        "{{vm=\"{}\",uid=\"{}\"}}",
        escape(&vm.metadata.name),
        vm.metadata
            .uid
            .as_ref()
            .map(|u| u.to_string())
            .unwrap_or_default()
    )
}

/// VmRSS of a live process, in bytes.
fn rss(process: &ProcessRef) -> Option<f64> {
    if !vms::process::is_alive(process) {
        return None;
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid)).ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024.0)
}
