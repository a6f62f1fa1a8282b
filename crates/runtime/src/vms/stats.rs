//! What a running VM uses of the host, for `ignite stats` and `/metrics`: CPU time,
//! memory and block I/O from its control group, network I/O from its tap (in the VMM's
//! network namespace, as the VMM sees it: the guest's input is what the tap sends).

use ignite_api::Vm;

/// One reading of a running VM; each figure `None` where the host does not give it (no
/// cgroup of its own, user-mode networking without a tap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmStats {
    pub cpu_micros: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub memory_limit: Option<u64>,
    pub block_read_bytes: Option<u64>,
    pub block_write_bytes: Option<u64>,
    /// Bytes the guest received and sent.
    pub net_input_bytes: Option<u64>,
    pub net_output_bytes: Option<u64>,
    pub pids: Option<u64>,
}

/// A reading of `vm`, `None` when it does not run.
pub fn read(vm: &Vm) -> Option<VmStats> {
    let vmm = vm.status.vmm.as_ref()?;
    if !super::is_running(vm) {
        return None;
    }
    let usage = vmm
        .cgroup
        .as_deref()
        .and_then(super::confinement::usage_of)
        .unwrap_or_default();
    let uid = super::uid_of(vm);
    let net = std::fs::read_to_string(format!("/proc/{}/net/dev", vmm.process.pid))
        .ok()
        .and_then(|text| {
            tap_counters(
                &text,
                &[
                    &ignite_net::links::tap_name(uid.as_str()),
                    ignite_net::cni::sandbox::TAP,
                ],
            )
        });
    Some(VmStats {
        cpu_micros: usage.cpu_micros,
        memory_bytes: usage.memory_bytes,
        memory_limit: usage.memory_limit,
        block_read_bytes: usage.io_read_bytes,
        block_write_bytes: usage.io_write_bytes,
        // The tap's transmit is the guest's receive.
        net_input_bytes: net.map(|(_, tx)| tx),
        net_output_bytes: net.map(|(rx, _)| rx),
        pids: usage.pids,
    })
}

/// Received and transmitted bytes of the first of `names` in `/proc/PID/net/dev`'s text
/// (`  name: rx_bytes rx_packets ... (8 fields) tx_bytes ...`).
pub fn tap_counters(text: &str, names: &[&str]) -> Option<(u64, u64)> {
    text.lines().find_map(|line| {
        let (name, fields) = line.split_once(':')?;
        if !names.contains(&name.trim()) {
            return None;
        }
        let fields: Vec<u64> = fields
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect();
        Some((*fields.first()?, *fields.get(8)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_taps_counters_are_read_from_net_dev() {
        let text = "Inter-|   Receive                            |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
 lo:  100 1 0 0 0 0 0 0 100 1 0 0 0 0 0 0\n\
 ignabc: 1500 10 0 0 0 0 0 0 64000 40 0 0 0 0 0 0\n";
        assert_eq!(tap_counters(text, &["ignabc", "tap0"]), Some((1500, 64000)));
        assert_eq!(tap_counters(text, &["tap0"]), None);
    }
}
