//! `ignite ps`: the VMs, as a table or through a template.
//!
//! The plain table is drawn from the store's summary index (one line per VM), so that
//! listing thousands of VMs costs about as much as listing one. Filters and templates
//! need whole objects and read every VM.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use ignite_api::filter::Filter;
use ignite_api::humanize;
use ignite_api::ports::join_ports;
use ignite_api::template::Template;
use ignite_api::{ProcessRef, Vm, join_ips};

use super::{Context, write_stdout};
use crate::args::PsArgs;
use crate::output::tab_table;

const HEADER: [&str; 11] = [
    "VM ID", "IMAGE", "KERNEL", "SIZE", "CPUS", "MEMORY", "CREATED", "STATUS", "IPS", "PORTS",
    "NAME",
];

/// Names the layout of [`Row::encode`]; change it whenever that layout changes.
const ROW_FORMAT: &str = "ps-row-v2";

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
        .summaries(ROW_FORMAT, |vm| Row::of(vm).encode())?;
    for damaged in &summaries.damaged {
        tracing::warn!("{damaged}");
    }
    let rows: Vec<Row> = summaries
        .lines
        .iter()
        .filter_map(|l| Row::decode(l))
        .map(Row::checked)
        .collect();
    Ok(render(
        ctx,
        rows.into_iter().filter(|r| args.all || r.running),
        now,
    ))
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
    let objects: Vec<Vm> = listing
        .objects
        .into_iter()
        .map(|mut vm| {
            vm.status.running = ignite_runtime::vms::is_running(&vm);
            vm
        })
        .collect();
    let vms = objects
        .iter()
        .filter(|vm| args.all || vm.status.running)
        .filter(|vm| filter.as_ref().is_none_or(|f| f.matches(*vm, now)));
    match &template {
        Some(template) if !ctx.quiet => Ok(vms.map(|vm| template.render(vm, now) + "\n").collect()),
        _ => Ok(render(ctx, vms.map(Row::of), now)),
    }
}

fn render<'a>(ctx: &Context, rows: impl Iterator<Item = Row<'a>>, now: DateTime<Utc>) -> String {
    if ctx.quiet {
        return rows.map(|r| r.uid.into_owned() + "\n").collect();
    }
    let mut table: Vec<Vec<Cow<'a, str>>> =
        vec![HEADER.iter().map(|h| Cow::Borrowed(*h)).collect()];
    table.extend(rows.map(|r| r.cells(now)));
    tab_table(&table)
}

/// What one line of the table needs, with times kept raw so ages are always current.
/// Rows read from the summary index borrow their text from it.
struct Row<'a> {
    uid: Cow<'a, str>,
    running: bool,
    /// The supervisor recorded for a running VM, checked before the VM is shown as Up.
    supervisor: Option<ProcessRef>,
    created: Option<i64>,
    started: Option<i64>,
    /// IMAGE, KERNEL, SIZE, CPUS, MEMORY (columns 2 to 6).
    spec: [Cow<'a, str>; 5],
    ips: Cow<'a, str>,
    ports: Cow<'a, str>,
    name: Cow<'a, str>,
}

impl<'a> Row<'a> {
    fn of(vm: &Vm) -> Row<'a> {
        let spec = &vm.spec;
        let owned = |s: String| Cow::Owned(s);
        Row {
            uid: owned(
                vm.metadata
                    .uid
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
            ),
            running: vm.status.running,
            supervisor: vm.status.supervisor,
            created: vm.metadata.created.map(|t| t.0.timestamp()),
            started: vm.status.start_time.map(|t| t.0.timestamp()),
            spec: [
                spec.image_ref()
                    .map_or_else(String::new, ToString::to_string),
                spec.kernel_ref()
                    .map_or_else(String::new, ToString::to_string),
                spec.disk_size().to_string(),
                spec.cpus().to_string(),
                spec.memory().to_string(),
            ]
            .map(owned),
            ips: owned(join_ips(vm.status.ip_addresses())),
            ports: owned(join_ports(&spec.network.ports)),
            name: owned(vm.metadata.name.clone()),
        }
    }

    fn cells(self, now: DateTime<Utc>) -> Vec<Cow<'a, str>> {
        let age = |secs: i64| {
            DateTime::from_timestamp(secs, 0).map_or_else(String::new, |t| humanize::age(t, now))
        };
        let created = self
            .created
            .map_or_else(String::new, |c| format!("{} ago", age(c)));
        let status = match (self.running, self.started) {
            (true, Some(s)) => format!("Up {}", age(s)),
            (true, None) => "Up".to_string(),
            (false, _) => "Stopped".to_string(),
        };
        let [image, kernel, size, cpus, memory] = self.spec;
        vec![
            self.uid,
            image,
            kernel,
            size,
            cpus,
            memory,
            Cow::Owned(created),
            Cow::Owned(status),
            self.ips,
            self.ports,
            self.name,
        ]
    }

    /// One tab-separated line. No field can hold a tab or newline (names, references,
    /// sizes, addresses and ports are all validated), but they are replaced to be sure.
    fn encode(&self) -> String {
        let time = |t: Option<i64>| t.map_or_else(|| "-".to_string(), |t| t.to_string());
        let mut fields = vec![
            self.uid.to_string(),
            (if self.running { "1" } else { "0" }).to_string(),
            self.supervisor.map_or_else(
                || "-".to_string(),
                |p| format!("{}:{}", p.pid, p.start_ticks),
            ),
            time(self.created),
            time(self.started),
        ];
        fields.extend(self.spec.iter().map(ToString::to_string));
        fields.extend([
            self.ips.to_string(),
            self.ports.to_string(),
            self.name.to_string(),
        ]);
        fields
            .iter()
            .map(|f| f.replace(['\t', '\n'], " "))
            .collect::<Vec<_>>()
            .join("\t")
    }

    /// Running only while the recorded supervisor is (a host reboot or a `kill -9` leaves
    /// the record behind; `start` and `rm` repair it).
    fn checked(mut self) -> Row<'a> {
        self.running = self.running
            && self
                .supervisor
                .as_ref()
                .is_some_and(ignite_runtime::vms::process::is_alive);
        self
    }

    fn decode(line: &'a str) -> Option<Row<'a>> {
        let mut f = line.split('\t');
        let mut next = || f.next().map(Cow::Borrowed);
        let (uid, running, supervisor, created, started) =
            (next()?, next()?, next()?, next()?, next()?);
        let spec = [next()?, next()?, next()?, next()?, next()?];
        let (ips, ports, name) = (next()?, next()?, next()?);
        if next().is_some() {
            return None;
        }
        let time = |t: &str| t.parse::<i64>().ok();
        let supervisor = supervisor.split_once(':').and_then(|(pid, ticks)| {
            Some(ProcessRef {
                pid: pid.parse().ok()?,
                start_ticks: ticks.parse().ok()?,
            })
        });
        Some(Row {
            uid,
            running: running == "1",
            supervisor,
            created: time(&created),
            started: time(&started),
            spec,
            ips,
            ports,
            name,
        })
    }
}
