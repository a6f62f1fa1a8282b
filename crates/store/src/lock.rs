//! Advisory file locks that serialise the CLI, the daemon and supervisors on one object or
//! on a whole kind ("pool"). A lock file may be removed while held (when its object is
//! removed); a waiter that then wins a lock on the unlinked file notices and retries.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, io};

/// An exclusive lock, released when dropped.
#[derive(Debug)]
pub struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    /// Blocks until the lock at `path` is held.
    pub fn acquire(path: &Path) -> Result<LockGuard> {
        loop {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(path)
                .map_err(io("open lock file", path))?;
            file.lock().map_err(io("lock", path))?;
            // The holder before us may have removed the file; then our lock guards nothing.
            let held = file.metadata().map_err(io("stat lock file", path))?;
            match std::fs::metadata(path) {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {
                    return Ok(LockGuard {
                        file,
                        path: path.to_path_buf(),
                    });
                }
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("stat lock file", path)(e)),
            }
        }
    }

    /// Removes the lock file, then releases the lock (for an object that is gone).
    pub fn remove(self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("remove lock file", &self.path)(e)),
        }
        // `self.file` drops here, releasing the lock on the now-unlinked file.
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}
