//! `ignited gitops URL`: the reconcile loop over a clone of a Git repository. Every
//! interval it fetches, moves its clone to the remote branch (rebasing its own status
//! commits onto it), reconciles, commits the status written into the manifests and pushes.
//! An unreachable remote or a rejected push is logged and retried at the next interval;
//! the VMs stay as the last good checkout says meanwhile.
//!
//! Git is the system's `git`; each run of it is stopped after `--timeout`. SSH remotes
//! need `--identity-file` and a known_hosts file (`--hosts-file`, default
//! ~/.ssh/known_hosts as Ignite's; host keys are checked); HTTPS remotes push with
//! `--https-username` and the password in `IGNITE_GIT_PASSWORD` (or `--https-password`).
//! `file://` remotes are writable; anything else is read-only: no status is written.
//!
//! The branch is Ignite's default, `master`, unless `--branch` names another; a remote
//! without `master` is followed on its own default branch (its HEAD).
//!
//! A fleet: several ignited follow one repository, each as one host (`--host`, default
//! the hostname), each running the VMs placed on it (`ignite.rs/host`). Status lives in
//! each VM's own manifest and only the VM's host writes it; each host also writes its
//! heartbeat, `hosts/NAME.yaml`. A host's commits touch only those files: after a rebase
//! onto the others' pushes, commits that touch a file no longer this host's are dropped
//! (and the status written again), so no host rewrites another's lines.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

use ignite_runtime::reconcile::placement::{HostName, Placement, Verdict};

use crate::reconcile_loop::ReconcileLoop;
use crate::{Global, PlacementArgs, heartbeat};

/// The value of the source label on VMs the GitOps loop makes.
pub const SOURCE: &str = "gitops";
pub const PASSWORD_ENV: &str = "IGNITE_GIT_PASSWORD";
/// Ignite's default branch.
pub const DEFAULT_BRANCH: &str = "master";

#[derive(Debug, Args)]
pub struct GitopsArgs {
    /// The repository: file://, ssh://, user@host:path, https:// or git://
    pub url: String,
    /// The branch to follow [default: master, or the remote's default branch when it has
    /// no master]
    #[arg(short = 'b', long, value_name = "BRANCH")]
    pub branch: Option<String>,
    /// The time between fetches, as Go writes durations (30s, 1m0s, 1h30m, 500ms) or
    /// whole seconds
    #[arg(long, default_value = "30s", value_parser = parse_interval, value_name = "DURATION")]
    pub interval: Duration,
    /// How long one git operation (clone, fetch, push) may take before it is stopped and
    /// reported (the loop goes on), as Go writes durations
    #[arg(long, default_value = "1m0s", value_parser = parse_timeout, value_name = "DURATION")]
    pub timeout: Duration,
    /// The directory of the manifests inside the repository [default: all of it]
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// The SSH private key for ssh:// and user@host:path remotes
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// The known_hosts file that holds the SSH remote's host key [default:
    /// ~/.ssh/known_hosts if it exists]
    #[arg(long, visible_alias = "known-hosts-file", value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,
    /// The user for https:// remotes
    #[arg(long, value_name = "USER")]
    pub https_username: Option<String>,
    /// The password or token for https:// remotes; other users of the host can read a
    /// command line: IGNITE_GIT_PASSWORD is safer
    #[arg(long, value_name = "PASSWORD")]
    pub https_password: Option<String>,
    /// Where the clone is kept [default: <root>/gitops/<a hash of the URL and branch>]
    #[arg(long, value_name = "DIR")]
    pub checkout_dir: Option<PathBuf>,
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// How often this host's heartbeat (hosts/NAME.yaml) is committed when nothing but
    /// its time changed (a change is committed at once), as Go writes durations, from 1s
    /// to 24h
    #[arg(long, default_value = "5m0s", value_parser = parse_heartbeat, value_name = "DURATION")]
    pub heartbeat_interval: Duration,
    #[command(flatten)]
    pub global: Global,
}

/// `--interval`: a Go duration, or whole seconds (this flag's former form); more than 0.
fn parse_interval(text: &str) -> Result<Duration, String> {
    let d = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|e| format!("{text:?}: {e}"))?
    } else {
        ignite_api::duration::parse(text).map_err(|e| e.to_string())?
    };
    positive(d)
}

/// `--heartbeat-interval`: a Go duration from 1s to 24h.
fn parse_heartbeat(text: &str) -> Result<Duration, String> {
    let d = ignite_api::duration::parse(text).map_err(|e| e.to_string())?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(24 * 3600) {
        return Err("give a duration from 1s to 24h (e.g. 5m0s)".into());
    }
    Ok(d)
}

/// `--timeout`: a Go duration, more than 0.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    positive(ignite_api::duration::parse(text).map_err(|e| e.to_string())?)
}

fn positive(d: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Err("give a duration of more than 0 (e.g. 30s)".into());
    }
    Ok(d)
}

/// The system's git, in the clone, with the remote's credentials.
struct Git {
    dir: PathBuf,
    config: Vec<String>,
    env: Vec<(String, String)>,
    /// How long one run may take (`--timeout`).
    timeout: Duration,
    /// Raised by SIGTERM/SIGINT: a running git is stopped then too.
    stop: Arc<AtomicBool>,
}

impl Git {
    fn command(&self, args: &[&str]) -> Command {
        // Where git is missing, spawning the bare name fails and run() says to install it.
        let mut cmd = Command::new(
            ignite_host_tools::GIT
                .locate()
                .unwrap_or_else(|| "git".into()),
        );
        // The checkout never holds symbolic links: a committed link is checked out as a
        // plain file holding its target, so nothing written into the checkout (status)
        // or read from it (manifests) leads out of it.
        cmd.args([
            "-c",
            "core.symlinks=false",
            "-c",
            "protocol.ext.allow=never",
        ]);
        for c in &self.config {
            cmd.args(["-c", c]);
        }
        cmd.args(args)
            .current_dir(&self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs git and returns its output, or says why it failed. A run longer than the
    /// timeout is killed with its process group (ssh, git-remote-https, upload-pack are
    /// git's children and would hold the pipes open).
    fn run(&self, args: &[&str]) -> Result<String, String> {
        use std::io::Read as _;
        use std::os::unix::process::CommandExt as _;
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot run git ({e}): install git"))?;
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut text);
                }
                text
            })
        };
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if Instant::now() >= deadline || self.stop.load(Ordering::Relaxed) => {
                    let _ = rustix::process::kill_process_group(
                        rustix::process::Pid::from_child(&child),
                        rustix::process::Signal::KILL,
                    );
                    let _ = child.kill();
                    let _ = child.wait();
                    break Err(if self.stop.load(Ordering::Relaxed) {
                        format!("git {} was stopped: ignited is stopping", args[0])
                    } else {
                        format!(
                            "git {} took longer than {} and was stopped (a slow remote needs a longer --timeout)",
                            args[0],
                            ignite_api::duration::format(self.timeout)
                        )
                    });
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => break Err(format!("cannot wait for git: {e}")),
            }
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        let status = status.map_err(|e| redact(&e))?;
        if status.success() {
            Ok(String::from_utf8_lossy(&stdout).trim().to_string())
        } else {
            Err(redact(&format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&stderr).trim()
            )))
        }
    }
}

/// How the remote is reached, and whether status can be pushed to it.
struct Access {
    /// The URL git is given: the remote's, without a password (that goes to git through
    /// the credential helper, so it is in no command line, log or `.git/config`).
    url: String,
    /// `git -c` settings.
    config: Vec<String>,
    env: Vec<(String, String)>,
    writable: bool,
}

/// `~/x` as the shell (and Ignite) reads it.
fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Ignite's default known_hosts, ~/.ssh/known_hosts, where it exists.
fn home_known_hosts() -> Option<PathBuf> {
    let path = expand_home(Path::new("~/.ssh/known_hosts"));
    path.is_file().then_some(path)
}

/// How `args` reach the remote; `default_known_hosts` is used without `--hosts-file`.
fn access(args: &GitopsArgs, default_known_hosts: Option<PathBuf>) -> anyhow::Result<Access> {
    let (url, url_user, url_password) = split_credentials(&args.url);
    let url = url.as_str();
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let ssh = url.starts_with("ssh://")
        || (!url.contains("://") && url.contains('@') && url.contains(':'));
    if ssh {
        let Some(known) = args
            .hosts_file
            .as_deref()
            .map(expand_home)
            .or(default_known_hosts)
        else {
            bail!(
                "an SSH remote needs --hosts-file with its host key (host keys are checked), and ~/.ssh/known_hosts does not exist; e.g. ssh-keyscan HOST > known_hosts, then verify it"
            );
        };
        let known = &known;
        let identity = args.identity_file.as_deref().map(expand_home);
        for (flag, file) in [
            ("--hosts-file", Some(known)),
            ("--identity-file", identity.as_ref()),
        ] {
            if let Some(file) = file
                && let Err(e) = std::fs::metadata(file)
            {
                bail!("{flag} {}: {e}; give a readable file", file.display());
            }
        }
        let mut command = format!(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
            quote(known)
        );
        if let Some(key) = &identity {
            command.push_str(&format!(" -o IdentitiesOnly=yes -i {}", quote(key)));
        }
        return Ok(Access {
            url: url.to_string(),
            config: vec![],
            env: vec![("GIT_SSH_COMMAND".into(), command)],
            writable: args.identity_file.is_some(),
        });
    }
    let none = |writable| Access {
        url: url.to_string(),
        config: vec![],
        env: vec![],
        writable,
    };
    if url.starts_with("https://") || url.starts_with("http://") {
        let password = args
            .https_password
            .clone()
            .or(url_password)
            .or_else(|| std::env::var(PASSWORD_ENV).ok());
        let user = args.https_username.clone().or(url_user);
        return Ok(match (user, password) {
            (Some(user), Some(password)) => Access {
                url: url.to_string(),
                config: vec![
                    "credential.helper=".into(),
                    "credential.helper=!f() { echo \"username=$IGNITE_GIT_USERNAME\"; echo \"password=$IGNITE_GIT_PASSWORD\"; }; f".into(),
                ],
                env: vec![
                    ("IGNITE_GIT_USERNAME".into(), user),
                    (PASSWORD_ENV.into(), password),
                ],
                writable: true,
            },
            _ => none(false),
        });
    }
    Ok(none(url.starts_with("file://") || url.starts_with('/')))
}

pub fn run(args: &GitopsArgs) -> anyhow::Result<()> {
    let global = &args.global;
    if args.https_password.is_some() {
        // Said on stderr whatever the log level: the password is already exposed.
        eprintln!(
            "Warning: --https-password is visible to other users of this host (ps, /proc/PID/cmdline); set {PASSWORD_ENV} in ignited's environment instead"
        );
    }
    let Access {
        url,
        config,
        env,
        writable,
    } = access(args, home_known_hosts())?;
    if let Some(b) = &args.branch {
        check_branch(b).map_err(|e| anyhow::anyhow!("--branch {b:?}: {e}"))?;
    }
    if let Some(p) = &args.path
        && (p.is_absolute()
            || p.components()
                .any(|c| matches!(c, std::path::Component::ParentDir)))
    {
        bail!(
            "--path {}: give a directory inside the repository, without '..'",
            p.display()
        );
    }
    let placement = args
        .placement
        .placement(true)?
        .context("a GitOps host always has a name")?;
    let setup = crate::setup::set_up(global)?;
    let stop = setup.stop.clone();
    let checkout = args.checkout_dir.clone().unwrap_or_else(|| {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (&args.url, &args.branch).hash(&mut h);
        setup
            .root
            .join("gitops")
            .join(format!("{:016x}", h.finish()))
    });
    let interval = args.interval;
    let mut git = Git {
        dir: checkout.clone(),
        config,
        env,
        timeout: args.timeout,
        stop: stop.clone(),
    };
    let cloned = clone(&mut git, &url, args, &stop, interval)?;
    if stop.load(Ordering::Relaxed) {
        return Ok(());
    }
    git.run(&["config", "user.name", "ignited"])
        .map_err(anyhow::Error::msg)?;
    // The host name is checked (letters, digits, '-', '_', '.'): safe in an address.
    git.run(&[
        "config",
        "user.email",
        &format!("ignited@{}", placement.host),
    ])
    .map_err(anyhow::Error::msg)?;
    let branch = match cloned.or_else(|| args.branch.clone()) {
        Some(b) => {
            check_branch_with_git(&git, &b)
                .map_err(|e| anyhow::anyhow!("the branch {b:?} is refused: {e}"))?;
            b
        }
        None => {
            // A clone made by an earlier run: it is on the branch chosen then.
            // The remote chose this name: it is checked before it is used anywhere.
            let b = git
                .run(&["rev-parse", "--abbrev-ref", "HEAD"])
                .map_err(anyhow::Error::msg)?;
            check_branch(&b).map_err(|e| {
                anyhow::anyhow!(
                    "the remote's default branch {b:?} is refused: {e}; give --branch to follow another"
                )
            })?;
            check_branch_with_git(&git, &b).map_err(|e| {
                anyhow::anyhow!(
                    "the remote's default branch {b:?} is refused: {e}; give --branch to follow another"
                )
            })?;
            b
        }
    };
    tracing::info!(
        "following {} ({branch}) in {} as host {}{}{}",
        redact(&args.url),
        checkout.display(),
        placement.host,
        if placement.adopt_unplaced {
            ", with the VMs placed on no host"
        } else {
            ""
        },
        if writable {
            ""
        } else {
            "; read-only: no status is written back"
        }
    );
    let dir = args
        .path
        .as_ref()
        .map_or_else(|| checkout.clone(), |p| checkout.join(p));
    let reconciler = setup.reconciler(SOURCE);
    let mut reconcile = ReconcileLoop::new(
        reconciler,
        dir,
        interval,
        ignite_runtime::policy::Origin::Gitops,
    );
    reconcile.write_status = writable;
    reconcile.placement = Some(placement.clone());
    let owns = |path: &str| owned_by(&checkout, &placement, path);
    while !stop.load(Ordering::Relaxed) {
        sync(&git, &branch, &owns);
        reconcile.pass();
        *setup.stats.lock().expect("stats lock") = reconcile.stats.clone();
        if writable {
            beat(
                &setup.store,
                &checkout,
                &placement.host,
                args.heartbeat_interval,
            );
            publish(&git, &branch, &placement.host);
        }
        let deadline = Instant::now() + interval;
        while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let _ = std::fs::remove_file(&global.api_socket);
    tracing::info!("stopping; the VMs keep running");
    Ok(())
}

/// Writes this host's heartbeat when it is due.
fn beat(store: &ignite_store::Store, checkout: &Path, host: &HostName, interval: Duration) {
    use ignite_runtime::reconcile::SOURCE_LABEL;
    let Ok(list) = store.vms().list() else {
        return;
    };
    let running: Vec<&ignite_api::Vm> = list
        .objects
        .iter()
        .filter(|v| ignite_runtime::vms::is_running(v))
        .collect();
    let mut ours: Vec<String> = running
        .iter()
        .filter(|v| v.metadata.labels.get(SOURCE_LABEL).map(String::as_str) == Some(SOURCE))
        .map(|v| v.metadata.name.clone())
        .collect();
    ours.sort();
    let beat = heartbeat::Heartbeat::new(host, heartbeat::capacity(), running.len(), ours);
    if let Err(e) = heartbeat::write(checkout, host, beat, interval) {
        tracing::warn!("cannot write the heartbeat: {e}");
    }
}

/// Whether this host may commit to `path` (relative to the checkout): its heartbeat, and
/// the manifests of the VMs placed on it.
fn owned_by(checkout: &Path, placement: &Placement, path: &str) -> bool {
    if path == format!("{}/{}.yaml", heartbeat::HOSTS_DIR, placement.host) {
        return true;
    }
    let file = checkout.join(path);
    // A path git names is inside the checkout; one that is a link is no manifest.
    if Path::new(path)
        .components()
        .any(|c| !matches!(c, std::path::Component::Normal(_)))
        || std::fs::symlink_metadata(&file).map_or(true, |m| !m.is_file())
    {
        return false;
    }
    let set = ignite_runtime::reconcile::manifests::load(&file);
    matches!(&set.vms[..], [d] if placement.judge(d) == Verdict::Here)
}

/// Clones the repository unless the clone is there, retrying while the remote is down;
/// returns the branch it cloned (None when the clone was there or the daemon stops). A
/// missing branch is an error: waiting would not make it appear.
fn clone(
    git: &mut Git,
    url: &str,
    args: &GitopsArgs,
    stop: &AtomicBool,
    interval: Duration,
) -> anyhow::Result<Option<String>> {
    if git.dir.join(".git").is_dir() {
        return Ok(None);
    }
    let parent = git
        .dir
        .parent()
        .context("the checkout directory has no parent")?
        .to_path_buf();
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create {}", parent.display()))?;
    let target = git.dir.clone();
    let partial = parent.join(format!(
        ".{}.cloning",
        target.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut delay = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        let _ = std::fs::remove_dir_all(&partial);
        let cloner = Git {
            dir: parent.clone(),
            config: git.config.clone(),
            env: git.env.clone(),
            timeout: git.timeout,
            stop: git.stop.clone(),
        };
        let listed = cloner.run(&[
            "ls-remote",
            "--symref",
            "--end-of-options",
            url,
            "HEAD",
            "refs/heads/*",
        ]);
        let branch = match listed {
            Err(e) => Err(e),
            Ok(listing) => {
                match choose_branch(args.branch.as_deref(), &parse_ls_remote(&listing)) {
                    Ok(BranchChoice::Named(b)) => Ok(b),
                    Ok(BranchChoice::RemoteDefault(b)) => {
                        tracing::info!(
                            "{} has no branch {DEFAULT_BRANCH} (Ignite's default): following its default branch {b}; give --branch to follow another",
                            redact(&args.url)
                        );
                        Ok(b)
                    }
                    Err(e) => bail!("{}: {e}", redact(&args.url)),
                }
            }
        };
        let mut clone_args = vec![
            "clone".to_string(),
            "--quiet".into(),
            "--config".into(),
            "core.symlinks=false".into(),
        ];
        if let Ok(b) = &branch {
            clone_args.push(format!("--branch={b}"));
        }
        // Nothing after --end-of-options is taken for an option, whatever it starts with.
        clone_args.extend([
            "--end-of-options".into(),
            url.to_string(),
            partial.to_string_lossy().into_owned(),
        ]);
        let clone_args: Vec<&str> = clone_args.iter().map(String::as_str).collect();
        match branch.and_then(|b| cloner.run(&clone_args).map(|_| b)) {
            Ok(b) => {
                std::fs::rename(&partial, &target)
                    .with_context(|| format!("cannot move the clone to {}", target.display()))?;
                return Ok(Some(b));
            }
            Err(e) => {
                tracing::error!(
                    "cannot clone {}: {e} (retrying in {delay:?})",
                    redact(&args.url)
                );
                let until = Instant::now() + delay;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                }
                delay = (delay * 2).min(interval.max(Duration::from_secs(1)));
            }
        }
    }
    Ok(None)
}

/// The branches of a remote and the one its HEAD names, from `git ls-remote --symref`.
#[derive(Debug, Default, PartialEq, Eq)]
struct RemoteRefs {
    head: Option<String>,
    branches: Vec<String>,
}

/// Reads `git ls-remote --symref URL HEAD refs/heads/*`: `ref: refs/heads/B<TAB>HEAD`
/// names the default branch, `SHA<TAB>refs/heads/B` lists one.
fn parse_ls_remote(listing: &str) -> RemoteRefs {
    let mut refs = RemoteRefs::default();
    for line in listing.lines() {
        let Some((left, name)) = line.split_once('\t') else {
            continue;
        };
        if let Some(target) = left.strip_prefix("ref: ") {
            if name == "HEAD"
                && let Some(b) = target.strip_prefix("refs/heads/")
            {
                refs.head = Some(b.to_string());
            }
        } else if let Some(b) = name.strip_prefix("refs/heads/") {
            refs.branches.push(b.to_string());
        }
    }
    refs
}

/// The branch followed, and why.
#[derive(Debug, PartialEq, Eq)]
enum BranchChoice {
    /// `--branch`'s, or `master` (Ignite's default) which the remote has.
    Named(String),
    /// No `--branch` and no `master`: the remote's default branch.
    RemoteDefault(String),
}

/// Ignite's rule, plus a fallback for remotes made since git's default became `main`:
/// `--branch` if it exists, else an error; without it, `master` if it exists, else the
/// remote's default branch.
fn choose_branch(requested: Option<&str>, remote: &RemoteRefs) -> Result<BranchChoice, String> {
    let has = |b: &str| remote.branches.iter().any(|r| r == b);
    let known = || {
        if remote.branches.is_empty() {
            "it has no branches (push a commit first)".to_string()
        } else {
            format!("it has {}", remote.branches.join(", "))
        }
    };
    match requested {
        Some(b) if has(b) => Ok(BranchChoice::Named(b.to_string())),
        Some(b) => Err(format!(
            "no branch {b:?} to follow ({}); give an existing one to --branch",
            known()
        )),
        None if has(DEFAULT_BRANCH) => Ok(BranchChoice::Named(DEFAULT_BRANCH.to_string())),
        None => match &remote.head {
            Some(head) if has(head) => {
                check_branch(head).map_err(|e| {
                    format!("its default branch {head:?} is refused: {e}; give --branch to follow another")
                })?;
                Ok(BranchChoice::RemoteDefault(head.clone()))
            }
            _ => Err(format!(
                "no branch {DEFAULT_BRANCH} and no default branch to follow ({}); give --branch",
                known()
            )),
        },
    }
}

/// Brings the clone to the remote branch, keeping its own unpushed status commits on top
/// while they touch only files `owns` (this host's).
fn sync(git: &Git, branch: &str, owns: &dyn Fn(&str) -> bool) {
    let upstream = upstream_ref(branch);
    // A full refspec: it starts with '+', and follows --end-of-options anyway.
    let refspec = format!("+refs/heads/{branch}:{upstream}");
    if let Err(e) = git.run(&["fetch", "--quiet", "--end-of-options", "origin", &refspec]) {
        tracing::warn!("cannot fetch: {e}; reconciling the last checkout");
        return;
    }
    let ahead = git
        .run(&[
            "rev-list",
            "--count",
            "--end-of-options",
            &format!("{upstream}..HEAD"),
        ])
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    if ahead > 0
        && git
            .run(&["rebase", "--quiet", "--end-of-options", &upstream])
            .is_ok()
    {
        match foreign_paths(git, &upstream, owns) {
            Ok(foreign) if foreign.is_empty() => return,
            Ok(foreign) => tracing::info!(
                "dropping this host's unpushed status: it touches {}, not this host's now; written again",
                foreign.join(", ")
            ),
            Err(e) => tracing::warn!("cannot list what the status commits touch: {e}"),
        }
    } else if ahead > 0 {
        // The remote changed the same lines: its version wins, status is written again.
        let _ = git.run(&["rebase", "--abort"]);
    }
    if let Err(e) = git.run(&["reset", "--quiet", "--hard", "--end-of-options", &upstream]) {
        tracing::error!("cannot check out {upstream}: {e}");
    }
}

/// The files the unpushed commits touch that `owns` says are not this host's.
fn foreign_paths(
    git: &Git,
    upstream: &str,
    owns: &dyn Fn(&str) -> bool,
) -> Result<Vec<String>, String> {
    let touched = git.run(&[
        "diff",
        "--name-only",
        "-z",
        "--no-renames",
        "--end-of-options",
        upstream,
        "HEAD",
    ])?;
    Ok(touched
        .split('\0')
        .filter(|p| !p.is_empty() && !owns(p))
        .map(|p| format!("{p:?}"))
        .collect())
}

/// Commits the status the pass wrote and pushes it.
fn publish(git: &Git, branch: &str, host: &HostName) {
    // Every file by name (not a new directory as one line), to tell a heartbeat alone.
    let changes = git
        .run(&["status", "--porcelain", "--untracked-files=all"])
        .unwrap_or_default();
    if !changes.is_empty() {
        let heartbeat = format!("{}/{host}.yaml", heartbeat::HOSTS_DIR);
        let only_heartbeat = changes
            .lines()
            // "XY PATH"; the output comes trimmed, so X may be gone from the first line.
            .all(|l| {
                l.trim_start()
                    .split_once(' ')
                    .is_some_and(|(_, p)| p.trim_start() == heartbeat)
            });
        let message = if only_heartbeat {
            format!("ignited on {host}: heartbeat")
        } else {
            format!("ignited on {host}: VM status")
        };
        let committed = git
            .run(&["add", "--all"])
            .and_then(|_| git.run(&["commit", "--quiet", "-m", &message]));
        if let Err(e) = committed {
            tracing::error!("cannot commit the status: {e}");
            return;
        }
    }
    let upstream = upstream_ref(branch);
    let ahead = git
        .run(&[
            "rev-list",
            "--count",
            "--end-of-options",
            &format!("{upstream}..HEAD"),
        ])
        .is_ok_and(|n| n != "0");
    if !ahead {
        return;
    }
    match git.run(&[
        "push",
        "--quiet",
        "--end-of-options",
        "origin",
        &format!("HEAD:refs/heads/{branch}"),
    ]) {
        Ok(_) => tracing::info!("pushed the VMs' status to {branch}"),
        Err(e) => tracing::warn!(
            "cannot push the status ({e}); fetching, rebasing and retrying next time"
        ),
    }
}

/// The remote-tracking ref of `branch`.
fn upstream_ref(branch: &str) -> String {
    format!("refs/remotes/origin/{branch}")
}

/// Whether `name` may be used as a branch name on git's command line: git's rules for
/// branch names (`git check-ref-format --branch`) and, stricter, no leading '-' (an
/// option), no whitespace or control characters, at most 200 bytes.
fn check_branch(name: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("not a valid branch name ({why})"));
    if name.is_empty() || name.len() > 200 {
        return fail("empty or longer than 200 bytes");
    }
    if name.starts_with('-') {
        return fail("it starts with '-'");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
    {
        return fail("whitespace, control characters and ~^:?*[\\ are not allowed");
    }
    if name.contains("..") || name.contains("@{") || name.contains("//") || name == "@" {
        return fail("'..', '@{', '//' and '@' are not allowed");
    }
    if name.starts_with('/') || name.ends_with('/') || name.ends_with('.') {
        return fail("it starts or ends with '/', or ends with '.'");
    }
    if name
        .split('/')
        .any(|c| c.starts_with('.') || c.ends_with(".lock"))
    {
        return fail("a component starts with '.' or ends with '.lock'");
    }
    Ok(())
}

/// git's own verdict on a branch name (after [`check_branch`], so it is no option).
fn check_branch_with_git(git: &Git, name: &str) -> Result<(), String> {
    git.run(&["check-ref-format", "--branch", name]).map(drop)
}

/// `url` without its password, and the user and password it held (`https://u:p@host/x`
/// is `https://u@host/x`, `u`, `p`). URLs without a password are returned as they are.
fn split_credentials(url: &str) -> (String, Option<String>, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else {
        return (url.to_string(), None, None);
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return (url.to_string(), None, None);
    };
    let Some((user, password)) = userinfo.split_once(':') else {
        return (url.to_string(), None, None);
    };
    (
        format!("{scheme}://{user}@{host}{path}"),
        Some(user.to_string()),
        Some(password.to_string()),
    )
}

/// `text` with the password of every URL in it replaced by `***`
/// (`https://user:pass@host` is `https://user:***@host`): for logs and errors.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // The authority ends at the first '/', whitespace or quote.
        let end = after
            .find(|c: char| c == '/' || c.is_whitespace() || "'\"<>".contains(c))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***@{host}")),
                None => out.push_str(authority),
            },
            None => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> GitopsArgs {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: GitopsArgs,
        }
        Wrapper::parse_from(std::iter::once("gitops").chain(extra.iter().copied())).args
    }

    #[test]
    fn branch_names_that_could_be_options_are_refused() {
        for good in ["main", "release/1.2", "feature-x", "v1_2", "a.b"] {
            assert_eq!(check_branch(good), Ok(()), "{good}");
        }
        for bad in [
            "--upload-pack=touch${IFS}/tmp/x;git-upload-pack",
            "-x",
            "",
            "a b",
            "a..b",
            "a@{1}",
            "x.lock",
            ".hidden",
            "a//b",
            "a/",
            "tab\there",
            "c:d",
        ] {
            assert!(check_branch(bad).is_err(), "{bad:?}");
        }
        assert!(
            check_branch("-x")
                .unwrap_err()
                .contains("it starts with '-'")
        );
    }

    #[test]
    fn passwords_are_kept_out_of_urls_and_logs() {
        assert_eq!(
            redact("cannot clone https://alice:s3cret@git.example/vms.git: refused"),
            "cannot clone https://alice:***@git.example/vms.git: refused"
        );
        assert_eq!(
            redact("fatal: unable to access 'https://alice:s3cret@h/': 403; also http://b:c@d"),
            "fatal: unable to access 'https://alice:***@h/': 403; also http://b:***@d"
        );
        for same in ["https://h/x", "ssh://git@h/x", "git@h:x", "no url"] {
            assert_eq!(redact(same), same);
        }
        assert_eq!(
            split_credentials("https://alice:s3:cret@h:8443/vms.git"),
            (
                "https://alice@h:8443/vms.git".to_string(),
                Some("alice".into()),
                Some("s3:cret".into())
            )
        );
        assert_eq!(split_credentials("ssh://git@h/x").0, "ssh://git@h/x");
        let a = access(&args(&["https://alice:s3cret@example.org/vms.git"]), None).unwrap();
        assert_eq!(a.url, "https://alice@example.org/vms.git");
        assert!(a.writable);
        assert!(!a.config.iter().any(|c| c.contains("s3cret")));
    }

    #[test]
    fn remotes_are_writable_only_with_credentials() {
        let access = |a: &[&str]| access(&args(a), None);
        assert!(access(&["file:///srv/vms.git"]).unwrap().writable);
        assert!(!access(&["git://127.0.0.1/vms.git"]).unwrap().writable);
        assert!(!access(&["https://example.org/vms.git"]).unwrap().writable);
        let e = access(&["ssh://git@example.org/vms.git"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--hosts-file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let known = dir.path().join("known 'hosts");
        let key = dir.path().join("id");
        std::fs::write(&known, "").unwrap();
        std::fs::write(&key, "").unwrap();
        let d = dir.path().display();
        for flag in ["--hosts-file", "--known-hosts-file"] {
            let ssh = access(&[
                "git@example.org:vms.git",
                "--identity-file",
                key.to_str().unwrap(),
                flag,
                known.to_str().unwrap(),
            ])
            .unwrap();
            assert!(ssh.writable);
            // Quoted for the shell git runs GIT_SSH_COMMAND with, a quote in it too.
            assert_eq!(
                ssh.env[0].1,
                format!(
                    "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile='{d}/known '\\''hosts' -o IdentitiesOnly=yes -i '{d}/id'"
                )
            );
        }
        // Without --hosts-file, Ignite's default ~/.ssh/known_hosts where it exists.
        let ssh = super::access(&args(&["ssh://git@h/x"]), Some(known.clone())).unwrap();
        assert!(
            ssh.env[0].1.contains("UserKnownHostsFile='"),
            "{}",
            ssh.env[0].1
        );
        // Files that are not there are said so at the start.
        let e = access(&["ssh://git@h/x", "--hosts-file", "/no/such/known_hosts"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--hosts-file /no/such/known_hosts"), "{e}");
        // Without a key SSH is read-only (the agent may still fetch).
        let ro = access(&[
            "ssh://git@example.org/vms.git",
            "--hosts-file",
            known.to_str().unwrap(),
        ]);
        assert!(!ro.unwrap().writable);
        // --https-password counts as the password.
        let https = access(&[
            "https://example.org/vms.git",
            "--https-username",
            "u",
            "--https-password",
            "p",
        ])
        .unwrap();
        assert!(https.writable);
        assert!(
            https
                .env
                .contains(&(PASSWORD_ENV.to_string(), "p".to_string()))
        );
    }

    #[test]
    fn a_host_owns_its_heartbeat_and_the_manifests_placed_on_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let vm = |name: &str, label: &str| {
            format!(
                "apiVersion: ignite.weave.works/v1alpha4\nkind: VM\nmetadata:\n  name: {name}\n{label}spec:\n  image: {{oci: busybox}}\n"
            )
        };
        let on = |h: &str| format!("  labels:\n    ignite.rs/host: {h}\n");
        std::fs::write(d.join("mine.yaml"), vm("mine", &on("a"))).unwrap();
        std::fs::write(d.join("theirs.yaml"), vm("theirs", &on("b"))).unwrap();
        std::fs::write(d.join("stray.yaml"), vm("stray", "")).unwrap();
        std::os::unix::fs::symlink(d.join("mine.yaml"), d.join("link.yaml")).unwrap();
        let a = Placement {
            host: HostName::new("a").unwrap(),
            adopt_unplaced: false,
        };
        for (path, owned) in [
            ("hosts/a.yaml", true),
            ("hosts/b.yaml", false),
            ("mine.yaml", true),
            ("theirs.yaml", false),
            ("stray.yaml", false),
            ("link.yaml", false),
            ("gone.yaml", false),
            ("../mine.yaml", false),
            ("./mine.yaml", false),
        ] {
            assert_eq!(owned_by(d, &a, path), owned, "{path}");
        }
        let adopting = Placement {
            adopt_unplaced: true,
            ..a
        };
        assert!(owned_by(d, &adopting, "stray.yaml"));
    }

    #[test]
    fn intervals_and_timeouts_are_go_durations() {
        assert_eq!(args(&["u"]).interval, Duration::from_secs(30));
        assert_eq!(args(&["u"]).timeout, Duration::from_secs(60));
        for (text, secs) in [
            ("30s", 30.0),
            ("1m0s", 60.0),
            ("1h30m", 5400.0),
            ("500ms", 0.5),
            ("2m", 120.0),
            ("7", 7.0),
        ] {
            assert_eq!(
                parse_interval(text),
                Ok(Duration::from_secs_f64(secs)),
                "{text}"
            );
        }
        assert_eq!(parse_timeout("1m0s"), Ok(Duration::from_secs(60)));
        for bad in ["0", "0s", "-1s", "10x", "", "1.5"] {
            assert!(parse_interval(bad).is_err(), "{bad:?}");
            assert!(parse_timeout(bad).is_err(), "{bad:?}");
        }
        // Whole seconds are this flag's former form, not --timeout's.
        assert!(parse_timeout("7").is_err());
    }

    #[test]
    fn the_branch_is_master_or_the_remotes_default() {
        let listing =
            "ref: refs/heads/main\tHEAD\n1111\tHEAD\n1111\trefs/heads/main\n2222\trefs/heads/dev\n";
        let remote = parse_ls_remote(listing);
        assert_eq!(
            remote,
            RemoteRefs {
                head: Some("main".into()),
                branches: vec!["main".into(), "dev".into()]
            }
        );
        // No master: the remote's default, said so.
        assert_eq!(
            choose_branch(None, &remote),
            Ok(BranchChoice::RemoteDefault("main".into()))
        );
        assert_eq!(
            choose_branch(Some("dev"), &remote),
            Ok(BranchChoice::Named("dev".into()))
        );
        let e = choose_branch(Some("master"), &remote).unwrap_err();
        assert!(
            e.contains("no branch \"master\"") && e.contains("main, dev"),
            "{e}"
        );
        // master, when there, wins over the remote's default (Ignite's rule).
        let with_master = parse_ls_remote(
            "ref: refs/heads/main\tHEAD\n1\tHEAD\n1\trefs/heads/main\n1\trefs/heads/master\n",
        );
        assert_eq!(
            choose_branch(None, &with_master),
            Ok(BranchChoice::Named("master".into()))
        );
        // An empty remote (HEAD names an unborn branch) has nothing to follow.
        let empty = parse_ls_remote("ref: refs/heads/main\tHEAD\n");
        let e = choose_branch(None, &empty).unwrap_err();
        assert!(e.contains("no branches"), "{e}");
        // A default branch that could be an option is refused.
        let evil = RemoteRefs {
            head: Some("-x".into()),
            branches: vec!["-x".into()],
        };
        assert!(choose_branch(None, &evil).is_err());
    }
}
