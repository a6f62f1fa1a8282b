//! `ignite gitops REPO`: Ignite's foreground GitOps mode. The loop is `ignited gitops`'s
//! (one implementation of reconciling, committing status and pushing), so this execs
//! ignited with the same state root, Configuration and log level.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::bail;

use crate::args::{GitopsArgs, GlobalArgs};

/// `ignited` beside this binary (as installed, and in a build's target directory), else
/// the one in PATH.
fn ignited() -> PathBuf {
    std::env::current_exe()
        .ok()
        .map(|exe| exe.with_file_name("ignited"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("ignited"))
}

/// ignited's arguments for this command line.
fn arguments(global: &GlobalArgs, args: &GitopsArgs) -> anyhow::Result<Vec<String>> {
    if args.paths.len() > 1 {
        bail!(
            "--paths {}: the gitops loop follows one directory of the repository; give one (or none for all of it)",
            args.paths.join(",")
        );
    }
    // The flag's own spelling, which ignited's --log-level takes too.
    let level = clap::ValueEnum::to_possible_value(&global.log_level)
        .map(|v| v.get_name().to_string())
        .unwrap_or_else(|| "info".into());
    let mut out = vec![
        "gitops".to_string(),
        format!("--log-level={level}"),
        format!("--branch={}", args.branch),
    ];
    if let Some(path) = args.paths.first() {
        out.push(format!("--path={path}"));
    }
    if let Some(host) = &args.host {
        out.push(format!("--host={host}"));
    }
    if args.adopt_unplaced {
        out.push("--adopt-unplaced".into());
    }
    if let Some(root) = &global.root {
        out.push(format!("--root={}", root.display()));
    }
    if let Some(config) = &global.ignite_config {
        out.push(format!("--ignite-config={}", config.display()));
    }
    // The repository last, after `--`: it is the user's string, never an option.
    out.push("--".into());
    out.push(args.repo.clone());
    Ok(out)
}

pub fn run(global: &GlobalArgs, args: &GitopsArgs) -> anyhow::Result<ExitCode> {
    let program = ignited();
    let err = Command::new(&program).args(arguments(global, args)?).exec();
    bail!(
        "cannot run {} for the gitops loop: {err} (install ignited beside ignite: scripts/setup.sh does)",
        program.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(argv: &[&str]) -> (GlobalArgs, GitopsArgs) {
        let cli = crate::args::Cli::parse_from(argv);
        match cli.command {
            crate::args::Command::Gitops(args) => (cli.global, args),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ignites_flags_become_ignited_gitops_arguments_with_the_repository_last() {
        let (global, args) = parse(&["ignite", "gitops", "-b", "prod", "-p", "vms", "--", "-x"]);
        assert_eq!(
            arguments(&global, &args).unwrap(),
            [
                "gitops",
                "--log-level=info",
                "--branch=prod",
                "--path=vms",
                "--",
                "-x"
            ]
        );
        let (global, args) = parse(&["ignite", "--log-level=debug", "gitops", "file:///r"]);
        assert_eq!(
            arguments(&global, &args).unwrap(),
            [
                "gitops",
                "--log-level=debug",
                "--branch=master",
                "--",
                "file:///r"
            ]
        );
        let (global, args) = parse(&[
            "ignite",
            "gitops",
            "--host",
            "node1",
            "--adopt-unplaced",
            "file:///r",
        ]);
        assert_eq!(
            arguments(&global, &args).unwrap(),
            [
                "gitops",
                "--log-level=info",
                "--branch=master",
                "--host=node1",
                "--adopt-unplaced",
                "--",
                "file:///r"
            ]
        );
        let (global, args) = parse(&["ignite", "gitops", "-p", "a,b", "file:///r"]);
        assert!(
            arguments(&global, &args)
                .unwrap_err()
                .to_string()
                .contains("one directory")
        );
    }
}
