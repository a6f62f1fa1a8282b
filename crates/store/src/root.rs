//! Which directory holds the state: `--root`, else `IGNITE_ROOT`, else `/var/lib/ignite`
//! for root and `$XDG_DATA_HOME/ignite` (`~/.local/share/ignite`) for everyone else.

use std::path::{Path, PathBuf};

pub const ROOT_ENV: &str = "IGNITE_ROOT";
pub const SYSTEM_ROOT: &str = "/var/lib/ignite";

/// Picks the state root. `flag` is the value of `--root`, if given.
pub fn resolve_root(flag: Option<&Path>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os(ROOT_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    default_root(
        rustix::process::geteuid().is_root(),
        std::env::var_os("XDG_DATA_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn default_root(is_root: bool, xdg_data_home: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    if is_root {
        return PathBuf::from(SYSTEM_ROOT);
    }
    if let Some(xdg) = xdg_data_home.filter(|p| p.is_absolute()) {
        return xdg.join("ignite");
    }
    match home {
        Some(home) => home.join(".local/share/ignite"),
        // No home directory: a per-user directory under /tmp is better than failing.
        None => {
            std::env::temp_dir().join(format!("ignite-{}", rustix::process::geteuid().as_raw()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_users_get_different_defaults() {
        assert_eq!(
            default_root(true, Some("/x".into()), Some("/home/a".into())),
            Path::new(SYSTEM_ROOT)
        );
        assert_eq!(
            default_root(false, Some("/xdg".into()), Some("/home/a".into())),
            Path::new("/xdg/ignite")
        );
        // A relative XDG_DATA_HOME is invalid per the spec and ignored.
        assert_eq!(
            default_root(false, Some("rel".into()), Some("/home/a".into())),
            Path::new("/home/a/.local/share/ignite")
        );
    }

    #[test]
    fn flag_wins() {
        assert_eq!(resolve_root(Some(Path::new("/flag"))), Path::new("/flag"));
    }
}
