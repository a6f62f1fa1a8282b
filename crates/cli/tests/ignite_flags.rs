//! The README's table of Ignite v0.10's command-line flags is true: it covers every flag
//! of Ignite's reference (`tests/fixtures/ignite-v0.10-cli.txt`, from Ignite's docs/cli),
//! and for every row, `--help` of each command named shows the flag, an ignored one saying
//! it is ignored. Needs no root and boots nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Row {
    commands: Vec<String>,
    /// `-f` and `--copy-files`, or nothing for a command without flags of its own.
    flags: Vec<String>,
    here: String,
    notes: String,
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap()
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

fn rows() -> Vec<Row> {
    let readme = readme();
    let begin = readme
        .find("<!-- ignite-flags:begin -->")
        .expect("the README has the Ignite flags table");
    let end = readme.find("<!-- ignite-flags:end -->").unwrap();
    readme[begin..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            assert_eq!(cells.len(), 4, "{line}");
            Row {
                commands: backticked(cells[0]),
                flags: backticked(cells[1]),
                here: cells[2].to_string(),
                notes: cells[3].to_string(),
            }
        })
        .collect()
}

/// (command, flag as the reference writes it, e.g. "-f --copy-files").
fn reference() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ignite-v0.10-cli.txt"),
    )
    .unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (command, flags) = line.split_once('|').unwrap();
        if flags.is_empty() {
            out.push((command.to_string(), String::new()));
        }
        for flag in flags.split(';').filter(|f| !f.is_empty()) {
            out.push((command.to_string(), flag.to_string()));
        }
    }
    out
}

fn binary(name: &str) -> PathBuf {
    match name {
        "ignite" => assert_cmd::cargo::cargo_bin!("ignite").to_path_buf(),
        "ignited" => ignite_testkit::host::workspace_binary("ignited", "ignite-daemon"),
        other => panic!("unknown binary {other}"),
    }
}

fn help(command: &str) -> String {
    let mut words = command.split_whitespace();
    let bin = binary(words.next().unwrap());
    let out = Command::new(bin)
        .args(words)
        .arg("--help")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{command} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The help entry of a flag: its line and the description lines below it.
fn entry<'a>(help: &'a str, long: &str) -> Option<String> {
    let lines: Vec<&'a str> = help.lines().collect();
    let start = lines.iter().position(|l| {
        l.trim_start().starts_with('-') && l.split([' ', ',', '=', '[']).any(|word| word == long)
    })?;
    let mut text = lines[start].to_string();
    for line in &lines[start + 1..] {
        if line.trim_start().starts_with('-') || line.trim().is_empty() {
            break;
        }
        text.push(' ');
        text.push_str(line.trim());
    }
    Some(text)
}

#[test]
fn the_table_covers_every_flag_of_ignites_reference() {
    let rows = rows();
    let mut covered = BTreeSet::new();
    for row in &rows {
        for command in &row.commands {
            covered.insert((command.clone(), row.flags.join(" ")));
        }
    }
    let missing: Vec<_> = reference()
        .into_iter()
        .filter(|entry| !covered.contains(entry))
        .collect();
    assert!(
        missing.is_empty(),
        "flags of Ignite's reference the README's table leaves out: {missing:?}"
    );
}

#[test]
fn every_row_of_the_table_is_what_help_shows() {
    let mut failures = Vec::new();
    for row in rows() {
        assert!(
            ["same", "ignored", "different"].contains(&row.here.as_str()),
            "{:?}: 'here' is same, ignored or different",
            row.commands
        );
        if row.here == "different" {
            assert!(
                !row.notes.is_empty(),
                "{:?}: a difference says why",
                row.commands
            );
            continue;
        }
        for command in &row.commands {
            let help = help(command);
            let Some(long) = row.flags.iter().find(|f| f.starts_with("--")) else {
                continue;
            };
            let Some(entry) = entry(&help, long) else {
                failures.push(format!("`{command} --help` has no {long}"));
                continue;
            };
            for short in row.flags.iter().filter(|f| !f.starts_with("--")) {
                if !entry.contains(&format!("{short},")) {
                    failures.push(format!(
                        "`{command}`: {long} has no short form {short}: {entry}"
                    ));
                }
            }
            if row.here == "ignored" && !entry.contains("Ignored") {
                failures.push(format!(
                    "`{command}`: {long} is not said to be ignored: {entry}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
