//! `ignite cp SRC DST`: files and directories into or out of a running VM, `VM:path` on
//! one side, through the guest agent: no sshd or network needed. The copy itself, and the
//! checks on what comes out of the VM, are the runtime's (`vms::copy`).

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, bail};
use ignite_guest_protocol::client::AgentClient;
use ignite_runtime::vms::copy::{copy_in, copy_out};
use ignite_runtime::vms::{self, VmFiles};

use super::Context;
use crate::args::CpArgs;

/// `VM:path`, when the part before the first ':' could be a VM (no '/').
fn vm_path(arg: &str) -> Option<(&str, &str)> {
    let (vm, path) = arg.split_once(':')?;
    (!vm.is_empty() && !vm.contains('/')).then_some((vm, path))
}

pub fn run(ctx: &Context, args: &CpArgs) -> anyhow::Result<ExitCode> {
    match (vm_path(&args.source), vm_path(&args.destination)) {
        (Some(_), Some(_)) => bail!("copy between a VM and the host: VM:path on one side only"),
        (None, None) => bail!("name the VM's side as VM:path (ignite cp ./file my-vm:/root/)"),
        (None, Some((vm, path))) => {
            let agent = connect(ctx, vm, args.timeout)?;
            copy_in(&agent, Path::new(&args.source), guest_path(path))?;
        }
        (Some((vm, path)), None) => {
            let agent = connect(ctx, vm, args.timeout)?;
            copy_out(&agent, guest_path(path), Path::new(&args.destination))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn guest_path(path: &str) -> &str {
    if path.is_empty() { "/root" } else { path }
}

fn connect(ctx: &Context, vm: &str, timeout: u64) -> anyhow::Result<AgentClient> {
    let vm = vms::repair(&ctx.store, ctx.store.vms().find(vm)?);
    if !vms::is_running(&vm) {
        bail!("VM {} is not running: start it first", vm.metadata.name);
    }
    vms::check_not_paused(&vm)?;
    let socket = VmFiles::new(&ctx.store, &vms::uid_of(&vm)).exec_socket();
    let stream = UnixStream::connect(&socket)
        .with_context(|| format!("cannot reach the supervisor of VM {}", vm.metadata.name))?;
    AgentClient::connect(stream.try_clone()?, stream, Duration::from_secs(timeout))
        .with_context(|| format!("cannot reach the agent of VM {}", vm.metadata.name))
}
