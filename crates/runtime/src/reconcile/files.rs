//! Manifest files read and rewritten without following symbolic links: a manifest
//! directory or a Git checkout is written by people the host does not trust, and a link
//! there must not make root read or overwrite a file elsewhere on the host.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

/// The largest manifest read into memory.
pub const MAX_MANIFEST: u64 = 1 << 20;

/// Why a manifest file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error(
        "{0} is a symbolic link: manifests that are links are not followed; commit the manifest itself"
    )]
    Symlink(PathBuf),
    #[error("{0} is not a regular file: only regular files are manifests")]
    NotRegular(PathBuf),
    #[error("{path} is larger than {MAX_MANIFEST} bytes: split it or shrink it")]
    TooLarge { path: PathBuf },
    #[error("{path} is not UTF-8 text: save it as UTF-8")]
    NotUtf8 { path: PathBuf },
    #[error(transparent)]
    Io(#[from] ignite_host_tools::PathError),
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError::Io(ignite_host_tools::PathError::new(what, path, source))
}

/// Reads a manifest: a regular file (a symbolic link is refused, not followed) of at most
/// [`MAX_MANIFEST`] bytes.
pub fn read_manifest(path: &Path) -> Result<String, FileError> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::LOOP {
            FileError::Symlink(path.to_path_buf())
        } else {
            FileError::Io(ignite_host_tools::PathError::new("read", path, e.into()))
        }
    })?;
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(io("read", path))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular(path.to_path_buf()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    if bytes.len() as u64 > MAX_MANIFEST {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|_| FileError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

/// Creates `path` anew (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0644) and writes `data` into it.
/// Whatever is at `path` already (a stale temporary file, or a link someone planted) is
/// unlinked first, never followed.
pub fn create_new(path: &Path, data: &[u8]) -> Result<(), FileError> {
    let open = || {
        rustix::fs::open(
            path,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
    };
    let fd = match open() {
        Err(rustix::io::Errno::EXIST) => {
            // unlink(2) removes a link itself, not what it points to.
            std::fs::remove_file(path).map_err(io("remove the stale", path))?;
            open()
        }
        other => other,
    }
    .map_err(|e| FileError::Io(ignite_host_tools::PathError::new("create", path, e.into())))?;
    let mut file = std::fs::File::from(fd);
    file.write_all(data).map_err(io("write", path))?;
    file.sync_all().map_err(io("write", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let canary = outside.path().join("canary");
        std::fs::write(&canary, "precious").unwrap();
        let link = dir.path().join("vm.yaml");
        std::os::unix::fs::symlink(&canary, &link).unwrap();
        let e = read_manifest(&link).unwrap_err();
        assert!(matches!(e, FileError::Symlink(_)), "{e}");
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        // A planted temporary file: replaced, the target untouched.
        let tmp = dir.path().join(".vm.yaml.ignite-tmp");
        std::os::unix::fs::symlink(&canary, &tmp).unwrap();
        create_new(&tmp, b"new").unwrap();
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "precious");
        assert!(!std::fs::symlink_metadata(&tmp).unwrap().is_symlink());
        assert_eq!(std::fs::read_to_string(&tmp).unwrap(), "new");
        // A dangling link too.
        std::fs::remove_file(&tmp).unwrap();
        std::os::unix::fs::symlink(outside.path().join("absent"), &tmp).unwrap();
        create_new(&tmp, b"x").unwrap();
        assert!(!outside.path().join("absent").exists());
    }

    #[test]
    fn sizes_and_kinds_are_capped() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'a'; MAX_MANIFEST as usize + 1]).unwrap();
        assert!(matches!(
            read_manifest(&big).unwrap_err(),
            FileError::TooLarge { .. }
        ));
        let sub = dir.path().join("sub.yaml");
        std::fs::create_dir(&sub).unwrap();
        assert!(matches!(
            read_manifest(&sub).unwrap_err(),
            FileError::NotRegular(_)
        ));
        let fine = dir.path().join("ok.yaml");
        std::fs::write(&fine, "kind: VM\n").unwrap();
        assert_eq!(read_manifest(&fine).unwrap(), "kind: VM\n");
    }
}
