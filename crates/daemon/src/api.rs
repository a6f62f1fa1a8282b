//! The REST API on a unix socket (described by docs/api/openapi.yaml): VMs listed, read,
//! created from a manifest, started, stopped and removed; images and kernels listed;
//! Prometheus metrics at `/metrics`. Errors are JSON (`{"error", "status"}`) with the
//! status code that fits. The socket is the access control: root and, when configured,
//! one group may connect (mode 0660), nobody else.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use ignite_api::{Configuration, Vm};
use ignite_runtime::reconcile::{Desired, Reconciler};
use ignite_runtime::vms::{self, ErrorKind, VmError};
use ignite_store::{Store, StoreError};

use crate::http::{Request, Response, read_request, write_response};
use crate::metrics;
use crate::reconcile_loop::Stats;

/// The value of the source label on VMs made through the API.
pub const SOURCE: &str = "api";

/// What request handlers share.
pub struct Api {
    pub root: PathBuf,
    pub configuration: Option<Configuration>,
    pub supervisor: PathBuf,
    pub stats: Arc<Mutex<Stats>>,
}

/// Binds the socket (replacing a stale one), sets its mode and group, and serves it on a
/// thread of its own.
pub fn serve(socket: &Path, group: Option<&str>, api: Api) -> anyhow::Result<()> {
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if UnixStream::connect(socket).is_ok() {
        anyhow::bail!(
            "another daemon serves {} already: stop it, or give --api-socket another path",
            socket.display()
        );
    }
    let _ = std::fs::remove_file(socket);
    let gid = group.map(group_id).transpose()?;
    let mode = if gid.is_some() { 0o660 } else { 0o600 };
    let listener = bind_private(socket, gid, mode)?;
    tracing::info!("the API listens on {}", socket.display());
    let api = Arc::new(api);
    let timeout = request_timeout();
    let open = Arc::new(AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            // Past the cap a client is told so at once and the connection closed; the
            // ones in progress end within the request timeout.
            if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
                open.fetch_sub(1, Ordering::SeqCst);
                let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = write_response(
                    &stream,
                    &Response::error(
                        503,
                        format!("{MAX_CONNECTIONS} connections are open already: retry later"),
                    ),
                );
                continue;
            }
            let api = api.clone();
            let open = open.clone();
            std::thread::spawn(move || {
                let _ = stream.set_write_timeout(Some(timeout));
                let (response, unread) = match read_request(&stream, timeout) {
                    Ok(request) => (
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            api.handle(&request)
                        }))
                        .unwrap_or_else(|_| {
                            Response::error(500, "internal error; see the daemon's log")
                        }),
                        false,
                    ),
                    // After a timeout there is no time left to give.
                    Err(response) => {
                        let unread = response.status != 408;
                        (response, unread)
                    }
                };
                let _ = write_response(&stream, &response);
                if unread {
                    // A refused request may be unread in part: closing on it would reset
                    // the connection before the client reads why. A little is drained.
                    drain(&stream);
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Ok(())
}

/// Reads (and drops) what the client still sends, for at most a second and 2 MiB.
fn drain(stream: &UnixStream) {
    use std::io::Read as _;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let mut buf = [0u8; 16 * 1024];
    let mut left = 2usize << 20;
    let mut reader = stream;
    while left > 0 && std::time::Instant::now() < deadline {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The most connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Overrides [`crate::http::REQUEST_TIMEOUT`], in milliseconds (for tests).
pub const TIMEOUT_ENV: &str = "IGNITED_API_REQUEST_TIMEOUT_MS";

fn request_timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(crate::http::REQUEST_TIMEOUT, Duration::from_millis)
}

/// Binds `socket` so that it is never connectable by anyone but root before it has its
/// mode and group: it is bound in a fresh directory of mode 0700 beside it (mkdir(2)
/// gives that mode at once; the umask can only take bits away), given its group and mode
/// there, then renamed into place. bind(2) alone makes it with 0777 & ~umask.
fn bind_private(socket: &Path, gid: Option<u32>, mode: u32) -> anyhow::Result<UnixListener> {
    let staging = staging_dir(socket)?;
    let staged = staging.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&staged)
            .with_context(|| format!("cannot listen on {}", socket.display()))?;
        std::os::unix::fs::chown(&staged, None, gid)
            .with_context(|| format!("cannot give {} to its group", socket.display()))?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", socket.display()))?;
        std::fs::rename(&staged, socket)
            .with_context(|| format!("cannot move the socket to {}", socket.display()))?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&staging);
    result
}

/// A new directory of mode 0700 beside `socket`, for binding it.
fn staging_dir(socket: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let parent = socket
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = socket.file_name().unwrap_or_default().to_string_lossy();
    // mkdir(2) fails on anything already there (a link included), so nothing planted
    // is followed; the name is new each time.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let staging = parent.join(format!(".{name}.{}.{nanos:09}.binding", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    Ok(staging)
}

/// A group's id from /etc/group.
fn group_id(name: &str) -> anyhow::Result<u32> {
    let groups = std::fs::read_to_string("/etc/group").context("cannot read /etc/group")?;
    groups
        .lines()
        .find_map(|l| {
            let mut f = l.split(':');
            (f.next() == Some(name)).then(|| f.nth(1)?.parse().ok())?
        })
        .with_context(|| format!("no group {name:?} on this host: create it (groupadd {name}) or give another --api-group"))
}

impl Api {
    fn store(&self) -> Result<Store, Response> {
        Store::open(&self.root).map_err(|e| Response::error(500, e.to_string()))
    }

    fn handle(&self, request: &Request) -> Response {
        let segments: Vec<&str> = request
            .path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let result = match (request.method.as_str(), segments.as_slice()) {
            ("GET", ["metrics"]) => self.store().map(|store| {
                let stats = self.stats.lock().expect("stats lock").clone();
                Response::text(
                    200,
                    "text/plain; version=0.0.4",
                    metrics::render(&store, &stats),
                )
            }),
            ("GET", ["v1", "vms"]) => self.list_vms(),
            ("POST", ["v1", "vms"]) => self.create(&request.body),
            ("GET", ["v1", "vms", name]) => {
                self.with_vm(name, |_, vm| Ok(Response::json(200, &vm)))
            }
            ("DELETE", ["v1", "vms", name]) => self.with_vm(name, |store, vm| {
                vms::remove_vm(store, vm, request.flag("force")).map(|_| Response::empty(204))
            }),
            ("POST", ["v1", "vms", name, "start"]) => self.with_vm(name, |store, vm| {
                self.start(store, vm).map(|vm| Response::json(200, &vm))
            }),
            ("POST", ["v1", "vms", name, "stop"]) => self.with_vm(name, |store, vm| {
                vms::stop_vm(store, vm, request.flag("kill")).map(|vm| Response::json(200, &vm))
            }),
            ("GET", ["v1", "images"]) => self.store().and_then(|s| {
                s.images()
                    .list()
                    .map(|l| Response::json(200, &l.objects))
                    .map_err(store_error)
            }),
            ("GET", ["v1", "kernels"]) => self.store().and_then(|s| {
                s.kernels()
                    .list()
                    .map(|l| Response::json(200, &l.objects))
                    .map_err(store_error)
            }),
            (
                _,
                ["metrics"]
                | ["v1", "vms"]
                | ["v1", "vms", _]
                | ["v1", "images"]
                | ["v1", "kernels"],
            )
            | (_, ["v1", "vms", _, "start" | "stop"]) => Err(Response::error(
                405,
                format!("{} is not allowed on {}", request.method, request.path),
            )),
            _ => Err(Response::error(
                404,
                format!("no such endpoint: {}", request.path),
            )),
        };
        result.unwrap_or_else(|r| r)
    }

    fn list_vms(&self) -> Result<Response, Response> {
        let store = self.store()?;
        let vms: Vec<Vm> = store
            .vms()
            .list()
            .map_err(store_error)?
            .objects
            .into_iter()
            .map(|vm| vms::repair(&store, vm))
            .collect();
        Ok(Response::json(200, &vms))
    }

    fn with_vm(
        &self,
        name: &str,
        f: impl FnOnce(&Store, Vm) -> Result<Response, VmError>,
    ) -> Result<Response, Response> {
        let store = self.store()?;
        let vm = find_exact(&store, name)?;
        let vm = vms::repair(&store, vm);
        f(&store, vm).map_err(vm_error)
    }

    /// A VM from a manifest (JSON or YAML), started unless `status.running` is false.
    fn create(&self, body: &[u8]) -> Result<Response, Response> {
        let store = self.store()?;
        let text = std::str::from_utf8(body)
            .map_err(|_| Response::error(400, "the manifest is not UTF-8"))?;
        let vm: Vm = ignite_api::manifest::decode(text)
            .map_err(|e| Response::error(400, format!("bad VM manifest: {e}")))?;
        ignite_api::validation::validate_vm_manifest(&vm)
            .map_err(|e| Response::error(400, format!("bad VM manifest: {e}")))?;
        crate::reconcile_loop::check_host_access(
            &store,
            self.configuration.as_ref(),
            &vm.spec,
            ignite_runtime::policy::Origin::Api,
        )
        .map_err(vm_error)?;
        let tree: serde_json::Value =
            ignite_api::manifest::decode(text).map_err(|e| Response::error(400, e.to_string()))?;
        let running = tree
            .pointer("/status/running")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        let desired = Desired {
            vm,
            running,
            file: PathBuf::new(),
            text: text.to_string(),
        };
        let reconciler = self.reconciler(&store);
        let action = ignite_runtime::reconcile::Action::Create {
            name: desired.vm.metadata.name.clone(),
            start: running,
        };
        let created = reconciler.create(&desired).map_err(vm_error)?;
        let vm = if running {
            self.start(&store, created).map_err(vm_error)?
        } else {
            created
        };
        tracing::info!("{} through the API", action.describe(true));
        Ok(Response::json(201, &vm))
    }

    fn start(&self, store: &Store, vm: Vm) -> Result<Vm, VmError> {
        let uid = vms::uid_of(&vm);
        self.reconciler(store).start(vm)?;
        Ok(store.vms().get(&uid)?)
    }

    fn reconciler<'a>(&'a self, store: &'a Store) -> Reconciler<'a> {
        crate::reconciler::reconciler(
            store,
            SOURCE,
            self.configuration.as_ref(),
            self.supervisor.clone(),
        )
    }
}

/// The VM whose name or uid is `query`, exactly: unlike the CLI, the API takes no
/// prefixes (a script's `DELETE /v1/vms/s` must not remove `sec-data`).
fn find_exact(store: &Store, query: &str) -> Result<Vm, Response> {
    let mut found: Vec<Vm> = store
        .vms()
        .list()
        .map_err(store_error)?
        .objects
        .into_iter()
        .filter(|v| exact_match(v, query))
        .collect();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Response::error(
            404,
            format!(
                "no VM is named {query:?} or has that uid: the API takes exact names and uids, not prefixes"
            ),
        )),
        _ => Err(Response::error(
            400,
            format!("{query:?} is one VM's name and another's uid: use the uid"),
        )),
    }
}

fn exact_match(vm: &Vm, query: &str) -> bool {
    !query.is_empty()
        && (vm.metadata.name == query
            || vm
                .metadata
                .uid
                .as_ref()
                .is_some_and(|u| u.to_string() == query))
}

fn store_error(e: StoreError) -> Response {
    Response::error(ErrorKind::of_store(&e).http_status(), e.to_string())
}

/// The status follows who must act (see [`ErrorKind`]).
fn vm_error(e: VmError) -> Response {
    Response::error(e.kind().http_status(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(root: &Path) -> Api {
        Api {
            root: root.to_path_buf(),
            configuration: None,
            supervisor: PathBuf::from("/nonexistent/ignite"),
            stats: Arc::default(),
        }
    }

    /// Each kind of error answers with its own status: who must act decides it.
    #[test]
    fn statuses_follow_the_kind_of_error() {
        let cases: Vec<(VmError, u16)> = vec![
            (VmError::Spec("--memory 1M is too little".into()), 400),
            (
                VmError::Vmm(ignite_vmm::VmmError::Unsupported(
                    "Firecracker has no user-mode network".into(),
                )),
                400,
            ),
            (
                VmError::Image(ignite_runtime::images::ImageError::Platform("x/y".into())),
                400,
            ),
            (VmError::Denied("spec.volumes is not allowed".into()), 403),
            (
                VmError::NotFound("the image of VM a (b) is gone".into()),
                404,
            ),
            (
                VmError::Store(StoreError::NotFound {
                    kind: ignite_api::Kind::Vm,
                    query: "nope".into(),
                }),
                404,
            ),
            (VmError::AlreadyRunning("a".into()), 409),
            (
                VmError::Conflict("host port 80/tcp is already in use".into()),
                409,
            ),
            (VmError::Host("qemu-img could not create /x".into()), 500),
            (
                VmError::Vmm(ignite_vmm::VmmError::NotInstalled(
                    "qemu-system-x86_64 is not installed".into(),
                )),
                500,
            ),
            (
                VmError::Disk(ignite_disk::DiskError::Failed {
                    program: "qemu-img",
                    path: "/x".into(),
                    output: "no space".into(),
                }),
                500,
            ),
            (
                VmError::StartFailed {
                    vm: "a".into(),
                    reason: "its VMM exited at once".into(),
                },
                500,
            ),
        ];
        for (error, status) in cases {
            let text = error.to_string();
            let response = vm_error(error);
            assert_eq!(response.status, status, "{text}");
            let body: serde_json::Value = serde_json::from_slice(&response.body).unwrap();
            assert_eq!(body["error"], text.as_str(), "the message is kept");
        }
    }

    /// The socket is root's alone, or root's and one group's.
    #[test]
    fn the_socket_admits_root_and_the_configured_group_only() {
        ignite_testkit::require_root!("giving the API socket a group");
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("private.sock");
        serve(&private, None, api(dir.path())).unwrap();
        assert_eq!(std::fs::metadata(&private).unwrap().mode() & 0o777, 0o600);
        // A second daemon on the same socket is refused, not allowed to steal it.
        let e = serve(&private, None, api(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("another daemon"), "{e}");
        let shared = dir.path().join("shared.sock");
        serve(&shared, Some("root"), api(dir.path())).unwrap();
        let meta = std::fs::metadata(&shared).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o660);
        assert_eq!(meta.gid(), 0);
        let e = serve(
            &dir.path().join("x.sock"),
            Some("no-such-group-here"),
            api(dir.path()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no group \"no-such-group-here\""), "{e}");
    }

    #[test]
    fn vms_are_found_by_exact_name_or_uid_only() {
        let mut vm = Vm::new(
            ignite_api::ObjectMeta {
                name: "sec-data".into(),
                ..Default::default()
            },
            Default::default(),
        );
        vm.metadata.uid = Some("0123456789abcdef".parse().unwrap());
        assert!(exact_match(&vm, "sec-data"));
        assert!(exact_match(&vm, "0123456789abcdef"));
        for no in ["s", "sec", "sec-dat", "0123", "", "sec-data2"] {
            assert!(!exact_match(&vm, no), "{no}");
        }
    }

    /// The socket is bound where only root can reach it: a directory made with mode
    /// 0700 by mkdir(2) itself (no later chmod), whatever the umask; it is gone after.
    #[test]
    fn the_socket_is_bound_in_a_private_directory() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("api.sock");
        let staging = staging_dir(&socket).unwrap();
        assert_eq!(staging.parent(), Some(dir.path()));
        assert_eq!(std::fs::metadata(&staging).unwrap().mode() & 0o7777, 0o700);
        std::fs::remove_dir(&staging).unwrap();
        let listener = bind_private(&socket, None, 0o600).unwrap();
        drop(listener);
        assert_eq!(std::fs::metadata(&socket).unwrap().mode() & 0o777, 0o600);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    /// Every path and method of docs/api/openapi.yaml is routed (none gets the
    /// "no such endpoint" or "not allowed" answers), and nothing else is.
    #[test]
    fn the_openapi_document_matches_the_routes() {
        let doc: serde_json::Value =
            ignite_api::manifest::decode(include_str!("../../../docs/api/openapi.yaml")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let api = api(dir.path());
        let paths = doc["paths"].as_object().unwrap();
        let mut routed = 0;
        for (path, item) in paths {
            for method in ["get", "post", "delete", "put"] {
                let request = Request {
                    method: method.to_uppercase(),
                    path: path.replace("{vm}", "some-vm"),
                    query: vec![],
                    body: vec![],
                };
                let response = api.handle(&request);
                let text = String::from_utf8_lossy(&response.body).into_owned();
                let unrouted = text.contains("no such endpoint") || text.contains("is not allowed");
                if item.get(method).is_some() {
                    assert!(
                        !unrouted,
                        "{method} {path} is documented but not served: {text}"
                    );
                    routed += 1;
                } else {
                    assert!(unrouted, "{method} {path} is served but not documented");
                }
            }
        }
        assert_eq!(routed, 9);
    }
}
