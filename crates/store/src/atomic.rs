//! Whole-file writes that either happen completely or not at all, even across a crash:
//! temp file in the same directory, fsync, rename, fsync the directory.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::error::{Result, io};

pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().expect("object files live in a directory");
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io("create a temporary file in", dir))?;
    tmp.write_all(contents)
        .map_err(io("write", tmp.path().to_path_buf()))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(io("set permissions on", tmp.path().to_path_buf()))?;
    tmp.as_file()
        .sync_all()
        .map_err(io("sync", tmp.path().to_path_buf()))?;
    tmp.persist(path)
        .map_err(|e| io("replace", path)(e.error))?;
    sync_dir(dir)
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync directory", dir))
}
