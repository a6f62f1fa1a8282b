//! How a process starts in the image, as Docker resolves it: its user (from the image's
//! /etc/passwd and /etc/group), its environment and its program (found on PATH). For the
//! container-mode workload and for `ignite exec` sessions alike.

use std::ffi::{CString, c_char};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use ignite_guest_protocol::config::Workload;
use ignite_guest_protocol::status;
use rustix::process::{Gid, Uid};

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Who a process runs as, as runc's `GetExecUser` decides it for `docker run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// The passwd entry's home; `/` for a uid the image's /etc/passwd lacks.
    pub home: String,
    /// The groups it is in, as Docker sets them: those of /etc/group that list the user as
    /// a member (none when a group was given), then its primary group.
    pub groups: Vec<u32>,
}

/// `USER` as Docker reads it: `name`, `uid`, `name:group`, `uid:gid`, against the image's
/// /etc/passwd and /etc/group (no NSS in here). Empty means root, whose home and groups
/// come from those files too.
pub fn resolve_user(spec: &str) -> Result<User, String> {
    resolve_user_in(
        spec,
        &fs::read_to_string("/etc/passwd").unwrap_or_default(),
        &fs::read_to_string("/etc/group").unwrap_or_default(),
    )
}

fn resolve_user_in(spec: &str, passwd: &str, group_file: &str) -> Result<User, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 7 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, mut gid, home, name) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| format!("bad uid for {user} in /etc/passwd"))?,
            f[3].parse()
                .map_err(|_| format!("bad gid for {user} in /etc/passwd"))?,
            f[5].to_string(),
            Some(f[0]),
        ),
        (None, Ok(uid)) => (uid, 0, "/".to_string(), None),
        (None, Err(_)) => {
            return Err(format!(
                "the image's USER {user:?} is not in its /etc/passwd"
            ));
        }
    };
    let groups: Vec<Vec<&str>> = group_file
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 3)
        .collect();
    let mut supplementary = Vec::new();
    match group.filter(|g| !g.is_empty()) {
        Some(group) => {
            gid = match group.parse::<u32>() {
                Ok(gid) => gid,
                Err(_) => groups
                    .iter()
                    .find(|f| f[0] == group)
                    .and_then(|f| f[2].parse().ok())
                    .ok_or_else(|| {
                        format!(
                            "the group {group:?} of USER {spec:?} is not in the image's /etc/group"
                        )
                    })?,
            };
        }
        None => {
            if let Some(name) = name {
                supplementary = groups
                    .iter()
                    .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == name))
                    .filter_map(|f| f[2].parse().ok())
                    .collect();
            }
        }
    }
    // Docker's list also holds the primary group.
    if !supplementary.contains(&gid) {
        supplementary.push(gid);
    }
    Ok(User {
        uid,
        gid,
        home,
        groups: supplementary,
    })
}

/// The workload's environment, in Docker's order: `PATH`, `HOSTNAME` (and `TERM` with a
/// terminal), then the image's ENV and the variables given, each replacing an earlier one
/// in its place, and `HOME` last unless one of them set it.
pub fn environment(workload: &Workload, user: &User) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![("PATH".into(), DEFAULT_PATH.into())];
    if let Ok(hostname) = fs::read_to_string("/proc/sys/kernel/hostname") {
        env.push(("HOSTNAME".into(), hostname.trim().to_string()));
    }
    if workload.tty {
        env.push(("TERM".into(), "xterm".into()));
    }
    for pair in &workload.env {
        let (key, value) = pair.split_once('=').unwrap_or((pair.as_str(), ""));
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => env.push((key.to_string(), value.to_string())),
        }
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), user.home.clone()));
    }
    env
}

/// The environment block, kept alive until the child's exec.
struct Envp {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

// SAFETY: the pointers point into `_strings`, which the block owns and never changes; they
// are only read, by the forked child's exec.
#[allow(unsafe_code)]
unsafe impl Send for Envp {}
#[allow(unsafe_code)]
unsafe impl Sync for Envp {}

impl Envp {
    /// The block as `environ` holds it. A method, so that a closure captures the whole
    /// block (its `Send`), not the field.
    fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

#[allow(unsafe_code)]
unsafe extern "C" {
    static mut environ: *const *const c_char;
}

/// Makes `command` run as `user` (supplementary groups, group, user) with exactly `env`, in
/// its order: std's own environment handling sorts the variables, and Docker keeps them as
/// listed. `command` must not be given an environment of its own (no `env`, `env_clear`).
#[allow(unsafe_code)]
pub fn run_as(command: &mut Command, env: &[(String, String)], user: &User) {
    let strings: Vec<CString> = env
        .iter()
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect();
    let mut pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
    pointers.push(std::ptr::null());
    let envp = Envp {
        _strings: strings,
        pointers,
    };
    let groups: Vec<Gid> = user.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let (uid, gid) = (Uid::from_raw(user.uid), Gid::from_raw(user.gid));
    let change_identity = rustix::process::getuid().is_root();
    // SAFETY: the closure runs in the forked child before exec and only makes system calls
    // and stores a pointer to memory allocated before the fork: nothing that allocates or
    // takes a lock. std sets no environment of its own after it (the command has none), so
    // exec passes this one.
    unsafe {
        command.pre_exec(move || {
            if change_identity {
                rustix::thread::set_thread_groups(&groups)?;
                rustix::thread::set_thread_gid(gid)?;
                rustix::thread::set_thread_uid(uid)?;
            }
            environ = envp.as_ptr();
            Ok(())
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:The App:/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:app,other\napp:x:1000:\nnogroup:x:65534:\n";

    fn user(spec: &str) -> User {
        resolve_user_in(spec, PASSWD, GROUP).unwrap()
    }

    /// What `docker run -u SPEC` gives `id` and `$HOME` on these files.
    #[test]
    fn users_resolve_as_docker_resolves_them() {
        let root = user("");
        assert_eq!((root.uid, root.gid, root.home.as_str()), (0, 0, "/root"));
        assert_eq!(root.groups, vec![0]);
        assert_eq!(user("app").groups, vec![50, 1000]);
        assert_eq!(user("app").home, "/home/app");
        assert_eq!(user("1000").groups, vec![50, 1000]);
        let given = user("1000:50");
        assert_eq!((given.uid, given.gid, given.groups), (1000, 50, vec![50]));
        let named = user("app:nogroup");
        assert_eq!((named.gid, named.groups), (65534, vec![65534]));
        let unknown = user("4242");
        assert_eq!(
            (unknown.uid, unknown.gid, unknown.home.as_str()),
            (4242, 0, "/")
        );
        assert_eq!(unknown.groups, vec![0]);
        assert_eq!(resolve_user_in("", "", "").unwrap().home, "/");
        assert!(resolve_user_in("ghost", PASSWD, GROUP).is_err());
        assert!(resolve_user_in("app:ghosts", PASSWD, GROUP).is_err());
    }

    #[test]
    fn the_environment_keeps_docker_s_order() {
        let workload = Workload {
            env: vec!["ZED=1".into(), "PATH=/bin".into(), "ALPHA=2".into()],
            ..Workload::default()
        };
        let env = environment(&workload, &user("app"));
        let keys: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
        let expected: Vec<&str> = if env.iter().any(|(k, _)| k == "HOSTNAME") {
            vec!["PATH", "HOSTNAME", "ZED", "ALPHA", "HOME"]
        } else {
            vec!["PATH", "ZED", "ALPHA", "HOME"]
        };
        assert_eq!(keys, expected);
        assert_eq!(env[0].1, "/bin");
        assert_eq!(env.last().unwrap().1, "/home/app");
        let own_home = Workload {
            env: vec!["HOME=/elsewhere".into()],
            ..Workload::default()
        };
        let env = environment(&own_home, &user(""));
        assert_eq!(env.iter().filter(|(k, _)| k == "HOME").count(), 1);
        assert_eq!(env.last().unwrap(), &("HOME".into(), "/elsewhere".into()));
    }
}
