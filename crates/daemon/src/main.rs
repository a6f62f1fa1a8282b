//! `ignited`: the Ignite daemon. It keeps VMs in line with manifests in a directory or a
//! Git repository, and serves a REST API and metrics.

// Outside tests, a failure is an error the caller sees, never a panic on `unwrap`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod api;
mod daemon;
mod gitops;
mod heartbeat;
mod http;
mod metrics;
mod reconcile_loop;
mod reconciler;
mod setup;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

/// The Ignite daemon
#[derive(Debug, Parser)]
#[command(
    name = "ignited",
    version,
    about = "The Ignite daemon: VMs kept in line with manifests",
    propagate_version = true
)]
struct Cli {
    #[command(flatten)]
    flags: GlobalFlags,
    #[command(subcommand)]
    command: Command,
}

/// Ignite's global flags: on ignited and every subcommand, before or after its name.
#[derive(Debug, Args)]
struct GlobalFlags {
    /// The log level: panic, fatal, error, warn (or warning), info, debug or trace
    /// (panic and fatal log as error) [default: info, or as RUST_LOG says]
    #[arg(
        long,
        global = true,
        value_enum,
        ignore_case = true,
        value_name = "LEVEL"
    )]
    log_level: Option<LogLevel>,
    /// Ignored: Ignite's prefix of system identifiers (ignited names nothing after it)
    #[arg(long, global = true, value_name = "STR")]
    id_prefix: Option<String>,
    /// Ignored: Ignite's container runtime (each VM runs under its own supervisor, with no
    /// container runtime)
    #[arg(long, global = true, value_enum, value_name = "RUNTIME")]
    runtime: Option<Runtime>,
    /// Ignored: Ignite's network plugin (each VM's network is set up as its manifest says)
    #[arg(long, global = true, value_enum, value_name = "PLUGIN")]
    network_plugin: Option<NetworkPlugin>,
    /// The Configuration file (default /etc/ignite/config.yaml if it exists)
    #[arg(long, global = true, value_name = "FILE")]
    ignite_config: Option<PathBuf>,
}

/// logrus's level names, as Ignite's `--log-level` takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogLevel {
    Panic,
    Fatal,
    Error,
    #[value(alias = "warning")]
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The tracing filter of the level: tracing has nothing above error, so logrus's
    /// panic and fatal (which only ever log before exiting) are error.
    fn filter(self) -> &'static str {
        match self {
            LogLevel::Panic | LogLevel::Fatal | LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Runtime {
    Docker,
    Containerd,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum NetworkPlugin {
    Cni,
    DockerBridge,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Keep the VMs in line with the manifests in a directory
    Daemon(DaemonArgs),
    /// Keep the VMs in line with the manifests in a Git repository, status pushed back
    Gitops(Box<gitops::GitopsArgs>),
    /// Print the version of ignited
    Version {
        /// Output format (empty for the full text)
        #[arg(short, long, value_enum, value_name = "FORMAT")]
        output: Option<VersionFormat>,
    },
    /// Print a shell completion script
    Completion {
        #[arg(value_enum, default_value_t = Shell::Bash)]
        shell: Shell,
    },
    /// A VM's supervisor, started by ignited for each VM it starts (internal)
    #[command(hide = true, subcommand)]
    Vm(VmCommand),
}

/// The supervisor's entry points, shared with `ignite vm` (both binaries carry it, so
/// ignited runs VMs without the ignite binary).
#[derive(Debug, Subcommand)]
enum VmCommand {
    /// Run one VM until it ends
    Supervise {
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        uid: String,
    },
    /// Exec a VMM that dies with its supervisor
    ExecVmm {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
    /// Build a warm-start template of a VM's machine
    BuildTemplate {
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        #[arg(long)]
        key: String,
        uid: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum VersionFormat {
    Short,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Flags of every command that uses VMs.
#[derive(Debug, Args)]
struct Global {
    /// The state directory (default /var/lib/ignite as root)
    #[arg(long, env = "IGNITE_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    /// `--ignite-config`, a global flag: set from it after parsing.
    #[arg(skip)]
    ignite_config: Option<PathBuf>,
    /// A binary to supervise VMs instead of ignited itself (`ignite` or `ignited`: both
    /// carry the supervisor) [default: ignited itself]
    #[arg(long, value_name = "FILE")]
    ignite: Option<PathBuf>,
    /// Seconds between full comparisons of manifests and VMs (changes to the manifests are
    /// seen within a second)
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    resync: u64,
    /// Where the REST API and /metrics listen
    #[arg(long, default_value = "/run/ignite/ignited.sock", value_name = "FILE")]
    api_socket: PathBuf,
    /// A group whose members may use the API too (root always may)
    #[arg(long, value_name = "GROUP")]
    api_group: Option<String>,
}

/// Which manifests this host runs: `ignite.rs/host` placement.
#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// Run only the VMs whose manifests carry the label `ignite.rs/host: NAME` (letters,
    /// digits, '-', '_', '.'); a VM placed on another host is removed here [gitops
    /// default: this machine's hostname; daemon default: placement is not looked at]
    #[arg(long, value_name = "NAME")]
    pub host: Option<String>,
    /// Also run the VMs whose manifests name no host (give it to one host only, so that no
    /// VM runs twice) [default: they are left to such a host]
    #[arg(long)]
    pub adopt_unplaced: bool,
}

impl PlacementArgs {
    /// The placement: `--host`, else (when `hostname_by_default`) this machine's hostname,
    /// else none.
    pub fn placement(
        &self,
        hostname_by_default: bool,
    ) -> anyhow::Result<Option<ignite_runtime::reconcile::placement::Placement>> {
        use ignite_runtime::reconcile::placement::{HostName, Placement};
        let host = match &self.host {
            Some(name) => HostName::new(name).map_err(|e| anyhow::anyhow!("--host: {e}"))?,
            None if hostname_by_default => {
                let name = std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| {
                    anyhow::anyhow!("cannot read this machine's hostname ({e}): give --host")
                })?;
                HostName::new(name.trim()).map_err(|e| {
                    anyhow::anyhow!(
                        "this machine's hostname cannot name it in a fleet: {e}; give --host"
                    )
                })?
            }
            None if self.adopt_unplaced => {
                anyhow::bail!("--adopt-unplaced needs --host: without it every manifest is run")
            }
            None => return Ok(None),
        };
        Ok(Some(Placement {
            host,
            adopt_unplaced: self.adopt_unplaced,
        }))
    }
}

#[derive(Debug, Args)]
struct DaemonArgs {
    /// The directory of VM manifests (.yaml, .yml, .json; recursively) [default:
    /// /etc/firecracker/manifests as Ignite's, or /etc/ignite/manifests, the former
    /// default, if only that one exists]
    #[arg(long, value_name = "DIR")]
    manifest_dir: Option<PathBuf>,
    #[command(flatten)]
    placement: PlacementArgs,
    #[command(flatten)]
    global: Global,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An explicit --log-level wins over RUST_LOG, as a flag does over the environment.
    let filter = match cli.flags.log_level {
        Some(level) => tracing_subscriber::EnvFilter::new(level.filter()),
        None => tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .init();
    log_ignored_flags(&cli.flags);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes output; a closed pipe (`ignited completion bash | head`) is a normal end.
fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// Ignite's flags that choose what ignited has no choice of are accepted, so Ignite's
/// command lines (and units) run unchanged; they are said to be ignored at debug level.
fn log_ignored_flags(flags: &GlobalFlags) {
    if let Some(prefix) = &flags.id_prefix {
        tracing::debug!("--id-prefix {prefix:?} is ignored: ignited names nothing after it");
    }
    if let Some(runtime) = flags.runtime {
        tracing::debug!(
            "--runtime {runtime:?} is ignored: each VM runs under its own supervisor, with no container runtime"
        );
    }
    if let Some(plugin) = flags.network_plugin {
        tracing::debug!(
            "--network-plugin {plugin:?} is ignored: each VM's network is set up as its manifest says"
        );
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = cli.flags.ignite_config;
    match cli.command {
        Command::Daemon(mut args) => {
            args.global.ignite_config = config;
            let dir = match args.manifest_dir {
                Some(dir) => dir,
                None => daemon::default_manifest_dir(),
            };
            let placement = args.placement.placement(false)?;
            daemon::run(&dir, placement, &args.global)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Gitops(mut args) => {
            args.global.ignite_config = config;
            gitops::run(&args)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Vm(VmCommand::Supervise { root, uid }) => {
            ignite_runtime::vms::supervisor::supervise(&root, &uid)?;
        }
        Command::Vm(VmCommand::BuildTemplate { root, key, uid }) => {
            ignite_runtime::vms::warm::build_template_for(&root, &uid, &key)?;
        }
        Command::Vm(VmCommand::ExecVmm { command }) => {
            let err = ignite_runtime::vms::supervisor::exec_vmm(&command);
            anyhow::bail!("cannot start the VMM {:?}: {err}", command[0]);
        }
        Command::Version { output } => {
            use ignite_api::version::{self, VersionInfo};
            let info = VersionInfo {
                version: concat!("v", env!("CARGO_PKG_VERSION")),
                git_commit: env!("IGNITE_GIT_COMMIT"),
                git_tree_state: env!("IGNITE_GIT_TREE_STATE"),
                build_date: env!("IGNITE_BUILD_DATE"),
                rust_version: env!("IGNITE_RUSTC_VERSION"),
                platform: version::platform(),
            };
            let format = output.map(|f| match f {
                VersionFormat::Short => version::VersionFormat::Short,
                VersionFormat::Json => version::VersionFormat::Json,
                VersionFormat::Yaml => version::VersionFormat::Yaml,
            });
            write_stdout(&version::render(&info, format))?;
        }
        Command::Completion { shell } => {
            let shell = match shell {
                Shell::Bash => clap_complete::Shell::Bash,
                Shell::Zsh => clap_complete::Shell::Zsh,
                Shell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "ignited", &mut script);
            write_stdout(&String::from_utf8_lossy(&script))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        for line in [
            &[
                "ignited",
                "--log-level",
                "warning",
                "--runtime",
                "docker",
                "version",
            ][..],
            &[
                "ignited",
                "version",
                "--log-level",
                "WARN",
                "--runtime",
                "docker",
            ],
        ] {
            let cli = Cli::try_parse_from(line).unwrap();
            assert_eq!(cli.flags.log_level, Some(LogLevel::Warn), "{line:?}");
            assert!(matches!(cli.flags.runtime, Some(Runtime::Docker)));
        }
        let cli = Cli::try_parse_from([
            "ignited",
            "daemon",
            "--ignite-config",
            "/c.yaml",
            "--network-plugin",
            "docker-bridge",
            "--id-prefix",
            "x",
        ])
        .unwrap();
        assert_eq!(cli.flags.ignite_config, Some(PathBuf::from("/c.yaml")));
        assert_eq!(cli.flags.id_prefix.as_deref(), Some("x"));
        for (name, filter) in [
            ("panic", "error"),
            ("fatal", "error"),
            ("error", "error"),
            ("warn", "warn"),
            ("info", "info"),
            ("debug", "debug"),
            ("trace", "trace"),
        ] {
            let cli = Cli::try_parse_from(["ignited", "--log-level", name, "version"]).unwrap();
            assert_eq!(cli.flags.log_level.unwrap().filter(), filter);
        }
        for bad in [
            &["ignited", "--log-level", "loud", "version"][..],
            &["ignited", "--runtime", "podman", "version"],
            &["ignited", "--network-plugin", "flannel", "version"],
            &["ignited", "version", "-o", "xml"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }
}
