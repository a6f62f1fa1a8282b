//! `ignite ssh VM [COMMAND...]`: the system's OpenSSH client, with the VM's key, to the
//! VM's sshd (waiting for it up to --timeout).

use std::os::unix::process::CommandExt;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use ignite_api::Vm;
use ignite_runtime::vms::{self, VmFiles};

use super::Context;
use crate::args::SshArgs;

pub fn run(ctx: &Context, args: &SshArgs) -> anyhow::Result<ExitCode> {
    let vm = vms::repair(&ctx.store, ctx.store.vms().find(&args.vm)?);
    let name = vm.metadata.name.clone();
    if !vms::is_running(&vm) {
        bail!("VM {name} is not running: start it first (ignite start {name})");
    }
    vms::check_not_paused(&vm)?;
    exec_ssh(
        ctx,
        &vm,
        &SshCall {
            identity: args.identity.as_deref(),
            timeout: args.timeout,
            tty: args.tty,
            command: &args.command,
        },
    )
}

/// How to reach a running VM over SSH.
pub struct SshCall<'a> {
    pub identity: Option<&'a std::path::Path>,
    pub timeout: u64,
    pub tty: bool,
    pub command: &'a [String],
}

/// Replaces this process with `ssh` to the running `vm` (returns only on failure).
pub fn exec_ssh(ctx: &Context, vm: &Vm, call: &SshCall<'_>) -> anyhow::Result<ExitCode> {
    let name = vm.metadata.name.clone();
    let args = call;
    let Some(address) = vm.status.ssh_address.clone() else {
        bail!("VM {name} has no SSH access: create it with --ssh (ignite exec needs none)");
    };
    let key = match args.identity {
        Some(key) => key.to_path_buf(),
        None => VmFiles::new(&ctx.store, &vms::uid_of(vm)).ssh_key(),
    };
    if !key.is_file() {
        bail!(
            "no private key for VM {name} at {}: it was created with a public key of yours; give its private key with -i",
            key.display()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    while !vms::ssh_banner(&address) {
        if Instant::now() > deadline {
            bail!(
                "the sshd of VM {name} did not answer on {address} within {} s: see ignite logs {name}",
                args.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let (host, port) = address.rsplit_once(':').unwrap_or((&address, "22"));
    let mut ssh = ignite_host_tools::SSH.command()?;
    ssh.arg("-i")
        .arg(&key)
        .args(["-p", port])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .args(["-o", "LogLevel=ERROR", "-o", "IdentitiesOnly=yes"]);
    let interactive = rustix::termios::isatty(std::io::stdin());
    if args.tty && interactive {
        ssh.arg("-t");
    } else {
        ssh.arg("-T");
    }
    ssh.arg(format!("root@{host}"));
    if !args.command.is_empty() {
        // The remote shell splits the command line again: quote each argument for it.
        ssh.arg("--").arg(
            args.command
                .iter()
                .map(|a| shell_quote(a))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    let err = ssh.exec();
    bail!("cannot run ssh ({err}): install openssh-client")
}

/// `arg` as one word for a POSIX shell.
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
    {
        return arg.to_string();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn arguments_survive_the_remote_shell() {
        assert_eq!(shell_quote("hostname"), "hostname");
        assert_eq!(shell_quote("exit 3"), "'exit 3'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
