//! `ignite stats`: what running VMs use of the host, as `docker stats` shows containers:
//! CPU (100% is one core), memory against the VM's limit, network and block I/O, and
//! processes; live until interrupted, or once with `--no-stream`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ignite_api::Vm;
use ignite_api::template::{Template, TemplateSubject};
use ignite_runtime::vms::stats::{self, VmStats};
use serde::Serialize;
use serde_json::Value;

use super::{Context, write_stdout};
use crate::args::StatsArgs;
use crate::output::tab_table;

/// Between the two readings CPU use is measured over.
const INTERVAL: Duration = Duration::from_secs(1);

/// One VM's line, with docker's field names (the strings a `docker stats` template
/// shows) and the raw figures beside them.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
struct Row {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    #[serde(rename = "CPUPerc")]
    cpu_perc: String,
    mem_usage: String,
    mem_perc: String,
    #[serde(rename = "NetIO")]
    net_io: String,
    #[serde(rename = "BlockIO")]
    block_io: String,
    #[serde(rename = "PIDs")]
    pids: String,
    cpu_percent: Option<f64>,
    mem_usage_bytes: Option<u64>,
    mem_limit_bytes: Option<u64>,
    net_input_bytes: Option<u64>,
    net_output_bytes: Option<u64>,
    block_read_bytes: Option<u64>,
    block_write_bytes: Option<u64>,
}

impl TemplateSubject for Row {
    const KIND: &'static str = "stats";

    fn schema() -> Value {
        serde_json::to_value(Row {
            cpu_percent: Some(0.0),
            mem_usage_bytes: Some(0),
            mem_limit_bytes: Some(0),
            net_input_bytes: Some(0),
            net_output_bytes: Some(0),
            block_read_bytes: Some(0),
            block_write_bytes: Some(0),
            ..Row::default()
        })
        .expect("a row serializes")
    }

    fn display(&self, _pointer: &str, _now: DateTime<Utc>) -> Option<String> {
        None
    }
}

enum Format {
    Table,
    Json,
    Template(Template),
}

pub fn run(ctx: &Context, args: &crate::args::StatsArgs) -> anyhow::Result<()> {
    let format = match args.format.as_deref() {
        None | Some("table") => Format::Table,
        Some("json") => Format::Json,
        Some(text) => Format::Template(Template::compile::<Row>(
            text.strip_prefix("table ").unwrap_or(text),
        )?),
    };
    let vms = chosen(ctx, args)?;
    let mut before = readings(&vms);
    let mut at = Instant::now();
    let clear = !args.no_stream && std::io::IsTerminal::is_terminal(&std::io::stdout());
    loop {
        std::thread::sleep(INTERVAL);
        let now = readings(&vms);
        let elapsed = at.elapsed();
        let rows: Vec<Row> = vms
            .iter()
            .filter_map(|vm| {
                let uid = vm.metadata.uid.as_ref()?.to_string();
                let reading = now.get(&uid)?;
                Some(row(vm, before.get(&uid), reading, elapsed))
            })
            .collect();
        let mut out = String::new();
        if clear {
            out.push_str("\x1b[2J\x1b[H");
        }
        out.push_str(&render(&format, &rows)?);
        write_stdout(&out)?;
        if args.no_stream {
            return Ok(());
        }
        before = now;
        at = Instant::now();
    }
}

/// The VMs named (all must exist and run), or every running VM.
fn chosen(ctx: &Context, args: &StatsArgs) -> anyhow::Result<Vec<Vm>> {
    if args.vms.is_empty() {
        let listing = ctx.store.vms().list()?;
        return Ok(listing
            .objects
            .into_iter()
            .filter(|vm| !ignite_runtime::vms::warm::is_template(vm))
            .filter(ignite_runtime::vms::is_running)
            .collect());
    }
    args.vms
        .iter()
        .map(|name| {
            let vm = ctx.store.vms().find(name)?;
            if !ignite_runtime::vms::is_running(&vm) {
                anyhow::bail!("VM {name:?} is not running: ignite stats shows running VMs");
            }
            Ok(vm)
        })
        .collect()
}

fn readings(vms: &[Vm]) -> BTreeMap<String, VmStats> {
    vms.iter()
        .filter_map(|vm| {
            let uid = vm.metadata.uid.as_ref()?.to_string();
            Some((uid, stats::read(vm)?))
        })
        .collect()
}

fn row(vm: &Vm, before: Option<&VmStats>, now: &VmStats, elapsed: Duration) -> Row {
    let uid = vm
        .metadata
        .uid
        .as_ref()
        .map(|u| u.to_string())
        .unwrap_or_default();
    let cpu_percent = before
        .and_then(|b| Some(now.cpu_micros?.saturating_sub(b.cpu_micros?)))
        .map(|used| used as f64 / elapsed.as_micros().max(1) as f64 * 100.0);
    let mem_percent = match (now.memory_bytes, now.memory_limit) {
        (Some(used), Some(limit)) if limit > 0 => Some(used as f64 / limit as f64 * 100.0),
        _ => None,
    };
    let pair = |a: Option<u64>, b: Option<u64>, unit: fn(u64) -> String| match (a, b) {
        (Some(a), Some(b)) => format!("{} / {}", unit(a), unit(b)),
        _ => "--".to_string(),
    };
    Row {
        id: uid.chars().take(16).collect(),
        name: vm.metadata.name.clone(),
        cpu_perc: cpu_percent.map_or("--".into(), |p| format!("{p:.2}%")),
        mem_usage: match (now.memory_bytes, now.memory_limit) {
            (Some(used), limit) => format!(
                "{} / {}",
                binary_size(used),
                limit.map_or("--".into(), binary_size)
            ),
            _ => "--".into(),
        },
        mem_perc: mem_percent.map_or("--".into(), |p| format!("{p:.2}%")),
        net_io: pair(now.net_input_bytes, now.net_output_bytes, decimal_size),
        block_io: pair(now.block_read_bytes, now.block_write_bytes, decimal_size),
        pids: now.pids.map_or("--".into(), |p| p.to_string()),
        cpu_percent,
        mem_usage_bytes: now.memory_bytes,
        mem_limit_bytes: now.memory_limit,
        net_input_bytes: now.net_input_bytes,
        net_output_bytes: now.net_output_bytes,
        block_read_bytes: now.block_read_bytes,
        block_write_bytes: now.block_write_bytes,
    }
}

fn render(format: &Format, rows: &[Row]) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string(rows)? + "\n",
        Format::Template(template) => rows
            .iter()
            .map(|r| template.render(r, Utc::now()) + "\n")
            .collect(),
        Format::Table => {
            let mut table: Vec<Vec<Cow<'_, str>>> = vec![
                [
                    "VM ID",
                    "NAME",
                    "CPU %",
                    "MEM USAGE / LIMIT",
                    "MEM %",
                    "NET I/O",
                    "BLOCK I/O",
                    "PIDS",
                ]
                .map(Cow::from)
                .to_vec(),
            ];
            for r in rows {
                table.push(vec![
                    r.id.as_str().into(),
                    r.name.as_str().into(),
                    r.cpu_perc.as_str().into(),
                    r.mem_usage.as_str().into(),
                    r.mem_perc.as_str().into(),
                    r.net_io.as_str().into(),
                    r.block_io.as_str().into(),
                    r.pids.as_str().into(),
                ]);
            }
            tab_table(&table)
        }
    })
}

/// `digits` significant digits, trailing zeros dropped (docker's `%.4g`, `%.3g`).
fn significant(value: f64, digits: i32) -> String {
    let before = if value >= 1.0 {
        value.log10().floor() as i32 + 1
    } else {
        1
    };
    let decimals = (digits - before).max(0) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// Memory as docker shows it: powers of 1024, four significant digits (`1.375GiB`).
fn binary_size(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 4)
}

/// I/O as docker shows it: powers of 1000, three significant digits (`1.23kB`).
fn decimal_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], 3)
}

fn scaled(bytes: u64, step: f64, units: &[&str], digits: i32) -> String {
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= step && unit + 1 < units.len() {
        value /= step;
        unit += 1;
    }
    format!("{}{}", significant(value, digits), units[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_shown_as_docker_shows_them() {
        assert_eq!(binary_size((128 + 256 + 1024) << 20), "1.375GiB");
        assert_eq!(binary_size(1536 * 1024), "1.5MiB");
        assert_eq!(binary_size(512), "512B");
        assert_eq!(decimal_size(1234), "1.23kB");
        assert_eq!(decimal_size(648), "648B");
        assert_eq!(decimal_size(0), "0B");
    }

    #[test]
    fn cpu_is_the_share_of_one_core_between_two_readings() {
        let vm = Vm::new(ignite_api::ObjectMeta::default(), Default::default());
        let before = VmStats {
            cpu_micros: Some(1_000_000),
            ..VmStats::default()
        };
        let now = VmStats {
            cpu_micros: Some(1_500_000),
            memory_bytes: Some(64 << 20),
            memory_limit: Some(256 << 20),
            ..VmStats::default()
        };
        let row = row(&vm, Some(&before), &now, Duration::from_secs(1));
        assert_eq!(row.cpu_perc, "50.00%");
        assert_eq!(row.mem_usage, "64MiB / 256MiB");
        assert_eq!(row.mem_perc, "25.00%");
        assert_eq!(row.net_io, "--");
        let template = Template::compile::<Row>("{{.Name}} {{.CPUPerc}}").unwrap();
        assert_eq!(template.render(&row, Utc::now()), " 50.00%");
        assert!(Template::compile::<Row>("{{.Nope}}").is_err());
    }
}
