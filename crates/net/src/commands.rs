//! The host commands networking runs (`ip`, `nft`, `iptables`), the kernel settings it
//! turns on and the kernel state it reads under /proc, behind one trait: production runs them ([`System`]); tests record them ([`Recording`])
//! and so check the order of setup and clean-up without root.

use std::sync::Mutex;

use ignite_host_tools::HostTool;

use crate::NetError;

pub trait Commands: Send + Sync {
    /// Runs `tool` with `args` (and `input` on its stdin): its stdout, or its failure with
    /// its stderr.
    fn run(&self, tool: HostTool, args: &[&str], input: Option<&str>) -> Result<String, NetError>;
    /// A kernel setting under /proc/sys (`net/ipv4/ip_forward`), if it can be read.
    fn sysctl(&self, key: &str) -> Option<String>;
    /// Sets a kernel setting under /proc/sys.
    fn set_sysctl(&self, key: &str, value: &str) -> std::io::Result<()>;
    /// A file under /proc (`net/ip_tables_names`), if it can be read.
    fn read_proc(&self, path: &str) -> Option<String>;
}

/// The host's own programs and settings.
#[derive(Debug, Default, Clone, Copy)]
pub struct System;

impl Commands for System {
    fn run(&self, tool: HostTool, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
        crate::run_with_input(tool, args, input)
    }

    fn sysctl(&self, key: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/sys/{key}")).ok()
    }

    fn set_sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
        std::fs::write(format!("/proc/sys/{key}"), value)
    }

    fn read_proc(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(format!("/proc/{path}")).ok()
    }
}

/// Records every command as one line (`ip link add name ignite0 type bridge`; a command's
/// stdin follows on the lines after it) and answers from a script: the first rule whose
/// prefix starts the command line decides its reply; without one, a command succeeds
/// with no output. Files under /proc are absent unless given ([`Recording::proc_file`]).
/// For tests, here and in the crates that use this one.
#[derive(Debug, Default)]
pub struct Recording {
    calls: Mutex<Vec<String>>,
    rules: Mutex<Vec<(String, Result<String, String>)>>,
    proc_files: Mutex<Vec<(String, String)>>,
}

impl Recording {
    pub fn new() -> Recording {
        Recording::default()
    }

    /// Commands that start with `prefix` fail with `stderr`.
    pub fn fail(&self, prefix: &str, stderr: &str) -> &Self {
        let rule = (prefix.to_string(), Err(stderr.to_string()));
        self.rules.lock().expect("rules lock").push(rule);
        self
    }

    /// Commands that start with `prefix` print `stdout`.
    pub fn reply(&self, prefix: &str, stdout: &str) -> &Self {
        let rule = (prefix.to_string(), Ok(stdout.to_string()));
        self.rules.lock().expect("rules lock").push(rule);
        self
    }

    /// `read_proc(path)` answers `text`.
    pub fn proc_file(&self, path: &str, text: &str) -> &Self {
        let file = (path.to_string(), text.to_string());
        self.proc_files.lock().expect("proc lock").push(file);
        self
    }

    /// The command lines run so far, in order (without their stdin).
    pub fn calls(&self) -> Vec<String> {
        self.calls
            .lock()
            .expect("calls lock")
            .iter()
            .map(|c| c.lines().next().unwrap_or_default().to_string())
            .collect()
    }

    /// The stdin given to each command, in order (empty for commands without one).
    pub fn inputs(&self) -> Vec<String> {
        self.calls
            .lock()
            .expect("calls lock")
            .iter()
            .map(|c| c.split_once('\n').map_or("", |(_, i)| i).to_string())
            .collect()
    }
}

impl Commands for Recording {
    fn run(&self, tool: HostTool, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
        let line = format!("{} {}", tool.program, args.join(" "));
        let mut record = line.clone();
        if let Some(input) = input {
            record.push('\n');
            record.push_str(input);
        }
        self.calls.lock().expect("calls lock").push(record);
        let rules = self.rules.lock().expect("rules lock");
        match rules
            .iter()
            .find(|(prefix, _)| line.starts_with(prefix.as_str()))
        {
            Some((_, Err(stderr))) => Err(NetError::Command {
                command: line,
                message: stderr.clone(),
            }),
            Some((_, Ok(stdout))) => Ok(stdout.clone()),
            None => Ok(String::new()),
        }
    }

    fn sysctl(&self, _key: &str) -> Option<String> {
        Some("1".into())
    }

    fn set_sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
        self.calls
            .lock()
            .expect("calls lock")
            .push(format!("sysctl {key}={value}"));
        Ok(())
    }

    fn read_proc(&self, path: &str) -> Option<String> {
        let files = self.proc_files.lock().expect("proc lock");
        files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, t)| t.clone())
    }
}
