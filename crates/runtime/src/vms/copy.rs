//! Files and trees into and out of a running VM through its guest agent, with `docker cp`
//! semantics (into an existing directory, otherwise as the named path; modes kept).
//!
//! What comes out of a VM is hostile input: it is unpacked into a staging directory beside
//! the destination with the `tar` crate's checks (nothing outside it, no device nodes, no
//! owners, no setuid bits), then moved into place.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ignite_guest_protocol::agent::MAX_PAYLOAD;
use ignite_guest_protocol::client::{AgentClient, Output, Session};

/// A copy runs as long as it takes.
const WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
    /// The agent's channel failed.
    #[error("the VM's agent: {0}")]
    Agent(#[source] std::io::Error),
    /// What the VM sent, or where it should go, is refused.
    #[error("{0}")]
    Refused(String),
    /// The guest reported a failure.
    #[error("{0}")]
    Guest(String),
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CopyError {
    let path = path.to_path_buf();
    move |source| CopyError::Io(ignite_host_tools::PathError::new(action, path, source))
}

fn agent_io(e: std::io::Error) -> CopyError {
    CopyError::Agent(e)
}

/// Feeds a tar archive into the session's stdin.
struct SessionWriter<'a, 'b> {
    session: &'a Session<'b>,
    buf: Vec<u8>,
}

impl Write for SessionWriter<'_, '_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= MAX_PAYLOAD / 2 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.session.write_stdin(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

fn finish(session: Session<'_>) -> Result<(), CopyError> {
    loop {
        match session.next(WAIT).map_err(agent_io)? {
            Output::Exited(s) if s.code == Some(0) => return Ok(()),
            Output::Exited(s) => {
                return Err(CopyError::Guest(format!(
                    "the copy failed in the VM (status {})",
                    s.shell_code()
                )));
            }
            Output::Failed(body) => return Err(CopyError::Guest(body.message)),
            Output::Stdout(_) | Output::Stderr(_) => {}
        }
    }
}

/// Copies the host's `source` (a file or a tree) to `dest` in the VM. A `source` that is
/// itself a symlink is followed, as Ignite's cp and `docker cp -L` do (the user named it);
/// links inside a tree are sent as links.
pub fn copy_in(agent: &AgentClient, source: &Path, dest: &str) -> Result<(), CopyError> {
    let link = std::fs::symlink_metadata(source).map_err(io("copy", source))?;
    let followed = link.file_type().is_symlink();
    let (meta, source) = if followed {
        let target = source
            .canonicalize()
            .map_err(io("follow the link", source))?;
        (
            std::fs::metadata(&target).map_err(io("copy", &target))?,
            target,
        )
    } else {
        (link, source.to_path_buf())
    };
    let source = source.as_path();
    let name = source
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let session = agent.copy_in(dest).map_err(agent_io)?;
    {
        let mut writer = SessionWriter {
            session: &session,
            buf: Vec::new(),
        };
        let mut builder = tar::Builder::new(&mut writer);
        builder.follow_symlinks(false);
        let sent = if meta.is_dir() {
            builder.append_dir_all(&name, source)
        } else {
            builder.append_path_with_name(source, &name)
        };
        sent.and_then(|()| builder.into_inner()?.flush())
            .map_err(io("send", source))?;
    }
    session.close_stdin().map_err(agent_io)?;
    finish(session)
}

/// Copies `source` in the VM to the host's `dest`, as `docker cp` does: into `dest` when
/// it is a directory, else as `dest`.
pub fn copy_out(agent: &AgentClient, source: &str, dest: &Path) -> Result<(), CopyError> {
    let (into, rename) = if dest.is_dir() {
        (dest.to_path_buf(), None)
    } else {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(CopyError::Refused(format!(
                "{} is not a directory",
                parent.display()
            )));
        }
        (parent, dest.file_name().map(PathBuf::from))
    };
    let staging = tempfile::Builder::new()
        .prefix(".ignite-cp-")
        .tempdir_in(&into)
        .map_err(io("write into", &into))?;
    let session = agent.copy_out(source).map_err(agent_io)?;
    let (reader, mut writer) = std::io::pipe().map_err(agent_io)?;
    let stage = staging.path().to_path_buf();
    let unpacker = std::thread::spawn(move || unpack_safely(reader, &stage));
    let outcome = loop {
        match session.next(WAIT) {
            Ok(Output::Stdout(bytes)) => {
                if writer.write_all(&bytes).is_err() {
                    break Err(CopyError::Refused(
                        "the archive from the VM was refused".into(),
                    ));
                }
            }
            Ok(Output::Exited(_)) => break Ok(()),
            Ok(Output::Failed(body)) => break Err(CopyError::Guest(body.message)),
            Ok(Output::Stderr(_)) => {}
            Err(e) => break Err(agent_io(e)),
        }
    };
    drop(writer);
    let unpacked = unpacker
        .join()
        .expect("the unpacking thread does not panic");
    outcome?;
    let top = unpacked?;
    let name = rename.unwrap_or_else(|| top.clone());
    move_into_place(&staging.path().join(&top), &into.join(name))
}

/// Unpacks within `dir` only; returns the archive's top-level name. Member names must be
/// relative without `..`, hard links may only name members unpacked before them, device
/// nodes and FIFOs are skipped, and setuid, setgid and sticky bits are dropped (a guest's
/// `chmod 4755` must not become a setuid file of the host user, root included).
pub fn unpack_safely(reader: impl std::io::Read, dir: &Path) -> Result<PathBuf, CopyError> {
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_preserve_ownerships(false);
    archive.set_mask(SPECIAL_MODE_BITS);
    let mut top: Option<PathBuf> = None;
    let mut unpacked = std::collections::HashSet::new();
    let malformed = |e: std::io::Error| {
        CopyError::Refused(format!("the archive from the VM is malformed: {e}"))
    };
    for entry in archive.entries().map_err(malformed)? {
        let mut entry = entry.map_err(malformed)?;
        let kind = entry.header().entry_type();
        let path = entry.path().map_err(malformed)?.into_owned();
        let path = member_path(&path)?;
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            tracing::warn!("skipping the device node or FIFO {}", path.display());
            continue;
        }
        if kind.is_hard_link() {
            let target = entry.link_name().map_err(malformed)?.ok_or_else(|| {
                CopyError::Refused(format!("the hard link {} has no target", path.display()))
            })?;
            let target = member_path(&target)?;
            if !unpacked.contains(&target) {
                return Err(CopyError::Refused(format!(
                    "the archive from the VM links {} to {}, which is not in the archive",
                    path.display(),
                    target.display()
                )));
            }
        }
        let first = path
            .components()
            .next()
            .map(|c| PathBuf::from(c.as_os_str()));
        match (&top, first) {
            (None, Some(f)) => top = Some(f),
            (Some(t), Some(f)) if *t != f => {
                return Err(CopyError::Refused(
                    "the archive from the VM has several top-level entries".into(),
                ));
            }
            _ => {}
        }
        if !entry.unpack_in(dir).map_err(io("unpack into", dir))? {
            return Err(CopyError::Refused(format!(
                "the archive from the VM reaches outside its destination ({})",
                path.display()
            )));
        }
        unpacked.insert(path);
    }
    top.ok_or_else(|| CopyError::Refused("the VM sent an empty archive".into()))
}

/// Setuid, setgid and sticky: masked off everything copied out of a VM.
const SPECIAL_MODE_BITS: u32 = 0o7000;

/// A member name as a relative path of plain components (`./` dropped); absolute names and
/// `..` are refused rather than rewritten, since only a hostile agent sends them.
fn member_path(name: &Path) -> Result<PathBuf, CopyError> {
    use std::path::Component;
    let mut clean = PathBuf::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(CopyError::Refused(format!(
                    "the archive from the VM has the member name {}, which is not inside the copy: refused",
                    name.display()
                )));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(CopyError::Refused(
            "the archive from the VM has an empty member name".into(),
        ));
    }
    Ok(clean)
}

/// Moves a staged file or tree to `dest`, merging into an existing directory.
fn move_into_place(staged: &Path, dest: &Path) -> Result<(), CopyError> {
    let staged_meta = std::fs::symlink_metadata(staged).map_err(io("read", staged))?;
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() && staged_meta.is_dir() => {
            for entry in std::fs::read_dir(staged).map_err(io("read", staged))? {
                let entry = entry.map_err(io("read", staged))?;
                move_into_place(&entry.path(), &dest.join(entry.file_name()))?;
            }
            Ok(())
        }
        Ok(m) if m.is_dir() => Err(CopyError::Refused(format!(
            "cannot overwrite the directory {} with a file",
            dest.display()
        ))),
        _ => std::fs::rename(staged, dest).map_err(io("move the copy to", dest)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &[u8], mode: u32, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        // Raw names: the builder's own checks would refuse the hostile ones.
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    #[test]
    fn setuid_setgid_and_sticky_bits_are_dropped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = archive(|b| {
            file(b, b"d/suid", 0o4755, b"x");
            file(b, b"d/sgid", 0o2711, b"x");
            file(b, b"d/sticky", 0o1777, b"x");
        });
        let top = unpack_safely(&data[..], dir.path()).unwrap();
        assert_eq!(top, PathBuf::from("d"));
        for (name, mode) in [("suid", 0o755), ("sgid", 0o711), ("sticky", 0o777)] {
            let m = std::fs::metadata(dir.path().join("d").join(name)).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, mode, "{name}");
        }
    }

    #[test]
    fn absolute_and_parent_member_names_are_refused() {
        for name in [&b"/etc/passwd"[..], b"../escape", b"d/../../escape"] {
            let dir = tempfile::tempdir().unwrap();
            let data = archive(|b| file(b, name, 0o644, b"x"));
            let err = unpack_safely(&data[..], dir.path()).unwrap_err();
            assert!(
                err.to_string().contains("not inside the copy"),
                "{}: {err}",
                String::from_utf8_lossy(name)
            );
            assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn hard_links_only_to_earlier_members() {
        let dir = tempfile::tempdir().unwrap();
        let data = archive(|b| {
            file(b, b"d/a", 0o644, b"x");
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            h.set_mode(0o644);
            b.append_link(&mut h, "d/b", "d/a").unwrap();
        });
        unpack_safely(&data[..], dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("d/b")).unwrap(), b"x");

        let dir = tempfile::tempdir().unwrap();
        let data = archive(|b| {
            file(b, b"d/a", 0o644, b"x");
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Link);
            h.set_size(0);
            h.set_mode(0o644);
            b.append_link(&mut h, "d/shadow", "etc/shadow").unwrap();
        });
        let err = unpack_safely(&data[..], dir.path()).unwrap_err();
        assert!(err.to_string().contains("not in the archive"), "{err}");
        assert!(!dir.path().join("d/shadow").exists());
    }
}
