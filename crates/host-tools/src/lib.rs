//! The host programs Ignite runs (`mkfs.ext4`, `nft`, `ip`, `git`, ...), found
//! in `PATH` and then in the system directories a normal user's `PATH` lacks: Debian's
//! default user `PATH` has no `/usr/sbin`, where e2fsprogs, kmod, iproute2 and nftables
//! install. Advice to install a package is given only when the program is really absent.
//! Also the I/O error every crate reports for a path it works on ([`PathError`]).

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod path_error;
pub use path_error::{PathError, path_error};

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Searched after `PATH`, in this order.
pub const SYSTEM_DIRS: &[&str] = &["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// A program on the host and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTool {
    pub program: &'static str,
    pub package: &'static str,
}

impl HostTool {
    pub const fn new(program: &'static str, package: &'static str) -> Self {
        HostTool { program, package }
    }

    /// Where the program is: `PATH` first, then [`SYSTEM_DIRS`].
    pub fn locate(&self) -> Option<PathBuf> {
        locate(self.program)
    }

    /// A command for the program, or an error that says which package installs it.
    pub fn command(&self) -> Result<Command, MissingTool> {
        self.locate()
            .map(Command::new)
            .ok_or(MissingTool { tool: *self })
    }
}

pub const MKFS_EXT4: HostTool = HostTool::new("mkfs.ext4", "e2fsprogs");
pub const E2FSCK: HostTool = HostTool::new("e2fsck", "e2fsprogs");
pub const DEBUGFS: HostTool = HostTool::new("debugfs", "e2fsprogs");
pub const RESIZE2FS: HostTool = HostTool::new("resize2fs", "e2fsprogs");
pub const DEPMOD: HostTool = HostTool::new("depmod", "kmod");
pub const NFT: HostTool = HostTool::new("nft", "nftables");
pub const IP: HostTool = HostTool::new("ip", "iproute2");
pub const TC: HostTool = HostTool::new("tc", "iproute2");
/// iptables with the nf_tables backend (Debian 11 and later), where Docker Engine keeps its
/// chains on most hosts.
pub const IPTABLES_NFT: HostTool = HostTool::new("iptables-nft", "iptables");
/// iptables with the legacy x_tables backend, which some hosts' Docker Engine uses.
pub const IPTABLES_LEGACY: HostTool = HostTool::new("iptables-legacy", "iptables");
pub const QEMU_SYSTEM: HostTool = HostTool::new("qemu-system-x86_64", "qemu-system-x86");
pub const SSH: HostTool = HostTool::new("ssh", "openssh-client");
pub const SSH_KEYGEN: HostTool = HostTool::new("ssh-keygen", "openssh-client");
pub const GIT: HostTool = HostTool::new("git", "git");
pub const CP: HostTool = HostTool::new("cp", "coreutils");

/// A program that is in none of the searched directories.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} was not found in PATH or {}: install it (apt-get install {})",
    tool.program,
    SYSTEM_DIRS.join(", "),
    tool.package
)]
pub struct MissingTool {
    pub tool: HostTool,
}

/// Finds an executable by name: a name with a slash is taken as a path; otherwise `PATH`
/// is searched, then [`SYSTEM_DIRS`].
pub fn locate(program: &str) -> Option<PathBuf> {
    locate_in(program, std::env::var_os("PATH").as_deref())
}

fn locate_in(program: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return is_executable(&p).then_some(p);
    }
    let from_path = path.into_iter().flat_map(std::env::split_paths);
    from_path
        // An empty PATH entry means the working directory, which must not supply tools
        // that run as root.
        .filter(|dir| dir.is_absolute())
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn executable(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn path_wins_over_system_directories() {
        let dir = tempfile::tempdir().unwrap();
        let own = executable(dir.path(), "sh");
        assert_eq!(locate_in("sh", Some(dir.path().as_os_str())), Some(own));
    }

    #[test]
    fn sbin_programs_are_found_without_sbin_in_path() {
        // Debian's default user PATH; `sh` lives in /usr/bin or /bin, either is searched.
        let found = locate_in("sh", Some(OsStr::new("/nonexistent"))).unwrap();
        assert!(found.ends_with("sh"), "{found:?}");
        assert!(
            SYSTEM_DIRS
                .iter()
                .any(|d| found.parent() == Some(Path::new(d)))
        );
    }

    #[test]
    fn non_executables_relative_entries_and_absent_programs_are_not_found() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("tool"), "").unwrap();
        assert_eq!(locate_in("tool", Some(dir.path().as_os_str())), None);
        assert_eq!(
            locate_in("ignite-no-such-tool", Some(OsStr::new("rel:"))),
            None
        );
        let explicit = executable(dir.path(), "x");
        assert_eq!(
            locate_in(explicit.to_str().unwrap(), None),
            Some(explicit.clone())
        );
        assert_eq!(
            locate_in(&format!("{}/absent", dir.path().display()), None),
            None
        );
    }

    #[test]
    fn missing_tool_names_the_package_and_where_it_looked() {
        let err = HostTool::new("ignite-no-such-tool", "some-package")
            .command()
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("ignite-no-such-tool was not found"), "{text}");
        assert!(text.contains("/usr/sbin"), "{text}");
        assert!(text.contains("apt-get install some-package"), "{text}");
    }
}
