//! The host's cgroup hierarchy, found from `/proc/self/mountinfo`.
//!
//! cgroup v2 ("unified") when its mount offers the memory controller; otherwise v1
//! ("legacy"), one mount per controller (a hybrid host has a v2 mount too, which holds no
//! controller: it is not used). Paths of groups are the same relative path in every
//! mount, so a group is named once (`/ignite.slice/vm-UID`) whatever the version.

use std::path::{Path, PathBuf};

use crate::{CgroupError, PARENT, io_error};

/// The v1 controllers a VM's group is made in (cpuacct for CPU usage, blkio for I/O).
pub const V1_CONTROLLERS: [&str; 5] = ["memory", "cpu", "cpuacct", "pids", "blkio"];
/// The v2 controllers enabled for VM groups (io only where the kernel has it).
pub const V2_CONTROLLERS: [&str; 4] = ["memory", "cpu", "pids", "io"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// A mounted hierarchy: where it is mounted, and which part of it the mount shows (a
/// cgroup namespace or a bind mount shows a subtree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    /// The mount's root within the hierarchy (`/` when it shows all of it).
    pub root: PathBuf,
    /// v1: the controllers this mount carries; v2: empty.
    pub controllers: Vec<String>,
}

/// The hierarchy VM groups are made in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub version: Version,
    /// v2: the one mount; v1: one mount per controller VMs use that is mounted (two
    /// controllers may share one, as `cpu,cpuacct`).
    pub mounts: Vec<Mount>,
}

impl Hierarchy {
    /// This host's hierarchy.
    pub fn detect() -> Result<Hierarchy, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let text = std::fs::read_to_string(path).map_err(io_error("read", path))?;
        let mounts = parse_mountinfo(&text);
        let unified = mounts.iter().find(|(kind, m)| {
            *kind == Version::V2
                && std::fs::read_to_string(m.point.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
        });
        if let Some((_, mount)) = unified {
            return Ok(Hierarchy {
                version: Version::V2,
                mounts: vec![mount.clone()],
            });
        }
        let legacy = legacy_mounts(&mounts);
        if legacy
            .iter()
            .any(|m| m.controllers.iter().any(|c| c == "memory"))
        {
            return Ok(Hierarchy {
                version: Version::V1,
                mounts: legacy,
            });
        }
        Err(CgroupError::NotMounted)
    }

    /// The directory of the group at `relative` (`/ignite.slice/vm-UID`) in each mount
    /// (one for v2), skipping mounts that do not show it.
    pub fn dirs_of(&self, relative: &str) -> Vec<PathBuf> {
        self.mounts
            .iter()
            .filter_map(|m| dir_in_mount(m, relative))
            .collect()
    }

    /// Where the calling process's VM groups go, as a relative path (`/ignite.slice`):
    /// at the top for root; for anyone else in the highest subtree of their own cgroup
    /// they may write to (systemd's delegation, v2 only). `uid`: the caller's.
    pub fn parent_for(&self, uid: u32) -> Result<String, CgroupError> {
        if uid == 0 {
            return Ok(format!("/{PARENT}"));
        }
        if self.version == Version::V1 {
            return Err(CgroupError::NotDelegated(
                "this host has cgroup v1, whose groups only root may create: \
                 the VM runs without a cgroup of its own (run it as root, or move the \
                 host to cgroup v2)"
                    .into(),
            ));
        }
        let own = own_cgroup(Version::V2)?;
        let mount = &self.mounts[0];
        // The highest writable ancestor: a process may only move between groups under a
        // common ancestor it may write to.
        let mut candidate: Option<String> = None;
        let mut path = own.clone();
        loop {
            let delegated = dir_in_mount(mount, &path).is_some_and(|dir| {
                ["cgroup.procs", "cgroup.subtree_control"]
                    .iter()
                    .all(|f| writable(&dir.join(f)))
            });
            if !delegated {
                break;
            }
            candidate = Some(path.clone());
            match Path::new(&path).parent() {
                Some(parent) if path != "/" => path = parent.to_string_lossy().into_owned(),
                _ => break,
            }
        }
        match candidate {
            // Not the own group itself: a group that holds processes cannot hand
            // controllers to its children, so the delegated group's top is taken
            // only when it is an ancestor.
            Some(top) if top != own => Ok(format!("{}/{PARENT}", top.trim_end_matches('/'))),
            _ => Err(CgroupError::NotDelegated(format!(
                "no part of the cgroup tree is delegated to this user (its cgroup is {own}): \
                 the VM runs without a cgroup of its own; start it from a systemd user \
                 service or `systemd-run --user --scope` to give it one"
            ))),
        }
    }
}

/// The calling process's own group (relative path) in the hierarchy of `version`; for v1,
/// the memory controller's.
pub fn own_cgroup(version: Version) -> Result<String, CgroupError> {
    let path = Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(path).map_err(io_error("read", path))?;
    own_cgroup_in(&text, version).ok_or(CgroupError::NotMounted)
}

/// [`own_cgroup`] from the text of `/proc/self/cgroup`.
pub fn own_cgroup_in(text: &str, version: Version) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let wanted = match version {
            Version::V2 => id == "0" && controllers.is_empty(),
            Version::V1 => controllers.split(',').any(|c| c == "memory"),
        };
        wanted.then(|| path.to_string())
    })
}

fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// The directory of `relative` in `mount`, when the mount shows it.
fn dir_in_mount(mount: &Mount, relative: &str) -> Option<PathBuf> {
    let relative = Path::new(relative);
    let inside = relative.strip_prefix(&mount.root).ok()?;
    // No `..` may lead out of the mount.
    if inside
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return None;
    }
    Some(mount.point.join(inside))
}

/// The v1 mounts of the controllers VMs use, each mount once.
fn legacy_mounts(mounts: &[(Version, Mount)]) -> Vec<Mount> {
    let mut chosen: Vec<Mount> = Vec::new();
    for (kind, mount) in mounts {
        if *kind != Version::V1 {
            continue;
        }
        let used = mount
            .controllers
            .iter()
            .any(|c| V1_CONTROLLERS.contains(&c.as_str()));
        if used && !chosen.iter().any(|m| m.controllers == mount.controllers) {
            chosen.push(mount.clone());
        }
    }
    chosen
}

/// The cgroup mounts in `/proc/self/mountinfo`'s text.
pub fn parse_mountinfo(text: &str) -> Vec<(Version, Mount)> {
    text.lines()
        .filter_map(|line| {
            // ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER
            let (before, after) = line.split_once(" - ")?;
            let fields: Vec<&str> = before.split(' ').collect();
            let after: Vec<&str> = after.split(' ').collect();
            let (root, point) = (fields.get(3)?, fields.get(4)?);
            let version = match *after.first()? {
                "cgroup2" => Version::V2,
                "cgroup" => Version::V1,
                _ => return None,
            };
            let controllers = match version {
                Version::V2 => Vec::new(),
                Version::V1 => after
                    .get(2)?
                    .split(',')
                    .filter(|o| V1_CONTROLLERS.contains(o) || *o == "net_cls" || *o == "devices")
                    .map(str::to_string)
                    .collect(),
            };
            Some((
                version,
                Mount {
                    point: PathBuf::from(unescape(point)),
                    root: PathBuf::from(unescape(root)),
                    controllers,
                },
            ))
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && let Ok(v) = u8::from_str_radix(&field[i + 1..i + 4], 8)
        {
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 1 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 /process_api/abc /sys/fs/cgroup/memory rw,nosuid shared:15 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/pids rw,nosuid shared:16 - cgroup cgroup rw,pids
36 30 0:32 / /sys/fs/cgroup/devices rw,nosuid shared:17 - cgroup cgroup rw,devices
37 30 0:33 / /sys/fs/cgroup/with\\040space rw - cgroup cgroup rw,blkio
";

    #[test]
    fn mountinfo_gives_each_cgroup_mount_with_its_controllers_and_root() {
        let mounts = parse_mountinfo(HYBRID);
        assert_eq!(mounts.len(), 6, "{mounts:?}");
        assert_eq!(mounts[0].0, Version::V2);
        assert_eq!(mounts[0].1.point, PathBuf::from("/sys/fs/cgroup/unified"));
        assert_eq!(mounts[1].1.controllers, ["cpu", "cpuacct"]);
        assert_eq!(mounts[2].1.root, PathBuf::from("/process_api/abc"));
        assert_eq!(
            mounts[5].1.point,
            PathBuf::from("/sys/fs/cgroup/with space")
        );
        let legacy = legacy_mounts(&mounts);
        let points: Vec<_> = legacy
            .iter()
            .map(|m| m.point.display().to_string())
            .collect();
        assert_eq!(
            points,
            [
                "/sys/fs/cgroup/cpu,cpuacct",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/pids",
                "/sys/fs/cgroup/with space"
            ]
        );
    }

    #[test]
    fn a_group_is_found_only_inside_what_its_mount_shows() {
        let mount = Mount {
            point: "/sys/fs/cgroup/memory".into(),
            root: "/process_api/abc".into(),
            controllers: vec!["memory".into()],
        };
        assert_eq!(
            dir_in_mount(&mount, "/process_api/abc/ignite.slice/vm-1"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/ignite.slice/vm-1"))
        );
        assert_eq!(dir_in_mount(&mount, "/ignite.slice/vm-1"), None);
        assert_eq!(dir_in_mount(&mount, "/process_api/abc/../x"), None);
        let whole = Mount {
            root: "/".into(),
            ..mount
        };
        assert_eq!(
            dir_in_mount(&whole, "/ignite.slice/vm-1"),
            Some(PathBuf::from("/sys/fs/cgroup/memory/ignite.slice/vm-1"))
        );
    }

    #[test]
    fn the_own_group_is_read_per_version() {
        let text = "12:pids:/user.slice\n4:memory:/process_api/abc\n0::/user.slice/user-1000.slice/session-3.scope\n";
        assert_eq!(
            own_cgroup_in(text, Version::V1).as_deref(),
            Some("/process_api/abc")
        );
        assert_eq!(
            own_cgroup_in(text, Version::V2).as_deref(),
            Some("/user.slice/user-1000.slice/session-3.scope")
        );
        assert_eq!(own_cgroup_in("1:cpu:/\n", Version::V1), None);
    }
}
