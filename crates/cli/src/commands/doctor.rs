//! `ignite doctor`: checks what VMs need on this host and says how to fix what is missing.

use std::borrow::Cow;
use std::process::ExitCode;

use ignite_runtime::doctor::{Verdict, run_checks};
use ignite_runtime::vms::network::BridgeSettings;

use super::{Context, write_stdout};
use crate::args::DoctorArgs;
use crate::output::tab_table;

pub fn run(ctx: &Context, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    let firecracker = ctx
        .configuration
        .as_ref()
        .and_then(|c| c.spec.firecracker.clone());
    let bridge = BridgeSettings::from_configuration(ctx.configuration.as_ref())?;
    let checks = run_checks(
        &ctx.store,
        !args.quick,
        firecracker.as_deref(),
        &bridge.name,
    );
    let mut table: Vec<Vec<Cow<'_, str>>> =
        vec![vec!["CHECK".into(), "STATUS".into(), "DETAIL".into()]];
    for c in &checks {
        let verdict = match c.verdict {
            Verdict::Ok => "ok",
            Verdict::Warn => "warning",
            Verdict::Fail => "MISSING",
        };
        table.push(vec![
            c.name.into(),
            verdict.into(),
            c.detail.as_str().into(),
        ]);
    }
    write_stdout(&tab_table(&table))?;
    let failed = checks.iter().filter(|c| c.verdict == Verdict::Fail).count();
    if failed > 0 {
        tracing::error!("{failed} check(s) failed: VMs cannot run until they are fixed");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
