//! `ignite exec VM COMMAND...`: runs a command in the VM through its guest agent (reached
//! via the VM's supervisor), streaming stdin, stdout and stderr, and exits with the
//! command's status. Works without sshd and without a network.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ignite_api::Vm;
use ignite_guest_protocol::agent::{ExecRequest, WindowSize};
use ignite_guest_protocol::client::{AgentClient, Output};
use ignite_runtime::vms::{self, VmFiles};

use super::{Context, ssh};
use crate::args::ExecArgs;

/// What the guest runs for `exec VM COMMAND...`: the arguments as given, except that one
/// argument that is a shell command line (Ignite's exec handed its command to the guest's
/// shell, and Ignite users write `ignite exec VM "mkdir -p /d && echo x > /d/f"`) is run
/// by `/bin/sh -c`. After `--` the arguments are always taken as they are.
fn guest_argv(command: &[String], after_double_dash: bool) -> Vec<String> {
    match command {
        [line] if !after_double_dash && is_shell_line(line) => {
            vec!["/bin/sh".into(), "-c".into(), line.clone()]
        }
        _ => command.to_vec(),
    }
}

/// Whitespace or shell syntax: no program name holds them, a command line does.
fn is_shell_line(arg: &str) -> bool {
    arg.chars()
        .any(|c| c.is_whitespace() || ";&|<>()$`'\"*?\\".contains(c))
}

/// Whether the command came after a `--` (clap drops it): the raw arguments hold `--`
/// right before the command's first word.
fn after_double_dash(raw: &[String], command: &[String]) -> bool {
    command.first().is_some_and(|first| {
        raw.windows(2)
            .any(|pair| pair[0] == "--" && &pair[1] == first)
    })
}

/// The VM's agent, through its supervisor.
fn connect(ctx: &Context, vm: &Vm, timeout: Duration) -> anyhow::Result<AgentClient> {
    let name = &vm.metadata.name;
    if !vms::agent_enabled(vm) {
        bail!("the agent of VM {name} is off (ignite.agent=off)");
    }
    let socket = VmFiles::new(&ctx.store, &vms::uid_of(vm)).exec_socket();
    let stream = UnixStream::connect(&socket).with_context(|| {
        format!(
            "cannot reach the supervisor of VM {name} at {}",
            socket.display()
        )
    })?;
    AgentClient::connect(stream.try_clone()?, stream, timeout)
        .with_context(|| format!("cannot reach the agent of VM {name}"))
}

pub fn run(ctx: &Context, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let vm = vms::repair(&ctx.store, ctx.store.vms().find(&args.vm)?);
    if !vms::is_running(&vm) {
        bail!(
            "VM {} is not running: start it first (ignite start {})",
            vm.metadata.name,
            vm.metadata.name
        );
    }
    vms::check_not_paused(&vm)?;
    let agent = match connect(ctx, &vm, Duration::from_secs(args.timeout)) {
        Ok(agent) => agent,
        // SSH is the fallback when the VM has it.
        Err(e) if vm.status.ssh_address.is_some() => {
            tracing::warn!("{e:#}: running the command over SSH");
            return ssh::exec_ssh(
                ctx,
                &vm,
                &ssh::SshCall {
                    identity: args.identity.as_deref(),
                    timeout: args.timeout,
                    tty: args.tty,
                    command: &args.command,
                },
            );
        }
        Err(e) => {
            return Err(e.context(format!(
                "VM {} has no SSH access to fall back to either (create VMs with --ssh for that)",
                vm.metadata.name
            )));
        }
    };

    let raw: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut request = ExecRequest {
        argv: guest_argv(&args.command, after_double_dash(&raw, &args.command)),
        tty: args.tty,
        ..ExecRequest::default()
    };
    if args.tty {
        if let Ok(size) = rustix::termios::tcgetwinsize(std::io::stdout()) {
            request.window = Some(WindowSize {
                rows: size.ws_row,
                cols: size.ws_col,
            });
        }
        request.env.push(format!(
            "TERM={}",
            std::env::var("TERM").unwrap_or_else(|_| "xterm".into())
        ));
    }
    let _raw = args.tty.then(crate::terminal::RawMode::enable);
    let session = agent.exec(&request)?;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        let _ = session.close_stdin();
                        return;
                    }
                    Ok(n) => {
                        if session.write_stdin(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        let code = loop {
            match session.next(Duration::from_secs(u64::MAX / 4))? {
                Output::Stdout(b) => {
                    out.write_all(&b)?;
                    out.flush()?;
                }
                Output::Stderr(b) => {
                    err.write_all(&b)?;
                    err.flush()?;
                }
                Output::Exited(status) => break (status.shell_code(), None),
                Output::Failed(body) => break (body.status.unwrap_or(126), Some(body.message)),
            }
        };
        // stdin may still be blocked on a terminal read: restore the terminal, leave now.
        drop(_raw);
        if let Some(message) = code.1 {
            eprintln!("Error: {message}");
        }
        std::process::exit(code.0.clamp(0, 255));
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn one_shell_line_goes_to_the_guest_shell_and_argv_stays_exact_otherwise() {
        let line = strings(&["mkdir -p /tmp/d && echo x > /tmp/d/f"]);
        assert_eq!(
            guest_argv(&line, false),
            strings(&["/bin/sh", "-c", "mkdir -p /tmp/d && echo x > /tmp/d/f"])
        );
        // After `--`, exactly as given, even with spaces.
        assert_eq!(guest_argv(&line, true), line);
        // A program name alone, or several arguments, are run as they are.
        assert_eq!(guest_argv(&strings(&["ls"]), false), strings(&["ls"]));
        let argv = strings(&["echo", "a && b"]);
        assert_eq!(guest_argv(&argv, false), argv);
        assert_eq!(guest_argv(&strings(&["echo$HOME"]), false)[0], "/bin/sh");
    }

    #[test]
    fn a_double_dash_is_seen_only_right_before_the_command() {
        let cmd = strings(&["ls -l"]);
        assert!(after_double_dash(
            &strings(&["ignite", "exec", "vm", "--", "ls -l"]),
            &cmd
        ));
        assert!(!after_double_dash(
            &strings(&["ignite", "exec", "vm", "ls -l"]),
            &cmd
        ));
        assert!(!after_double_dash(&strings(&["ignite", "--"]), &[]));
    }
}
