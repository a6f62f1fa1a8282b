//! A Docker Engine of the test's own: Debian's `dockerd` with its own data root, exec root,
//! pid file and socket under a temporary directory (never the host's engine), started by the
//! test and stopped when dropped. Outside a network namespace it runs with
//! `--bridge=none --iptables=false`, so it changes nothing on the machine; in a namespace of
//! the test's own it may manage iptables there as it does on a real host.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::netns::Netns;

/// How long dockerd may take to answer `_ping` after it starts.
const START_LIMIT: Duration = Duration::from_secs(60);

pub struct DockerEngine {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    netns: Option<String>,
    args: Vec<String>,
    dir: tempfile::TempDir,
}

/// Where the engine runs and what it may change there.
#[derive(Debug, Default, Clone, Copy)]
pub struct EngineOptions<'a> {
    /// Run inside this namespace (with cgroup2 mounted for it) instead of the machine's own.
    pub netns: Option<&'a Netns>,
    /// Let dockerd manage iptables and its `docker0` bridge, as a packaged engine does.
    /// Only inside a namespace of the test's own.
    pub manage_network: bool,
}

impl DockerEngine {
    /// Starts a dockerd in the machine's namespace that touches no network setting.
    pub fn start() -> DockerEngine {
        Self::start_with(EngineOptions::default())
    }

    pub fn start_with(options: EngineOptions<'_>) -> DockerEngine {
        crate::require_program("dockerd", "docker.io");
        assert!(
            !options.manage_network || options.netns.is_some(),
            "a test's dockerd manages the network only inside a namespace of the test's own"
        );
        // Short paths: containerd's socket lives under the exec root, and socket paths are
        // limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("dk")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("docker.sock");
        let log = dir.path().join("dockerd.log");
        let mut args: Vec<String> = vec![
            "--data-root".into(),
            dir.path().join("data").display().to_string(),
            "--exec-root".into(),
            dir.path().join("x").display().to_string(),
            "--pidfile".into(),
            dir.path().join("dockerd.pid").display().to_string(),
            "--host".into(),
            format!("unix://{}", socket.display()),
            "--log-level".into(),
            "warn".into(),
        ];
        if !options.manage_network {
            args.extend(
                ["--bridge=none", "--iptables=false", "--ip6tables=false"].map(String::from),
            );
        }
        let netns = options.netns.map(|n| n.name().to_string());
        let child = spawn_dockerd(netns.as_deref(), &args, &log);
        let engine = DockerEngine {
            child,
            socket,
            log,
            netns,
            args,
            dir,
        };
        engine.wait_ready();
        engine
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + START_LIMIT;
        while Instant::now() < deadline {
            if self.socket.exists()
                && self
                    .docker()
                    .arg("version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "dockerd did not answer on {} within {START_LIMIT:?}; its log:\n{}",
            self.socket.display(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// The engine's API socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// `DOCKER_HOST` for this engine.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// The `docker` client aimed at this engine (Debian's, of the engine's own release, where
    /// it is installed), with the classic builder: building needs no BuildKit frontend image.
    pub fn docker(&self) -> Command {
        let program = if Path::new("/usr/bin/docker").exists() {
            "/usr/bin/docker"
        } else {
            "docker"
        };
        let mut c = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        };
        c.env("DOCKER_HOST", self.host())
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", self.dir.path().join("client"));
        c
    }

    /// Runs `docker ARGS` and returns its stdout; panics with its stderr when it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.docker().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "docker {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `docker build --network none -t TAG CONTEXT`; returns the image ID (`sha256:...`).
    pub fn build(&self, tag: &str, context: &Path) -> String {
        let context = context.display().to_string();
        let id = self.run(&["build", "--network", "none", "-q", "-t", tag, &context]);
        id.trim().to_string()
    }

    /// The image ID a name points at in this engine.
    pub fn image_id(&self, name: &str) -> String {
        self.run(&["image", "inspect", "--format", "{{.Id}}", name])
            .trim()
            .to_string()
    }

    /// Stops the engine (SIGTERM, then SIGKILL after 20 s) and waits for it.
    pub fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // Under `ip netns exec` the child execs into dockerd: the same pid either way.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the engine and starts it again on the same data root and settings, as a
    /// `systemctl restart docker` does.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn_dockerd(self.netns.as_deref(), &self.args, &self.log);
        self.wait_ready();
    }
}

fn spawn_dockerd(netns: Option<&str>, args: &[String], log: &Path) -> Child {
    let stdout = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let stderr = stdout.try_clone().unwrap();
    let mut command = match netns {
        // `ip netns exec` mounts a fresh /sys without the cgroup hierarchy dockerd needs.
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sh", "-c"])
                .arg("mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec dockerd \"$@\"")
                .arg("sh");
            c
        }
        None => Command::new("dockerd"),
    };
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("dockerd starts")
}

impl Drop for DockerEngine {
    fn drop(&mut self) {
        self.stop();
        // dockerd unmounts its layers when it stops; anything left mounted under the data
        // root (a killed engine) is unmounted before the directory goes.
        let data = self.dir.path().join("data");
        let exec = self.dir.path().join("x");
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let mut points: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|p| Path::new(p).starts_with(&data) || Path::new(p).starts_with(&exec))
                .collect();
            points.sort_by_key(|p| std::cmp::Reverse(p.len()));
            for p in points {
                let _ = Command::new("umount").args(["-l", p]).status();
            }
        }
    }
}

/// Podman's Docker-compatible service (`podman system service`) on a socket of the test's
/// own, over a storage root of its own; images are built with the `podman` CLI on the same
/// storage. Stopped when dropped.
pub struct PodmanService {
    child: Child,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl PodmanService {
    pub fn start() -> PodmanService {
        crate::require_program("podman", "podman");
        let dir = tempfile::Builder::new()
            .prefix("pm")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("podman.sock");
        let log = std::fs::File::create(dir.path().join("podman.log")).unwrap();
        let mut command = Command::new("podman");
        let child = Self::storage_args(&mut command, dir.path())
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("podman system service starts");
        let service = PodmanService { child, socket, dir };
        let deadline = Instant::now() + START_LIMIT;
        while !service.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "podman's service did not make {} within {START_LIMIT:?}",
                service.socket.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        service
    }

    fn storage_args<'c>(command: &'c mut Command, dir: &Path) -> &'c mut Command {
        command
            .arg("--root")
            .arg(dir.join("root"))
            .arg("--runroot")
            .arg(dir.join("run"))
            .arg("--tmpdir")
            .arg(dir.join("tmp"))
    }

    /// `DOCKER_HOST` for the service.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    /// `podman build --network none -t TAG CONTEXT`; returns the image ID.
    pub fn build(&self, tag: &str, context: &Path) -> String {
        let mut command = Command::new("podman");
        let out = Self::storage_args(&mut command, self.dir.path())
            .args(["build", "--network", "none", "-q", "-t", tag])
            .arg(context)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman build failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for PodmanService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut command = Command::new("podman");
        let _ = Self::storage_args(&mut command, self.dir.path())
            .args(["system", "reset", "--force"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A containerd of the test's own (`--address`, `--root`, `--state` under a temporary
/// directory, no configuration file), stopped when dropped.
pub struct Containerd {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    pub fn start() -> Containerd {
        crate::require_program("containerd", "containerd");
        let dir = tempfile::Builder::new()
            .prefix("ct")
            .tempdir_in("/tmp")
            .unwrap();
        let socket = dir.path().join("containerd.sock");
        let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .args(["--config", "/dev/null", "--address"])
            .arg(&socket)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd starts");
        let deadline = Instant::now() + START_LIMIT;
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "containerd did not answer on {} within {START_LIMIT:?}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Containerd {
            child,
            socket,
            _dir: dir,
        }
    }

    /// `CONTAINERD_ADDRESS` for this containerd.
    pub fn address(&self) -> String {
        self.socket.display().to_string()
    }

    /// Runs `ctr` against this containerd in `namespace`; its stdout, after it succeeded.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> String {
        crate::require_program("ctr", "containerd");
        let out = Command::new("ctr")
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", namespace])
            .args(args)
            .output()
            .expect("ctr runs");
        assert!(
            out.status.success(),
            "ctr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Where this containerd keeps a blob of its content store (`sha256:<hex>`).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self._dir
            .path()
            .join("root/io.containerd.content.v1.content/blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
