//! `ignite cp` inside the guest: tar archives unpacked at, or made from, a guest path,
//! with `docker cp` semantics (into an existing directory; otherwise as the named path).

use std::io::{Read, Write};
use std::os::unix::fs::FileTypeExt;
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
    append_tree(&mut builder, source, &name, &meta)
        .and_then(|()| builder.finish())
        .map_err(|e| format!("cannot read {path} in the VM: {e}"))
}

/// Files that report no size (procfs, sysfs) are read whole first, up to this much.
const UNSIZED_FILE_LIMIT: u64 = 64 << 20;

fn append_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    source: &Path,
    name: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<()> {
    if meta.is_dir() {
        builder.append_path_with_name(source, name)?;
        let mut entries: Vec<_> = std::fs::read_dir(source)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let child = entry.path();
            // Gone since it was listed: skipped, as files that vanish during a copy are.
            let Ok(meta) = std::fs::symlink_metadata(&child) else {
                continue;
            };
            append_tree(builder, &child, &name.join(entry.file_name()), &meta)?;
        }
        Ok(())
    } else if meta.is_file() {
        append_file(builder, source, name, meta)
    } else if meta.file_type().is_symlink() {
        builder.append_path_with_name(source, name)
    } else if meta.file_type().is_socket() {
        // Not representable in tar; docker cp skips them too.
        Ok(())
    } else {
        // Devices and FIFOs: a header only (the tar crate's own path for them would
        // name them by their absolute source path).
        let mut header = tar::Header::new_gnu();
        header.set_metadata(meta);
        header.set_size(0);
        builder.append_data(&mut header, name, std::io::empty())
    }
}

/// A regular file with a header that matches its data: a file that reports no size is read
/// first and sent with the length read; any other is sent with the size it had when
/// listed, cut or padded with zeros if it grows or shrinks while it is read.
fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    source: &Path,
    name: &Path,
    meta: &std::fs::Metadata,
) -> std::io::Result<()> {
    let file = std::fs::File::open(source)?;
    let mut header = tar::Header::new_gnu();
    header.set_metadata(meta);
    if meta.len() == 0 {
        let mut data = Vec::new();
        file.take(UNSIZED_FILE_LIMIT).read_to_end(&mut data)?;
        header.set_size(data.len() as u64);
        return builder.append_data(&mut header, name, &data[..]);
    }
    let len = meta.len();
    header.set_size(len);
    let exact = file.take(len).chain(std::io::repeat(0)).take(len);
    builder.append_data(&mut header, name, exact)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for entry in tar::Archive::new(archive).entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            out.push((name, data));
        }
        out
    }

    #[test]
    fn procfs_files_that_report_no_size_are_copied_whole() {
        let mut archive = Vec::new();
        copy_out("/proc/version", &mut archive).unwrap();
        let got = members(&archive);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].0, "version");
        assert!(got[0].1.starts_with(b"Linux version"), "{:?}", got[0].1);
        assert_eq!(got[0].1, std::fs::read("/proc/version").unwrap());
    }

    #[test]
    fn trees_keep_their_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        std::fs::create_dir_all(top.join("sub")).unwrap();
        std::fs::write(top.join("b"), "bee").unwrap();
        std::fs::write(top.join("sub/a"), "ay").unwrap();
        std::fs::write(top.join("empty"), "").unwrap();
        let mut archive = Vec::new();
        copy_out(top.to_str().unwrap(), &mut archive).unwrap();
        let got = members(&archive);
        let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["top", "top/b", "top/empty", "top/sub", "top/sub/a"]);
        assert_eq!(got[1].1, b"bee");
        assert_eq!(got[2].1, b"");
        assert_eq!(got[4].1, b"ay");
    }

    #[test]
    fn special_files_are_named_inside_the_archive() {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("top");
        std::fs::create_dir(&top).unwrap();
        std::os::unix::fs::symlink("/etc/shadow", top.join("link")).unwrap();
        let fifo = top.join("fifo");
        assert!(
            std::process::Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success()
        );
        let mut archive = Vec::new();
        copy_out(top.to_str().unwrap(), &mut archive).unwrap();
        let mut kinds = Vec::new();
        for entry in tar::Archive::new(&archive[..]).entries().unwrap() {
            let entry = entry.unwrap();
            kinds.push((
                entry.path().unwrap().display().to_string(),
                entry.header().entry_type(),
            ));
        }
        assert_eq!(
            kinds,
            [
                ("top".to_string(), tar::EntryType::Directory),
                ("top/fifo".to_string(), tar::EntryType::Fifo),
                ("top/link".to_string(), tar::EntryType::Symlink),
            ]
        );
    }
}
