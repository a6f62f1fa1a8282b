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

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List running VMs (-a for all)
    Ps(PsArgs),
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

#[derive(Debug, Args)]
pub struct VmGroup {
    #[command(subcommand)]
    pub command: Option<VmCommand>,
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// List running VMs (-a for all)
    Ps(PsArgs),
    /// List all VMs
    #[command(visible_alias = "list")]
    Ls(PsArgs),
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
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// How images are fetched from registries.
#[derive(Debug, Args)]
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
