//! How a process starts in the image, as Docker resolves it: its user (from the image's
//! /etc/passwd and /etc/group), its environment and its program (found on PATH). For the
//! container-mode workload and for `ignite exec` sessions alike.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ignite_guest_protocol::config::Workload;
use ignite_guest_protocol::status;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub home: Option<String>,
}

/// `USER` as Docker reads it: `name`, `uid`, `name:group`, `uid:gid`, against the image's
/// /etc/passwd and /etc/group (no NSS in here). Empty means root.
pub fn resolve_user(spec: &str) -> Result<Option<User>, String> {
    if spec.is_empty() {
        return Ok(None);
    }
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, mut gid, home) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| format!("bad uid for {user} in /etc/passwd"))?,
            f[3].parse()
                .map_err(|_| format!("bad gid for {user} in /etc/passwd"))?,
            Some(f[5].to_string()),
        ),
        (None, Ok(uid)) => (uid, 0, None),
        (None, Err(_)) => {
            return Err(format!(
                "the image's USER {user:?} is not in its /etc/passwd"
            ));
        }
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => fs::read_to_string("/etc/group")
                .unwrap_or_default()
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("the group {group:?} of USER {spec:?} is not in the image's /etc/group")
                })?,
        };
    }
    Ok(Some(User { uid, gid, home }))
}

/// The workload's environment: the image's ENV over sensible defaults.
pub fn environment(workload: &Workload, user: Option<&User>) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        (
            "HOME".into(),
            user.and_then(|u| u.home.clone())
                .unwrap_or_else(|| "/root".into()),
        ),
    ];
    if let Ok(hostname) = fs::read_to_string("/proc/sys/kernel/hostname") {
        env.push(("HOSTNAME".into(), hostname.trim().to_string()));
    }
    for pair in &workload.env {
        let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
        env.retain(|(k, _)| k != key);
        env.push((key.to_string(), value.to_string()));
    }
    env
}

/// Finds a program as execvp would; the error carries Docker's status for it.
pub fn find_program(name: &str, path: &str) -> Result<PathBuf, (i32, String)> {
    let candidates: Vec<PathBuf> = if name.contains('/') {
        vec![PathBuf::from(name)]
    } else {
        path.split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(name))
            .collect()
    };
    let mut not_executable = None;
    for candidate in candidates {
        match fs::metadata(&candidate) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(candidate),
            Ok(_) => not_executable = Some(candidate),
            Err(_) => {}
        }
    }
    match not_executable {
        Some(p) => Err((
            status::CANNOT_EXECUTE,
            format!("{} is not an executable file", p.display()),
        )),
        None => Err((
            status::COMMAND_NOT_FOUND,
            format!("command not found: {name} (searched PATH={path})"),
        )),
    }
}
