//! A fleet host's heartbeat: `hosts/NAME.yaml` in the GitOps repository, with the host's
//! capacity, the VMs it runs and when it was last seen, so the repository (and `git log`)
//! shows the fleet. It is rewritten when anything but the time changed, and otherwise only
//! once `--heartbeat-interval` has passed since the time it holds: a quiet fleet makes one
//! commit per host per interval, not one per pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use ignite_api::Size;
use ignite_runtime::reconcile::files::{FileError, create_new, read_manifest};
use ignite_runtime::reconcile::placement::{HEARTBEAT_API_VERSION, HEARTBEAT_KIND, HostName};
use serde::{Deserialize, Serialize};

/// The directory of heartbeats, at the top of the repository.
pub const HOSTS_DIR: &str = "hosts";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Heartbeat {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub status: HostStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostStatus {
    pub capacity: Capacity,
    /// Every VM running on the host (also those not from the repository).
    pub vms_running: usize,
    /// The repository's VMs running on the host, by name.
    pub vms: Vec<String>,
    /// RFC 3339, UTC.
    pub last_seen: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub cpus: usize,
    pub memory: Size,
}

impl Heartbeat {
    pub fn new(host: &HostName, capacity: Capacity, vms_running: usize, vms: Vec<String>) -> Self {
        Heartbeat {
            api_version: HEARTBEAT_API_VERSION.into(),
            kind: HEARTBEAT_KIND.into(),
            metadata: Metadata {
                name: host.to_string(),
            },
            status: HostStatus {
                capacity,
                vms_running,
                vms,
                last_seen: String::new(),
            },
        }
    }
}

/// The host's CPUs and memory.
pub fn capacity() -> Capacity {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(Size::ZERO, |kib| Size::from_bytes(kib * 1024));
    Capacity { cpus, memory }
}

/// The heartbeat file of `host` in the checkout.
pub fn path(checkout: &Path, host: &HostName) -> PathBuf {
    checkout
        .join(HOSTS_DIR)
        .join(format!("{}.yaml", host.as_str()))
}

/// Whether `now` must be written over `old` (what the file holds, if it could be read):
/// when there is none, when anything but the time changed, or when `interval` has passed
/// since the time it holds (or that time cannot be read, or lies ahead).
pub fn due(
    old: Option<&Heartbeat>,
    now: &Heartbeat,
    at: DateTime<Utc>,
    interval: Duration,
) -> bool {
    let Some(old) = old else {
        return true;
    };
    let mut same = old.clone();
    same.status.last_seen.clone_from(&now.status.last_seen);
    if &same != now {
        return true;
    }
    match DateTime::parse_from_rfc3339(&old.status.last_seen) {
        Ok(seen) => {
            let age = at.signed_duration_since(seen.with_timezone(&Utc));
            age < chrono::TimeDelta::zero() || age.to_std().is_ok_and(|age| age >= interval)
        }
        Err(_) => true,
    }
}

/// Writes the heartbeat when it is due; returns whether it did. The file is replaced
/// atomically and never through a link.
pub fn write(
    checkout: &Path,
    host: &HostName,
    mut beat: Heartbeat,
    interval: Duration,
) -> Result<bool, FileError> {
    let file = path(checkout, host);
    let old = read_manifest(&file)
        .ok()
        .and_then(|t| ignite_api::manifest::decode::<Heartbeat>(&t).ok());
    let at = Utc::now();
    beat.status.last_seen = at.to_rfc3339_opts(SecondsFormat::Secs, true);
    if !due(old.as_ref(), &beat, at, interval) {
        return Ok(false);
    }
    let dir = checkout.join(HOSTS_DIR);
    if let Err(source) = std::fs::create_dir(&dir)
        && source.kind() != std::io::ErrorKind::AlreadyExists
    {
        return Err(FileError::Io(ignite_host_tools::PathError::new(
            "create", &dir, source,
        )));
    }
    let tmp = dir.join(format!(".{}.yaml.ignite-tmp", host.as_str()));
    create_new(&tmp, ignite_api::manifest::to_yaml(&beat).as_bytes())?;
    // rename(2) replaces the name; a link there is replaced, not followed.
    std::fs::rename(&tmp, &file).map_err(|source| {
        let _ = std::fs::remove_file(&tmp);
        FileError::Io(ignite_host_tools::PathError::new("replace", &file, source))
    })?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(vms: &[&str], seen: &str) -> Heartbeat {
        let mut b = Heartbeat::new(
            &HostName::new("node1").unwrap(),
            Capacity {
                cpus: 2,
                memory: Size::from_bytes(4 << 30),
            },
            vms.len(),
            vms.iter().map(|s| s.to_string()).collect(),
        );
        b.status.last_seen = seen.into();
        b
    }

    #[test]
    fn a_heartbeat_is_due_on_a_change_or_once_the_interval_passed() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let minute = Duration::from_secs(60);
        let old = beat(&["a"], "2026-01-01T00:00:00Z");
        let now = beat(&["a"], "2026-01-01T00:00:30Z");
        assert!(due(None, &now, at("2026-01-01T00:00:30Z"), minute));
        // Only the time changed, within the interval: not written.
        assert!(!due(Some(&old), &now, at("2026-01-01T00:00:30Z"), minute));
        // The interval passed.
        assert!(due(Some(&old), &now, at("2026-01-01T00:01:00Z"), minute));
        // Anything else changed: written at once.
        let more = beat(&["a", "b"], "2026-01-01T00:00:30Z");
        assert!(due(Some(&old), &more, at("2026-01-01T00:00:30Z"), minute));
        // A time that cannot be read, or lies ahead, is replaced.
        let bad = beat(&["a"], "yesterday");
        assert!(due(Some(&bad), &now, at("2026-01-01T00:00:30Z"), minute));
        let ahead = beat(&["a"], "2027-01-01T00:00:00Z");
        assert!(due(Some(&ahead), &now, at("2026-01-01T00:00:30Z"), minute));
    }

    #[test]
    fn the_file_is_written_in_hosts_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let host = HostName::new("node1").unwrap();
        let hour = Duration::from_secs(3600);
        assert!(write(dir.path(), &host, beat(&["a"], ""), hour).unwrap());
        let text = std::fs::read_to_string(dir.path().join("hosts/node1.yaml")).unwrap();
        assert!(
            text.contains("kind: Host") && text.contains("lastSeen:"),
            "{text}"
        );
        let back: Heartbeat = ignite_api::manifest::decode(&text).unwrap();
        assert_eq!(back.status.vms, ["a"]);
        assert_eq!(back.status.capacity.cpus, 2);
        // Nothing changed but the time: not written again within the hour.
        assert!(!write(dir.path(), &host, beat(&["a"], ""), hour).unwrap());
        assert!(write(dir.path(), &host, beat(&[], ""), hour).unwrap());
        // A link planted at the file's name is replaced, not written through.
        let outside = tempfile::tempdir().unwrap();
        let canary = outside.path().join("canary");
        std::fs::write(&canary, "keep").unwrap();
        std::fs::remove_file(dir.path().join("hosts/node1.yaml")).unwrap();
        std::os::unix::fs::symlink(&canary, dir.path().join("hosts/node1.yaml")).unwrap();
        assert!(write(dir.path(), &host, beat(&[], ""), hour).unwrap());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
        // The heartbeat is not a VM manifest: a manifest directory passes over it.
        let set = ignite_runtime::reconcile::manifests::load(dir.path());
        assert!(
            set.vms.is_empty() && set.errors.is_empty(),
            "{:?}",
            set.errors
        );
        assert_eq!(set.ignored, 1);
    }
}
