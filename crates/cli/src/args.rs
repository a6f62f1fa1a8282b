//! The command line: every command, flag and help text of `ignite`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Ignite runs OCI images as real microVMs, with a container's command line.
#[derive(Debug, Parser)]
#[command(
    name = "ignite",
    version,
    about = "Run OCI images as real microVMs, with a container's command line",
    long_about = "Ignite takes any OCI/Docker image and boots it as a virtual machine with its own \
                  kernel. VMs are managed like containers (run, ps, stop, rm) and can be declared \
                  in manifests (ignite.weave.works/v1alpha4).\n\n\
                  State lives in /var/lib/ignite for root and in $XDG_DATA_HOME/ignite for other \
                  users (override with --root or IGNITE_ROOT).",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print only IDs, for scripts
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// How much to log on stderr
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Info, value_name = "LEVEL")]
    pub log_level: LogLevel,
    /// The Configuration file [default: /etc/ignite/config.yaml if it exists]
    #[arg(long, global = true, value_name = "FILE")]
    pub ignite_config: Option<PathBuf>,
    /// The state directory [default: /var/lib/ignite as root, $XDG_DATA_HOME/ignite otherwise]
    #[arg(long, global = true, env = "IGNITE_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Look bare image and kernel names up in this engine's local store first (then the
    /// registry), and require it to be running; without it, Docker Engine then containerd are
    /// asked when they run
    #[arg(long, global = true, value_enum, value_name = "RUNTIME")]
    pub runtime: Option<RuntimeFlag>,
    /// The containerd namespace images are read from (containerd:NAME, --runtime
    /// containerd) [default: $CONTAINERD_NAMESPACE, else default]
    #[arg(long, global = true, value_name = "NAMESPACE")]
    pub containerd_namespace: Option<String>,
    /// Ignite's network plugin: cni makes --network cni the default of VMs created by this command; docker-bridge keeps the default (bridge as root)
    #[arg(long, global = true, value_enum, value_name = "PLUGIN")]
    pub network_plugin: Option<NetworkPluginFlag>,
    /// Ignored: Ignite's prefix for its containers' names (no containers here)
    #[arg(long, global = true, value_name = "PREFIX", help_heading = IGNITE_COMPAT)]
    pub id_prefix: Option<String>,
}

/// The help section of flags that only Ignite's scripts pass: accepted, and changing nothing.
pub const IGNITE_COMPAT: &str = "Accepted for Ignite's scripts (no effect)";

/// `--runtime`'s values (Ignite's container runtimes): the local engines images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RuntimeFlag {
    Containerd,
    Docker,
}

impl RuntimeFlag {
    pub fn engine(self) -> ignite_oci::engine::EngineKind {
        match self {
            RuntimeFlag::Containerd => ignite_oci::engine::EngineKind::Containerd,
            RuntimeFlag::Docker => ignite_oci::engine::EngineKind::Docker,
        }
    }
}

/// `--network-plugin`'s values (Ignite's network plugins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NetworkPluginFlag {
    Cni,
    DockerBridge,
}

impl NetworkPluginFlag {
    /// As the Configuration's `networkPlugin` spells it.
    pub fn name(self) -> &'static str {
        match self {
            NetworkPluginFlag::Cni => "cni",
            NetworkPluginFlag::DockerBridge => "docker-bridge",
        }
    }
}

/// Log levels, with Ignite's (logrus) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Panic,
    Fatal,
    Error,
    #[value(alias = "warning")]
    Warn,
    Info,
    Debug,
    Trace,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(flatten)]
    Lifecycle(LifecycleCommand),
    /// Run a command in a running VM (through its guest agent: no sshd needed)
    Exec(ExecArgs),
    /// Copy files or directories between the host and a running VM (VM:path on one side)
    Cp(CpArgs),
    /// List running VMs (-a for all)
    Ps(PsArgs),
    /// Show what running VMs use of the host: CPU, memory, network and block I/O (live;
    /// --no-stream for one reading)
    Stats(StatsArgs),
    /// Make the VMs match manifests: create, start or stop, recreate what changed
    Apply(ApplyArgs),
    /// Check what VMs need on this host, and say how to fix what is missing
    Doctor(DoctorArgs),
    /// Show an object (vm, image or kernel) in full
    Inspect(InspectArgs),
    /// Manage VMs (with no subcommand: list all VMs)
    #[command(visible_alias = "vms")]
    Vm(VmGroup),
    /// Manage images (with no subcommand: list them)
    #[command(visible_alias = "images")]
    Image(ImageGroup),
    /// Remove images
    Rmi(RemoveImageArgs),
    /// Manage kernels (with no subcommand: list them)
    #[command(visible_alias = "kernels")]
    Kernel(KernelGroup),
    /// Remove kernels
    Rmk(RemoveKernelArgs),
    /// Manage snapshots of running VMs (with no subcommand: list them)
    #[command(visible_alias = "snapshots")]
    Snapshot(SnapshotGroup),
    /// Keep VMs in line with a Git repository's manifests, in the foreground (runs
    /// `ignited gitops`; Ctrl-C ends it)
    Gitops(GitopsArgs),
    /// Print the version of Ignite
    Version(VersionArgs),
    /// Print a shell completion script
    #[command(long_about = "Print a shell completion script.\n\n\
        bash:  source <(ignite completion bash)\n\
        zsh:   ignite completion zsh > \"${fpath[1]}/_ignite\"\n\
        fish:  ignite completion fish > ~/.config/fish/completions/ignite.fish")]
    Completion(CompletionArgs),
}

#[derive(Debug, Clone, Args)]
pub struct PsArgs {
    /// Show all VMs, not just running ones
    #[arg(short, long)]
    pub all: bool,
    /// Only VMs matching every condition of "{{.Path.To.Field}}<op><value>[,...]";
    /// op is =, ==, !=, =~ (contains) or !~ (does not contain)
    #[arg(short, long, value_name = "FILTER")]
    pub filter: Option<String>,
    /// Print each VM with a Go-style template, e.g. "{{.ObjectMeta.Name}} {{.Spec.CPUs}}"
    #[arg(short, long, value_name = "TEMPLATE")]
    pub template: Option<String>,
}

/// `ignite stats` flags (as `docker stats`).
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// VMs to show (name, ID or prefix) [default: every running VM]
    pub vms: Vec<String>,
    /// Print one reading and exit instead of updating every second
    #[arg(long)]
    pub no_stream: bool,
    /// `table` (default), `json`, or a Go-style template over each VM's figures, e.g.
    /// "{{.Name}} {{.CPUPerc}} {{.MemUsage}}" (fields as docker's: ID, Name, CPUPerc,
    /// MemUsage, MemPerc, NetIO, BlockIO, PIDs; raw figures in MemUsageBytes, ...)
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct VmGroup {
    #[command(subcommand)]
    pub command: Option<VmCommand>,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// List running VMs (-a for all)
    Ps(PsArgs),
    /// List all VMs
    #[command(visible_alias = "list")]
    Ls(PsArgs),
    #[command(flatten)]
    Lifecycle(LifecycleCommand),
    /// Run a VM's supervisor (started by `ignite start`; not for direct use)
    #[command(hide = true)]
    Supervise(VmArg),
    /// Exec a VMM that dies with its supervisor (internal)
    #[command(hide = true)]
    ExecVmm(ExecVmmArgs),
    /// Build a warm-start template of a VM's machine (started by a cold start; internal)
    #[command(hide = true)]
    BuildTemplate(BuildTemplateArgs),
}

#[derive(Debug, Args)]
pub struct BuildTemplateArgs {
    /// The VM whose machine the template is of, by UID
    pub vm: String,
    /// The machine's key
    #[arg(long)]
    pub key: String,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// The VM, by name or ID (or a unique prefix of one)
    pub vm: String,
    /// The command and its arguments, run as given (`-- prog args` to pass arguments that
    /// start with '-'). A single argument that is a shell command line ("cd /x && ls") is run
    /// by the guest's /bin/sh -c, as Ignite's exec did; after `--` never
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// Give the command a terminal (of this terminal's size); -t=false as in Ignite
    #[arg(short, long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub tty: bool,
    /// The private key for the SSH fallback (exec uses the guest agent; SSH only when the agent is off or does not answer)
    #[arg(short, long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Seconds to wait for the VM's agent (a booting VM)
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// The VM, by name or ID (or a unique prefix of one)
    pub vm: String,
    /// A command to run instead of a login shell (flags before it are ssh's own)
    #[arg(trailing_var_arg = true, value_name = "COMMAND")]
    pub command: Vec<String>,
    /// The private key [default: the one --ssh generated]
    #[arg(short, long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Seconds to wait for the VM's sshd
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Allocate a terminal when this one is a terminal (-t=false for none, as in Ignite)
    #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          require_equals = true, default_missing_value = "true")]
    pub tty: bool,
}

#[derive(Debug, Args)]
pub struct CpArgs {
    /// A host path, or VM:path
    pub source: String,
    /// A host path, or VM:path
    pub destination: String,
    /// Ignored: cp goes through the guest agent, never SSH
    #[arg(short, long, value_name = "FILE", help_heading = IGNITE_COMPAT)]
    pub identity: Option<PathBuf>,
    /// Seconds to wait for the VM's agent (a booting VM)
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// A VM manifest, or a directory of them (.yaml, .yml, .json; recursively)
    #[arg(
        short = 'f',
        long = "filename",
        value_name = "FILE|DIR",
        required = true
    )]
    pub files: Vec<std::path::PathBuf>,
    /// Also remove VMs made by `ignite apply` whose manifest is gone
    #[arg(long)]
    pub prune: bool,
    /// Print what would be done, and do nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Apply only the manifests labelled `ignite.rs/host: NAME` (others are skipped, and
    /// with --prune a VM placed on another host is removed here) [default: placement is
    /// not looked at]
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// With --host, also apply the manifests that name no host
    #[arg(long, requires = "host")]
    pub adopt_unplaced: bool,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Skip booting a test guest with KVM (which tells a working KVM from a nested one)
    #[arg(long)]
    pub quick: bool,
}

/// The VM commands that exist both at the top level and under `ignite vm`.
#[derive(Debug, Subcommand)]
pub enum LifecycleCommand {
    /// Create a VM and start it
    Run(RunArgs),
    /// Create a VM, stopped
    Create(CreateArgs),
    /// Start a stopped VM
    Start(StartArgs),
    /// Stop running VMs gracefully (killed after 20 s; -f at once)
    Stop(StopArgs),
    /// Kill running VMs at once
    Kill(VmsArgs),
    /// Freeze running VMs' vCPUs (as docker pause; memory and processes stay as they are)
    Pause(VmsArgs),
    /// Let paused VMs run again
    Unpause(VmsArgs),
    /// Remove VMs
    Rm(RmArgs),
    /// Print a VM's console output
    Logs(LogsArgs),
    /// Attach to a running VM's console (detach with ^P^Q)
    Attach(VmArg),
    /// SSH into a running VM created with --ssh (the system's ssh client, the VM's key)
    Ssh(SshArgs),
}

#[derive(Debug, Args)]
pub struct ExecVmmArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<std::ffi::OsString>,
}

/// `ignite create` flags (Ignite's, plus --network, --vmm, --accel and --mode).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The image to run (a registry reference, oci:DIR[:TAG], docker-archive:FILE); imported if needed
    pub image: Option<String>,
    /// Make the VM from a snapshot (ignite snapshot create) instead of an image: it
    /// continues where the snapshot's VM was, with its own name, UID, MAC, address, disk
    /// layer, clock and fresh entropy
    #[arg(long, value_name = "SNAPSHOT", conflicts_with_all = [
        "image", "config", "copy_files", "cpus", "memory", "cpu_quota", "size", "kernel_args",
        "kernel_image", "ssh", "volumes", "network", "cni_network", "vmm", "mode", "env",
        "env_files", "entrypoint", "workdir", "user", "tty",
    ])]
    pub from_snapshot: Option<String>,
    /// The VM's name [default: a random adjective-noun]
    #[arg(short, long)]
    pub name: Option<String>,
    /// Refuse to create a VM without --name
    #[arg(long)]
    pub require_name: bool,
    /// A VM manifest (YAML or JSON) to start from; flags override it
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Copy a host file or directory into the VM: /host/path:/vm/path (repeatable, or
    /// comma-separated as in Ignite)
    #[arg(
        short = 'f',
        long = "copy-files",
        value_name = "HOST:VM",
        value_delimiter = ','
    )]
    pub copy_files: Vec<String>,
    /// Publish a VM port on the host: [ip:]hostPort:vmPort[/tcp|udp] (repeatable, or
    /// comma-separated as in Ignite)
    #[arg(short, long, value_name = "PORTS", value_delimiter = ',')]
    pub ports: Vec<String>,
    /// Virtual CPUs [default: 1]
    #[arg(long)]
    pub cpus: Option<u64>,
    /// Memory, e.g. 512MB or 2GB [default: 512MB]
    #[arg(long)]
    pub memory: Option<String>,
    /// The host CPU time the VM may use, in cores, e.g. 0.5 for half a core (its cgroup's
    /// cpu.max) [default: unlimited]
    #[arg(long, value_name = "CORES")]
    pub cpu_quota: Option<f64>,
    /// The root filesystem's size, e.g. 4GB [default: 4GB]
    #[arg(short, long)]
    pub size: Option<String>,
    /// The kernel command line [default: console=ttyS0 reboot=k panic=1]
    #[arg(long, value_name = "ARGS")]
    pub kernel_args: Option<String>,
    /// The kernel (a kernel name, package, file or image) [default: the default kernel]
    #[arg(short, long, value_name = "KERNEL")]
    pub kernel_image: Option<String>,
    /// Authorise SSH: generate a key pair, or give a public key with --ssh=PATH (only with
    /// '=', as in Ignite: `--ssh IMAGE` takes IMAGE as the image)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_name = "PATH")]
    pub ssh: Option<String>,
    /// Attach a host block device or file: /dev/sdb1:/mnt (repeatable, or comma-separated
    /// as in Ignite)
    #[arg(short, long, value_name = "DEVICE:PATH", value_delimiter = ',')]
    pub volumes: Vec<String>,
    /// A label key=value (repeatable)
    #[arg(short, long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Networking: bridge (a tap on ignite0, root), user (the VMM's own, no root), cni (a CNI network, root) or none [default: bridge as root, else user]
    #[arg(long, value_name = "MODE", value_enum)]
    pub network: Option<NetworkFlag>,
    /// The CNI network of --network cni, by its configuration's name [default: the first configuration in the CNI configuration directory]
    #[arg(long, value_name = "NAME")]
    pub cni_network: Option<String>,
    /// The VMM: auto, qemu or firecracker [default: auto]
    #[arg(long, value_name = "VMM", value_enum)]
    pub vmm: Option<VmmFlag>,
    /// How the guest runs the image: auto, vm (its /sbin/init) or container (ENTRYPOINT/CMD)
    #[arg(long, value_name = "MODE", value_enum)]
    pub mode: Option<ModeFlag>,
    /// Set a variable of the workload's environment: KEY=VALUE, or KEY to pass this shell's value (repeatable)
    #[arg(short = 'e', long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file of KEY=VALUE lines; # starts a comment (repeatable)
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Replace the image's ENTRYPOINT, and its CMD with the command given ("" clears it)
    #[arg(long, value_name = "COMMAND")]
    pub entrypoint: Option<String>,
    /// The workload's working directory in the VM
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    pub workdir: Option<String>,
    /// The workload's user: a name or uid, optionally :group or :gid
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Give the workload a pseudo-terminal for stdin, stdout and stderr (container mode)
    #[arg(short = 't', long)]
    pub tty: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub legacy: LegacyArgs,
}

/// Flags of Ignite's container sandbox, accepted so scripts keep working; they change nothing
/// (`--runtime`, `--network-plugin` and `--id-prefix` are global: [`GlobalArgs`]).
#[derive(Debug, Args)]
pub struct LegacyArgs {
    /// Ignored, but recorded as spec.sandbox for templates: Ignite's sandbox container
    /// image (there is no sandbox container here)
    #[arg(long, value_name = "IMAGE", help_heading = IGNITE_COMPAT)]
    pub sandbox_image: Option<String>,
}

#[derive(Debug, Args)]
pub struct StartFlags {
    /// Container mode: also feed this stdin to the workload (EOF closes it). VM mode: attach
    /// to the console after starting (detach with ^P^Q)
    #[arg(short, long)]
    pub interactive: bool,
    /// Container mode: stay attached to the workload's stdout and stderr and exit with its
    /// status
    #[arg(short, long)]
    pub attach: bool,
    /// The accelerator: auto, kvm or tcg [default: IGNITE_ACCEL, else auto: kvm when /dev/kvm works]
    #[arg(long, value_name = "ACCEL", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: Option<String>,
    /// Boot, even where a container-mode VM could start warm from its machine's template
    #[arg(long)]
    pub cold: bool,
    /// Ignored: Ignite kept its sandbox container after the VM ended (there is none here)
    #[arg(short, long, help_heading = IGNITE_COMPAT)]
    pub debug: bool,
    /// Ignored: the checks' errors stay errors (see `ignite doctor` for what is missing)
    #[arg(long, value_name = "CHECKS", value_delimiter = ',', help_heading = IGNITE_COMPAT)]
    pub ignore_preflight_checks: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub create: CreateArgs,
    #[command(flatten)]
    pub start: StartFlags,
    /// Remove the VM when it ends; stay attached (as -a), wait for that and exit with its
    /// status
    #[arg(long)]
    pub rm: bool,
    /// A command to run instead of the image's CMD (container mode): everything after its
    /// first word is its own, as with docker run (`IMAGE sh -c 'exit 3'`); after `--` when
    /// its first word starts with '-'
    // Flags may follow the image, as in Ignite (`ignite run IMAGE --name x`), up to the
    // command's first word.
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    /// The VM, by name or ID (or a unique prefix of one)
    pub vm: String,
    #[command(flatten)]
    pub start: StartFlags,
}

#[derive(Debug, Args)]
pub struct VmArg {
    /// The VM, by name or ID (or a unique prefix of one)
    pub vm: String,
}

#[derive(Debug, Args)]
pub struct VmsArgs {
    /// VMs, by name or ID (or a unique prefix of one)
    #[arg(required = true)]
    pub vms: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// VMs, by name or ID (or a unique prefix of one)
    #[arg(required = true)]
    pub vms: Vec<String>,
    /// Kill at once instead of asking the guest to power off
    #[arg(short, long = "force-kill")]
    pub force_kill: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// VMs, by name or ID (or a unique prefix of one)
    pub vms: Vec<String>,
    /// Kill running VMs first
    #[arg(short, long)]
    pub force: bool,
    /// Remove the VM a manifest describes (by its uid or name)
    #[arg(long, value_name = "FILE", conflicts_with = "vms")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// The VM, by name or ID (or a unique prefix of one)
    pub vm: String,
    /// Keep printing new output until the VM stops
    #[arg(short, long)]
    pub follow: bool,
    /// Show only the last N lines ("all" for every line)
    #[arg(short = 'n', long, value_name = "N")]
    pub tail: Option<String>,
    /// Show output since a time: RFC 3339 (2026-12-01T10:00:00Z), a date, a Unix time, or
    /// an age (90s, 10m, 1h30m)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Prefix each line with the time it arrived (RFC 3339, nanoseconds)
    #[arg(short, long)]
    pub timestamps: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// vm, image or kernel
    pub kind: String,
    /// A name or ID, or a unique prefix of one
    pub object: String,
    /// Output format
    #[arg(short, long, value_enum, default_value_t = InspectFormat::Json)]
    pub output: InspectFormat,
    /// Print with a Go-style template instead, e.g. "{{.Status.Network.IPAddresses}}"
    #[arg(short, long, value_name = "TEMPLATE")]
    pub template: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InspectFormat {
    Json,
    Yaml,
}

/// `ignite gitops`, as Ignite had it: the same loop as `ignited gitops`, which it runs.
#[derive(Debug, Args)]
pub struct GitopsArgs {
    /// The repository: file://, ssh://, user@host:path, https:// or git://
    pub repo: String,
    /// The branch to follow (when the remote has no master: its default branch)
    #[arg(short, long, default_value = "master")]
    pub branch: String,
    /// The one directory of the repository that holds the manifests [default: all of it]
    #[arg(short, long, value_name = "DIR", value_delimiter = ',')]
    pub paths: Vec<String>,
    /// This host's name in a fleet: only manifests labelled `ignite.rs/host: NAME` run here
    /// [default: the hostname]
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Also run the manifests that name no host (give it to one host only)
    #[arg(long)]
    pub adopt_unplaced: bool,
}

#[derive(Debug, Args)]
pub struct VersionArgs {
    /// Output format (empty for the full text)
    #[arg(short, long, value_enum, value_name = "FORMAT")]
    pub output: Option<VersionFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum VersionFormat {
    Short,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct CompletionArgs {
    /// The shell
    #[arg(value_enum, default_value_t = Shell::Bash)]
    pub shell: Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ImageGroup {
    #[command(subcommand)]
    pub command: Option<ImageCommand>,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image as a root disk for VMs
    #[command(long_about = "Import an image as a root disk for VMs.\n\n\
        SOURCE is a registry reference (ubuntu, ubuntu:22.04, ghcr.io/org/app@sha256:...; Docker Hub \
        names are normalised), oci:DIR[:TAG] (an OCI image layout) or docker-archive:FILE (docker save \
        output). Credentials come from Docker's config.json (docker login). Registries are reached over \
        HTTPS; plain HTTP is used only for loopback registries and those listed in \
        IGNITE_INSECURE_REGISTRIES=host[:port],...")]
    Import(ImportArgs),
    /// List images
    #[command(visible_alias = "list")]
    Ls,
    /// Remove images
    Rm(RemoveImageArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What to import: a registry reference, oci:DIR[:TAG] or docker-archive:FILE
    pub source: String,
    /// Ask the registry again even if the image was imported before (a tag may have moved)
    #[arg(long)]
    pub pull: bool,
    /// Store the image under this name (an image reference, e.g. ignite/debian:bookworm)
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How images are fetched from registries.
#[derive(Debug, Default, Args)]
pub struct RegistryArgs {
    /// The platform to import from a multi-platform image, e.g. linux/arm64 [default: this host's]
    #[arg(long, value_name = "OS/ARCH")]
    pub platform: Option<String>,
    /// The directory holding Docker's config.json with registry credentials [default: ~/.docker]
    #[arg(long, value_name = "DIR")]
    pub registry_config_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RemoveImageArgs {
    /// Images, by name or ID (or a unique prefix of one)
    #[arg(required = true)]
    pub images: Vec<String>,
    /// Also remove the VMs that use them
    #[arg(short, long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotGroup {
    #[command(subcommand)]
    pub command: Option<SnapshotCommand>,
    #[command(flatten)]
    pub list: SnapshotListArgs,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot of a running VM: its vCPUs, devices and memory, and a point-in-time
    /// layer of its disk (the VM pauses while it is taken, then runs on)
    #[command(
        long_about = "Take a snapshot of a running VM: its vCPUs, devices and memory, \
        and a point-in-time layer of its root disk. The VM pauses while it is taken, then runs on. \
        Make VMs from it with `ignite run --from-snapshot NAME`, as many as you like: each gets \
        its own name, UID, MAC, address, disk layer, clock and fresh entropy. A snapshot holds \
        the guest's memory, secrets included: its files are readable by their owner only."
    )]
    Create(SnapshotCreateArgs),
    /// List snapshots
    #[command(visible_alias = "list")]
    Ls(SnapshotListArgs),
    /// Remove snapshots (refused while VMs made from them exist)
    Rm(RemoveSnapshotArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotCreateArgs {
    /// The VM, by name or ID (or a unique prefix of one)
    pub vm: String,
    /// The snapshot's name [default: a random adjective-noun]
    #[arg(short, long)]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct SnapshotListArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: ListFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Args)]
pub struct RemoveSnapshotArgs {
    /// Snapshots, by name or ID (or a unique prefix of one)
    #[arg(required = true)]
    pub snapshots: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KernelGroup {
    #[command(subcommand)]
    pub command: Option<KernelCommand>,
}

#[derive(Debug, Subcommand)]
pub enum KernelCommand {
    /// Import a kernel to boot VMs with
    #[command(long_about = "Import a kernel to boot VMs with.\n\n\
        SOURCE is a kernel package (/path/to/linux-image-*.deb), a vmlinux or bzImage file \
        (/path/to/vmlinuz, with --modules for its modules), or an Ignite-style kernel image \
        (/boot/vmlinux plus /lib/modules) from a registry, oci:DIR[:TAG] or docker-archive:FILE. \
        bzImages compressed with gzip, xz, zstd, lz4, bzip2 or lzma are unpacked to the ELF vmlinux \
        Firecracker needs. The first kernel imported becomes the default, used by VMs that name none.")]
    Import(KernelImportArgs),
    /// List kernels
    #[command(visible_alias = "list")]
    Ls,
    /// Remove kernels
    Rm(RemoveKernelArgs),
}

#[derive(Debug, Args)]
pub struct KernelImportArgs {
    /// A kernel package, vmlinux or bzImage file, or kernel image
    pub source: String,
    /// The modules of a vmlinux or bzImage file: a lib/modules or lib/modules/<release> directory
    #[arg(long, value_name = "DIR")]
    pub modules: Option<PathBuf>,
    /// Make this the default kernel (used by VMs that name none)
    #[arg(long)]
    pub default: bool,
    /// Import again even if a kernel of that name exists
    #[arg(long)]
    pub pull: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Debug, Args)]
pub struct RemoveKernelArgs {
    /// Kernels, by name or ID (or a unique prefix of one)
    #[arg(required = true)]
    pub kernels: Vec<String>,
    /// Also remove the VMs that use them
    #[arg(short, long)]
    pub force: bool,
}

/// `--network`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkFlag {
    Bridge,
    User,
    None,
    Cni,
}

impl From<NetworkFlag> for ignite_api::NetworkMode {
    fn from(flag: NetworkFlag) -> Self {
        match flag {
            NetworkFlag::Bridge => ignite_api::NetworkMode::Bridge,
            NetworkFlag::User => ignite_api::NetworkMode::User,
            NetworkFlag::None => ignite_api::NetworkMode::None,
            NetworkFlag::Cni => ignite_api::NetworkMode::Cni,
        }
    }
}

/// `--vmm`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VmmFlag {
    Auto,
    Qemu,
    Firecracker,
}

impl From<VmmFlag> for ignite_api::VmmKind {
    fn from(flag: VmmFlag) -> Self {
        match flag {
            VmmFlag::Auto => ignite_api::VmmKind::Auto,
            VmmFlag::Qemu => ignite_api::VmmKind::Qemu,
            VmmFlag::Firecracker => ignite_api::VmmKind::Firecracker,
        }
    }
}

/// `--mode`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeFlag {
    Auto,
    Vm,
    Container,
}

impl From<ModeFlag> for ignite_api::GuestMode {
    fn from(flag: ModeFlag) -> Self {
        match flag {
            ModeFlag::Auto => ignite_api::GuestMode::Auto,
            ModeFlag::Vm => ignite_api::GuestMode::Vm,
            ModeFlag::Container => ignite_api::GuestMode::Container,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Cli {
        Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
    }

    fn create_args(cli: Cli) -> CreateArgs {
        match cli.command {
            Command::Lifecycle(LifecycleCommand::Create(args)) => args,
            Command::Lifecycle(LifecycleCommand::Run(args)) => args.create,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn ignites_provider_flags_are_taken_before_the_subcommand_and_after_the_vm() {
        let cli = parse(&[
            "ignite",
            "--runtime=docker",
            "--network-plugin=docker-bridge",
            "create",
            "img",
            "--name=x",
        ]);
        assert_eq!(cli.global.runtime, Some(RuntimeFlag::Docker));
        assert_eq!(
            cli.global.network_plugin,
            Some(NetworkPluginFlag::DockerBridge)
        );
        assert_eq!(create_args(cli).name.as_deref(), Some("x"));
        let cli = parse(&[
            "ignite",
            "start",
            "vm",
            "--runtime=containerd",
            "--network-plugin=cni",
        ]);
        assert_eq!(cli.global.network_plugin, Some(NetworkPluginFlag::Cni));
        parse(&["ignite", "--runtime", "docker", "image", "import", "x"]);
        parse(&["ignite", "kernel", "import", "x", "--runtime=docker"]);
        parse(&["ignite", "run", "img", "--id-prefix=e2e"]);
        // Ignite's values only.
        assert!(Cli::try_parse_from(["ignite", "--runtime=podman", "ps"]).is_err());
    }

    fn run_args(argv: &[&str]) -> RunArgs {
        match parse(argv).command {
            Command::Lifecycle(LifecycleCommand::Run(args)) => args,
            other => panic!("{other:?}"),
        }
    }

    /// As with docker run, everything from the command's first word on is the command's;
    /// before it, flags may follow the image, as in Ignite.
    #[test]
    fn run_s_command_takes_every_argument_after_its_first_word() {
        let args = run_args(&["ignite", "run", "--rm", "img", "sh", "-c", "exit 3", "-i"]);
        assert_eq!(args.command, ["sh", "-c", "exit 3", "-i"]);
        assert!(args.rm && !args.start.interactive);
        // --entrypoint sh, then the command's own flags right after the image.
        let args = run_args(&["ignite", "run", "img", "-c", "echo hi", "--name", "x"]);
        assert_eq!(args.command, ["-c", "echo hi", "--name", "x"]);
        assert_eq!(args.create.name, None);
        let args = run_args(&["ignite", "run", "img", "-n", "y", "--cpus", "2"]);
        assert!(args.command.is_empty());
        assert_eq!(
            (args.create.name.as_deref(), args.create.cpus),
            (Some("y"), Some(2))
        );
        let args = run_args(&["ignite", "run", "img", "-i", "--", "-c", "x"]);
        assert!(args.start.interactive);
        assert_eq!(args.command, ["-c", "x"]);
    }

    #[test]
    fn ssh_takes_a_path_only_with_an_equals_sign() {
        let args = create_args(parse(&["ignite", "create", "--name=x", "--ssh", "img"]));
        assert_eq!(args.ssh.as_deref(), Some("true"));
        assert_eq!(args.image.as_deref(), Some("img"));
        let args = create_args(parse(&["ignite", "create", "--ssh=/k.pub", "img"]));
        assert_eq!(args.ssh.as_deref(), Some("/k.pub"));
    }

    #[test]
    fn ports_files_and_volumes_take_comma_lists_and_labels_do_not() {
        let args = create_args(parse(&[
            "ignite",
            "run",
            "img",
            "-p",
            "18082:80,18083:81",
            "-p",
            "1:2",
            "-f",
            "/a:/a,/b:/b",
            "-v",
            "/dev/x:/m1,/dev/y:/m2",
            "-l",
            "k=a,b",
        ]));
        assert_eq!(args.ports, ["18082:80", "18083:81", "1:2"]);
        assert_eq!(args.copy_files, ["/a:/a", "/b:/b"]);
        assert_eq!(args.volumes, ["/dev/x:/m1", "/dev/y:/m2"]);
        assert_eq!(args.labels, ["k=a,b"]);
    }

    #[test]
    fn ssh_and_exec_flags_after_the_vm_are_flags_and_the_command_is_kept_whole() {
        let Command::Lifecycle(LifecycleCommand::Ssh(ssh)) =
            parse(&["ignite", "ssh", "vm", "-t=false"]).command
        else {
            panic!()
        };
        assert!(!ssh.tty && ssh.command.is_empty());
        let Command::Lifecycle(LifecycleCommand::Ssh(ssh)) =
            parse(&["ignite", "ssh", "vm", "-t", "ls", "-la"]).command
        else {
            panic!()
        };
        assert!(ssh.tty);
        assert_eq!(ssh.command, ["ls", "-la"]);
        let Command::Exec(exec) = parse(&[
            "ignite",
            "exec",
            "vm",
            "--timeout",
            "5",
            "-t",
            "ls",
            "-la",
            "-t",
        ])
        .command
        else {
            panic!()
        };
        assert!(exec.tty);
        assert_eq!(exec.timeout, 5);
        assert_eq!(exec.command, ["ls", "-la", "-t"]);
        let Command::Exec(exec) = parse(&["ignite", "exec", "vm", "--", "-x", "y"]).command else {
            panic!()
        };
        assert!(!exec.tty);
        assert_eq!(exec.command, ["-x", "y"]);
    }
}
