//! A VM's output log (`output.log`), what `ignite logs` shows: the serial console (kernel
//! and ignite-init messages, and everything of a VM-mode guest) and a container-mode
//! workload's stdout and stderr, in the order they arrived, each record stamped with the
//! time the supervisor received it.
//!
//! Records are `stream (u8) | 0 0 0 | unix time in ns (i64 LE) | length (u32 LE) | bytes`.
//! The supervisor is the only writer; like the console log it rotates at a cap
//! ([`OUTPUT_LOG_LIMIT`], `output.log.1` keeps the previous file). Readers tolerate a
//! record still being written (they stop before it).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::console_log::{limit_from_env, open_nofollow, rotated};

/// The size at which the output log is rotated.
pub const OUTPUT_LOG_LIMIT: u64 = 16 << 20;
/// Overrides [`OUTPUT_LOG_LIMIT`] (bytes; at least 64 KiB) for VMs started with it set.
pub const OUTPUT_LOG_LIMIT_ENV: &str = "IGNITE_OUTPUT_LOG_LIMIT";

const HEADER: usize = 16;
/// No record is larger; a bigger length field means the file is not an output log.
const MAX_RECORD: usize = 4 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Console = 0,
    Stdout = 1,
    Stderr = 2,
}

impl Stream {
    fn from_u8(b: u8) -> Option<Stream> {
        match b {
            0 => Some(Stream::Console),
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub stream: Stream,
    pub time: SystemTime,
    pub bytes: Vec<u8>,
}

pub fn output_log_limit() -> u64 {
    limit_from_env(OUTPUT_LOG_LIMIT_ENV, OUTPUT_LOG_LIMIT)
}

/// The supervisor's writer.
pub struct OutputLogWriter {
    path: PathBuf,
    file: File,
    written: u64,
    limit: u64,
}

impl OutputLogWriter {
    pub fn open(path: &Path) -> io::Result<OutputLogWriter> {
        Self::with_limit(path, output_log_limit())
    }

    pub fn with_limit(path: &Path, limit: u64) -> io::Result<OutputLogWriter> {
        let file = open_nofollow(path, true)?;
        let written = file.metadata()?.len();
        Ok(OutputLogWriter {
            path: path.to_path_buf(),
            file,
            written,
            limit,
        })
    }

    /// Appends `bytes` of `stream` as records stamped now (large ones split).
    pub fn append(&mut self, stream: Stream, bytes: &[u8]) -> io::Result<()> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i64);
        for chunk in bytes.chunks(MAX_RECORD) {
            let len = (HEADER + chunk.len()) as u64;
            if self.written > 0 && self.written + len > self.limit {
                std::fs::rename(&self.path, rotated(&self.path))?;
                self.file = open_nofollow(&self.path, true)?;
                self.written = 0;
            }
            let mut record = Vec::with_capacity(HEADER + chunk.len());
            record.push(stream as u8);
            record.extend_from_slice(&[0, 0, 0]);
            record.extend_from_slice(&nanos.to_le_bytes());
            record.extend_from_slice(&(chunk.len() as u32).to_le_bytes());
            record.extend_from_slice(chunk);
            // One write: a reader never sees half a header from two records.
            self.file.write_all(&record)?;
            self.written += len;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.sync_data()
    }
}

/// Parses the complete records of `data`; returns them and how many bytes they took.
fn parse(data: &[u8]) -> io::Result<(Vec<Record>, usize)> {
    let mut records = Vec::new();
    let mut at = 0;
    while data.len() - at >= HEADER {
        let header = &data[at..at + HEADER];
        let stream = Stream::from_u8(header[0]);
        let len = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes")) as usize;
        let (Some(stream), true) = (stream, header[1..4] == [0, 0, 0] && len <= MAX_RECORD) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the output log is damaged at byte {at}"),
            ));
        };
        if data.len() - at - HEADER < len {
            break; // still being written
        }
        let nanos = i64::from_le_bytes(header[4..12].try_into().expect("8 bytes"));
        records.push(Record {
            stream,
            time: UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64),
            bytes: data[at + HEADER..at + HEADER + len].to_vec(),
        });
        at += HEADER + len;
    }
    Ok((records, at))
}

/// Whether an older, rotated output log is there.
pub fn rotated_exists(path: &Path) -> bool {
    std::fs::symlink_metadata(rotated(path)).is_ok()
}

/// Every record kept: the rotated file's, then the current one's (at most twice the cap).
pub fn read_all(path: &Path) -> io::Result<Vec<Record>> {
    Ok(read_all_and_follow(path)?.0)
}

/// [`read_all`], and a follower that goes on from exactly where it stopped.
pub fn read_all_and_follow(path: &Path) -> io::Result<(Vec<Record>, Follower)> {
    let mut all = Vec::new();
    let mut follower = Follower {
        path: path.to_path_buf(),
        inode: None,
        offset: 0,
    };
    for (file, current) in [(rotated(path), false), (path.to_path_buf(), true)] {
        let mut data = Vec::new();
        let mut f = match open_nofollow(&file, false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let inode = f.metadata()?.ino();
        (&mut f)
            .take(2 * MAX_RECORD as u64 + output_log_limit())
            .read_to_end(&mut data)?;
        let (records, used) = parse(&data)?;
        all.extend(records);
        if current {
            follower.inode = Some(inode);
            follower.offset = used as u64;
        }
    }
    Ok((all, follower))
}

/// Follows the log as it grows, across rotations.
pub struct Follower {
    path: PathBuf,
    inode: Option<u64>,
    offset: u64,
}

impl Follower {
    /// From the current end of the log: only what is written from now on.
    pub fn from_end(path: &Path) -> Follower {
        let meta = std::fs::symlink_metadata(path).ok();
        Follower {
            path: path.to_path_buf(),
            inode: meta.as_ref().map(MetadataExt::ino),
            offset: meta.map_or(0, |m| m.len()),
        }
    }

    /// The records written since the last call.
    pub fn next_records(&mut self) -> io::Result<Vec<Record>> {
        let mut out = Vec::new();
        let mut file = match open_nofollow(&self.path, false) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        let inode = file.metadata()?.ino();
        if self.inode.is_some_and(|i| i != inode) {
            // Rotated: the rest of the file we were reading is now the rotated one.
            if let Ok(mut old) = open_nofollow(&rotated(&self.path), false)
                && old.metadata()?.ino() == self.inode.expect("checked")
            {
                out.extend(read_from(&mut old, self.offset)?.0);
            }
            self.offset = 0;
        }
        self.inode = Some(inode);
        let (records, used) = read_from(&mut file, self.offset)?;
        self.offset += used;
        out.extend(records);
        Ok(out)
    }
}

fn read_from(file: &mut File, offset: u64) -> io::Result<(Vec<Record>, u64)> {
    let len = file.metadata()?.len();
    if len <= offset {
        return Ok((Vec::new(), 0));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut data = Vec::new();
    file.take(len - offset).read_to_end(&mut data)?;
    let (records, used) = parse(&data)?;
    Ok((records, used as u64))
}

/// A piece of one stream's output between line ends, for `--timestamps` and `--tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub stream: Stream,
    pub time: SystemTime,
    pub bytes: Vec<u8>,
    /// The piece begins a line of its stream.
    pub starts_line: bool,
    /// The piece ends with a newline.
    pub ends_line: bool,
}

/// Cuts records into pieces at newlines, tracking each stream's line starts (the console
/// and stdout share the terminal, but each stream's lines are its own).
#[derive(Default)]
pub struct Lines {
    mid_line: [bool; 3],
}

impl Lines {
    pub fn split(&mut self, record: &Record) -> Vec<Piece> {
        let mut pieces = Vec::new();
        let slot = record.stream as usize;
        for part in record.bytes.split_inclusive(|&b| b == b'\n') {
            let ends_line = part.ends_with(b"\n");
            pieces.push(Piece {
                stream: record.stream,
                time: record.time,
                bytes: part.to_vec(),
                starts_line: !self.mid_line[slot],
                ends_line,
            });
            self.mid_line[slot] = !ends_line;
        }
        pieces
    }
}

/// Which of the log's pieces `ignite logs` prints: those from `since` on, then only the
/// last `tail` lines.
pub fn select(records: &[Record], since: Option<SystemTime>, tail: Option<usize>) -> Vec<Piece> {
    let mut lines = Lines::default();
    let mut pieces: Vec<Piece> = records
        .iter()
        .flat_map(|r| lines.split(r))
        .filter(|p| since.is_none_or(|s| p.time >= s))
        .collect();
    if let Some(tail) = tail {
        // The last `tail` line starts, counted from the end.
        let mut starts = 0;
        let mut cut = pieces.len();
        for (i, piece) in pieces.iter().enumerate().rev() {
            if piece.starts_line {
                if starts == tail {
                    break;
                }
                starts += 1;
                cut = i;
            }
        }
        pieces.drain(..cut);
    }
    pieces
}

/// RFC 3339 with nanoseconds in UTC, as `docker logs -t` prints.
pub fn timestamp(time: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(time)
        .format("%Y-%m-%dT%H:%M:%S%.9fZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(stream: Stream, secs: u64, bytes: &str) -> Record {
        Record {
            stream,
            time: UNIX_EPOCH + Duration::from_secs(secs),
            bytes: bytes.as_bytes().to_vec(),
        }
    }

    #[test]
    fn records_round_trip_in_order_and_binary_safe() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.log");
        let mut log = OutputLogWriter::open(&path).unwrap();
        log.append(Stream::Console, b"boot\n").unwrap();
        log.append(Stream::Stdout, &[0, 255, 10, 13]).unwrap();
        log.append(Stream::Stderr, b"oops").unwrap();
        let all = read_all(&path).unwrap();
        let got: Vec<(Stream, &[u8])> = all.iter().map(|r| (r.stream, &r.bytes[..])).collect();
        assert_eq!(
            got,
            [
                (Stream::Console, &b"boot\n"[..]),
                (Stream::Stdout, &[0, 255, 10, 13][..]),
                (Stream::Stderr, &b"oops"[..]),
            ]
        );
    }

    #[test]
    fn a_record_being_written_is_left_for_later() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.log");
        let mut log = OutputLogWriter::open(&path).unwrap();
        log.append(Stream::Stdout, b"whole").unwrap();
        let mut follower = Follower::from_end(&path);
        log.append(Stream::Stdout, b"second").unwrap();
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 3]).unwrap();
        assert!(follower.next_records().unwrap().is_empty());
        std::fs::write(&path, &full).unwrap();
        let next = follower.next_records().unwrap();
        assert_eq!(next.len(), 1);
        assert_eq!(next[0].bytes, b"second");
    }

    #[test]
    fn a_follower_reads_across_a_rotation_without_loss() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.log");
        let mut log = OutputLogWriter::with_limit(&path, 100).unwrap();
        let mut follower = Follower::from_end(&path);
        let mut seen = Vec::new();
        // Two records fit below the limit, so between these polls one record lands in the
        // file being read and the next one rotates it: the rest of the rotated file must
        // be read. (A follower slower than two rotations loses the older file's rest.)
        for i in 0..40u8 {
            log.append(Stream::Stdout, &[b'a' + i % 26; 30]).unwrap();
            if i % 2 == 0 {
                seen.extend(follower.next_records().unwrap());
            }
        }
        seen.extend(follower.next_records().unwrap());
        let bytes: Vec<u8> = seen.iter().flat_map(|r| r.bytes.clone()).collect();
        let want: Vec<u8> = (0..40u8).flat_map(|i| [b'a' + i % 26; 30]).collect();
        assert_eq!(bytes, want);
    }

    #[test]
    fn damage_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("output.log");
        std::fs::write(&path, [9u8; 40]).unwrap();
        let err = read_all(&path).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn the_writer_does_not_follow_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("canary");
        std::fs::write(&canary, "keep").unwrap();
        let path = dir.path().join("output.log");
        std::os::unix::fs::symlink(&canary, &path).unwrap();
        assert!(OutputLogWriter::open(&path).is_err());
        assert_eq!(std::fs::read_to_string(&canary).unwrap(), "keep");
    }

    #[test]
    fn tail_counts_lines_across_records_and_streams() {
        let records = [
            record(Stream::Console, 1, "boot 1\nboot 2\n"),
            record(Stream::Stdout, 2, "out 1\nout "),
            record(Stream::Stderr, 3, "err 1\n"),
            record(Stream::Stdout, 4, "2\n"),
        ];
        let text = |pieces: Vec<Piece>| -> String {
            pieces
                .iter()
                .map(|p| String::from_utf8_lossy(&p.bytes).into_owned())
                .collect()
        };
        assert_eq!(
            text(select(&records, None, Some(2))),
            "out err 1\n2\n",
            "the last two line starts are 'out ' (stdout) and 'err 1'"
        );
        assert_eq!(text(select(&records, None, Some(0))), "");
        assert_eq!(
            text(select(&records, None, None)),
            "boot 1\nboot 2\nout 1\nout err 1\n2\n"
        );
        let since = UNIX_EPOCH + Duration::from_secs(3);
        assert_eq!(text(select(&records, Some(since), None)), "err 1\n2\n");
    }

    #[test]
    fn pieces_know_where_their_stream_s_lines_start() {
        let mut lines = Lines::default();
        let a = lines.split(&record(Stream::Stdout, 1, "ab\ncd"));
        assert!(a[0].starts_line && a[0].ends_line);
        assert!(a[1].starts_line && !a[1].ends_line);
        let b = lines.split(&record(Stream::Stderr, 1, "x\n"));
        assert!(b[0].starts_line);
        let c = lines.split(&record(Stream::Stdout, 1, "ef\n"));
        assert!(!c[0].starts_line, "continues stdout's open line");
        assert_eq!(
            timestamp(UNIX_EPOCH + Duration::from_nanos(1_500_000_000)),
            "1970-01-01T00:00:01.500000000Z"
        );
    }
}
