//! How a VM's VMM is held in (the README's "Confinement"): the VM's own control group
//! (memory, processes and CPU time), the unprivileged user its VMM becomes (VMs started
//! by root), and the VMM's system-call filter.
//!
//! The supervisor makes the VM's group; the VMM's launcher (`vm exec-vmm`) joins it just
//! before it becomes the VMM, and the supervisor removes the group when the VM ends; the repair after a crash removes what a killed
//! supervisor left. Users come from a range of host uids (the Configuration's
//! `spec.vmmUsers`), one per running VM, claimed by a file in the state root that names
//! the claiming supervisor (a claim whose supervisor is gone is taken over).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ignite_api::{Accel, ProcessRef, Vm};
use ignite_cgroup::group::CpuMax;
use ignite_cgroup::{Group, Hierarchy, Limits};
use ignite_vmm::{Confinement, VmmUser};
use serde::{Deserialize, Serialize};

use super::process;

/// The VMM's own memory beside the guest's: QEMU's heap, libraries, device state and I/O
/// buffers. Measured: a 128 MB container VM's QEMU holds ~60 MiB beyond its guest memory
/// and translation cache; four times that leaves room for I/O bursts.
const VMM_OVERHEAD_MIB: u64 = 256;
/// QEMU's translation cache under TCG when none is set: it reserves 1 GiB and keeps what
/// the guest's code fills.
const QEMU_DEFAULT_TRANSLATION_CACHE_MIB: u64 = 1024;
/// Processes and threads of a VM's VMM and its watcher (QEMU's I/O worker pool alone may
/// reach 64 threads).
const PIDS_MAX: u64 = 1024;

/// The host uids VMMs run as, one per running VM started by root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmmUsers {
    pub first: u32,
    pub count: u32,
}

impl Default for VmmUsers {
    /// In the range systemd leaves unused (1879048192-2147483647: above container ranges
    /// such as /etc/subuid's and nspawn's, below 2^31, which many tools mishandle).
    fn default() -> Self {
        VmmUsers {
            first: 1_900_000_000,
            count: 65_536,
        }
    }
}

impl VmmUsers {
    /// The Configuration's `spec.vmmUsers`, checked.
    pub fn from_configuration(
        configuration: Option<&ignite_api::Configuration>,
    ) -> Result<VmmUsers, String> {
        let Some(range) = configuration.and_then(|c| c.spec.vmm_users.as_ref()) else {
            return Ok(VmmUsers::default());
        };
        let users = VmmUsers {
            first: range.first,
            count: range.count,
        };
        if users.first < 1000 || users.count == 0 || users.first.checked_add(users.count).is_none()
        {
            return Err(format!(
                "spec.vmmUsers {{first: {}, count: {}}} must be a non-empty range of uids from 1000 \
                 that fits in 32 bits",
                users.first, users.count
            ));
        }
        Ok(users)
    }
}

/// What a VM's run holds: its group (left and removed on drop), its VMM's user, and
/// the disks handed to that user (given back to root on drop).
pub struct Confined {
    group: Option<Group>,
    user: Option<UserClaim>,
    given: Vec<PathBuf>,
    /// Disks the VMM inherits open, from [`FIRST_INHERITED_FD`] on, in order.
    inherited: Vec<PathBuf>,
    /// What the VMM is told.
    pub vmm: Confinement,
}

impl Confined {
    /// The group's path for the VM's status.
    pub fn cgroup(&self) -> Option<String> {
        self.group.as_ref().map(|g| g.relative.clone())
    }

    pub fn user(&self) -> Option<u32> {
        self.user.as_ref().map(|c| c.user.uid)
    }

    /// The group for the VMM's launcher to join (`Group::to_env`), if the VM has one.
    pub fn vmm_group(&self) -> Option<String> {
        self.group.as_ref().map(Group::to_env)
    }

    /// Checks that the started VMM joined the VM's group. One that could not (its
    /// launcher logged why) runs without: the group is given up, left to the repair if
    /// something is in it, and the VM's status names none.
    pub fn check_vmm_joined(&mut self, vmm_pid: u32) {
        if let Some(group) = &self.group
            && !group.holds(vmm_pid)
        {
            tracing::warn!(
                "the VM runs without a cgroup of its own: its VMM is not in {}",
                group.relative
            );
            for dir in &group.dirs {
                let _ = std::fs::remove_dir(dir);
            }
            self.group = None;
        }
    }
}

impl Confined {
    /// Hands the VM's own writable disk files (those in `vm_dir`) to the VMM's user, 0600,
    /// and has the VMM inherit them open: QEMU opens its disks as root, but reopens them by
    /// name when it deactivates and reactivates them around a saved state, as the user it
    /// has become. Through `/proc/self/fd/N` that name needs no search permission on the
    /// state root's directories (which stay root's alone), only the file's own. Nothing
    /// outside the VM's directory is handed over.
    pub fn give_disks(&mut self, vm_dir: &Path, disks: &mut [ignite_vmm::DiskSpec]) {
        let Some(user) = self.vmm.user else {
            return;
        };
        for disk in disks
            .iter_mut()
            .filter(|d| !d.read_only && d.path.parent() == Some(vm_dir))
        {
            match chown_private(&disk.path, user.uid, user.gid) {
                Ok(()) => {
                    self.given.push(disk.path.clone());
                    // Reopened through the descriptor it inherits, the disk needs no
                    // search permission on the state root's directories, wherever the
                    // root is (a relative backing file name would not resolve there).
                    let backing_absolute =
                        ignite_disk::backing_file(&disk.path).is_none_or(|b| b.is_absolute());
                    // Listed one per line for `vm exec-vmm`.
                    let one_line = !disk.path.as_os_str().as_encoded_bytes().contains(&b'\n');
                    if backing_absolute && one_line {
                        disk.inherited_fd = Some(FIRST_INHERITED_FD + self.inherited.len() as u32);
                        self.inherited.push(disk.path.clone());
                    }
                }
                Err(e) => tracing::warn!(
                    "cannot hand {} to the VMM's user {}: {e} (saving the VM's state will fail)",
                    disk.path.display(),
                    user.uid
                ),
            }
        }
    }

    /// What `vm exec-vmm` opens for the VMM before it execs it: `FD=PATH` pairs, one per
    /// line (see [`open_inherited`]); `None` when there is nothing.
    pub fn inherited_fds(&self) -> Option<std::ffi::OsString> {
        if self.inherited.is_empty() {
            return None;
        }
        let mut list = std::ffi::OsString::new();
        for (i, path) in self.inherited.iter().enumerate() {
            if i > 0 {
                list.push("\n");
            }
            list.push(format!("{}=", FIRST_INHERITED_FD + i as u32));
            list.push(path);
        }
        Some(list)
    }

    /// The VMM does not change user after all (a driver without a way to, such as
    /// Firecracker without its jailer): the claim is given back.
    pub fn keep_user_unused(&mut self) {
        self.user = None;
        self.vmm.user = None;
    }
}

/// The first descriptor a VMM inherits its disks at (far above what a fresh process has
/// open).
pub const FIRST_INHERITED_FD: u32 = 100;

/// In `vm exec-vmm`, before the exec: opens each `FD=PATH` of [`Confined::inherited_fds`]
/// (read-write, no link followed) at exactly that descriptor, left open across the exec.
/// The descriptors are returned, to be held until then.
pub fn open_inherited(list: &std::ffi::OsStr) -> std::io::Result<Vec<std::os::fd::OwnedFd>> {
    use std::os::unix::ffi::OsStrExt;
    let mut held = Vec::new();
    for entry in list.as_bytes().split(|b| *b == b'\n') {
        let text = std::ffi::OsStr::from_bytes(entry);
        let (fd, path) = entry
            .iter()
            .position(|b| *b == b'=')
            .and_then(|i| {
                let fd: u32 = std::str::from_utf8(&entry[..i]).ok()?.parse().ok()?;
                Some((fd, Path::new(std::ffi::OsStr::from_bytes(&entry[i + 1..]))))
            })
            .ok_or_else(|| std::io::Error::other(format!("{text:?} is not FD=PATH")))?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(|e| std::io::Error::other(format!("cannot open {}: {e}", path.display())))?;
        let placed = rustix::io::fcntl_dupfd_cloexec(&file, fd as i32)?;
        let at = std::os::fd::AsRawFd::as_raw_fd(&placed);
        if at != fd as i32 {
            return Err(std::io::Error::other(format!(
                "descriptor {fd} is taken (got {at}) for {}",
                path.display()
            )));
        }
        rustix::io::fcntl_setfd(&placed, rustix::io::FdFlags::empty())?;
        held.push(placed);
    }
    Ok(held)
}

/// A file handed to a user: owner and mode 0600, without following a link.
fn chown_private(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let file = open_no_follow(path)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    fchown_mode(&file, uid, gid, 0o600)
}

fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32)
        .open(path)
}

fn fchown_mode(file: &std::fs::File, uid: u32, gid: u32, mode: u32) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    rustix::fs::fchown(
        file.as_fd(),
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )?;
    rustix::fs::fchmod(file.as_fd(), rustix::fs::Mode::from_raw_mode(mode))?;
    Ok(())
}

impl Drop for Confined {
    fn drop(&mut self) {
        for path in &self.given {
            if let Err(e) = chown_private(path, 0, 0) {
                tracing::warn!("cannot give {} back to root: {e}", path.display());
            }
        }
        if let Some(group) = &self.group
            && let Err(e) = group.remove()
        {
            tracing::warn!("cannot remove the VM's cgroup: {e}");
        }
    }
}

/// The VM's limits: its memory plus the VMM's own (and the translation cache under TCG),
/// a cap on processes, and its CPU quota if it has one.
pub fn limits(vm: &Vm, accel: Accel, translation_cache_mib: Option<u32>) -> Limits {
    let guest_mib = vm.spec.memory.unwrap_or(ignite_api::defaults::MEMORY).mib();
    let cache_mib = match accel {
        Accel::Tcg => translation_cache_mib.map_or(QEMU_DEFAULT_TRANSLATION_CACHE_MIB, u64::from),
        Accel::Kvm => 0,
    };
    Limits {
        memory_max: Some((guest_mib + VMM_OVERHEAD_MIB + cache_mib) << 20),
        pids_max: Some(PIDS_MAX),
        cpu: vm.spec.cpu_quota.map(CpuMax::cores),
    }
}

/// The group's name for a VM.
pub fn group_name(uid: &str) -> String {
    format!("vm-{uid}")
}

/// Makes the VM's group (for its VMM to join) and claims its VMM's user. What the host
/// does not allow (no cgroup delegation, not root) is warned about and left out: the VM
/// still runs, as before confinement existed.
pub fn enter(
    vm: &Vm,
    accel: Accel,
    translation_cache_mib: Option<u32>,
    users: VmmUsers,
) -> Confined {
    let uid = super::uid_of(vm);
    let euid = rustix::process::geteuid().as_raw();
    let group = match make_group(vm, uid.as_str(), euid, accel, translation_cache_mib) {
        Ok(group) => Some(group),
        Err(e) => {
            tracing::warn!("the VM runs without a cgroup of its own: {e}");
            None
        }
    };
    let user = if euid == 0 {
        match claim_user(Path::new(CLAIMS_DIR), users, uid.as_str()) {
            Ok(claim) => Some(claim),
            Err(e) => {
                tracing::warn!("the VMM runs as root: {e}");
                None
            }
        }
    } else {
        None
    };
    let vmm = Confinement {
        user: user.as_ref().map(|c| c.user),
        seccomp: true,
    };
    Confined {
        group,
        user,
        given: Vec::new(),
        inherited: Vec::new(),
        vmm,
    }
}

fn make_group(
    vm: &Vm,
    uid: &str,
    euid: u32,
    accel: Accel,
    translation_cache_mib: Option<u32>,
) -> Result<Group, ignite_cgroup::CgroupError> {
    let hierarchy = Hierarchy::detect()?;
    let parent = hierarchy.parent_for(euid)?;
    Group::create(
        &hierarchy,
        &parent,
        &group_name(uid),
        &limits(vm, accel, translation_cache_mib),
    )
}

/// Removes the group a VM's killed supervisor left (its processes first).
pub fn remove_left_group(relative: &str) {
    let Ok(hierarchy) = Hierarchy::detect() else {
        return;
    };
    let group = Group::at(&hierarchy, relative);
    if group.exists()
        && let Err(e) = group.remove()
    {
        tracing::warn!("cannot remove the cgroup {relative} of a crashed VM: {e}");
    }
}

/// Gives back the VMM user a VM's killed supervisor held (unless a live one holds it
/// meanwhile).
pub fn release_left_user(user: u32) {
    let path = Path::new(CLAIMS_DIR).join(user.to_string());
    if read_claim(&path).is_some_and(|c| !process::is_alive(&c.supervisor)) {
        let _ = std::fs::remove_file(&path);
    }
}

/// What a VM's group used, for `ignite stats` and `/metrics`.
pub fn usage_of(relative: &str) -> Option<ignite_cgroup::Usage> {
    let hierarchy = Hierarchy::detect().ok()?;
    let group = Group::at(&hierarchy, relative);
    group.exists().then(|| group.usage())
}

/// The claims' directory: one for the host, whatever the state root (two roots must not
/// hand one user to two VMs), in /run, so a reboot forgets every claim.
pub const CLAIMS_DIR: &str = "/run/ignite/vmm-users";

/// A claimed VMM user, given back (its file removed) on drop.
#[derive(Debug)]
pub struct UserClaim {
    path: PathBuf,
    pub user: VmmUser,
}

impl Drop for UserClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a claim file holds: who claimed the user.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClaimRecord {
    vm: String,
    supervisor: ProcessRef,
}

/// Claims the lowest free user of `users` for the VM `vm_uid`, for the calling process.
pub fn claim_user(dir: &Path, users: VmmUsers, vm_uid: &str) -> Result<UserClaim, String> {
    use std::os::unix::fs::DirBuilderExt;
    // The parent as any other directory of /run (ignited's socket is there too), the
    // claims root's alone.
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let lock_path = dir.join(".lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let me = process::current();
    for index in 0..users.count {
        let uid = users.first + index;
        let path = dir.join(uid.to_string());
        if let Some(holder) = read_claim(&path) {
            if process::is_alive(&holder.supervisor) {
                continue;
            }
            // Its supervisor is gone (a crash): the user is free again.
            let _ = std::fs::remove_file(&path);
        }
        let record = ClaimRecord {
            vm: vm_uid.to_string(),
            supervisor: me,
        };
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(&serde_json::to_vec(&record).map_err(std::io::Error::other)?)
            });
        match written {
            Ok(()) => {
                return Ok(UserClaim {
                    path,
                    user: VmmUser { uid, gid: uid },
                });
            }
            Err(e) => return Err(format!("cannot claim {}: {e}", path.display())),
        }
    }
    Err(format!(
        "all {} VMM users from {} are taken by running VMs: widen the Configuration's \
         spec.vmmUsers",
        users.count, users.first
    ))
}

fn read_claim(path: &Path) -> Option<ClaimRecord> {
    use std::io::Read;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .ok()?;
    let mut text = Vec::new();
    file.take(4096).read_to_end(&mut text).ok()?;
    match serde_json::from_slice(&text) {
        Ok(record) => Some(record),
        // Unreadable: held by nobody that can be checked; taken over.
        Err(_) => Some(ClaimRecord {
            vm: String::new(),
            supervisor: ProcessRef {
                pid: 0,
                start_ticks: 0,
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_claimed_lowest_first_and_a_dead_supervisors_claim_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let claims = dir.path().join("vmm-users");
        let users = VmmUsers {
            first: 5000,
            count: 2,
        };
        let a = claim_user(&claims, users, "a").unwrap();
        let b = claim_user(&claims, users, "b").unwrap();
        assert_eq!((a.user.uid, b.user.uid), (5000, 5001));
        assert_eq!(a.user.gid, 5000);
        let full = claim_user(&claims, users, "c").unwrap_err();
        assert!(full.contains("spec.vmmUsers"), "{full}");
        drop(a);
        assert_eq!(claim_user(&claims, users, "c").unwrap().user.uid, 5000);
        // A claim whose supervisor is gone (a pid that is not running).
        std::fs::write(
            claims.join("5000"),
            r#"{"vm":"x","supervisor":{"pid":4194303,"startTicks":1}}"#,
        )
        .unwrap();
        let taken = claim_user(&claims, users, "d").unwrap();
        assert_eq!(taken.user.uid, 5000);
        let text = std::fs::read_to_string(claims.join("5000")).unwrap();
        assert!(text.contains("\"vm\":\"d\""), "{text}");
    }

    #[test]
    fn the_inherited_disks_list_names_each_descriptor_and_is_opened_at_them() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.raw"), dir.path().join("b.raw"));
        std::fs::write(&a, b"a").unwrap();
        std::fs::write(&b, b"b").unwrap();
        let mut confined = Confined {
            group: None,
            user: None,
            given: Vec::new(),
            inherited: vec![a.clone(), b.clone()],
            vmm: Confinement::default(),
        };
        let list = confined.inherited_fds().unwrap();
        assert_eq!(
            list.to_string_lossy(),
            format!("100={}\n101={}", a.display(), b.display())
        );
        let held = open_inherited(&list).unwrap();
        let numbers: Vec<i32> = held.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
        assert_eq!(numbers, [100, 101]);
        for fd in &held {
            // Left open across an exec.
            assert!(rustix::io::fcntl_getfd(fd).unwrap().is_empty());
        }
        assert_eq!(std::fs::read_link("/proc/self/fd/101").unwrap(), b);
        drop(held);
        assert!(open_inherited(std::ffi::OsStr::new("x")).is_err());
        std::os::unix::fs::symlink(&a, dir.path().join("link")).unwrap();
        let link = format!("102={}", dir.path().join("link").display());
        assert!(
            open_inherited(std::ffi::OsStr::new(&link)).is_err(),
            "a link is not followed"
        );
        confined.inherited.clear();
        assert_eq!(confined.inherited_fds(), None);
    }

    #[test]
    fn limits_cover_guest_memory_vmm_and_translation_cache() {
        let mut vm = Vm::new(ignite_api::ObjectMeta::default(), Default::default());
        vm.spec.memory = Some("128MB".parse().unwrap());
        let kvm = limits(&vm, Accel::Kvm, None);
        assert_eq!(kvm.memory_max, Some((128 + VMM_OVERHEAD_MIB) << 20));
        assert_eq!(kvm.cpu, None);
        assert_eq!(kvm.pids_max, Some(PIDS_MAX));
        let tcg = limits(&vm, Accel::Tcg, Some(64));
        assert_eq!(tcg.memory_max, Some((128 + VMM_OVERHEAD_MIB + 64) << 20));
        vm.spec.cpu_quota = Some(0.5);
        assert_eq!(
            limits(&vm, Accel::Tcg, None).cpu,
            Some(CpuMax {
                quota_micros: 50_000,
                period_micros: 100_000
            })
        );
        assert_eq!(
            limits(&vm, Accel::Tcg, None).memory_max,
            Some((128 + VMM_OVERHEAD_MIB + 1024) << 20)
        );
    }

    #[test]
    fn the_uid_range_comes_from_the_configuration_and_is_checked() {
        assert_eq!(
            VmmUsers::from_configuration(None).unwrap(),
            VmmUsers::default()
        );
        let mut c = ignite_api::Configuration::default();
        c.spec.vmm_users = Some(ignite_api::IdRange {
            first: 0,
            count: 10,
        });
        assert!(VmmUsers::from_configuration(Some(&c)).is_err());
        c.spec.vmm_users = Some(ignite_api::IdRange {
            first: 300_000,
            count: 10,
        });
        assert_eq!(
            VmmUsers::from_configuration(Some(&c)).unwrap(),
            VmmUsers {
                first: 300_000,
                count: 10
            }
        );
    }
}
