//! The `VM` kind: what a VM should be (`spec`) and what it is (`status`).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::meta::{ObjectMeta, Time, api_version};
use crate::ports::PortMapping;
use crate::size::Size;
use crate::source::ImageSource;

/// Built-in defaults, the lowest layer of the precedence
/// flags > `--config` manifest > Configuration `vmDefaults` > built-in.
pub mod defaults {
    use crate::size::Size;

    pub const CPUS: u64 = 1;
    pub const MEMORY: Size = Size::from_mib(512);
    pub const DISK_SIZE: Size = Size::from_mib(4 * 1024);
    pub const KERNEL_CMDLINE: &str = "console=ttyS0 reboot=k panic=1";
}

/// A VM object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Vm {
    #[serde(with = "crate::kind_tag::vm")]
    pub kind: (),
    #[serde(with = "api_version")]
    pub api_version: (),
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: VmSpec,
    #[serde(default)]
    pub status: VmStatus,
}

impl Vm {
    pub fn new(metadata: ObjectMeta, spec: VmSpec) -> Vm {
        Vm {
            kind: (),
            api_version: (),
            metadata,
            spec,
            status: VmStatus::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}

/// `spec` of a VM. Every field with a default is optional so that layers of configuration
/// can be merged (see [`VmSpec::layered_over`]) and an explicit bad value (such as `cpus: 0`)
/// is told apart from an absent one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<VmImageSpec>,
    /// Ignite's sandbox container image. Accepted so Ignite manifests load; not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<VmImageSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<VmKernelSpec>,
    #[serde(default, rename = "cpus", skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// The host CPU time the VM may use, in cores (0.5: half of one core), enforced by
    /// its cgroup; unlimited when absent, as in Ignite (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_quota: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_size: Option<Size>,
    #[serde(default, skip_serializing_if = "VmNetworkSpec::is_empty")]
    pub network: VmNetworkSpec,
    #[serde(default, skip_serializing_if = "VmStorageSpec::is_empty")]
    pub storage: VmStorageSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copy_files: Vec<FileMapping>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_ssh"
    )]
    pub ssh: Option<Ssh>,
    /// Which VMM runs the VM (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm: Option<VmmKind>,
    /// Run this command as the workload instead of the image's init ("container mode";
    /// an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// How the guest runs the image: `vm` (its /sbin/init), `container` (ENTRYPOINT/CMD
    /// supervised by ignite-init) or `auto` (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<GuestMode>,
    /// The workload's environment, `KEY=value` entries over the image's ENV, later ones
    /// winning (container mode, as `docker run -e`; an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Replaces the image's ENTRYPOINT, and then its CMD too, as `docker run --entrypoint`
    /// does (an empty list clears it; an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// The workload's working directory, over the image's WORKDIR (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// The workload's user, over the image's USER: `name`, `uid`, `name:group` or
    /// `uid:gid` (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The workload's stdin, stdout and stderr are a pseudo-terminal, as with
    /// `docker run -t` (container mode; an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tty: Option<bool>,
}

impl VmSpec {
    /// Fills every field this layer leaves unset from `lower`. Lists are taken whole
    /// from the highest layer that sets them.
    pub fn layered_over(self, lower: VmSpec) -> VmSpec {
        VmSpec {
            image: self.image.or(lower.image),
            sandbox: self.sandbox.or(lower.sandbox),
            kernel: match (self.kernel, lower.kernel) {
                (Some(high), Some(low)) => Some(VmKernelSpec {
                    oci: high.oci.or(low.oci),
                    cmd_line: high.cmd_line.or(low.cmd_line),
                }),
                (high, low) => high.or(low),
            },
            cpus: self.cpus.or(lower.cpus),
            memory: self.memory.or(lower.memory),
            cpu_quota: self.cpu_quota.or(lower.cpu_quota),
            disk_size: self.disk_size.or(lower.disk_size),
            network: VmNetworkSpec {
                ports: non_empty_or(self.network.ports, lower.network.ports),
                mode: self.network.mode.or(lower.network.mode),
                cni_network: self.network.cni_network.or(lower.network.cni_network),
            },
            storage: if self.storage.is_empty() {
                lower.storage
            } else {
                self.storage
            },
            copy_files: non_empty_or(self.copy_files, lower.copy_files),
            ssh: self.ssh.or(lower.ssh),
            vmm: self.vmm.or(lower.vmm),
            command: self.command.or(lower.command),
            mode: self.mode.or(lower.mode),
            env: non_empty_or(self.env, lower.env),
            entrypoint: self.entrypoint.or(lower.entrypoint),
            working_dir: self.working_dir.or(lower.working_dir),
            user: self.user.or(lower.user),
            tty: self.tty.or(lower.tty),
        }
    }

    /// The built-in defaults as a layer.
    pub fn builtin_defaults() -> VmSpec {
        VmSpec {
            kernel: Some(VmKernelSpec {
                oci: None,
                cmd_line: Some(defaults::KERNEL_CMDLINE.to_string()),
            }),
            cpus: Some(defaults::CPUS),
            memory: Some(defaults::MEMORY),
            disk_size: Some(defaults::DISK_SIZE),
            ..VmSpec::default()
        }
    }

    pub fn image_ref(&self) -> Option<&ImageSource> {
        self.image.as_ref().map(|i| &i.oci)
    }

    pub fn kernel_ref(&self) -> Option<&ImageSource> {
        self.kernel.as_ref().and_then(|k| k.oci.as_ref())
    }

    pub fn cpus(&self) -> u64 {
        self.cpus.unwrap_or(defaults::CPUS)
    }

    pub fn memory(&self) -> Size {
        self.memory.unwrap_or(defaults::MEMORY)
    }

    pub fn disk_size(&self) -> Size {
        self.disk_size.unwrap_or(defaults::DISK_SIZE)
    }
}

fn non_empty_or<T>(high: Vec<T>, low: Vec<T>) -> Vec<T> {
    if high.is_empty() { low } else { high }
}

/// `spec.image` (and `spec.sandbox`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmImageSpec {
    pub oci: ImageSource,
}

/// `spec.kernel`. With no `oci`, the default kernel is used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmKernelSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oci: Option<ImageSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd_line: Option<String>,
}

/// `spec.network`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmNetworkSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMapping>,
    /// How the VM is networked (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<NetworkMode>,
    /// The CNI network a `cni` VM joins, by its configuration's `name` (an addition to
    /// Ignite's model); the first configuration by file name when not given.
    #[serde(
        default,
        rename = "cniNetwork",
        skip_serializing_if = "Option::is_none"
    )]
    pub cni_network: Option<String>,
}

impl VmNetworkSpec {
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.mode.is_none() && self.cni_network.is_none()
    }
}

/// `spec.storage`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmStorageSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volume_mounts: Vec<VolumeMount>,
}

impl VmStorageSpec {
    pub fn is_empty(&self) -> bool {
        self.volumes.is_empty() && self.volume_mounts.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Volume {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_device: Option<BlockDeviceVolume>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockDeviceVolume {
    pub path: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeMount {
    pub name: String,
    pub mount_path: PathBuf,
}

/// `spec.copyFiles[]`: a host file or directory copied into the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FileMapping {
    pub host_path: PathBuf,
    pub vm_path: PathBuf,
}

/// `spec.ssh`: `true` generates a key pair for the VM; a string is the path of a public
/// key to authorise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ssh {
    Generate,
    PublicKey(PathBuf),
}

impl Serialize for Ssh {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Ssh::Generate => serializer.serialize_bool(true),
            Ssh::PublicKey(p) => serializer.serialize_str(&p.to_string_lossy()),
        }
    }
}

fn deserialize_ssh<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Ssh>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bool(bool),
        Path(String),
    }
    Ok(match Option::<Raw>::deserialize(deserializer)? {
        None | Some(Raw::Bool(false)) => None,
        Some(Raw::Bool(true)) => Some(Ssh::Generate),
        // Ignite treats the string "true" as `true`.
        Some(Raw::Path(p)) if p == "true" => Some(Ssh::Generate),
        Some(Raw::Path(p)) if p.is_empty() || p == "false" => None,
        Some(Raw::Path(p)) => Some(Ssh::PublicKey(PathBuf::from(p))),
    })
}

/// Which VMM runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VmmKind {
    /// Firecracker where its binary is found and KVM works, QEMU otherwise.
    Auto,
    Qemu,
    Firecracker,
}

impl VmmKind {
    /// `auto`, `qemu` or `firecracker`, as in manifests and `--vmm`.
    pub fn name(self) -> &'static str {
        match self {
            VmmKind::Auto => "auto",
            VmmKind::Qemu => "qemu",
            VmmKind::Firecracker => "firecracker",
        }
    }
}

impl std::str::FromStr for VmmKind {
    type Err = String;

    fn from_str(value: &str) -> Result<VmmKind, String> {
        [VmmKind::Auto, VmmKind::Qemu, VmmKind::Firecracker]
            .into_iter()
            .find(|k| k.name() == value)
            .ok_or_else(|| format!("unknown --vmm {value:?}: use auto, qemu or firecracker"))
    }
}

impl std::fmt::Display for VmmKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a guest's CPU runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// Software emulation: slow, but works anywhere.
    Tcg,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// `kvm`, `tcg`, or `auto`/empty for "let the host decide" (`None`).
    pub fn parse_choice(value: &str) -> Result<Option<Accel>, String> {
        match value {
            "auto" | "" => Ok(None),
            "kvm" => Ok(Some(Accel::Kvm)),
            "tcg" => Ok(Some(Accel::Tcg)),
            other => Err(format!(
                "unknown accelerator {other:?}: use auto, kvm or tcg"
            )),
        }
    }
}

impl std::fmt::Display for Accel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How the guest runs the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestMode {
    /// VM mode when the image has /sbin/init and no command was given, else container mode.
    #[default]
    Auto,
    Vm,
    Container,
}

impl fmt::Display for GuestMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GuestMode::Auto => "auto",
            GuestMode::Vm => "vm",
            GuestMode::Container => "container",
        })
    }
}

/// How a VM is connected to the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// A tap on the `ignite0` bridge, with NAT and port forwards (needs root).
    Bridge,
    /// The VMM's user-mode network (no root).
    User,
    None,
    /// A CNI network: the VM's own network namespace, attached by CNI plugins (root).
    Cni,
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::User => "user",
            NetworkMode::None => "none",
            NetworkMode::Cni => "cni",
        })
    }
}

/// `status` of a VM: what it is, as last recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmStatus {
    #[serde(default)]
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkStatus>,
    #[serde(default)]
    pub image: OciImageSource,
    #[serde(default)]
    pub kernel: OciImageSource,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id_prefix: String,
    /// The VM's supervisor process while it runs (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<ProcessRef>,
    /// The VMM process while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm: Option<VmmStatus>,
    /// How the VM last ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitRecord>,
    /// Where the VM's sshd is reached from the host while it runs (`127.0.0.1:PORT` with
    /// user networking; an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_address: Option<String>,
    /// Milliseconds from starting the VMM to the guest agent's first answer, for the last
    /// start (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_millis: Option<u64>,
    /// The guest's vCPUs are frozen (`ignite pause`, as `docker pause`); an addition to
    /// Ignite's model.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Where the last start's boot time went, phase by phase (an addition to Ignite's
    /// model; `ignite run --log-level debug` prints it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_phases: Option<BootPhases>,
    /// Why the last attempt to apply this VM's manifest failed (`ignited`; an addition to
    /// Ignite's model). Absent when it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The VM is removed when it ends (`run --rm`), by its supervisor, so a client that is
    /// gone still leaves no VM, as Docker's `AutoRemove` (an addition to Ignite's model).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auto_remove: bool,
    /// The snapshot the last start continued from instead of booting (a VM made with
    /// `--from-snapshot`, on its first start); absent after a boot. An addition to
    /// Ignite's model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_from: Option<String>,
    /// Filled in when the VM is shown, never stored (see [`VmMemoryStatus`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<VmMemoryStatus>,
}

/// A process, identified by its pid and its start time (in clock ticks since boot, from
/// /proc/<pid>/stat) so a recycled pid is never mistaken for it.
/// Where a start's boot time went, in milliseconds: on the host's clock `prepare`
/// (supervisor start → VMM process started), `vmmStart` (→ guest running) and `ready`
/// (VMM process started → the guest agent's hello); on the guest's, `kernel` (kernel start
/// → ignite-init) and `init` (ignite-init → the agent's hello).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootPhases {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_start_millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_millis: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_millis: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProcessRef {
    pub pid: u32,
    pub start_ticks: u64,
}

/// `status.memory`: what the VM costs the host and what its guest has free, read when the
/// VM is shown (`inspect`), never stored. Bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmMemoryStatus {
    /// The VMM process's resident memory: the guest memory it holds, and its own.
    pub vmm_resident_bytes: u64,
    /// Its proportional share: pages shared with other VMs (a warm start's template
    /// memory, QEMU's libraries) divided among them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vmm_proportional_bytes: Option<u64>,
    /// What the guest's balloon driver last reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_total_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_free_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_available_bytes: Option<u64>,
}

/// `status.vmm`: what runs the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VmmStatus {
    /// `qemu` or `firecracker`.
    pub name: VmmKind,
    pub process: ProcessRef,
    pub accel: Accel,
    /// The machine has a balloon through which the guest reports the memory it frees.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub memory_reporting: bool,
    /// The VM's control group, relative to the top of the host's cgroup hierarchy
    /// (`/ignite.slice/vm-UID`); absent where it runs without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// The unprivileged user the VMM runs as (VMs started by root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<u32>,
}

/// `status.exit`: the end of the VM's last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExitRecord {
    /// The workload's exit status (container mode) or ignite-init's failure status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
    /// Why it ended.
    pub reason: ExitReason,
    /// What the reason alone does not say: the kernel's panic line, the VMM's exit status
    /// and where its log is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub time: Time,
}

impl ExitRecord {
    pub fn new(status: Option<i32>, reason: ExitReason, detail: Option<String>) -> ExitRecord {
        ExitRecord {
            status,
            reason,
            detail,
            time: Time::now(),
        }
    }

    /// What a foreground `run` or `start -i` exits with: the workload's (or ignite-init's)
    /// status, 0 for a guest that powered off or was stopped, and 125 (as Docker) when the
    /// VM failed without a status.
    pub fn exit_code(&self) -> u8 {
        match self.status {
            Some(code) => code.clamp(0, 255) as u8,
            None if !self.reason.is_failure() => 0,
            None => 125,
        }
    }

    /// The reason and its detail, for people: `the guest kernel panicked: Kernel panic - ...`.
    pub fn describe(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {detail}", self.reason),
            None => self.reason.to_string(),
        }
    }
}

/// Why a VM's run ended. Recorded by its supervisor (or by whoever finds the supervisor
/// gone) and read by other processes: `start` and `run` turn it into exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitReason {
    /// The guest powered off by itself.
    PoweredOff,
    /// Stopped on request; the guest powered off within the grace period.
    Stopped,
    /// Stopped on request; killed when the grace period ran out.
    StoppedAfterGrace,
    /// Killed on request (`ignite kill`).
    Killed,
    /// The guest kernel panicked.
    KernelPanic,
    /// The VMM exited with a failure that the guest did not ask for.
    VmmFailed,
    /// The supervisor died without recording an end (host reboot, `kill -9`).
    SupervisorGone,
}

impl ExitReason {
    /// Whether the run ended badly (rather than powering off, or being stopped on request).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            ExitReason::PoweredOff | ExitReason::Stopped | ExitReason::StoppedAfterGrace
        )
    }

    /// The records written before reasons were typed held these sentences.
    fn from_legacy(text: &str) -> Option<ExitReason> {
        Some(match text {
            "powered off" => ExitReason::PoweredOff,
            "stopped" => ExitReason::Stopped,
            "stopped (killed after the grace period)" => ExitReason::StoppedAfterGrace,
            "killed" => ExitReason::Killed,
            t if t.starts_with("the guest kernel panicked") => ExitReason::KernelPanic,
            t if t.starts_with("the VMM failed") => ExitReason::VmmFailed,
            t if t.starts_with("its supervisor is gone") => ExitReason::SupervisorGone,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ExitReason::PoweredOff => "powered off",
            ExitReason::Stopped => "stopped",
            ExitReason::StoppedAfterGrace => "stopped (killed after the grace period)",
            ExitReason::Killed => "killed",
            ExitReason::KernelPanic => "the guest kernel panicked",
            ExitReason::VmmFailed => "the VMM failed",
            ExitReason::SupervisorGone => "its supervisor is gone (host reboot or killed)",
        })
    }
}

impl<'de> Deserialize<'de> for ExitReason {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        enum Tag {
            PoweredOff,
            Stopped,
            StoppedAfterGrace,
            Killed,
            KernelPanic,
            VmmFailed,
            SupervisorGone,
        }
        let text = String::deserialize(deserializer)?;
        if let Some(legacy) = ExitReason::from_legacy(&text) {
            return Ok(legacy);
        }
        let tag: Tag = serde_json::from_value(serde_json::Value::String(text.clone()))
            .map_err(|_| {
                serde::de::Error::custom(format!(
                    "unknown exit reason {text:?}: expected powered-off, stopped, stopped-after-grace, killed, kernel-panic, vmm-failed or supervisor-gone"
                ))
            })?;
        Ok(match tag {
            Tag::PoweredOff => ExitReason::PoweredOff,
            Tag::Stopped => ExitReason::Stopped,
            Tag::StoppedAfterGrace => ExitReason::StoppedAfterGrace,
            Tag::Killed => ExitReason::Killed,
            Tag::KernelPanic => ExitReason::KernelPanic,
            Tag::VmmFailed => ExitReason::VmmFailed,
            Tag::SupervisorGone => ExitReason::SupervisorGone,
        })
    }
}

impl VmStatus {
    pub fn ip_addresses(&self) -> &[IpAddr] {
        self.network.as_ref().map_or(&[], |n| &n.ip_addresses)
    }
}

/// `status.runtime`: what runs the VM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeStatus {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
}

/// `status.network`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkStatus {
    #[serde(default)]
    pub plugin: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub ip_addresses: Vec<IpAddr>,
}

/// Where an image or kernel came from: its content id and size.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OciImageSource {
    /// `oci://<repository>@<digest>` for a registry image, `docker://<digest>` for a local one.
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub size: Size,
}

/// Ignite writes empty lists as `null`.
pub(crate) fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}

/// Joins addresses as Ignite's table does: `a, b`.
pub fn join_ips(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_remove_is_recorded_only_when_set() {
        let mut status = VmStatus::default();
        let json = serde_json::to_value(&status).unwrap();
        assert!(json.get("autoRemove").is_none(), "{json}");
        status.auto_remove = true;
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["autoRemove"], true);
        let back: VmStatus = serde_json::from_value(json).unwrap();
        assert!(back.auto_remove);
    }

    #[test]
    fn exit_reasons_are_stored_as_tags_and_old_sentences_still_read() {
        let record = ExitRecord::new(
            None,
            ExitReason::KernelPanic,
            Some("Kernel panic - not syncing".into()),
        );
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(json["reason"], "kernel-panic");
        let back: ExitRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        assert_eq!(
            back.describe(),
            "the guest kernel panicked: Kernel panic - not syncing"
        );
        for (old, reason) in [
            ("powered off", ExitReason::PoweredOff),
            (
                "stopped (killed after the grace period)",
                ExitReason::StoppedAfterGrace,
            ),
            (
                "the VMM failed (exit status: 1); see x",
                ExitReason::VmmFailed,
            ),
            (
                "its supervisor is gone (host reboot or killed)",
                ExitReason::SupervisorGone,
            ),
        ] {
            let parsed: ExitReason = serde_json::from_str(&format!("{old:?}")).unwrap();
            assert_eq!(parsed, reason, "{old}");
        }
        let err = serde_json::from_str::<ExitReason>("\"exploded\"").unwrap_err();
        assert!(err.to_string().contains("unknown exit reason"), "{err}");
    }

    #[test]
    fn a_run_exits_with_the_workload_s_status_else_0_or_125() {
        let exit = |status, reason| ExitRecord::new(status, reason, None).exit_code();
        assert_eq!(exit(Some(3), ExitReason::PoweredOff), 3);
        assert_eq!(exit(Some(300), ExitReason::PoweredOff), 255);
        assert_eq!(exit(Some(-1), ExitReason::VmmFailed), 0);
        assert_eq!(exit(None, ExitReason::PoweredOff), 0);
        assert_eq!(exit(None, ExitReason::StoppedAfterGrace), 0);
        assert_eq!(exit(None, ExitReason::KernelPanic), 125);
        assert_eq!(exit(None, ExitReason::Killed), 125);
    }

    #[test]
    fn only_power_offs_and_requested_stops_are_not_failures() {
        assert!(!ExitReason::PoweredOff.is_failure());
        assert!(!ExitReason::Stopped.is_failure());
        assert!(!ExitReason::StoppedAfterGrace.is_failure());
        for failed in [
            ExitReason::Killed,
            ExitReason::KernelPanic,
            ExitReason::VmmFailed,
            ExitReason::SupervisorGone,
        ] {
            assert!(failed.is_failure(), "{failed}");
        }
    }

    #[test]
    fn vmm_status_keeps_its_stored_strings() {
        let status: VmmStatus = serde_json::from_str(
            r#"{"name":"qemu","process":{"pid":1,"startTicks":2},"accel":"tcg"}"#,
        )
        .unwrap();
        assert_eq!(status.name, VmmKind::Qemu);
        assert_eq!(status.accel, Accel::Tcg);
        assert_eq!("firecracker".parse::<VmmKind>(), Ok(VmmKind::Firecracker));
        assert!(
            "kvmtool"
                .parse::<VmmKind>()
                .unwrap_err()
                .contains("auto, qemu or firecracker")
        );
        assert_eq!(Accel::parse_choice("auto").unwrap(), None);
        assert!(
            Accel::parse_choice("hvf")
                .unwrap_err()
                .contains("auto, kvm or tcg")
        );
    }
}
