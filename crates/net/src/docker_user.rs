//! Living beside Docker Engine (ARCHITECTURE §5): accept a bridge's forwarded traffic in
//! Docker's `DOCKER-USER` chain.
//!
//! A Docker Engine that turns IP forwarding on sets the `filter` table's `FORWARD` policy
//! to `DROP`. A packet any base chain drops is dropped whatever other tables say, so an
//! `accept` in the `ip ignite` table cannot let the VMs' traffic through; the accept has
//! to be in the chain Docker evaluates first and keeps for its users: `DOCKER-USER`,
//! which dockerd (20.10 measured) neither flushes on a restart nor removes when it stops.
//! The rules go through the iptables program of the backend the chain lives in
//! (`iptables-nft` or `iptables-legacy`; a rule in the other backend does nothing), and
//! only where the chain exists: without Docker, nothing is changed. They accept exactly:
//! traffic from the bridge with a source in its subnet (the VMs' own), replies to it,
//! and connections that a port forward (DNAT) sent to the subnet. Every rule carries the
//! comment `ignite-bridge:<bridge>`, which is how they are found again.
//!
//! Several VMs share one bridge's rules: [`ensure`] adds whichever are missing, and
//! [`release_unused`] removes those of bridges without a VM's tap. Changes are serialised
//! with [`lock`], and a [`Keeper`] in one supervisor per bridge restores the rules when
//! something removed them (a firewall reload, a Docker Engine that created the chain
//! after the VMs started).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

use ignite_host_tools::{HostTool, IPTABLES_LEGACY, IPTABLES_NFT};

use crate::{Commands, NetError, Subnet, links};

/// Docker Engine's chain for its users' rules, in the `filter` table.
pub const CHAIN: &str = "DOCKER-USER";
const COMMENT_PREFIX: &str = "ignite-bridge:";
/// Seconds iptables waits for the xtables lock that dockerd or another iptables holds.
const WAIT_SECONDS: &str = "5";
/// The lock file (in the network state directory) that serialises rule changes.
const LOCK_FILE: &str = "docker-user.lock";

/// An iptables backend: where Docker Engine keeps its chains depends on which one the
/// host's `iptables` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Nft, Backend::Legacy];

    pub fn tool(self) -> HostTool {
        match self {
            Backend::Nft => IPTABLES_NFT,
            Backend::Legacy => IPTABLES_LEGACY,
        }
    }

    /// The program's name, `iptables-nft` or `iptables-legacy`.
    pub fn name(self) -> &'static str {
        self.tool().program
    }
}

/// The comment that marks a bridge's rules.
pub fn comment(bridge: &str) -> String {
    format!("{COMMENT_PREFIX}{bridge}")
}

/// The rules that accept `bridge`'s forwarded traffic, as the arguments after
/// `-A DOCKER-USER`, written as `iptables -S` prints them (so a listing shows at a
/// glance which are there).
pub fn accept_rules(bridge: &str, subnet: Subnet) -> Vec<Vec<String>> {
    let comment = comment(bridge);
    let subnet = subnet.to_string();
    let rules: [&[&str]; 3] = [
        // The VMs' own traffic: out to other hosts, to each other, to the host's networks.
        &["-s", &subnet, "-i", bridge],
        // Replies to it.
        &[
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "RELATED,ESTABLISHED",
        ],
        // Connections that a port forward (DNAT in the `ip ignite` table) sent to a VM;
        // nothing else from outside reaches the VMs.
        &[
            "-d",
            &subnet,
            "-o",
            bridge,
            "-m",
            "conntrack",
            "--ctstate",
            "DNAT",
        ],
    ];
    rules
        .iter()
        .map(|matches| {
            let mut rule: Vec<String> = matches.iter().map(|s| s.to_string()).collect();
            rule.extend(["-m", "comment", "--comment", &comment, "-j", "ACCEPT"].map(String::from));
            rule
        })
        .collect()
}

fn iptables(
    host: &dyn Commands,
    backend: Backend,
    operation: &[&str],
    rule: &[String],
) -> Result<String, NetError> {
    let mut args = vec!["-w", WAIT_SECONDS, "-t", "filter"];
    args.extend_from_slice(operation);
    args.extend(rule.iter().map(String::as_str));
    host.run(backend.tool(), &args, None)
}

/// `iptables -S DOCKER-USER` in `backend`, or `None` where the backend has no such chain
/// (no Docker Engine there, or the backend's program is not installed).
pub fn listing(host: &dyn Commands, backend: Backend) -> Result<Option<String>, NetError> {
    // Asking iptables-legacy would make a legacy filter table in this namespace just to
    // find it empty; the kernel lists the legacy tables that exist.
    if backend == Backend::Legacy && !legacy_filter_exists(host) {
        return Ok(None);
    }
    match iptables(host, backend, &["-S", CHAIN], &[]) {
        Ok(out) if out.lines().any(|l| l.trim() == format!("-N {CHAIN}")) => Ok(Some(out)),
        Ok(_) | Err(NetError::Missing(_)) => Ok(None),
        Err(NetError::Command { message, .. })
            if ["No chain/target/match", "incompatible", "does not exist"]
                .iter()
                .any(|m| message.contains(m)) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn legacy_filter_exists(host: &dyn Commands) -> bool {
    host.read_proc("net/ip_tables_names")
        .is_some_and(|tables| tables.lines().any(|t| t.trim() == "filter"))
}

/// The `FORWARD` chain's policy in `backend` (`DROP`, `ACCEPT`), where it can be read.
pub fn forward_policy(host: &dyn Commands, backend: Backend) -> Option<String> {
    if backend == Backend::Legacy && !legacy_filter_exists(host) {
        return None;
    }
    let out = iptables(host, backend, &["-S", "FORWARD"], &[]).ok()?;
    out.lines()
        .find_map(|l| l.trim().strip_prefix("-P FORWARD "))
        .map(str::to_string)
}

/// Ignite's rules in a `-S` listing: each one's bridge and its arguments after `-A CHAIN`.
fn ours(listing: &str) -> Vec<(String, Vec<String>)> {
    let prefix = format!("-A {CHAIN} ");
    listing
        .lines()
        .filter_map(|line| {
            let raw: Vec<&str> = line
                .trim()
                .strip_prefix(&prefix)?
                .split_whitespace()
                .collect();
            let at = raw.iter().position(|a| *a == "--comment")?;
            // iptables quotes a comment (ours have no spaces): `"ignite-bridge:ignite0"`.
            let comment = raw.get(at + 1)?;
            let comment = match comment.strip_prefix('"') {
                Some(quoted) => quoted.strip_suffix('"')?,
                None => comment,
            };
            let bridge = comment.strip_prefix(COMMENT_PREFIX)?.to_string();
            let args: Vec<String> = raw
                .iter()
                .map(|a| a.trim_matches('"').to_string())
                .collect();
            // A name as Ignite allows them: anything else is not a rule of ours.
            let valid = !bridge.is_empty()
                && bridge.len() <= 15
                && bridge
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            valid.then_some((bridge, args))
        })
        .collect()
}

/// The bridges that have rules in a `-S` listing.
pub fn bridges_in(listing: &str) -> Vec<String> {
    let mut bridges: Vec<String> = ours(listing).into_iter().map(|(b, _)| b).collect();
    bridges.sort();
    bridges.dedup();
    bridges
}

/// How many rules of `bridge` a `-S` listing holds.
pub fn rules_of(listing: &str, bridge: &str) -> usize {
    ours(listing).iter().filter(|(b, _)| b == bridge).count()
}

/// Makes sure `bridge`'s accept rules are in every backend that has a `DOCKER-USER` chain,
/// at its top (before the rules Docker's users put there for containers), and replaces
/// rules of the bridge that name another subnet. Returns how many rules it inserted.
/// Call it under [`lock`].
pub fn ensure(host: &dyn Commands, bridge: &str, subnet: Subnet) -> Result<usize, NetError> {
    let wanted = accept_rules(bridge, subnet);
    let mut total = 0;
    for backend in Backend::ALL {
        let Some(listing) = listing(host, backend)? else {
            continue;
        };
        let mut inserted = 0;
        let present: Vec<Vec<String>> = ours(&listing)
            .into_iter()
            .filter(|(b, _)| b == bridge)
            .map(|(_, rule)| rule)
            .collect();
        for stale in present.iter().filter(|r| !wanted.contains(r)) {
            iptables(host, backend, &["-D", CHAIN], stale)?;
        }
        for rule in wanted.iter().rev().filter(|r| !present.contains(r)) {
            // Should this iptables print a rule otherwise than expected, `-C` still knows
            // it is there, and it is not added twice.
            if iptables(host, backend, &["-C", CHAIN], rule).is_ok() {
                continue;
            }
            iptables(host, backend, &["-I", CHAIN, "1"], rule)?;
            inserted += 1;
        }
        if inserted > 0 {
            tracing::info!(
                bridge,
                backend = backend.name(),
                "accepting the bridge's forwarded traffic in Docker's {CHAIN} chain"
            );
        }
        total += inserted;
    }
    Ok(total)
}

/// Removes the rules of every bridge that has no VM's tap left on it (the last VM on it
/// ended); returns how many it removed. Call it under [`lock`], after removing a tap.
pub fn release_unused(host: &dyn Commands) -> Result<usize, NetError> {
    let mut removed = 0;
    let mut in_use: Vec<(String, bool)> = Vec::new();
    for backend in Backend::ALL {
        let Some(listing) = listing(host, backend)? else {
            continue;
        };
        for (bridge, rule) in ours(&listing) {
            let used = match in_use.iter().find(|(b, _)| *b == bridge) {
                Some((_, used)) => *used,
                None => {
                    let used = !links::taps_on(host, &bridge)?.is_empty();
                    in_use.push((bridge.clone(), used));
                    used
                }
            };
            if !used {
                iptables(host, backend, &["-D", CHAIN], &rule)?;
                removed += 1;
            }
        }
    }
    if removed > 0 {
        tracing::info!(
            removed,
            "no VM left on the bridge: its {CHAIN} rules are removed"
        );
    }
    Ok(removed)
}

/// Takes the lock that serialises changes to the rules among the VMs of one state root
/// (`dir` is its network directory), held until the file is dropped. A VM adds its
/// bridge's rules after its tap exists and removes them only when no tap is left, both
/// under this lock, so a VM starting while the last other one ends keeps its rules.
pub fn lock(dir: &Path) -> Result<File, NetError> {
    let file = open_lock(dir, LOCK_FILE)?;
    let path = dir.join(LOCK_FILE);
    file.lock()
        .map_err(|e| NetError::Io(ignite_host_tools::PathError::new("lock", path, e)))?;
    Ok(file)
}

fn open_lock(dir: &Path, name: &str) -> Result<File, NetError> {
    let io = |action: &'static str, path: PathBuf| {
        move |e| NetError::Io(ignite_host_tools::PathError::new(action, path, e))
    };
    std::fs::create_dir_all(dir).map_err(io("create", dir.to_path_buf()))?;
    let path = dir.join(name);
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io("open", path))
}

/// Keeps a bridge's rules in place while a VM on it runs: every `period`, the one keeper
/// of the bridge that holds its keeper lock (one per bridge and state root, whichever VM's
/// supervisor took it first; the next takes over when it ends) runs [`ensure`]. That is
/// one `iptables -S` per period for the whole bridge, however many VMs run on it. Stopped
/// (and joined) when dropped.
pub struct Keeper {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Keeper {
    pub fn start(
        host: Arc<dyn Commands>,
        dir: PathBuf,
        bridge: String,
        subnet: Subnet,
        period: Duration,
    ) -> Keeper {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let lease_name = format!("docker-user-keeper-{bridge}.lock");
            let mut lease: Option<File> = None;
            let mut last_error: Option<String> = None;
            loop {
                match stopped.recv_timeout(period) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
                if lease.is_none() {
                    lease = open_lock(&dir, &lease_name)
                        .ok()
                        .filter(|f| f.try_lock().is_ok());
                }
                if lease.is_none() {
                    continue;
                }
                let checked = lock(&dir).and_then(|_held| ensure(&*host, &bridge, subnet));
                match checked {
                    Ok(restored) => {
                        if restored > 0 {
                            tracing::warn!(
                                bridge,
                                restored,
                                "the bridge's {CHAIN} rules were missing (Docker Engine started, or the firewall was reloaded): restored"
                            );
                        }
                        last_error = None;
                    }
                    Err(e) => {
                        let e = e.to_string();
                        if last_error.as_ref() != Some(&e) {
                            tracing::warn!(bridge, "cannot check the {CHAIN} rules: {e}");
                        }
                        last_error = Some(e);
                    }
                }
            }
        });
        Keeper {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Recording;

    const NFT_LIST: &str = "iptables-nft -w 5 -t filter -S DOCKER-USER";

    fn docker_chain(rules: &str) -> String {
        format!("-N DOCKER-USER\n{rules}-A DOCKER-USER -j RETURN\n")
    }

    #[test]
    fn the_rules_accept_the_vms_traffic_its_replies_and_port_forwards_only() {
        let rules: Vec<String> = accept_rules("ignite0", Subnet::DEFAULT)
            .iter()
            .map(|r| r.join(" "))
            .collect();
        assert_eq!(
            rules,
            [
                "-s 10.61.0.0/16 -i ignite0 -m comment --comment ignite-bridge:ignite0 -j ACCEPT",
                "-o ignite0 -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment ignite-bridge:ignite0 -j ACCEPT",
                "-d 10.61.0.0/16 -o ignite0 -m conntrack --ctstate DNAT -m comment --comment ignite-bridge:ignite0 -j ACCEPT",
            ]
        );
    }

    #[test]
    fn without_a_docker_user_chain_nothing_is_changed() {
        let host = Recording::new();
        host.fail(
            NFT_LIST,
            "iptables v1.8.9 (nf_tables): chain `DOCKER-USER' in table `filter' is incompatible, use 'nft' tool.",
        );
        // No legacy filter table: iptables-legacy is not even asked.
        host.proc_file("net/ip_tables_names", "");
        assert_eq!(ensure(&host, "ignite0", Subnet::DEFAULT).unwrap(), 0);
        assert_eq!(release_unused(&host).unwrap(), 0);
        assert_eq!(host.calls(), [NFT_LIST, NFT_LIST]);
    }

    #[test]
    fn missing_rules_are_inserted_at_the_top_in_the_backend_that_has_the_chain() {
        let host = Recording::new();
        host.reply(NFT_LIST, &docker_chain(""))
            .fail("iptables-nft -w 5 -t filter -C", "Bad rule");
        assert_eq!(ensure(&host, "ignite0", Subnet::DEFAULT).unwrap(), 3);
        let rules = accept_rules("ignite0", Subnet::DEFAULT);
        let mut expected = vec![NFT_LIST.to_string()];
        for rule in rules.iter().rev() {
            let rule = rule.join(" ");
            expected.push(format!("iptables-nft -w 5 -t filter -C DOCKER-USER {rule}"));
            expected.push(format!(
                "iptables-nft -w 5 -t filter -I DOCKER-USER 1 {rule}"
            ));
        }
        assert_eq!(host.calls(), expected);
    }

    #[test]
    fn rules_in_place_are_left_alone_and_a_changed_subnet_replaces_them() {
        let quoted = |rule: &Vec<String>| {
            format!("-A DOCKER-USER {}\n", rule.join(" ")).replace(
                "--comment ignite-bridge:ignite0",
                "--comment \"ignite-bridge:ignite0\"",
            )
        };
        let old: Subnet = "10.99.0.0/24".parse().unwrap();
        let listing: String = accept_rules("ignite0", Subnet::DEFAULT)
            .iter()
            .map(quoted)
            .collect();
        // In the legacy backend only (Docker on iptables-legacy).
        let host = Recording::new();
        host.fail(NFT_LIST, "iptables: No chain/target/match by that name.")
            .proc_file("net/ip_tables_names", "nat\nfilter\n")
            .reply(
                "iptables-legacy -w 5 -t filter -S DOCKER-USER",
                &docker_chain(&listing),
            );
        assert_eq!(ensure(&host, "ignite0", Subnet::DEFAULT).unwrap(), 0);
        assert_eq!(
            host.calls(),
            [NFT_LIST, "iptables-legacy -w 5 -t filter -S DOCKER-USER"]
        );

        let host = Recording::new();
        host.reply(NFT_LIST, &docker_chain(&listing))
            .fail("iptables-nft -w 5 -t filter -C", "Bad rule");
        // The rules naming the subnet are replaced; the one for replies stays.
        assert_eq!(ensure(&host, "ignite0", old).unwrap(), 2);
        let calls = host.calls();
        let deleted: Vec<&String> = calls.iter().filter(|c| c.contains(" -D ")).collect();
        assert_eq!(deleted.len(), 2, "{calls:#?}");
        assert_eq!(
            deleted[0],
            "iptables-nft -w 5 -t filter -D DOCKER-USER -s 10.61.0.0/16 -i ignite0 -m comment --comment ignite-bridge:ignite0 -j ACCEPT"
        );
        assert!(
            calls
                .iter()
                .filter(|c| c.contains(" -I "))
                .all(|c| c.contains("10.99.0.0/24")),
            "{calls:#?}"
        );
    }

    #[test]
    fn rules_go_with_the_last_tap_on_their_bridge() {
        let rules = |bridge: &str| -> String {
            accept_rules(bridge, Subnet::DEFAULT)
                .iter()
                .map(|r| format!("-A DOCKER-USER {}\n", r.join(" ")))
                .collect()
        };
        let listing = docker_chain(&format!(
            "-A DOCKER-USER -i eth0 -m comment --comment \"ignite-bridge:x y\" -j DROP\n{}{}",
            rules("ignite0"),
            rules("br-busy")
        ));
        let host = Recording::new();
        host.reply(NFT_LIST, &listing)
            .reply(
                "ip -o link show master br-busy",
                "5: ign0123456789ab: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 master br-busy\n",
            )
            .fail(
                "ip link show dev ignite0",
                "Device \"ignite0\" does not exist.",
            );
        assert_eq!(release_unused(&host).unwrap(), 3);
        let calls = host.calls();
        let deleted: Vec<&String> = calls.iter().filter(|c| c.contains(" -D ")).collect();
        assert_eq!(deleted.len(), 3, "{calls:#?}");
        assert!(
            deleted
                .iter()
                .all(|c| c.ends_with("-m comment --comment ignite-bridge:ignite0 -j ACCEPT"))
        );
        // Each bridge's taps are looked up once.
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("ip link show dev"))
                .count(),
            2
        );
    }

    #[test]
    fn a_listing_iptables_refuses_is_an_error_not_an_absent_chain() {
        let host = Recording::new();
        host.fail(
            NFT_LIST,
            "iptables v1.8.9 (nf_tables): Could not fetch rule set generation id: Permission denied (you must be root)",
        );
        let e = ensure(&host, "ignite0", Subnet::DEFAULT).unwrap_err();
        assert!(e.to_string().contains("Permission denied"), "{e}");
    }

    #[test]
    fn the_forward_policy_is_read_from_the_listing() {
        let host = Recording::new();
        host.reply(
            "iptables-nft -w 5 -t filter -S FORWARD",
            "-P FORWARD DROP\n-A FORWARD -j DOCKER-USER\n",
        );
        assert_eq!(forward_policy(&host, Backend::Nft).as_deref(), Some("DROP"));
        assert_eq!(forward_policy(&host, Backend::Legacy), None);
    }

    #[test]
    fn the_keeper_restores_missing_rules_and_stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let host = Arc::new(Recording::new());
        host.reply(NFT_LIST, &docker_chain(""))
            .fail("iptables-nft -w 5 -t filter -C", "Bad rule");
        let keeper = Keeper::start(
            host.clone(),
            dir.path().to_path_buf(),
            "ignite0".into(),
            Subnet::DEFAULT,
            Duration::from_millis(20),
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !host
            .calls()
            .iter()
            .any(|c| c.contains(" -I DOCKER-USER 1 "))
        {
            assert!(std::time::Instant::now() < deadline, "{:#?}", host.calls());
            std::thread::sleep(Duration::from_millis(10));
        }
        // A second keeper of the same bridge stays idle while the first holds the lease
        // (started once the first has it: which of two new keepers gets it is a race).
        let idle = Arc::new(Recording::new());
        let second = Keeper::start(
            idle.clone(),
            dir.path().to_path_buf(),
            "ignite0".into(),
            Subnet::DEFAULT,
            Duration::from_millis(20),
        );
        std::thread::sleep(Duration::from_millis(200));
        drop(second);
        assert!(
            idle.calls().is_empty(),
            "two keepers of one bridge: {:#?}",
            idle.calls()
        );
        drop(keeper);
        let after = host.calls().len();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(host.calls().len(), after, "a dropped keeper keeps running");
    }
}
