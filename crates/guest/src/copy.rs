//! `ignite cp` inside the guest: tar archives unpacked at, or made from, a guest path,
//! with `docker cp` semantics (into an existing directory; otherwise as the named path).

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

/// Unpacks `archive` at `dest`: into it when it is a directory, else as `dest` itself
/// (the archive's top entry renamed), whose parent must exist.
pub fn copy_in(dest: &str, archive: impl Read) -> Result<(), String> {
    let dest = Path::new(dest);
    let (base, rename) = if dest.is_dir() {
        (dest.to_path_buf(), None)
    } else {
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("/"),
        };
        if !parent.is_dir() {
            return Err(format!("{} is not a directory in the VM", parent.display()));
        }
        let name = dest
            .file_name()
            .ok_or_else(|| format!("bad destination {}", dest.display()))?;
        (parent, Some(name.to_os_string()))
    };
    let mut archive = tar::Archive::new(archive);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| format!("bad archive: {e}"))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if path
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!("refusing the archive entry {}", path.display()));
        }
        let rel = match &rename {
            Some(name) => {
                let mut renamed = PathBuf::from(name);
                renamed.extend(path.components().skip(1));
                renamed
            }
            None => path,
        };
        let target = base.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        entry
            .unpack(&target)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
    }
    Ok(())
}

/// Writes `path` as a tar archive whose top entry is named after the path's last part.
pub fn copy_out(path: &str, out: impl Write) -> Result<(), String> {
    let source = Path::new(path);
    let meta = std::fs::symlink_metadata(source).map_err(|e| format!("{path} in the VM: {e}"))?;
    let name = source
        .file_name()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let result = if meta.is_dir() {
        builder.append_dir_all(&name, source)
    } else {
        builder.append_path_with_name(source, &name)
    };
    result
        .and_then(|()| builder.finish())
        .map_err(|e| format!("cannot read {path} in the VM: {e}"))
}
