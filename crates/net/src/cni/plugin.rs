//! Running a network's plugins as the CNI spec says: each plugin is a program found in the
//! binary directories, told the command, container, namespace and interface in its
//! environment (`CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_PATH`)
//! and given its configuration on stdin, with the network's `name` and `cniVersion`, the
//! previous plugin's result (`prevResult`) and the runtime's values for the capabilities
//! it declares (`runtimeConfig`: `portMappings`, `ips`). ADD runs the plugins in order; if
//! one fails, DEL runs for all of them so that nothing stays half attached. DEL runs them
//! in reverse order with the ADD's result.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::config::plugin_has;
use super::{CniError, CniResult, NetworkConfig};

/// Where plugins are looked for: the CNI project's directory, then Debian's
/// (`containernetworking-plugins` installs into /usr/lib/cni).
pub const DEFAULT_BIN_DIRS: &[&str] = &["/opt/cni/bin", "/usr/lib/cni"];

/// A plugin's output beyond this is cut off (results are a few hundred bytes).
const MAX_OUTPUT: u64 = 1 << 20;
/// How long one plugin may run before it is killed.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// A host port forwarded to the VM, as the `portMappings` capability passes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub host_port: u16,
    pub container_port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "hostIP")]
    pub host_ip: Option<String>,
}

/// The runtime's values for the capabilities plugins may declare.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// Addresses asked for (`10.62.0.5` or `10.62.0.5/16`), where the IPAM supports it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
}

/// One attachment of a container (a VM) to a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invocation {
    pub container_id: String,
    /// The network namespace's path (`/run/netns/NAME`).
    pub netns: PathBuf,
    pub ifname: String,
    #[serde(default)]
    pub runtime: RuntimeConfig,
}

/// The plugins' directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cni {
    pub bin_dirs: Vec<PathBuf>,
}

impl Default for Cni {
    fn default() -> Cni {
        Cni {
            bin_dirs: DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect(),
        }
    }
}

impl Cni {
    pub fn new(bin_dirs: Vec<PathBuf>) -> Cni {
        Cni { bin_dirs }
    }

    /// The plugin's program: the first executable file of that name in the directories.
    pub fn find(&self, network: &str, plugin: &str) -> Result<PathBuf, CniError> {
        use std::os::unix::fs::PermissionsExt;
        self.bin_dirs
            .iter()
            .map(|d| d.join(plugin))
            .find(|p| {
                std::fs::metadata(p)
                    .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            })
            .ok_or_else(|| CniError::MissingPlugin {
                network: network.to_string(),
                plugin: plugin.to_string(),
                dirs: self.dirs_text(),
            })
    }

    fn dirs_text(&self) -> String {
        let dirs: Vec<String> = self
            .bin_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect();
        dirs.join(":")
    }

    /// Attaches: ADD through every plugin; the last plugin's result. On failure, DEL runs
    /// for every plugin before the error returns.
    pub fn add(
        &self,
        network: &NetworkConfig,
        at: &Invocation,
    ) -> Result<(Value, CniResult), CniError> {
        // Every plugin is found before any runs: a missing one attaches nothing.
        for kind in network.plugin_types() {
            self.find(&network.name, kind)?;
        }
        let mut previous: Option<Value> = None;
        for plugin in &network.plugins {
            match self.exec("ADD", network, plugin, at, previous.as_ref()) {
                Ok(Some(result)) => previous = Some(result),
                Ok(None) => {
                    let e = self.error(network, plugin, "add", "it printed no result");
                    self.undo(network, at, previous.as_ref());
                    return Err(e);
                }
                Err(e) => {
                    self.undo(network, at, previous.as_ref());
                    return Err(e);
                }
            }
        }
        let raw = previous.unwrap_or(Value::Null);
        match CniResult::parse(&raw) {
            Ok(result) => Ok((raw, result)),
            Err(message) => {
                let last = network.plugins.last().cloned().unwrap_or_default();
                let e = self.error(network, &last, "add", &message);
                self.undo(network, at, Some(&raw));
                Err(e)
            }
        }
    }

    fn undo(&self, network: &NetworkConfig, at: &Invocation, result: Option<&Value>) {
        if let Err(e) = self.del(network, at, result) {
            tracing::warn!("cannot undo a failed attachment: {e}");
        }
    }

    /// Detaches: DEL through every plugin in reverse order, with the ADD's result when it
    /// is known. Every plugin runs even if one fails; the first failure is returned.
    pub fn del(
        &self,
        network: &NetworkConfig,
        at: &Invocation,
        result: Option<&Value>,
    ) -> Result<(), CniError> {
        let mut first = None;
        for plugin in network.plugins.iter().rev() {
            if let Err(e) = self.exec("DEL", network, plugin, at, result) {
                tracing::warn!("{e}");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn error(
        &self,
        network: &NetworkConfig,
        plugin: &Map<String, Value>,
        command: &'static str,
        message: &str,
    ) -> CniError {
        CniError::Plugin {
            network: network.name.clone(),
            plugin: kind_of(plugin).to_string(),
            command,
            code: 0,
            message: message.to_string(),
        }
    }

    /// Runs one plugin; its JSON output (none when it printed nothing, as DEL does).
    fn exec(
        &self,
        command: &'static str,
        network: &NetworkConfig,
        plugin: &Map<String, Value>,
        at: &Invocation,
        previous: Option<&Value>,
    ) -> Result<Option<Value>, CniError> {
        let kind = kind_of(plugin);
        let path = self.find(&network.name, kind)?;
        let input = plugin_input(network, plugin, at, previous);
        let verb = if command == "ADD" { "add" } else { "delete" };
        let run_error = |source| CniError::Run {
            network: network.name.clone(),
            plugin: kind.to_string(),
            path: path.clone(),
            source,
        };
        let mut child = Command::new(&path)
            .env_clear()
            .env(
                "PATH",
                std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into()),
            )
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &at.container_id)
            .env("CNI_NETNS", &at.netns)
            .env("CNI_IFNAME", &at.ifname)
            .env("CNI_ARGS", "IgnoreUnknown=1")
            .env("CNI_PATH", self.dirs_text())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(run_error)?;
        let mut stdin = child.stdin.take();
        let feeder = std::thread::spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(&input);
            }
        });
        let capture = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut out = Vec::new();
                if let Some(pipe) = pipe {
                    let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut out);
                }
                out
            })
        };
        let stdout = capture(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let stderr = capture(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let deadline = Instant::now() + PLUGIN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().map_err(run_error)? {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let _ = feeder.join();
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let failed = |code: u32, message: String| CniError::Plugin {
            network: network.name.clone(),
            plugin: kind.to_string(),
            command: verb,
            code,
            message,
        };
        let Some(status) = status else {
            return Err(failed(
                0,
                format!("it did not finish within {PLUGIN_TIMEOUT:?} and was killed"),
            ));
        };
        if !status.success() {
            return Err(match serde_json::from_slice::<PluginError>(&stdout) {
                Ok(e) => {
                    let mut message = e.msg;
                    if !e.details.is_empty() {
                        message = format!("{message}: {}", e.details);
                    }
                    failed(e.code, format!("{message} (CNI error {})", e.code))
                }
                Err(_) => {
                    let text =
                        String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout });
                    failed(0, format!("{status}: {}", text.trim()))
                }
            });
        }
        if stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&stdout)
            .map(Some)
            .map_err(|e| failed(0, format!("its output is not JSON ({e})")))
    }
}

/// The spec's error result.
#[derive(Debug, Deserialize)]
struct PluginError {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

fn kind_of(plugin: &Map<String, Value>) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

/// The configuration one plugin reads on stdin.
pub fn plugin_input(
    network: &NetworkConfig,
    plugin: &Map<String, Value>,
    at: &Invocation,
    previous: Option<&Value>,
) -> Vec<u8> {
    let mut conf = plugin.clone();
    conf.insert("name".into(), network.name.clone().into());
    conf.insert("cniVersion".into(), network.cni_version.clone().into());
    conf.remove("prevResult");
    if let Some(previous) = previous {
        conf.insert("prevResult".into(), previous.clone());
    }
    // Only the capabilities the plugin declares, as the spec says.
    let mut runtime = Map::new();
    if plugin_has(plugin, "portMappings") && !at.runtime.port_mappings.is_empty() {
        runtime.insert(
            "portMappings".into(),
            serde_json::to_value(&at.runtime.port_mappings).unwrap_or_default(),
        );
    }
    if plugin_has(plugin, "ips") && !at.runtime.ips.is_empty() {
        runtime.insert("ips".into(), at.runtime.ips.clone().into());
    }
    conf.remove("runtimeConfig");
    if !runtime.is_empty() {
        conf.insert("runtimeConfig".into(), Value::Object(runtime));
    }
    serde_json::to_vec(&Value::Object(conf)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn network() -> NetworkConfig {
        NetworkConfig::parse(
            Path::new("n.conflist"),
            r#"{"cniVersion":"1.0.0","name":"net","plugins":[
                {"type":"bridge","capabilities":{"ips":true},"runtimeConfig":{"ips":["stale"]}},
                {"type":"portmap","capabilities":{"portMappings":true}},
                {"type":"firewall"}]}"#,
        )
        .unwrap()
    }

    fn invocation() -> Invocation {
        Invocation {
            container_id: "0123456789abcdef".into(),
            netns: "/run/netns/ignite-0123456789abcdef".into(),
            ifname: "eth0".into(),
            runtime: RuntimeConfig {
                port_mappings: vec![PortMapping {
                    host_port: 8080,
                    container_port: 80,
                    protocol: "tcp".into(),
                    host_ip: None,
                }],
                ips: vec!["10.62.0.5/16".into()],
            },
        }
    }

    #[test]
    fn each_plugin_gets_the_name_version_previous_result_and_only_its_capabilities() {
        let network = network();
        let at = invocation();
        let previous = serde_json::json!({"cniVersion": "1.0.0", "ips": []});
        let input = |i: usize, prev: Option<&Value>| -> Value {
            serde_json::from_slice(&plugin_input(&network, &network.plugins[i], &at, prev)).unwrap()
        };
        let bridge = input(0, None);
        assert_eq!(bridge["name"], "net");
        assert_eq!(bridge["cniVersion"], "1.0.0");
        assert!(bridge.get("prevResult").is_none());
        assert_eq!(
            bridge["runtimeConfig"],
            serde_json::json!({"ips": ["10.62.0.5/16"]})
        );
        let portmap = input(1, Some(&previous));
        assert_eq!(portmap["prevResult"], previous);
        assert_eq!(
            portmap["runtimeConfig"],
            serde_json::json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
        );
        let firewall = input(2, Some(&previous));
        assert!(firewall.get("runtimeConfig").is_none());
    }

    #[test]
    fn a_missing_plugin_names_the_network_the_plugin_and_the_directories() {
        let dir = tempfile::tempdir().unwrap();
        let cni = Cni::new(vec![dir.path().to_path_buf()]);
        let e = cni.add(&network(), &invocation()).unwrap_err().to_string();
        assert!(e.contains("\"net\"") && e.contains("\"bridge\""), "{e}");
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
}
