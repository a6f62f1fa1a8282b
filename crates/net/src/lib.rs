//! Bridge networking for VMs (ARCHITECTURE §5): the `ignite0` bridge and a tap per VM
//! (made with iproute2's `ip`), masquerade and port forwards in an nftables table of
//! Ignite's own (`ip ignite`), a file-backed address allocator, and a DHCP responder
//! that answers one VM's MAC address with the address the allocator gave it; beside a
//! Docker Engine, rules in its `DOCKER-USER` chain that let the VMs' traffic through.
//!
//! Everything here needs CAP_NET_ADMIN except the allocator and the packet codecs.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod allocator;
pub mod cni;
pub mod commands;
pub mod dhcp;
pub mod docker_user;
pub mod firewall;
pub mod links;
pub mod subnet;

pub use allocator::AddressBook;
pub use commands::{Commands, Recording, System};
pub use firewall::{Forward, Transport};
pub use subnet::Subnet;

use ignite_host_tools::HostTool;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Invalid(String),
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error(transparent)]
    Missing(#[from] ignite_host_tools::MissingTool),
    #[error("cannot run `{program}`: {source}")]
    Run {
        program: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
    #[error(
        "the subnet {subnet} has no free address left: remove VMs (ignite rm) or configure a larger subnet"
    )]
    Exhausted { subnet: Subnet },
}

fn run_with_input(tool: HostTool, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
    use std::io::Write;
    use std::process::Stdio;
    let program = tool.program;
    let mut child = tool
        .command()?
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Run { program, source })?;
    if let Some(text) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let _ = stdin.write_all(text.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|source| NetError::Run { program, source })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(NetError::Command {
            command: format!("{program} {}", args.join(" ")),
            message: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}
