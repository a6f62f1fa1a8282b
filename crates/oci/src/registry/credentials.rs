//! Registry credentials from Docker's `config.json`: `auths` entries and credential
//! helpers (`credHelpers`, `credsStore`), as `docker login` leaves them.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use crate::error::{OciError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    #[serde(default)]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Where `config.json` is read from: the given directory, else `$DOCKER_CONFIG`, else
/// `~/.docker`.
pub fn default_config_dir(given: Option<&Path>) -> Option<PathBuf> {
    if let Some(d) = given {
        return Some(d.to_path_buf());
    }
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker"))
}

/// The credentials store of one `config.json`.
#[derive(Debug, Default)]
pub struct CredentialStore {
    config: DockerConfig,
    path: Option<PathBuf>,
    /// Where credential helpers are looked for, instead of `PATH`.
    helper_path: Option<std::ffi::OsString>,
}

impl CredentialStore {
    /// Reads `<dir>/config.json`; a missing file means no credentials.
    pub fn load(dir: Option<&Path>) -> Result<CredentialStore> {
        let Some(dir) = dir else {
            return Ok(CredentialStore::default());
        };
        let path = dir.join("config.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(CredentialStore::default());
            }
            Err(e) => {
                return Err(OciError::Source(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let config = serde_json::from_str(&text).map_err(|e| {
            OciError::Source(format!(
                "{} is not a valid Docker config: {e}",
                path.display()
            ))
        })?;
        Ok(CredentialStore {
            config,
            path: Some(path),
            helper_path: None,
        })
    }

    /// Looks for credential helpers in `path` (a `PATH`-style list) instead of `PATH`.
    pub fn with_helper_path(mut self, path: impl Into<std::ffi::OsString>) -> Self {
        self.helper_path = Some(path.into());
        self
    }

    /// The credentials for `registry` (a host, `docker.io` for Docker Hub), if any.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        let keys = registry_keys(registry);
        if let Some(helper) = keys.iter().find_map(|k| self.config.cred_helpers.get(k)) {
            return run_helper(helper, &keys[0], self.helper_path.as_deref());
        }
        for key in &keys {
            if let Some(entry) = self.config.auths.get(key)
                && let Some(creds) = decode_entry(entry, self.path.as_deref())?
            {
                return Ok(Some(creds));
            }
        }
        // Docker also matches auths keys written as URLs (`https://host/v1/`).
        for (key, entry) in &self.config.auths {
            if host_of(key) == registry
                && let Some(creds) = decode_entry(entry, self.path.as_deref())?
            {
                return Ok(Some(creds));
            }
        }
        if let Some(store) = &self.config.creds_store {
            return run_helper(store, &keys[0], self.helper_path.as_deref());
        }
        Ok(None)
    }
}

/// The keys Docker files a registry's credentials under.
fn registry_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io"
        || registry == "index.docker.io"
        || registry == "registry-1.docker.io"
    {
        vec![
            "https://index.docker.io/v1/".into(),
            "docker.io".into(),
            "index.docker.io".into(),
        ]
    } else {
        vec![
            registry.to_string(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    }
}

fn host_of(key: &str) -> &str {
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

fn decode_entry(entry: &AuthEntry, path: Option<&Path>) -> Result<Option<Credentials>> {
    if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
        return Ok(Some(Credentials {
            username: u.clone(),
            password: p.clone(),
        }));
    }
    let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    let bad = || {
        OciError::Source(format!(
            "an \"auth\" entry in {} is not base64 of user:password",
            path.map_or_else(|| "config.json".into(), |p| p.display().to_string())
        ))
    };
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth)
        .map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (username, password) = text.split_once(':').ok_or_else(bad)?;
    Ok(Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperReply {
    username: String,
    secret: String,
}

/// Asks `docker-credential-<helper> get` for a registry's credentials.
fn run_helper(
    helper: &str,
    server: &str,
    search_path: Option<&std::ffi::OsStr>,
) -> Result<Option<Credentials>> {
    if helper.is_empty() || helper.contains('/') {
        return Err(OciError::Source(format!(
            "invalid credential helper name {helper:?}"
        )));
    }
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    if let Some(p) = search_path {
        command.env("PATH", p);
    }
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| OciError::Source(format!("cannot run credential helper {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| OciError::Source(format!("credential helper {program} failed: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if msg.contains("credentials not found") {
            return Ok(None);
        }
        return Err(OciError::Source(format!(
            "credential helper {program} failed: {}",
            msg.trim()
        )));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout).map_err(|e| {
        OciError::Source(format!(
            "credential helper {program} gave an unreadable answer: {e}"
        ))
    })?;
    Ok(Some(Credentials {
        username: reply.username,
        password: reply.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_auths_in_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            dir.path().join("config.json"),
            format!(r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "http://127.0.0.1:5000/v2/": {{"auth": "{auth}"}}, "reg.example.com": {{"username": "bob", "password": "pw"}}}}}}"#),
        )
        .unwrap();
        let store = CredentialStore::load(Some(dir.path())).unwrap();
        let alice = Some(Credentials {
            username: "alice".into(),
            password: "s3cret".into(),
        });
        assert_eq!(store.get("docker.io").unwrap(), alice);
        assert_eq!(store.get("127.0.0.1:5000").unwrap(), alice);
        assert_eq!(
            store.get("reg.example.com").unwrap().unwrap().username,
            "bob"
        );
        assert_eq!(store.get("other.example.com").unwrap(), None);
        assert!(
            CredentialStore::load(Some(&dir.path().join("missing")))
                .unwrap()
                .get("docker.io")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn runs_credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("docker-credential-test");
        std::fs::write(&bin, "#!/bin/sh\nread server\necho \"{\\\"ServerURL\\\":\\\"$server\\\",\\\"Username\\\":\\\"helper-user\\\",\\\"Secret\\\":\\\"helper-pw\\\"}\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"credHelpers": {"reg.example.com": "test"}}"#,
        )
        .unwrap();
        let store = CredentialStore::load(Some(dir.path()))
            .unwrap()
            .with_helper_path(dir.path().as_os_str());
        let creds = store.get("reg.example.com").unwrap().unwrap();
        assert_eq!(
            (creds.username.as_str(), creds.password.as_str()),
            ("helper-user", "helper-pw")
        );
    }
}
