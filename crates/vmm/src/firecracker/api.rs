//! Firecracker's HTTP API on its unix socket: the request bodies Ignite sends (field names
//! as in Firecracker's swagger definition) and a minimal HTTP/1.1 client. Firecracker
//! answers 204 on success and a JSON `{"fault_message": ...}` otherwise; that message is
//! passed on verbatim.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Logger {
    pub log_path: PathBuf,
    /// `Error`, `Warning`, `Info`, `Debug`, `Trace` or `Off`.
    pub level: &'static str,
    pub show_level: bool,
    pub show_log_origin: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Metrics {
    pub metrics_path: PathBuf,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MachineConfiguration {
    pub vcpu_count: u32,
    pub mem_size_mib: u64,
    pub smt: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BootSource {
    /// The uncompressed ELF vmlinux.
    pub kernel_image_path: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<PathBuf>,
    pub boot_args: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Drive {
    pub drive_id: String,
    pub path_on_host: PathBuf,
    /// Always false: ignite-init finds the root disk itself; a root device would make
    /// Firecracker add `root=` to the command line.
    pub is_root_device: bool,
    pub is_read_only: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NetworkInterface {
    pub iface_id: String,
    pub host_dev_name: String,
    pub guest_mac: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Vsock {
    pub guest_cid: u32,
    pub uds_path: PathBuf,
}

/// `PUT /balloon`'s body. The balloon is never inflated (`amount_mib` 0): it is there for
/// free page reporting, which Firecracker has since 1.14.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Balloon {
    pub amount_mib: u32,
    pub deflate_on_oom: bool,
    pub stats_polling_interval_s: u32,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub free_page_reporting: bool,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct InstanceAction {
    /// `InstanceStart`, `SendCtrlAltDel` or `FlushMetrics`.
    pub action_type: &'static str,
}

/// `PATCH /vm`'s body: `Paused` or `Resumed`.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct VmState {
    pub state: &'static str,
}

/// `PUT /snapshot/create`'s body: a full snapshot of the paused VM, its state and its
/// memory in two files.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SnapshotCreate {
    /// `Full` (diff snapshots need dirty-page tracking from boot on).
    pub snapshot_type: &'static str,
    pub snapshot_path: PathBuf,
    pub mem_file_path: PathBuf,
}

/// `PUT /snapshot/load`'s body (Firecracker 1.13 and later: the overrides).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SnapshotLoad {
    pub snapshot_path: PathBuf,
    pub mem_backend: MemoryBackend,
    /// Left paused: the drives are moved to this VM's files first.
    pub resume_vm: bool,
    /// This VM's taps instead of the snapshot's.
    pub network_overrides: Vec<NetworkOverride>,
    /// This VM's vsock socket instead of the snapshot's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vsock_override: Option<VsockOverride>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct MemoryBackend {
    /// `File`: the memory file is mapped privately (pages are read as they are touched).
    pub backend_type: &'static str,
    pub backend_path: PathBuf,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct NetworkOverride {
    pub iface_id: String,
    pub host_dev_name: String,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct VsockOverride {
    pub uds_path: PathBuf,
}

/// `PATCH /drives/{id}`'s body: the drive's file, changed.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct DrivePath {
    pub drive_id: String,
    pub path_on_host: PathBuf,
}

/// `PUT path` with a JSON body; Firecracker's `fault_message` becomes the error.
pub fn put(socket: &Path, path: &str, body: &impl Serialize) -> io::Result<()> {
    send(socket, "PUT", path, body)
}

/// `PATCH path` with a JSON body, as [`put`].
pub fn patch(socket: &Path, path: &str, body: &impl Serialize) -> io::Result<()> {
    send(socket, "PATCH", path, body)
}

/// `GET path`: the JSON Firecracker answers (at most 1 MiB, as every answer).
pub fn get(socket: &Path, path: &str) -> io::Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\n\r\n")
            .as_bytes(),
    )?;
    let (status, text) = read_response(&mut BufReader::new(stream))?;
    if !(200..300).contains(&status) {
        return Err(io::Error::other(format!(
            "Firecracker refused GET {path} ({status}): {text}"
        )));
    }
    serde_json::from_str(&text).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("Firecracker's answer to GET {path} is not JSON: {e}"),
        )
    })
}

fn send(socket: &Path, method: &str, path: &str, body: &impl Serialize) -> io::Result<()> {
    let body = serde_json::to_vec(body).map_err(io::Error::other)?;
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(&body);
    stream.write_all(&request)?;
    let (status, text) = read_response(&mut BufReader::new(stream))?;
    if (200..300).contains(&status) {
        return Ok(());
    }
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("fault_message")?.as_str().map(str::to_string))
        .unwrap_or(text);
    Err(io::Error::other(format!(
        "Firecracker refused {method} {path} ({status}): {message}"
    )))
}

/// The status code and body of one HTTP response.
fn read_response(reader: &mut impl BufRead) -> io::Result<(u16, String)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(&format!("not an HTTP response: {line:?}")))?;
    let mut length = 0usize;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value
                .trim()
                .parse()
                .map_err(|_| bad("bad Content-Length"))?;
        }
    }
    if length > 1 << 20 {
        return Err(bad("an oversized response"));
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::Read;

    fn json_of(body: &impl Serialize) -> serde_json::Value {
        serde_json::to_value(body).unwrap()
    }

    // The bodies against Firecracker's swagger definition (src/firecracker/swagger/
    // firecracker.yaml): every required field present, every name spelled as there.
    #[test]
    fn request_bodies_match_firecrackers_api() {
        assert_eq!(
            json_of(&MachineConfiguration {
                vcpu_count: 2,
                mem_size_mib: 512,
                smt: false
            }),
            json!({"vcpu_count": 2, "mem_size_mib": 512, "smt": false})
        );
        assert_eq!(
            json_of(&BootSource {
                kernel_image_path: "/k/vmlinux".into(),
                initrd_path: Some("/vm/initramfs.cpio".into()),
                boot_args: "console=ttyS0".into(),
            }),
            json!({"kernel_image_path": "/k/vmlinux", "initrd_path": "/vm/initramfs.cpio", "boot_args": "console=ttyS0"})
        );
        assert_eq!(
            json_of(&Drive {
                drive_id: "root".into(),
                path_on_host: "/vm/root.raw".into(),
                is_root_device: false,
                is_read_only: false,
            }),
            json!({"drive_id": "root", "path_on_host": "/vm/root.raw", "is_root_device": false, "is_read_only": false})
        );
        assert_eq!(
            json_of(&NetworkInterface {
                iface_id: "eth0".into(),
                host_dev_name: "ign0123".into(),
                guest_mac: "52:54:00:01:02:03".into(),
            }),
            json!({"iface_id": "eth0", "host_dev_name": "ign0123", "guest_mac": "52:54:00:01:02:03"})
        );
        assert_eq!(
            json_of(&Vsock {
                guest_cid: 3,
                uds_path: "/vm/agent.sock".into()
            }),
            json!({"guest_cid": 3, "uds_path": "/vm/agent.sock"})
        );
        assert_eq!(
            json_of(&Logger {
                log_path: "/vm/firecracker.log".into(),
                level: "Warning",
                show_level: true,
                show_log_origin: false,
            }),
            json!({"log_path": "/vm/firecracker.log", "level": "Warning", "show_level": true, "show_log_origin": false})
        );
        assert_eq!(
            json_of(&Metrics {
                metrics_path: "/vm/m".into()
            }),
            json!({"metrics_path": "/vm/m"})
        );
        assert_eq!(
            json_of(&InstanceAction {
                action_type: "InstanceStart"
            }),
            json!({"action_type": "InstanceStart"})
        );
    }

    #[test]
    fn faults_are_passed_on_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let server = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for answer in [
                "HTTP/1.1 204 No Content\r\nServer: Firecracker API\r\nConnection: keep-alive\r\n\r\n".to_string(),
                "HTTP/1.1 204 No Content\r\n\r\n".to_string(),
                {
                    let body = r#"{"fault_message":"The kernel file cannot be opened: No such file or directory (os error 2)"}"#;
                    format!("HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                },
            ] {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut head = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        length = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0u8; length];
                reader.read_exact(&mut body).unwrap();
                requests.push((head, String::from_utf8(body).unwrap()));
                (&stream).write_all(answer.as_bytes()).unwrap();
            }
            requests
        });
        put(
            &socket,
            "/actions",
            &InstanceAction {
                action_type: "FlushMetrics",
            },
        )
        .unwrap();
        patch(&socket, "/vm", &VmState { state: "Paused" }).unwrap();
        let e = put(
            &socket,
            "/boot-source",
            &BootSource {
                kernel_image_path: "/nope".into(),
                initrd_path: None,
                boot_args: String::new(),
            },
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "Firecracker refused PUT /boot-source (400): The kernel file cannot be opened: No such file or directory (os error 2)"
        );
        let requests = server.join().unwrap();
        assert!(requests[0].0.starts_with("PUT /actions HTTP/1.1\r\n"));
        assert_eq!(requests[0].1, r#"{"action_type":"FlushMetrics"}"#);
        // Pause and resume as Firecracker's swagger has them: PATCH /vm {"state": ...}.
        assert!(requests[1].0.starts_with("PATCH /vm HTTP/1.1\r\n"));
        assert_eq!(requests[1].1, r#"{"state":"Paused"}"#);
        assert!(!requests[2].1.contains("initrd_path"));
    }
}
