//! Reading an ext4 image back without mounting it, with e2fsprogs' `debugfs`.

use std::path::Path;
use std::process::Command;

fn debugfs(image: &Path, request: &str) -> String {
    let out = Command::new(
        ignite_host_tools::DEBUGFS
            .locate()
            .expect("debugfs (e2fsprogs) is installed"),
    )
    .args(["-R", request])
    .arg(image)
    .output()
    .expect("debugfs runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A file's content, or None if it does not exist.
pub fn read_file(image: &Path, path: &str) -> Option<Vec<u8>> {
    stat(image, path)?;
    let out = Command::new(
        ignite_host_tools::DEBUGFS
            .locate()
            .expect("debugfs (e2fsprogs) is installed"),
    )
    .args(["-R", &format!("cat {path}")])
    .arg(image)
    .output()
    .unwrap();
    Some(out.stdout)
}

/// `debugfs stat` of a path, or None if it does not exist.
pub fn stat(image: &Path, path: &str) -> Option<String> {
    let out = Command::new(
        ignite_host_tools::DEBUGFS
            .locate()
            .expect("debugfs (e2fsprogs) is installed"),
    )
    .args(["-R", &format!("stat {path}")])
    .arg(image)
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.contains("Inode:") {
        Some(text)
    } else {
        None
    }
}

/// A symlink's target.
pub fn symlink_target(image: &Path, path: &str) -> Option<String> {
    let s = stat(image, path)?;
    let line = s.lines().find(|l| l.contains("Fast link dest:"))?;
    Some(
        line.split_once("Fast link dest:")?
            .1
            .trim()
            .trim_matches('"')
            .to_string(),
    )
}

/// A value from `debugfs stat`, e.g. `field(s, "Links:")`.
pub fn field(stat: &str, name: &str) -> Option<String> {
    let at = stat.find(name)? + name.len();
    stat[at..].split_whitespace().next().map(str::to_string)
}

/// Every path in the filesystem (but `lost+found`), sorted, listed with `debugfs ls -p`.
pub fn all_paths(image: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let listing = debugfs(
            image,
            &format!("ls -p {}", if dir.is_empty() { "/" } else { &dir }),
        );
        for line in listing.lines() {
            // /inode/mode/uid/gid/name/size/
            let fields: Vec<&str> = line.split('/').collect();
            if fields.len() < 7 {
                continue;
            }
            let (mode, name) = (fields[2], fields[5]);
            if name == "." || name == ".." || (dir.is_empty() && name == "lost+found") {
                continue;
            }
            let path = format!("{dir}/{name}");
            if mode.starts_with("04") {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

/// Does `e2fsck -fn` pass?
pub fn fsck_clean(image: &Path) -> bool {
    Command::new(
        ignite_host_tools::E2FSCK
            .locate()
            .expect("e2fsck (e2fsprogs) is installed"),
    )
    .args(["-f", "-n"])
    .arg(image)
    .output()
    .unwrap()
    .status
    .success()
}
