//! One VM's group: made with its limits by the supervisor, joined by the VMM's launcher
//! just before it becomes the VMM (whose children inherit it), removed when the VM ends.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::hierarchy::{Hierarchy, V2_CONTROLLERS, Version};
use crate::usage::{self, Usage};
use crate::{CgroupError, io_error};

/// A VM's limits; `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory of the whole group (guest memory and the VMM's own), in bytes.
    pub memory_max: Option<u64>,
    /// Processes and threads.
    pub pids_max: Option<u64>,
    /// CPU time per period, in microseconds (`cpu.max`: quota and period).
    pub cpu: Option<CpuMax>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota_micros: u64,
    pub period_micros: u64,
}

impl CpuMax {
    /// `cores` of CPU time (0.5: half of one core), over a 100 ms period.
    pub fn cores(cores: f64) -> CpuMax {
        let period_micros = 100_000;
        CpuMax {
            // The kernel's minimum quota is 1 ms.
            quota_micros: ((cores * period_micros as f64).round() as u64).max(1000),
            period_micros,
        }
    }
}

/// A VM's group, in every mount of the hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub version: Version,
    /// The group's path relative to the hierarchy's top (`/ignite.slice/vm-UID`): what a
    /// VM's status records.
    pub relative: String,
    /// Its directory in each mount (one for v2).
    pub dirs: Vec<PathBuf>,
}

impl Group {
    /// The group at `relative` (made or not).
    pub fn at(hierarchy: &Hierarchy, relative: &str) -> Group {
        Group {
            version: hierarchy.version,
            relative: relative.to_string(),
            dirs: hierarchy.dirs_of(relative),
        }
    }

    /// Makes the group `name` under `parent` (made too when missing) with `limits`. A
    /// group left over by a crash is reused, its limits written anew.
    pub fn create(
        hierarchy: &Hierarchy,
        parent: &str,
        name: &str,
        limits: &Limits,
    ) -> Result<Group, CgroupError> {
        let relative = format!("{}/{name}", parent.trim_end_matches('/'));
        let group = Group::at(hierarchy, &relative);
        if group.dirs.is_empty() {
            return Err(CgroupError::NotDelegated(format!(
                "the cgroup {relative} is outside every mounted cgroup hierarchy"
            )));
        }
        for dir in &group.dirs {
            let parent_dir = dir.parent().unwrap_or(dir);
            make_dir(parent_dir)?;
            if group.version == Version::V2 {
                enable_controllers(parent_dir)?;
            }
            make_dir(dir)?;
        }
        group.write_limits(limits)?;
        Ok(group)
    }

    fn write_limits(&self, limits: &Limits) -> Result<(), CgroupError> {
        match self.version {
            Version::V2 => {
                let dir = &self.dirs[0];
                if let Some(bytes) = limits.memory_max {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                    // Past its limit the group is not allowed to spill into swap either.
                    let swap = dir.join("memory.swap.max");
                    if swap.exists() {
                        write(&swap, "0")?;
                    }
                }
                if let Some(pids) = limits.pids_max {
                    write(&dir.join("pids.max"), &pids.to_string())?;
                }
                let cpu = limits.cpu.map_or_else(
                    || "max 100000".to_string(),
                    |c| format!("{} {}", c.quota_micros, c.period_micros),
                );
                write(&dir.join("cpu.max"), &cpu)?;
            }
            Version::V1 => {
                for dir in &self.dirs {
                    if let Some(bytes) = limits.memory_max
                        && dir.join("memory.limit_in_bytes").exists()
                    {
                        write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                    }
                    if let Some(pids) = limits.pids_max
                        && dir.join("pids.max").exists()
                    {
                        write(&dir.join("pids.max"), &pids.to_string())?;
                    }
                    if dir.join("cpu.cfs_quota_us").exists() {
                        match limits.cpu {
                            Some(c) => {
                                write(
                                    &dir.join("cpu.cfs_period_us"),
                                    &c.period_micros.to_string(),
                                )?;
                                write(&dir.join("cpu.cfs_quota_us"), &c.quota_micros.to_string())?;
                            }
                            None => write(&dir.join("cpu.cfs_quota_us"), "-1")?,
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves the calling process into the group: what a VMM's launcher does just before
    /// it becomes the VMM. A single-threaded process under v1 moves as its one thread
    /// (`tasks`), for which the kernel takes no process-wide lock: that lock's write side
    /// waits for an RCU grace period (0.25 ms against 7-18 ms per move, measured here).
    pub fn join_self(&self) -> Result<(), CgroupError> {
        let single_threaded = threads_of_self() == Some(1);
        for dir in &self.dirs {
            match (self.version, single_threaded) {
                (Version::V1, true) => write(&dir.join("tasks"), "0")?,
                // "0" is the writer itself.
                _ => write(&dir.join("cgroup.procs"), "0")?,
            }
        }
        Ok(())
    }

    /// True when process `pid` is in the group in every mount.
    pub fn holds(&self, pid: u32) -> bool {
        let pid = pid.to_string();
        !self.dirs.is_empty()
            && self.dirs.iter().all(|d| {
                std::fs::read_to_string(d.join("cgroup.procs"))
                    .is_ok_and(|text| text.lines().any(|l| l == pid))
            })
    }

    /// The group as one string, for the process that joins it (an environment variable):
    /// its version, its relative path, then its directories, a line each.
    pub fn to_env(&self) -> String {
        let version = match self.version {
            Version::V1 => "v1",
            Version::V2 => "v2",
        };
        let mut text = format!("{version}\n{}", self.relative);
        for dir in &self.dirs {
            text.push('\n');
            text.push_str(&dir.to_string_lossy());
        }
        text
    }

    /// The group [`Group::to_env`] wrote; `None` for anything else.
    pub fn from_env(text: &str) -> Option<Group> {
        let mut lines = text.lines();
        let version = match lines.next()? {
            "v1" => Version::V1,
            "v2" => Version::V2,
            _ => return None,
        };
        let relative = lines.next()?.to_string();
        let dirs: Vec<PathBuf> = lines.map(PathBuf::from).collect();
        (!dirs.is_empty() && dirs.iter().all(|d| d.is_absolute())).then_some(Group {
            version,
            relative,
            dirs,
        })
    }

    /// True when the group's directory exists.
    pub fn exists(&self) -> bool {
        self.dirs.iter().any(|d| d.is_dir())
    }

    /// The processes in the group.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .dirs
            .iter()
            .filter_map(|d| std::fs::read_to_string(d.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// What the group used so far, and its memory limit.
    pub fn usage(&self) -> Usage {
        usage::read(self.version, &self.dirs)
    }

    /// Kills what is left in the group and removes it (a group already gone is no error).
    /// The caller must not be in it.
    pub fn remove(&self) -> Result<(), CgroupError> {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(5);
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Busy {
                    path: self.dirs[0].clone(),
                    pids,
                });
            }
            for pid in pids {
                if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            // A killed process leaves within a millisecond or two: looked at closely
            // first, since a VM's end (`run --rm`) waits for this.
            std::thread::sleep(if started.elapsed() < Duration::from_millis(50) {
                Duration::from_millis(1)
            } else {
                Duration::from_millis(20)
            });
        }
        for dir in &self.dirs {
            // A group whose last process just exited may be busy for a moment.
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(16) && tries < 50 => {
                        tries += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => return Err(io_error("remove", dir)(e)),
                }
            }
        }
        Ok(())
    }
}

/// The calling process's thread count (`/proc/self/status`).
fn threads_of_self() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))?
        .trim()
        .parse()
        .ok()
}

/// Makes a group directory (no error when it exists).
fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                make_dir(parent)?;
            }
            std::fs::create_dir(dir).or_else(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => Ok(()),
                _ => Err(io_error("create", dir)(e)),
            })
        }
        Err(e) => Err(io_error("create", dir)(e)),
    }
}

/// Hands the v2 controllers VMs use down to `dir`'s children (and to `dir` from its own
/// parent first: every level between the top and a group must pass them on).
fn enable_controllers(dir: &Path) -> Result<(), CgroupError> {
    let available = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map_err(io_error("read", &dir.join("cgroup.controllers")))?;
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    let wanted: Vec<String> = V2_CONTROLLERS
        .iter()
        .filter(|c| available.split_whitespace().any(|a| a == **c))
        .filter(|c| !enabled.split_whitespace().any(|e| e == **c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    write(&dir.join("cgroup.subtree_control"), &wanted.join(" "))
}

fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(path, value).map_err(io_error("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::hierarchy::Mount;

    fn fake(version: Version, mounts: &[(&Path, &[&str])]) -> Hierarchy {
        Hierarchy {
            version,
            mounts: mounts
                .iter()
                .map(|(point, controllers)| Mount {
                    point: point.to_path_buf(),
                    root: "/".into(),
                    controllers: controllers.iter().map(|c| c.to_string()).collect(),
                })
                .collect(),
        }
    }

    /// The files a v2 group is made with, in a directory tree laid out as cgroupfs lays
    /// it out (the kernel's own behaviour is tested as root in the CLI's tests).
    #[test]
    fn a_v2_group_gets_its_controllers_and_limits_written() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path();
        std::fs::write(
            top.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::create_dir(top.join("ignite.slice")).unwrap();
        std::fs::write(
            top.join("ignite.slice/cgroup.controllers"),
            "cpu memory pids\n",
        )
        .unwrap();
        std::fs::write(top.join("ignite.slice/cgroup.subtree_control"), "memory\n").unwrap();
        let hierarchy = fake(Version::V2, &[(top, &[])]);
        let limits = Limits {
            memory_max: Some(1 << 30),
            pids_max: Some(1024),
            cpu: Some(CpuMax::cores(0.5)),
        };
        let group = Group::create(&hierarchy, "/ignite.slice", "vm-1", &limits).unwrap();
        assert_eq!(group.relative, "/ignite.slice/vm-1");
        let read =
            |f: &str| std::fs::read_to_string(top.join("ignite.slice/vm-1").join(f)).unwrap();
        assert_eq!(read("memory.max"), (1u64 << 30).to_string());
        assert_eq!(read("pids.max"), "1024");
        assert_eq!(read("cpu.max"), "50000 100000");
        // Only what the parent lacks, and what it offers, is asked for.
        assert_eq!(
            std::fs::read_to_string(top.join("ignite.slice/cgroup.subtree_control")).unwrap(),
            "+cpu +pids"
        );
        let unlimited =
            Group::create(&hierarchy, "/ignite.slice", "vm-2", &Limits::default()).unwrap();
        assert_eq!(
            std::fs::read_to_string(unlimited.dirs[0].join("cpu.max")).unwrap(),
            "max 100000"
        );
    }

    #[test]
    fn a_group_goes_through_the_environment_and_nothing_else_passes_for_one() {
        let group = Group {
            version: Version::V1,
            relative: "/ignite.slice/vm-1".into(),
            dirs: vec![
                "/sys/fs/cgroup/cpu/ignite.slice/vm-1".into(),
                "/m/vm-1".into(),
            ],
        };
        assert_eq!(Group::from_env(&group.to_env()), Some(group));
        let v2 = Group {
            version: Version::V2,
            relative: "/u/vm-2".into(),
            dirs: vec!["/sys/fs/cgroup/u/vm-2".into()],
        };
        assert_eq!(Group::from_env(&v2.to_env()), Some(v2));
        for bad in ["", "v3\n/x\n/d", "v1\n/x", "v1\n/x\nrelative/dir"] {
            assert_eq!(Group::from_env(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_process_joins_through_its_one_thread_under_v1_and_is_held() {
        // A laid-out v1 group: `tasks` and `cgroup.procs` are plain files here.
        let dir = tempfile::tempdir().unwrap();
        let group = Group {
            version: Version::V1,
            relative: "/vm-1".into(),
            dirs: vec![dir.path().join("cpu/vm-1"), dir.path().join("pids/vm-1")],
        };
        for d in &group.dirs {
            std::fs::create_dir_all(d).unwrap();
        }
        // The test harness runs tests on threads: a process of several threads moves
        // whole, through cgroup.procs.
        assert!(threads_of_self().unwrap() > 1);
        group.join_self().unwrap();
        for d in &group.dirs {
            assert_eq!(
                std::fs::read_to_string(d.join("cgroup.procs")).unwrap(),
                "0"
            );
            assert!(!d.join("tasks").exists());
        }
        assert!(!group.holds(std::process::id()));
        for d in &group.dirs {
            std::fs::write(
                d.join("cgroup.procs"),
                format!("1\n{}\n", std::process::id()),
            )
            .unwrap();
        }
        assert!(group.holds(std::process::id()));
        std::fs::write(group.dirs[1].join("cgroup.procs"), "1\n").unwrap();
        assert!(!group.holds(std::process::id()), "held in one mount only");
    }

    #[test]
    fn a_v1_group_is_made_in_every_controllers_mount() {
        let dir = tempfile::tempdir().unwrap();
        let (memory, cpu) = (dir.path().join("memory"), dir.path().join("cpu"));
        std::fs::create_dir_all(memory.join("ignite.slice/vm-1")).unwrap();
        std::fs::create_dir_all(cpu.join("ignite.slice/vm-1")).unwrap();
        // The kernel makes these files in every new group; here they are laid out ahead.
        std::fs::write(memory.join("ignite.slice/vm-1/memory.limit_in_bytes"), "").unwrap();
        std::fs::write(cpu.join("ignite.slice/vm-1/cpu.cfs_quota_us"), "").unwrap();
        let hierarchy = fake(
            Version::V1,
            &[(&memory, &["memory"]), (&cpu, &["cpu", "cpuacct"])],
        );
        let limits = Limits {
            memory_max: Some(4096 << 20),
            pids_max: Some(64),
            cpu: Some(CpuMax::cores(1.5)),
        };
        let group = Group::create(&hierarchy, "/ignite.slice", "vm-1", &limits).unwrap();
        assert_eq!(group.dirs.len(), 2);
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(
            read(memory.join("ignite.slice/vm-1/memory.limit_in_bytes")),
            (4096u64 << 20).to_string()
        );
        assert_eq!(
            read(cpu.join("ignite.slice/vm-1/cpu.cfs_quota_us")),
            "150000"
        );
        assert_eq!(
            read(cpu.join("ignite.slice/vm-1/cpu.cfs_period_us")),
            "100000"
        );
        // No pids mount: nothing written for it, and no error.
        assert!(!memory.join("ignite.slice/vm-1/pids.max").exists());
    }

    #[test]
    fn a_cpu_share_becomes_quota_and_period() {
        assert_eq!(
            CpuMax::cores(0.5),
            CpuMax {
                quota_micros: 50_000,
                period_micros: 100_000
            }
        );
        assert_eq!(CpuMax::cores(2.0).quota_micros, 200_000);
        assert_eq!(CpuMax::cores(0.001).quota_micros, 1000);
    }
}
