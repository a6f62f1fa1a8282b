//! Applies the per-VM configuration inside the root, on every boot. Each step is
//! idempotent: files Ignite owns are rewritten whole, and in files it shares with the
//! image (/etc/hosts, /etc/fstab, authorized_keys) it only replaces its own marked block.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};

use ignite_guest_protocol::config::{CopiedFile, GuestConfig};
use rustix::mount::{MountFlags, mount};

const BEGIN: &str = "# BEGIN ignite: managed by ignite-init, rewritten on every boot";
const END: &str = "# END ignite";

/// A file to copy, its contents read from the initramfs before the root switched.
pub struct FileToCopy {
    pub file: CopiedFile,
    pub contents: Vec<u8>,
}

pub fn apply(config: &GuestConfig, files: &[FileToCopy]) -> Result<(), String> {
    set_hostname(&config.hostname)?;
    write_hosts(config)?;
    if !config.nameservers.is_empty() {
        write_resolv_conf(config)?;
    }
    if !config.authorized_keys.is_empty() {
        write_authorized_keys(&config.authorized_keys)?;
    }
    for f in files {
        copy_file(f)?;
    }
    mount_volumes(config)?;
    Ok(())
}

fn set_hostname(hostname: &str) -> Result<(), String> {
    if hostname.is_empty() {
        return Ok(());
    }
    rustix::system::sethostname(hostname.as_bytes())
        .map_err(|e| format!("cannot set the hostname {hostname:?}: {e}"))?;
    write_if_changed(
        Path::new("/etc/hostname"),
        format!("{hostname}\n").as_bytes(),
        0o644,
    )
}

fn write_hosts(config: &GuestConfig) -> Result<(), String> {
    let mut block =
        String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    let own: Vec<&str> = config
        .interfaces
        .iter()
        .flat_map(|i| i.addresses.iter())
        .filter_map(|a| a.split('/').next())
        .collect();
    if !config.hostname.is_empty() {
        if own.is_empty() {
            block.push_str(&format!("127.0.1.1\t{}\n", config.hostname));
        }
        for address in &own {
            block.push_str(&format!("{address}\t{}\n", config.hostname));
        }
    }
    for entry in &config.hosts {
        block.push_str(&format!("{}\t{}\n", entry.address, entry.names.join(" ")));
    }
    replace_block(Path::new("/etc/hosts"), &block, 0o644)
}

fn write_resolv_conf(config: &GuestConfig) -> Result<(), String> {
    let mut text = String::from("# written by ignite-init\n");
    if !config.search_domains.is_empty() {
        text.push_str(&format!("search {}\n", config.search_domains.join(" ")));
    }
    for ns in &config.nameservers {
        text.push_str(&format!("nameserver {ns}\n"));
    }
    let path = Path::new("/etc/resolv.conf");
    // A symlink (to a resolver stub the image's init starts later) is replaced by the file.
    if path
        .symlink_metadata()
        .is_ok_and(|m| m.file_type().is_symlink())
    {
        fs::remove_file(path).map_err(|e| format!("cannot replace {}: {e}", path.display()))?;
    }
    write_if_changed(path, text.as_bytes(), 0o644)
}

fn write_authorized_keys(keys: &[String]) -> Result<(), String> {
    let ssh = Path::new("/root/.ssh");
    fs::create_dir_all(ssh).map_err(|e| format!("cannot create {}: {e}", ssh.display()))?;
    fs::set_permissions(ssh, fs::Permissions::from_mode(0o700))
        .map_err(|e| format!("cannot protect {}: {e}", ssh.display()))?;
    let block: String = keys.iter().map(|k| format!("{}\n", k.trim())).collect();
    replace_block(&ssh.join("authorized_keys"), &block, 0o600)
}

fn copy_file(f: &FileToCopy) -> Result<(), String> {
    let path = PathBuf::from(&f.file.path);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {} for a copied file: {e}", parent.display()))?;
    }
    write_if_changed(&path, &f.contents, f.file.mode)?;
    chown(&path, Some(f.file.uid), Some(f.file.gid))
        .map_err(|e| format!("cannot set the owner of {}: {e}", path.display()))
}

fn mount_volumes(config: &GuestConfig) -> Result<(), String> {
    if config.volumes.is_empty() {
        return Ok(());
    }
    let mut fstab = String::new();
    for v in &config.volumes {
        let fstype = v.fstype.as_deref().unwrap_or("ext4");
        let options = if v.read_only {
            "ro,nofail"
        } else {
            "defaults,nofail"
        };
        fstab.push_str(&format!(
            "{}\t{}\t{fstype}\t{options}\t0\t2\n",
            v.device, v.path
        ));
        fs::create_dir_all(&v.path).map_err(|e| format!("cannot create {}: {e}", v.path))?;
        let flags = if v.read_only {
            MountFlags::RDONLY
        } else {
            MountFlags::empty()
        };
        match mount(v.device.as_str(), v.path.as_str(), fstype, flags, None) {
            Ok(()) | Err(rustix::io::Errno::BUSY) => {}
            Err(e) => {
                return Err(format!(
                    "cannot mount volume {} ({}, {fstype}) on {}: {e}",
                    v.name, v.device, v.path
                ));
            }
        }
    }
    replace_block(Path::new("/etc/fstab"), &fstab, 0o644)
}

/// Replaces the marked block in `path` (or appends one), keeping everything else.
fn replace_block(path: &Path, block: &str, mode: u32) -> Result<(), String> {
    let old = fs::read_to_string(path).unwrap_or_default();
    let mut kept = String::new();
    let mut inside = false;
    for line in old.lines() {
        if line == BEGIN {
            inside = true;
        } else if line == END {
            inside = false;
        } else if !inside {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let new = format!("{kept}{BEGIN}\n{block}{END}\n");
    write_if_changed(path, new.as_bytes(), mode)
}

/// Writes through a temporary file and a rename, and only when the contents differ.
fn write_if_changed(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let unchanged = fs::read(path).is_ok_and(|old| old == contents);
    if !unchanged {
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let tmp = path.with_extension("ignite-tmp");
        fs::write(&tmp, contents)
            .and_then(|()| fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                format!("cannot write {}: {e}", path.display())
            })?;
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_replaced_not_duplicated() {
        let dir = std::env::temp_dir().join(format!("ignite-provision-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts");
        fs::write(&hosts, "10.0.0.9 mine\n").unwrap();
        replace_block(&hosts, "1.2.3.4 a\n", 0o644).unwrap();
        replace_block(&hosts, "1.2.3.5 b\n", 0o644).unwrap();
        replace_block(&hosts, "1.2.3.5 b\n", 0o644).unwrap();
        let text = fs::read_to_string(&hosts).unwrap();
        assert_eq!(text, format!("10.0.0.9 mine\n{BEGIN}\n1.2.3.5 b\n{END}\n"));
        fs::remove_dir_all(&dir).unwrap();
    }
}
