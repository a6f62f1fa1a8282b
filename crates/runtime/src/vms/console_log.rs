//! A VM's console log (`console.log`): what the guest prints on its serial console, which a
//! guest controls entirely. The supervisor appends to it with a cap: past
//! [`CONSOLE_LOG_LIMIT`] bytes the file is renamed to `console.log.1` (replacing an older
//! one) and a new one begins, so a VM keeps at most twice the limit on disk. Readers stream
//! it in bounded chunks and never hold it in memory whole.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The size at which the console log is rotated.
pub const CONSOLE_LOG_LIMIT: u64 = 8 << 20;

/// Overrides [`CONSOLE_LOG_LIMIT`] (bytes; at least 64 KiB) for VMs started with it set.
pub const CONSOLE_LOG_LIMIT_ENV: &str = "IGNITE_CONSOLE_LOG_LIMIT";

/// The cap for VMs started now.
pub fn console_log_limit() -> u64 {
    limit_from_env(CONSOLE_LOG_LIMIT_ENV, CONSOLE_LOG_LIMIT)
}

/// A log cap from the environment variable `name` (bytes, at least 64 KiB), else `default`.
pub(crate) fn limit_from_env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(default, |v| v.max(64 << 10))
}

/// The previous console log, once the current one has been rotated.
pub fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// Opens a log for appending (created private) or reading, never through a symlink.
pub(crate) fn open_nofollow(path: &Path, append: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    if append {
        options.create(true).append(true).mode(0o600);
    } else {
        options.read(true);
    }
    options
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// The supervisor's writer: appends, rotating at `limit`.
pub struct ConsoleLogWriter {
    path: PathBuf,
    file: File,
    written: u64,
    limit: u64,
}

impl ConsoleLogWriter {
    pub fn open(path: &Path) -> io::Result<ConsoleLogWriter> {
        Self::with_limit(path, console_log_limit())
    }

    pub fn with_limit(path: &Path, limit: u64) -> io::Result<ConsoleLogWriter> {
        let file = open_nofollow(path, true)?;
        let written = file.metadata()?.len();
        Ok(ConsoleLogWriter {
            path: path.to_path_buf(),
            file,
            written,
            limit,
        })
    }

    /// Appends `chunk`, rotating first when it would pass the limit.
    pub fn append(&mut self, chunk: &[u8]) -> io::Result<()> {
        if self.written > 0 && self.written + chunk.len() as u64 > self.limit {
            std::fs::rename(&self.path, rotated(&self.path))?;
            self.file = open_nofollow(&self.path, true)?;
            self.written = 0;
        }
        self.file.write_all(chunk)?;
        self.written += chunk.len() as u64;
        Ok(())
    }
}

/// Copies the log from `offset` to `out` in bounded chunks and returns the offset reached.
/// A file shorter than `offset` was rotated meanwhile: it is copied from its start.
pub fn copy_from(path: &Path, offset: u64, out: &mut dyn Write) -> io::Result<u64> {
    let mut file = match open_nofollow(path, false) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let copied = io::copy(&mut (&mut file).take(len - start), out)?;
    out.flush()?;
    Ok(start + copied)
}

/// At most the last `max` bytes of the log written since `offset` (see [`copy_from`] for a
/// rotated file).
pub fn tail_since(path: &Path, offset: u64, max: u64) -> io::Result<Vec<u8>> {
    let mut file = open_nofollow(path, false)?;
    let len = file.metadata()?.len();
    let from = if len < offset { 0 } else { offset };
    let start = from.max(len.saturating_sub(max));
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(len - start).read_to_end(&mut buf)?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_limit_and_keeps_one_old_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut log = ConsoleLogWriter::with_limit(&path, 100).unwrap();
        for i in 0..50u8 {
            log.append(&[b'a' + (i % 26); 10]).unwrap();
        }
        let current = std::fs::metadata(&path).unwrap().len();
        let old = std::fs::metadata(rotated(&path)).unwrap().len();
        assert!(current <= 100 && old <= 100, "{current} {old}");
        assert!(!dir.path().join("console.log.2").exists());
        // The newest chunk is at the end of the current log.
        let text = std::fs::read(&path).unwrap();
        assert!(text.ends_with(&[b'a' + (49 % 26); 10]));
    }

    #[test]
    fn a_reopened_writer_counts_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        std::fs::write(&path, [b'x'; 95]).unwrap();
        let mut log = ConsoleLogWriter::with_limit(&path, 100).unwrap();
        log.append(b"0123456789").unwrap();
        assert_eq!(std::fs::read(rotated(&path)).unwrap(), [b'x'; 95]);
        assert_eq!(std::fs::read(&path).unwrap(), b"0123456789");
    }

    #[test]
    fn the_writer_does_not_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        std::fs::write(&canary, "keep").unwrap();
        let path = dir.path().join("console.log");
        std::os::unix::fs::symlink(&canary, &path).unwrap();
        assert!(ConsoleLogWriter::open(&path).is_err());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
    }

    #[test]
    fn readers_stream_from_an_offset_and_restart_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut out = Vec::new();
        assert_eq!(copy_from(&path, 0, &mut out).unwrap(), 0);
        std::fs::write(&path, "hello world").unwrap();
        let mut out = Vec::new();
        assert_eq!(copy_from(&path, 6, &mut out).unwrap(), 11);
        assert_eq!(out, b"world");
        // Rotated: shorter than the offset, read from the start.
        std::fs::write(&path, "new").unwrap();
        let mut out = Vec::new();
        assert_eq!(copy_from(&path, 11, &mut out).unwrap(), 3);
        assert_eq!(out, b"new");
        std::fs::write(&path, "0123456789").unwrap();
        assert_eq!(tail_since(&path, 0, 4).unwrap(), b"6789");
        assert_eq!(tail_since(&path, 8, 4).unwrap(), b"89");
        assert_eq!(tail_since(&path, 20, 4).unwrap(), b"6789");
    }
}
