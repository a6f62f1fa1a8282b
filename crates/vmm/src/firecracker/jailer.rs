//! Firecracker under its jailer: a chroot per VM, the VM's own unprivileged user, and
//! only the files the machine needs inside.
//!
//! The jailer (Firecracker 1.16's `jailer`, from the same release as the `firecracker`
//! binary) is started by the supervisor in place of Firecracker, as
//! `jailer --id ID --exec-file FIRECRACKER --uid U --gid G --chroot-base-dir BASE -- ARGS`.
//! It copies Firecracker into `BASE/firecracker/ID/root` (the chroot), makes `/dev/kvm`,
//! `/dev/net/tun`, `/dev/urandom` (and `/dev/userfaultfd`) there, pivots into it in a new
//! mount namespace, drops to U:G and execs Firecracker in the same process, so the
//! supervisor's child stays the VMM. What it is not asked to do, on purpose:
//! - `--daemonize`, `--new-pid-ns`: the supervisor owns the process and tracks its pid;
//! - `--netns`: `vm exec-vmm` has already entered the VM's network namespace;
//! - `--cgroup`, `--cgroup-version`, `--parent-cgroup`: with no `--cgroup` and the default
//!   version 1 the jailer neither creates nor joins a cgroup (with version 2 it would move
//!   itself into `<cgroup2 root>/firecracker` when that exists), so Firecracker stays in
//!   the supervisor's per-VM cgroup, which it inherits.
//!
//! The chroot's base is `jail/` in the VM's directory, so the VM's own files (its root
//! disk, initramfs, Firecracker's log and metrics) go in as hard links. Files other VMs
//! share (the kernel, read-only disks, a snapshot's state and memory) are copied instead:
//! giving a shared inode to one VM's user would take it from the others. Everything in
//! the chroot is the VM's user's, mode 0600, and made without following a link. The
//! supervisor's paths for the API and vsock sockets become links into the chroot.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::VmmUser;

pub const JAILER_BINARY: &str = "jailer";
/// The jails' base directory in a VM's directory.
pub const JAIL_DIR: &str = "jail";
/// The API socket, as Firecracker sees it in its chroot.
pub const API_SOCKET: &str = "vmm.sock";
/// The vsock's unix socket (the guest agent's channel), as Firecracker sees it.
pub const VSOCK_SOCKET: &str = "agent.sock";
/// A snapshot being written, in the chroot, until it is moved to the snapshot's files.
pub const SAVED_STATE: &str = "saved-state";
pub const SAVED_MEMORY: &str = "saved-memory";

/// The jailer that goes with `firecracker`: the one beside it (a release unpacks both
/// into one directory), else `jailer` in PATH.
pub fn locate(firecracker: &Path) -> Option<PathBuf> {
    firecracker
        .parent()
        .map(|dir| dir.join(JAILER_BINARY))
        .filter(|p| super::is_executable(p))
        .or_else(|| crate::find_in_path(JAILER_BINARY))
}

/// How a file goes into the chroot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// The VM's own file: a hard link where on the same filesystem, else a copy.
    Own,
    /// A file other VMs may use too: always a copy.
    Shared,
}

/// One VM's jail: `base/EXEC/id/root` is the chroot, where EXEC is the name of the
/// Firecracker binary (after links: the jailer's `--exec-file` is canonicalised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    base: PathBuf,
    exec_name: String,
    id: String,
    user: VmmUser,
}

impl Jail {
    /// The jail of the VM whose files are in `vm_dir`, running `firecracker`: named after
    /// that directory (the VM's uid) where the jailer accepts the name, else `vm` (there
    /// is one jail per base anyway).
    pub fn in_vm_dir(vm_dir: &Path, user: VmmUser, firecracker: &Path) -> Jail {
        let name = vm_dir
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| valid_id(n))
            .unwrap_or("vm");
        let exec = std::fs::canonicalize(firecracker).unwrap_or_else(|_| firecracker.into());
        let exec_name = exec
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| super::FIRECRACKER_BINARY.to_string());
        Jail {
            base: vm_dir.join(JAIL_DIR),
            exec_name,
            id: name.to_string(),
            user,
        }
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The chroot, as the host sees it.
    pub fn root(&self) -> PathBuf {
        self.base.join(&self.exec_name).join(&self.id).join("root")
    }

    /// `name` in the chroot, as the host sees it.
    pub fn host_path(&self, name: &str) -> PathBuf {
        self.root().join(name)
    }

    /// `name` in the chroot, as Firecracker sees it.
    pub fn jailed_path(name: &str) -> PathBuf {
        Path::new("/").join(name)
    }

    /// The jailer's command line that runs `firecracker` with `args` in this jail.
    pub fn command(
        &self,
        jailer: &Path,
        firecracker: &Path,
        args: Vec<OsString>,
    ) -> (PathBuf, Vec<OsString>) {
        let mut out: Vec<OsString> = vec![
            "--id".into(),
            self.id.clone().into(),
            "--exec-file".into(),
            firecracker.as_os_str().to_owned(),
            "--uid".into(),
            self.user.uid.to_string().into(),
            "--gid".into(),
            self.user.gid.to_string().into(),
            "--chroot-base-dir".into(),
            self.base.as_os_str().to_owned(),
            "--".into(),
        ];
        out.extend(args);
        (jailer.to_path_buf(), out)
    }

    /// Makes the base directory (the jailer wants it to exist), root's only: the jailed
    /// process never needs to cross it, its root is the chroot itself.
    pub fn create_base(&self) -> io::Result<()> {
        match std::fs::DirBuilder::new().mode(0o700).create(&self.base) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }

    /// Makes `source` available in the chroot as `name`, the VM user's with mode 0600,
    /// and returns the path Firecracker sees. Neither `source` nor the destination may be
    /// a link, and the destination must not exist yet.
    pub fn place(&self, source: &Path, name: &str, how: Placement) -> io::Result<PathBuf> {
        let dest = self.host_path(name);
        place_file(source, &dest, how, self.user).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "cannot put {} into Firecracker's jail as {}: {e}",
                    source.display(),
                    dest.display()
                ),
            )
        })?;
        Ok(Jail::jailed_path(name))
    }

    /// Leaves a link at `at` (the supervisor's path of a socket) to the socket `name`
    /// Firecracker makes in its chroot, and returns the path Firecracker is given.
    pub fn socket_link(&self, name: &str, at: &Path) -> io::Result<PathBuf> {
        let target = self.host_path(name);
        match std::fs::symlink_metadata(at) {
            // A socket or link left by an earlier run; never a directory or a file.
            Ok(m) if m.file_type().is_symlink() || m.file_type().is_socket() => {
                std::fs::remove_file(at)?
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} exists and is not a socket: cannot link it into Firecracker's jail",
                        at.display()
                    ),
                ));
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::os::unix::fs::symlink(&target, at).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot link {} to {}: {e}", at.display(), target.display()),
            )
        })?;
        Ok(Jail::jailed_path(name))
    }
}

/// What the jailer accepts as `--id`: 1 to 64 alphanumerics and hyphens.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The chroot of a running VM whose API socket is `control`: the link's directory, when
/// `control` is a link (the VM runs jailed).
pub fn root_of_control(control: &Path) -> Option<PathBuf> {
    let meta = std::fs::symlink_metadata(control).ok()?;
    if !meta.file_type().is_symlink() {
        return None;
    }
    std::fs::read_link(control)
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// Opens a regular file without following a link.
fn open_regular(path: &Path, write: bool) -> io::Result<File> {
    // Non-blocking: a FIFO put in a file's place must not hang the opener.
    let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == rustix::io::Errno::LOOP.raw_os_error() => io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is a symbolic link", path.display()),
            ),
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(file)
}

/// A new file at `path` (never an existing one or a link), owner-only.
fn create_new(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

fn own(file: &File, user: VmmUser) -> io::Result<()> {
    std::os::unix::fs::fchown(file, Some(user.uid), Some(user.gid))?;
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
}

/// [`Jail::place`] without the error's context.
fn place_file(source: &Path, dest: &Path, how: Placement, user: VmmUser) -> io::Result<()> {
    // Writable: a hard link shares the inode, whose owner and mode change with it; a
    // copy only reads. Read-only disks are opened read-only by Firecracker too.
    let file = open_regular(source, false)?;
    if how == Placement::Own {
        // linkat without AT_SYMLINK_FOLLOW links a link itself, never its target; the
        // link must then be the file opened above (not a link, nor a file put there
        // since), or it goes again.
        match rustix::fs::linkat(
            rustix::fs::CWD,
            source,
            rustix::fs::CWD,
            dest,
            rustix::fs::AtFlags::empty(),
        ) {
            Ok(()) => {
                let opened = file.metadata()?;
                let same = std::fs::symlink_metadata(dest)
                    .is_ok_and(|m| m.dev() == opened.dev() && m.ino() == opened.ino());
                if !same {
                    let _ = std::fs::remove_file(dest);
                    return Err(io::Error::other(format!(
                        "{} changed while it was linked",
                        source.display()
                    )));
                }
                return own(&file, user);
            }
            // Another filesystem: a copy, below.
            Err(rustix::io::Errno::XDEV) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut copy = create_new(dest)?;
    let written = own(&copy, user).and_then(|()| io::copy(&mut &file, &mut copy));
    if let Err(e) = written {
        let _ = std::fs::remove_file(dest);
        return Err(e);
    }
    Ok(())
}

/// Moves a file Firecracker wrote in its chroot (`from`) to `to`, which must not exist:
/// renamed where on the same filesystem, else copied, then this process's and
/// owner-only (as [`crate::StateFiles::create`] makes them). A link is refused.
pub fn take_out(from: &Path, to: &Path) -> io::Result<()> {
    let renamed = rustix::fs::renameat_with(
        rustix::fs::CWD,
        from,
        rustix::fs::CWD,
        to,
        rustix::fs::RenameFlags::NOREPLACE,
    );
    let file = match renamed {
        Ok(()) => open_regular(to, false).inspect_err(|_| {
            // What Firecracker left there was not a file: it goes.
            let _ = std::fs::remove_file(to);
        })?,
        Err(rustix::io::Errno::XDEV) => {
            let source = open_regular(from, false)?;
            let mut copy = crate::StateFiles::create(to)?;
            if let Err(e) = io::copy(&mut &source, &mut copy) {
                let _ = std::fs::remove_file(to);
                return Err(e);
            }
            std::fs::remove_file(from)?;
            copy
        }
        Err(e) => return Err(e.into()),
    };
    own(
        &file,
        VmmUser {
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        },
    )
}

/// Removes the jails under a VM's directory `vm_dir` (after the VM ended, or a crash):
/// the VM's own files linked into one become this process's and owner-only again (the
/// VM's user may have changed their mode), then the tree goes (without following any
/// link in it).
pub fn remove(vm_dir: &Path) -> io::Result<()> {
    let base = vm_dir.join(JAIL_DIR);
    let execs = match std::fs::read_dir(&base) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let me = VmmUser {
        uid: rustix::process::geteuid().as_raw(),
        gid: rustix::process::getegid().as_raw(),
    };
    let roots = execs
        .flatten()
        .filter_map(|exec| std::fs::read_dir(exec.path()).ok())
        .flat_map(|ids| ids.flatten().map(|id| id.path().join("root")));
    for root in roots {
        let Ok(files) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in files.flatten() {
            // Linked in from the VM's directory (a copy has one link).
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file()
                && meta.nlink() > 1
                && let Ok(file) = open_regular(&entry.path(), false)
            {
                let _ = own(&file, me);
            }
        }
    }
    std::fs::remove_dir_all(&base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn user() -> VmmUser {
        // Root's tests give files away; a normal user's can only keep them.
        if rustix::process::geteuid().is_root() {
            VmmUser {
                uid: 1_900_000_007,
                gid: 1_900_000_008,
            }
        } else {
            VmmUser {
                uid: rustix::process::geteuid().as_raw(),
                gid: rustix::process::getegid().as_raw(),
            }
        }
    }

    #[test]
    fn the_jailer_runs_firecracker_as_the_vm_s_user_in_a_chroot_beside_its_files() {
        let jail = Jail::in_vm_dir(
            Path::new("/var/lib/ignite/vms/0123456789abcdef"),
            VmmUser {
                uid: 1_900_000_007,
                gid: 1_900_000_007,
            },
            Path::new("/opt/fc/firecracker"),
        );
        assert_eq!(
            jail.root(),
            Path::new(
                "/var/lib/ignite/vms/0123456789abcdef/jail/firecracker/0123456789abcdef/root"
            )
        );
        let (program, args) = jail.command(
            Path::new("/opt/fc/jailer"),
            Path::new("/opt/fc/firecracker"),
            vec!["--api-sock".into(), "/vmm.sock".into()],
        );
        assert_eq!(program, Path::new("/opt/fc/jailer"));
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "--id",
                "0123456789abcdef",
                "--exec-file",
                "/opt/fc/firecracker",
                "--uid",
                "1900000007",
                "--gid",
                "1900000007",
                "--chroot-base-dir",
                "/var/lib/ignite/vms/0123456789abcdef/jail",
                "--",
                "--api-sock",
                "/vmm.sock"
            ]
        );
        // The supervisor owns the process, its network namespace and its cgroup.
        for absent in [
            "--daemonize",
            "--new-pid-ns",
            "--netns",
            "--cgroup",
            "--cgroup-version",
            "--parent-cgroup",
        ] {
            assert!(!args.contains(&absent), "{absent} in {args:?}");
        }
        // A directory name the jailer would refuse as an id.
        let odd = Jail::in_vm_dir(Path::new("/state/vms/a b"), user(), Path::new("fc"));
        assert_eq!(odd.id(), "vm");
        assert!(valid_id("0123-abc"));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(!valid_id("a/b"));
        assert!(!valid_id(""));
    }

    #[test]
    fn the_jailer_is_found_beside_firecracker() {
        let dir = tempfile::tempdir().unwrap();
        let fc = dir.path().join("firecracker");
        let jailer = dir.path().join("jailer");
        for p in [&fc, &jailer] {
            std::fs::write(p, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        assert_eq!(locate(&fc), Some(jailer.clone()));
        // Not executable: not the jailer (PATH is tried then, and has none here).
        std::fs::set_permissions(&jailer, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_ne!(locate(&fc), Some(jailer));
    }

    /// A jail whose chroot exists (the jailer makes it).
    fn jail_in(dir: &Path) -> Jail {
        let vm_dir = dir.join("0123456789abcdef");
        std::fs::create_dir(&vm_dir).unwrap();
        // A release's binary, installed as `firecracker` through a link: the jailer
        // names the chroot's directory after the file itself.
        let release = dir.join("firecracker-v1.16.1-x86_64");
        std::fs::write(&release, "").unwrap();
        let fc = dir.join("firecracker");
        symlink(&release, &fc).unwrap();
        let jail = Jail::in_vm_dir(&vm_dir, user(), &fc);
        assert!(
            jail.root()
                .ends_with("jail/firecracker-v1.16.1-x86_64/0123456789abcdef/root")
        );
        jail.create_base().unwrap();
        jail.create_base().unwrap();
        assert_eq!(
            std::fs::metadata(jail.base()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        std::fs::create_dir_all(jail.root()).unwrap();
        jail
    }

    #[test]
    fn the_vm_s_own_files_are_linked_and_shared_ones_copied_all_the_vm_user_s_0600() {
        let dir = tempfile::tempdir().unwrap();
        let jail = jail_in(dir.path());
        let vm_dir = jail.base().parent().unwrap().to_path_buf();
        let disk = vm_dir.join("root.raw");
        std::fs::write(&disk, b"disk").unwrap();
        std::fs::set_permissions(&disk, std::fs::Permissions::from_mode(0o644)).unwrap();
        let kernel = dir.path().join("vmlinux");
        std::fs::write(&kernel, b"kernel").unwrap();
        std::fs::set_permissions(&kernel, std::fs::Permissions::from_mode(0o644)).unwrap();

        assert_eq!(
            jail.place(&disk, "drive-root", Placement::Own).unwrap(),
            Path::new("/drive-root")
        );
        assert_eq!(
            jail.place(&kernel, "vmlinux", Placement::Shared).unwrap(),
            Path::new("/vmlinux")
        );
        let linked = std::fs::metadata(jail.host_path("drive-root")).unwrap();
        assert_eq!(linked.ino(), std::fs::metadata(&disk).unwrap().ino());
        let copied = std::fs::metadata(jail.host_path("vmlinux")).unwrap();
        assert_ne!(copied.ino(), std::fs::metadata(&kernel).unwrap().ino());
        assert_eq!(std::fs::read(jail.host_path("vmlinux")).unwrap(), b"kernel");
        for m in [&linked, &copied] {
            assert_eq!((m.uid(), m.gid()), (user().uid, user().gid));
            assert_eq!(m.mode() & 0o7777, 0o600);
        }
        // The shared original keeps its owner and mode.
        let original = std::fs::metadata(&kernel).unwrap();
        assert_eq!(original.mode() & 0o777, 0o644);
        assert_eq!(original.uid(), rustix::process::geteuid().as_raw());

        // Never over an existing name, nor through a link there.
        let e = jail
            .place(&kernel, "vmlinux", Placement::Shared)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{e}");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let before = std::fs::metadata(&victim).unwrap();
        symlink(&victim, jail.host_path("initrd")).unwrap();
        for how in [Placement::Own, Placement::Shared] {
            assert!(jail.place(&disk, "initrd", how).is_err());
        }
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let after = std::fs::metadata(&victim).unwrap();
        assert_eq!(
            (after.mode(), after.uid(), after.nlink()),
            (before.mode(), before.uid(), before.nlink())
        );
        // A source that is a link is refused, not followed.
        let link = dir.path().join("link-to-kernel");
        symlink(&kernel, &link).unwrap();
        let e = jail.place(&link, "other", Placement::Own).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(!jail.host_path("other").exists());

        // Removing the jail gives the VM's file back, owner-only whatever the VM's user
        // made of it, and leaves the shared one alone.
        std::fs::set_permissions(
            jail.host_path("drive-root"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        remove(&vm_dir).unwrap();
        assert!(!jail.base().exists());
        let back = std::fs::metadata(&disk).unwrap();
        assert_eq!(back.uid(), rustix::process::geteuid().as_raw());
        assert_eq!(back.mode() & 0o7777, 0o600);
        assert_eq!(back.nlink(), 1);
        assert_eq!(std::fs::read(&kernel).unwrap(), b"kernel");
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        // Nothing to remove is no error.
        remove(&vm_dir).unwrap();
    }

    #[test]
    fn the_supervisor_s_socket_paths_lead_into_the_chroot() {
        let dir = tempfile::tempdir().unwrap();
        let jail = jail_in(dir.path());
        let vm_dir = jail.base().parent().unwrap().to_path_buf();
        let control = vm_dir.join("vmm.sock");
        assert_eq!(root_of_control(&control), None);
        // A socket left by an earlier run is replaced.
        let stale = std::os::unix::net::UnixListener::bind(&control).unwrap();
        drop(stale);
        assert_eq!(
            jail.socket_link(API_SOCKET, &control).unwrap(),
            Path::new("/vmm.sock")
        );
        assert_eq!(
            std::fs::read_link(&control).unwrap(),
            jail.host_path(API_SOCKET)
        );
        assert_eq!(root_of_control(&control), Some(jail.root()));
        // What Firecracker binds in its chroot is reached through the supervisor's path.
        let listener = std::os::unix::net::UnixListener::bind(jail.host_path(API_SOCKET)).unwrap();
        std::os::unix::net::UnixStream::connect(&control).unwrap();
        drop(listener);
        // Again (a restart): the old link is replaced.
        jail.socket_link(API_SOCKET, &control).unwrap();
        // A regular file there is not the supervisor's socket: left alone.
        let agent = vm_dir.join("agent.sock");
        std::fs::write(&agent, b"data").unwrap();
        assert!(jail.socket_link(VSOCK_SOCKET, &agent).is_err());
        assert_eq!(std::fs::read(&agent).unwrap(), b"data");
    }

    #[test]
    fn a_snapshot_written_in_the_chroot_is_taken_out_as_this_process_s_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let jail = jail_in(dir.path());
        let written = jail.host_path(SAVED_STATE);
        std::fs::write(&written, b"state").unwrap();
        let to = dir.path().join("state");
        take_out(&written, &to).unwrap();
        assert!(!written.exists());
        let m = std::fs::metadata(&to).unwrap();
        assert_eq!(m.uid(), rustix::process::geteuid().as_raw());
        assert_eq!(m.mode() & 0o7777, 0o600);
        assert_eq!(std::fs::read(&to).unwrap(), b"state");
        // Never over an existing file.
        std::fs::write(&written, b"again").unwrap();
        assert!(take_out(&written, &to).is_err());
        assert_eq!(std::fs::read(&to).unwrap(), b"state");
        // A link left in its place is not followed.
        std::fs::remove_file(&written).unwrap();
        symlink(&to, &written).unwrap();
        let other = dir.path().join("memory");
        assert!(take_out(&written, &other).is_err());
        assert!(std::fs::symlink_metadata(&other).is_err());
        assert_eq!(std::fs::read(&to).unwrap(), b"state");
    }
}
