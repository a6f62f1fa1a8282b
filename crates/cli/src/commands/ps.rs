//! `ignite ps`: the VMs, as a table or through a template.
//!
//! The plain table is drawn from the store's summary index (one line per VM), so that
//! listing thousands of VMs costs about as much as listing one. Filters and templates
//! need whole objects and read every VM.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ignite_api::Vm;
use ignite_api::filter::Filter;
use ignite_api::humanize;
use ignite_api::template::Template;
use ignite_runtime::vms::listing::{ROW_FORMAT, VmRow};

use super::{Context, write_stdout};
use crate::args::PsArgs;
use crate::output::tab_table;

const HEADER: [&str; 11] = [
    "VM ID", "IMAGE", "KERNEL", "SIZE", "CPUS", "MEMORY", "CREATED", "STATUS", "IPS", "PORTS",
    "NAME",
];

/// The names of warm-start templates' VMs (`vms::warm::template_name`).
const TEMPLATE_PREFIX: &str = "ignite-template-";

pub fn run(ctx: &Context, args: &PsArgs) -> anyhow::Result<()> {
    let now = Utc::now();
    let out = if args.filter.is_some() || args.template.is_some() {
        from_objects(ctx, args, now)?
    } else {
        from_summaries(ctx, args, now)?
    };
    write_stdout(&out)
}

fn from_summaries(ctx: &Context, args: &PsArgs, now: DateTime<Utc>) -> anyhow::Result<String> {
    let summaries = ctx
        .store
        .vms()
        .summaries(ROW_FORMAT, |vm| VmRow::of(vm).encode())?;
    for damaged in &summaries.damaged {
        tracing::warn!("{damaged}");
    }
    let rows: Vec<VmRow> = summaries
        .lines
        .iter()
        .filter_map(|l| VmRow::decode(l))
        .map(VmRow::checked)
        .filter(|r| args.all || r.running)
        // A warm-start template's VM lives only while its template is being made.
        .filter(|r| !r.name.starts_with(TEMPLATE_PREFIX))
        .collect();
    warn_if_outdated(rows.iter().any(|r| r.outdated));
    Ok(render(ctx, rows.into_iter(), now))
}

fn from_objects(ctx: &Context, args: &PsArgs, now: DateTime<Utc>) -> anyhow::Result<String> {
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
    // The recorded state is checked against the processes, as in the table.
    let mut outdated = false;
    let objects: Vec<Vm> = listing
        .objects
        .into_iter()
        .filter(|vm| !ignite_runtime::vms::warm::is_template(vm))
        .map(|mut vm| {
            outdated |= ignite_runtime::vms::is_recorded_stopped_but_running(&vm);
            vm.status.running = ignite_runtime::vms::is_running(&vm);
            vm
        })
        .collect();
    warn_if_outdated(outdated);
    let vms = objects
        .iter()
        .filter(|vm| args.all || vm.status.running)
        .filter(|vm| filter.as_ref().is_none_or(|f| f.matches(*vm, now)));
    match &template {
        Some(template) if !ctx.quiet => Ok(vms.map(|vm| template.render(vm, now) + "\n").collect()),
        _ => Ok(render(ctx, vms.map(VmRow::of), now)),
    }
}

/// Ignite's note under a listing with a `*` status, on stderr.
fn warn_if_outdated(outdated: bool) {
    if outdated {
        tracing::warn!(
            "The symbol * on the VM status indicates that the VM record on disk is not up to date with the VM's processes: it says stopped, but its supervisor runs (ignite stop or rm -f ends it)"
        );
    }
}

fn render<'a>(ctx: &Context, rows: impl Iterator<Item = VmRow<'a>>, now: DateTime<Utc>) -> String {
    if ctx.quiet {
        return rows.map(|r| r.uid.into_owned() + "\n").collect();
    }
    let mut table: Vec<Vec<Cow<'a, str>>> =
        vec![HEADER.iter().map(|h| Cow::Borrowed(*h)).collect()];
    table.extend(rows.map(|r| cells(r, now)));
    tab_table(&table)
}

/// The table's cells of a row, with ages as of `now`.
fn cells(row: VmRow<'_>, now: DateTime<Utc>) -> Vec<Cow<'_, str>> {
    let age = |secs: i64| {
        DateTime::from_timestamp(secs, 0).map_or_else(String::new, |t| humanize::age(t, now))
    };
    let created = row
        .created
        .map_or_else(String::new, |c| format!("{} ago", age(c)));
    let status = match (row.running, row.started) {
        _ if row.outdated => "*Up".to_string(),
        (true, Some(s)) if row.paused => format!("Up {} (Paused)", age(s)),
        (true, Some(s)) => format!("Up {}", age(s)),
        (true, None) => "Up".to_string(),
        (false, _) => "Stopped".to_string(),
    };
    let [image, kernel, size, cpus, memory] = row.spec;
    vec![
        row.uid,
        image,
        kernel,
        size,
        cpus,
        memory,
        Cow::Owned(created),
        Cow::Owned(status),
        row.ips,
        row.ports,
        row.name,
    ]
}
