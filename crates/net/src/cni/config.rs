//! Network configurations: the `.conflist`, `.conf` and `.json` files of a configuration
//! directory (by default `/etc/cni/net.d`), taken in file-name order as libcni does, and
//! the default one Ignite writes when there is none.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::CniError;
use ignite_host_tools::PathError;

pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";

/// The file of the default network, written when the directory holds no configuration.
pub const DEFAULT_FILE: &str = "10-ignite.conflist";
/// The default network's name, bridge and subnet (Ignite's bridge mode has 10.61.0.0/16).
pub const DEFAULT_NETWORK: &str = "ignite-cni";
pub const DEFAULT_BRIDGE: &str = "ignite-cni0";
pub const DEFAULT_SUBNET: &str = "10.62.0.0/16";

/// The spec versions whose configurations and results are understood.
const VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// Configurations larger than this are refused rather than read.
const MAX_FILE: u64 = 1 << 20;

/// One network: a configuration list, or a single `.conf` taken as a list of one plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    pub name: String,
    pub cni_version: String,
    /// Each plugin's configuration, as written (each has a `type`).
    pub plugins: Vec<Map<String, Value>>,
    /// Where it was read from.
    pub file: PathBuf,
}

impl NetworkConfig {
    /// Parses a configuration file's text.
    pub fn parse(file: &Path, text: &str) -> Result<NetworkConfig, CniError> {
        let bad = |message: String| CniError::BadConfig {
            file: file.to_path_buf(),
            message,
        };
        let value: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let Value::Object(top) = value else {
            return Err(bad("not a JSON object".into()));
        };
        let text_field = |key: &str| top.get(key).and_then(Value::as_str).map(str::to_string);
        let name = text_field("name").ok_or_else(|| bad("no \"name\"".into()))?;
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(bad(format!("bad network name {name:?}")));
        }
        let cni_version = text_field("cniVersion").unwrap_or_else(|| "0.3.0".into());
        if !VERSIONS.contains(&cni_version.as_str()) {
            return Err(bad(format!(
                "cniVersion {cni_version:?} is not supported (supported: {})",
                VERSIONS.join(", ")
            )));
        }
        let plugins = match top.get("plugins") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|p| match p {
                    Value::Object(p) => Ok(p.clone()),
                    _ => Err(bad("a plugin that is not a JSON object".into())),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => return Err(bad("\"plugins\" is not a list".into())),
            // A single plugin's `.conf`.
            None => vec![top.clone()],
        };
        if plugins.is_empty() {
            return Err(bad("no plugins".into()));
        }
        for plugin in &plugins {
            let kind = plugin.get("type").and_then(Value::as_str).unwrap_or("");
            // It names a program in the binary directories: a plain file name only.
            if kind.is_empty() || kind.contains('/') || kind.starts_with('.') {
                return Err(bad(format!("bad plugin type {kind:?}")));
            }
        }
        Ok(NetworkConfig {
            name,
            cni_version,
            plugins,
            file: file.to_path_buf(),
        })
    }

    /// Reads and parses one file.
    pub fn read(file: &Path) -> Result<NetworkConfig, CniError> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(file)
            .and_then(|f| f.take(MAX_FILE + 1).read_to_string(&mut text))
            .map_err(|e| PathError::new("read", file, e))?;
        if text.len() as u64 > MAX_FILE {
            return Err(CniError::BadConfig {
                file: file.to_path_buf(),
                message: format!("larger than {MAX_FILE} bytes"),
            });
        }
        NetworkConfig::parse(file, &text)
    }

    /// The plugin types, in order.
    pub fn plugin_types(&self) -> Vec<&str> {
        self.plugins
            .iter()
            .map(|p| p.get("type").and_then(Value::as_str).unwrap_or(""))
            .collect()
    }

    /// Whether some plugin declares the capability (`portMappings`, `ips`).
    pub fn has_capability(&self, capability: &str) -> bool {
        self.plugins.iter().any(|p| plugin_has(p, capability))
    }
}

pub(crate) fn plugin_has(plugin: &Map<String, Value>, capability: &str) -> bool {
    plugin
        .get("capabilities")
        .and_then(|c| c.get(capability))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The configuration files in `dir`, in file-name order (none when it does not exist).
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, CniError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(PathError::new("read", dir, e).into()),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "conflist" || x == "conf" || x == "json")
                && p.is_file()
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The network to use: the one named `name`, or the first file's.
pub fn load(dir: &Path, name: Option<&str>) -> Result<NetworkConfig, CniError> {
    let files = files(dir)?;
    let Some(name) = name else {
        return match files.first() {
            Some(first) => NetworkConfig::read(first),
            None => Err(CniError::NoConfig {
                dir: dir.to_path_buf(),
            }),
        };
    };
    let mut found = Vec::new();
    for file in &files {
        match NetworkConfig::read(file) {
            Ok(config) if config.name == name => return Ok(config),
            Ok(config) => found.push(config.name),
            // Another network's broken file does not stop this one.
            Err(e) => tracing::warn!("{e}"),
        }
    }
    Err(CniError::NotFound {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        found: if found.is_empty() {
            "none".into()
        } else {
            found.join(", ")
        },
    })
}

/// The default network: a bridge with host-local addresses on Ignite's own subnet, port
/// forwards through portmap, and the firewall plugin letting the bridge's traffic through
/// a `FORWARD` chain that drops (as Docker Engine's does). Leases go to `data_dir`
/// (host-local's own default, `/var/lib/cni/networks`, when `None`).
pub fn default_conflist(data_dir: Option<&Path>) -> String {
    let mut ipam = serde_json::json!({
        "type": "host-local",
        "ranges": [[{ "subnet": DEFAULT_SUBNET }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
    });
    if let Some(dir) = data_dir {
        ipam["dataDir"] = dir.to_string_lossy().into();
    }
    let list = serde_json::json!({
        "cniVersion": "1.0.0",
        "name": DEFAULT_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": DEFAULT_BRIDGE,
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "capabilities": { "ips": true },
                "ipam": ipam,
            },
            { "type": "portmap", "capabilities": { "portMappings": true } },
            { "type": "firewall" },
        ],
    });
    let mut text = serde_json::to_string_pretty(&list).unwrap_or_default();
    text.push('\n');
    text
}

/// Writes the default network into `dir` when it holds no configuration; whether it did.
pub fn ensure_default(dir: &Path) -> Result<bool, CniError> {
    if !files(dir)?.is_empty() {
        return Ok(false);
    }
    std::fs::create_dir_all(dir).map_err(|e| PathError::new("create", dir, e))?;
    let file = dir.join(DEFAULT_FILE);
    let temp = dir.join(format!(".{DEFAULT_FILE}.{}", std::process::id()));
    std::fs::write(&temp, default_conflist(None))
        .and_then(|()| std::fs::rename(&temp, &file))
        .map_err(|e| PathError::new("write", &file, e))?;
    tracing::info!(
        "wrote the default CNI network {DEFAULT_NETWORK:?} to {}",
        file.display()
    );
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conflist_and_a_single_conf_both_become_lists() {
        let list = NetworkConfig::parse(
            Path::new("a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]}"#,
        )
        .unwrap();
        assert_eq!(list.name, "net");
        assert_eq!(list.plugin_types(), ["bridge", "portmap"]);
        assert!(list.has_capability("portMappings"));
        assert!(!list.has_capability("ips"));
        let single = NetworkConfig::parse(
            Path::new("b.conf"),
            r#"{"cniVersion":"0.4.0","name":"p2p","type":"ptp","ipam":{"type":"host-local"}}"#,
        )
        .unwrap();
        assert_eq!(single.plugin_types(), ["ptp"]);
        assert_eq!(single.cni_version, "0.4.0");
        assert!(single.plugins[0].contains_key("ipam"));
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let err = |text: &str| {
            NetworkConfig::parse(Path::new("x.conflist"), text)
                .unwrap_err()
                .to_string()
        };
        assert!(err("{").contains("not JSON"));
        assert!(err(r#"{"plugins":[]}"#).contains("no \"name\""));
        assert!(err(r#"{"name":"n","plugins":[]}"#).contains("no plugins"));
        assert!(err(r#"{"name":"n","cniVersion":"0.2.0","type":"bridge"}"#).contains("0.2.0"));
        assert!(
            err(r#"{"name":"n","plugins":[{"type":"../../bin/sh"}]}"#).contains("bad plugin type")
        );
        assert!(err(r#"{"name":"n","plugins":[{}]}"#).contains("bad plugin type"));
        assert!(err(r#"{"name":"n","plugins":5}"#).contains("x.conflist"));
    }

    #[test]
    fn the_first_file_by_name_or_the_named_network_is_used() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            load(dir.path(), None),
            Err(CniError::NoConfig { .. })
        ));
        let write = |file: &str, name: &str| {
            std::fs::write(
                dir.path().join(file),
                format!(r#"{{"cniVersion":"1.0.0","name":"{name}","type":"bridge"}}"#),
            )
            .unwrap();
        };
        write("20-b.conf", "second");
        write("10-a.conflist", "first");
        write("30-c.json", "third");
        std::fs::write(dir.path().join("05-broken.txt"), "not a config").unwrap();
        std::fs::write(dir.path().join("40-broken.conf"), "{").unwrap();
        assert_eq!(load(dir.path(), None).unwrap().name, "first");
        assert_eq!(load(dir.path(), Some("third")).unwrap().name, "third");
        let missing = load(dir.path(), Some("nope")).unwrap_err().to_string();
        assert!(
            missing.contains("\"nope\"") && missing.contains("first, second, third"),
            "{missing}"
        );
    }

    #[test]
    fn the_default_network_is_written_only_into_an_empty_directory() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("net.d");
        assert!(ensure_default(&conf).unwrap());
        let config = load(&conf, None).unwrap();
        assert_eq!(config.name, DEFAULT_NETWORK);
        assert_eq!(config.plugin_types(), ["bridge", "portmap", "firewall"]);
        assert!(config.has_capability("portMappings") && config.has_capability("ips"));
        assert_eq!(config.plugins[0]["bridge"], DEFAULT_BRIDGE);
        assert_eq!(
            config.plugins[0]["ipam"]["ranges"][0][0]["subnet"],
            DEFAULT_SUBNET
        );
        assert!(!ensure_default(&conf).unwrap());
        let with_dir = default_conflist(Some(Path::new("/tmp/leases")));
        assert!(
            with_dir.contains("\"dataDir\": \"/tmp/leases\""),
            "{with_dir}"
        );
    }
}
