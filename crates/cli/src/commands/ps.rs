//! `ignite ps`: the VMs, as a table or through a template.

use std::io::Write;

use chrono::Utc;
use ignite_api::filter::Filter;
use ignite_api::humanize;
use ignite_api::ports::join_ports;
use ignite_api::template::Template;
use ignite_api::{Vm, join_ips};

use super::Context;
use crate::args::PsArgs;
use crate::output::tab_table;

const HEADER: [&str; 11] = [
    "VM ID", "IMAGE", "KERNEL", "SIZE", "CPUS", "MEMORY", "CREATED", "STATUS", "IPS", "PORTS",
    "NAME",
];

pub fn run(ctx: &Context, args: &PsArgs) -> anyhow::Result<()> {
    let filter = args
        .filter
        .as_deref()
        .map(Filter::compile::<Vm>)
        .transpose()?;
    let template = args
        .template
        .as_deref()
        .map(Template::compile::<Vm>)
        .transpose()?;
    let listing = ctx.store.vms().list()?;
    for damaged in &listing.damaged {
        tracing::warn!("{damaged}");
    }
    let now = Utc::now();
    let vms: Vec<&Vm> = listing
        .objects
        .iter()
        .filter(|vm| args.all || vm.status.running)
        .filter(|vm| filter.as_ref().is_none_or(|f| f.matches(*vm, now)))
        .collect();

    let mut out = String::new();
    if ctx.quiet {
        for vm in &vms {
            out.push_str(uid(vm));
            out.push('\n');
        }
    } else if let Some(template) = &template {
        for vm in &vms {
            out.push_str(&template.render(*vm, now));
            out.push('\n');
        }
    } else {
        let mut rows = Vec::with_capacity(vms.len() + 1);
        rows.push(HEADER.iter().map(ToString::to_string).collect());
        rows.extend(vms.iter().map(|vm| row(vm, now)));
        out = tab_table(&rows);
    }
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

fn uid(vm: &Vm) -> &str {
    vm.metadata.uid.as_ref().map_or("", |u| u.as_str())
}

fn row(vm: &Vm, now: chrono::DateTime<Utc>) -> Vec<String> {
    let spec = &vm.spec;
    let created = vm
        .metadata
        .created
        .map_or_else(String::new, |t| format!("{} ago", humanize::age(t.0, now)));
    let status = match (vm.status.running, vm.status.start_time) {
        (true, Some(t)) => format!("Up {}", humanize::age(t.0, now)),
        (true, None) => "Up".to_string(),
        (false, _) => "Stopped".to_string(),
    };
    vec![
        uid(vm).to_string(),
        spec.image_ref()
            .map_or_else(String::new, ToString::to_string),
        spec.kernel_ref()
            .map_or_else(String::new, ToString::to_string),
        spec.disk_size().to_string(),
        spec.cpus().to_string(),
        spec.memory().to_string(),
        created,
        status,
        join_ips(vm.status.ip_addresses()),
        join_ports(&spec.network.ports),
        vm.metadata.name.clone(),
    ]
}
