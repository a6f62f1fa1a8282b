//! What a group used, from the files of either cgroup version. Each figure is `None`
//! where the host does not account it (a controller not mounted or not enabled).

use std::path::{Path, PathBuf};

use crate::hierarchy::Version;

/// A group's usage; counters only ever grow while the group lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used, in microseconds.
    pub cpu_micros: Option<u64>,
    /// Memory in use, in bytes (guest memory the VMM touched, its own, page cache).
    pub memory_bytes: Option<u64>,
    /// The memory limit in bytes; `None`: unlimited or unknown.
    pub memory_limit: Option<u64>,
    /// Bytes read from and written to block devices.
    pub io_read_bytes: Option<u64>,
    pub io_write_bytes: Option<u64>,
    /// Processes and threads in the group.
    pub pids: Option<u64>,
}

/// Reads the usage of a group whose directories (one per mount) are `dirs`.
pub fn read(version: Version, dirs: &[PathBuf]) -> Usage {
    let first = |file: &str| dirs.iter().map(|d| d.join(file)).find(|p| p.exists());
    let number = |file: &str| {
        first(file)
            .and_then(|p| read_small(&p))
            .and_then(|t| t.trim().parse::<u64>().ok())
    };
    match version {
        Version::V2 => {
            let (io_read_bytes, io_write_bytes) = first("io.stat")
                .and_then(|p| read_small(&p))
                .map_or((None, None), |t| {
                    let (r, w) = io_stat_v2(&t);
                    (Some(r), Some(w))
                });
            Usage {
                cpu_micros: first("cpu.stat")
                    .and_then(|p| read_small(&p))
                    .and_then(|t| keyed(&t, "usage_usec")),
                memory_bytes: number("memory.current"),
                memory_limit: number("memory.max"),
                io_read_bytes,
                io_write_bytes,
                pids: number("pids.current"),
            }
        }
        Version::V1 => {
            let (io_read_bytes, io_write_bytes) = first("blkio.throttle.io_service_bytes")
                .and_then(|p| read_small(&p))
                .map_or((None, None), |t| {
                    let (r, w) = blkio_v1(&t);
                    (Some(r), Some(w))
                });
            Usage {
                cpu_micros: number("cpuacct.usage").map(|nanos| nanos / 1000),
                memory_bytes: number("memory.usage_in_bytes"),
                // v1 writes "unlimited" as a page-rounded i64::MAX.
                memory_limit: number("memory.limit_in_bytes").filter(|l| *l < 1 << 62),
                io_read_bytes,
                io_write_bytes,
                pids: number("pids.current"),
            }
        }
    }
}

/// Group files are small; a larger one is not read whole.
fn read_small(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The value of `key` in a `key value` per line file (`cpu.stat`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Bytes read and written over all devices in v2's `io.stat`
/// (`MAJ:MIN rbytes=N wbytes=N rios=N ...` per line).
pub fn io_stat_v2(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut written = 0u64;
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            read = read.saturating_add(v.parse().unwrap_or(0));
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            written = written.saturating_add(v.parse().unwrap_or(0));
        }
    }
    (read, written)
}

/// Bytes read and written over all devices in v1's `blkio.throttle.io_service_bytes`
/// (`MAJ:MIN Read N` ... lines, and a `Total N` line).
pub fn blkio_v1(text: &str) -> (u64, u64) {
    let mut read = 0u64;
    let mut written = 0u64;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if let [_, op, n] = fields.as_slice() {
            let n: u64 = n.parse().unwrap_or(0);
            match *op {
                "Read" => read = read.saturating_add(n),
                "Write" => written = written.saturating_add(n),
                _ => {}
            }
        }
    }
    (read, written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_each_versions_files() {
        assert_eq!(
            keyed(
                "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n",
                "usage_usec"
            ),
            Some(1_234_567)
        );
        assert_eq!(keyed("user_usec 1\n", "usage_usec"), None);
        assert_eq!(
            io_stat_v2(
                "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n\
                 254:16 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n"
            ),
            (4196, 8192)
        );
        assert_eq!(
            blkio_v1(
                "254:0 Read 4096\n254:0 Write 512\n254:0 Sync 0\n254:0 Total 4608\n\
                 8:0 Read 10\n8:0 Write 0\nTotal 4618\n"
            ),
            (4106, 512)
        );
    }

    #[test]
    fn usage_is_read_from_a_group_directory_of_either_version() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("cpu.stat"), "usage_usec 500\n").unwrap();
        std::fs::write(d.join("memory.current"), "1048576\n").unwrap();
        std::fs::write(d.join("memory.max"), "max\n").unwrap();
        std::fs::write(d.join("pids.current"), "7\n").unwrap();
        let v2 = read(Version::V2, &[d.to_path_buf()]);
        assert_eq!(v2.cpu_micros, Some(500));
        assert_eq!(v2.memory_bytes, Some(1 << 20));
        assert_eq!(v2.memory_limit, None);
        assert_eq!(v2.pids, Some(7));
        assert_eq!(v2.io_read_bytes, None);
        std::fs::write(d.join("cpuacct.usage"), "2000000\n").unwrap();
        std::fs::write(d.join("memory.usage_in_bytes"), "4096\n").unwrap();
        std::fs::write(d.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        let v1 = read(Version::V1, &[d.to_path_buf()]);
        assert_eq!(v1.cpu_micros, Some(2000));
        assert_eq!(v1.memory_bytes, Some(4096));
        assert_eq!(v1.memory_limit, None);
    }
}
