//! `ignited gitops URL`: the reconcile loop over a clone of a Git repository. Every
//! interval it fetches, moves its clone to the remote branch (rebasing its own status
//! commits onto it), reconciles, commits the status written into the manifests and pushes.
//! An unreachable remote or a rejected push is logged and retried at the next interval;
//! the VMs stay as the last good checkout says meanwhile.
//!
//! Git is the system's `git`. SSH remotes need `--identity-file` and a known_hosts file
//! (host keys are checked); HTTPS remotes push with `--https-username` and the password in
//! `IGNITE_GIT_PASSWORD`. `file://` remotes are writable; anything else is read-only: no
//! status is written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;

use crate::Global;
use crate::reconcile_loop::ReconcileLoop;

/// The value of the source label on VMs the GitOps loop makes.
pub const SOURCE: &str = "gitops";
pub const PASSWORD_ENV: &str = "IGNITE_GIT_PASSWORD";

#[derive(Debug, Args)]
pub struct GitopsArgs {
    /// The repository: file://, ssh://, user@host:path, https:// or git://
    pub url: String,
    /// The branch to follow [default: the remote's default branch]
    #[arg(long)]
    pub branch: Option<String>,
    /// Seconds between fetches
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub interval: u64,
    /// The directory of the manifests inside the repository [default: all of it]
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// The SSH private key for ssh:// and user@host:path remotes
    #[arg(long, value_name = "FILE")]
    pub identity_file: Option<PathBuf>,
    /// The known_hosts file that holds the SSH remote's host key
    #[arg(long, value_name = "FILE")]
    pub known_hosts_file: Option<PathBuf>,
    /// The user for https:// remotes (the password comes from IGNITE_GIT_PASSWORD)
    #[arg(long)]
    pub https_username: Option<String>,
    /// Where the clone is kept [default: <root>/gitops/<a hash of the URL and branch>]
    #[arg(long, value_name = "DIR")]
    pub checkout_dir: Option<PathBuf>,
    #[command(flatten)]
    pub global: Global,
}

/// The system's git, in the clone, with the remote's credentials.
struct Git {
    dir: PathBuf,
    config: Vec<String>,
    env: Vec<(String, String)>,
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
        cmd.args(["-c", "core.symlinks=false"]);
        for c in &self.config {
            cmd.args(["-c", c]);
        }
        cmd.args(args)
            .current_dir(&self.dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(args)
            .output()
            .map_err(|e| format!("cannot run git ({e}): install git"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}

/// How the remote is reached, and whether status can be pushed to it.
struct Access {
    /// `git -c` settings.
    config: Vec<String>,
    env: Vec<(String, String)>,
    writable: bool,
}

fn access(args: &GitopsArgs) -> anyhow::Result<Access> {
    let url = args.url.as_str();
    let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let ssh = url.starts_with("ssh://")
        || (!url.contains("://") && url.contains('@') && url.contains(':'));
    if ssh {
        let Some(known) = &args.known_hosts_file else {
            bail!(
                "an SSH remote needs --known-hosts-file with its host key (host keys are checked); e.g. ssh-keyscan HOST > known_hosts, then verify it"
            );
        };
        let mut command = format!(
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
            quote(known)
        );
        if let Some(key) = &args.identity_file {
            command.push_str(&format!(" -o IdentitiesOnly=yes -i {}", quote(key)));
        }
        return Ok(Access {
            config: vec![],
            env: vec![("GIT_SSH_COMMAND".into(), command)],
            writable: args.identity_file.is_some(),
        });
    }
    let none = |writable| Access {
        config: vec![],
        env: vec![],
        writable,
    };
    if url.starts_with("https://") || url.starts_with("http://") {
        let password = std::env::var(PASSWORD_ENV).ok();
        return Ok(match (&args.https_username, password) {
            (Some(user), Some(password)) => Access {
                config: vec![
                    "credential.helper=".into(),
                    "credential.helper=!f() { echo \"username=$IGNITE_GIT_USERNAME\"; echo \"password=$IGNITE_GIT_PASSWORD\"; }; f".into(),
                ],
                env: vec![
                    ("IGNITE_GIT_USERNAME".into(), user.clone()),
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
    let Access {
        config,
        env,
        writable,
    } = access(args)?;
    let setup = crate::daemon::set_up(global)?;
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
    let interval = Duration::from_secs(args.interval.max(1));
    let mut git = Git {
        dir: checkout.clone(),
        config,
        env,
    };
    clone(&mut git, args, &stop, interval)?;
    if stop.load(Ordering::Relaxed) {
        return Ok(());
    }
    git.run(&["config", "user.name", "ignited"])
        .map_err(anyhow::Error::msg)?;
    git.run(&["config", "user.email", "ignited@localhost"])
        .map_err(anyhow::Error::msg)?;
    let branch = match &args.branch {
        Some(b) => b.clone(),
        None => git
            .run(&["rev-parse", "--abbrev-ref", "HEAD"])
            .map_err(anyhow::Error::msg)?,
    };
    tracing::info!(
        "following {} ({branch}) in {}{}",
        args.url,
        checkout.display(),
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
    let mut reconcile = ReconcileLoop::new(reconciler, dir, interval);
    reconcile.write_status = writable;
    while !stop.load(Ordering::Relaxed) {
        sync(&git, &branch);
        reconcile.pass();
        *setup.stats.lock().expect("stats lock") = reconcile.stats.clone();
        if writable {
            publish(&git, &branch);
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

/// Clones the repository unless the clone is there, retrying while the remote is down.
fn clone(
    git: &mut Git,
    args: &GitopsArgs,
    stop: &AtomicBool,
    interval: Duration,
) -> anyhow::Result<()> {
    if git.dir.join(".git").is_dir() {
        return Ok(());
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
        };
        let mut clone_args = vec!["clone", "--quiet", "--config", "core.symlinks=false"];
        if let Some(b) = &args.branch {
            clone_args.extend(["--branch", b]);
        }
        let partial_str = partial.to_string_lossy().into_owned();
        clone_args.extend([args.url.as_str(), partial_str.as_str()]);
        match cloner.run(&clone_args) {
            Ok(_) => {
                std::fs::rename(&partial, &target)
                    .with_context(|| format!("cannot move the clone to {}", target.display()))?;
                return Ok(());
            }
            Err(e) => {
                tracing::error!("cannot clone {}: {e} (retrying in {delay:?})", args.url);
                let until = Instant::now() + delay;
                while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                }
                delay = (delay * 2).min(interval.max(Duration::from_secs(1)));
            }
        }
    }
    Ok(())
}

/// Brings the clone to the remote branch, keeping its own unpushed status commits on top.
fn sync(git: &Git, branch: &str) {
    if let Err(e) = git.run(&["fetch", "--quiet", "origin", branch]) {
        tracing::warn!("cannot fetch: {e}; reconciling the last checkout");
        return;
    }
    let upstream = format!("origin/{branch}");
    let ahead = git
        .run(&["rev-list", "--count", &format!("{upstream}..HEAD")])
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    if ahead > 0 && git.run(&["rebase", "--quiet", &upstream]).is_ok() {
        return;
    }
    if ahead > 0 {
        // The remote changed the same lines: its version wins, status is written again.
        let _ = git.run(&["rebase", "--abort"]);
    }
    if let Err(e) = git.run(&["reset", "--quiet", "--hard", &upstream]) {
        tracing::error!("cannot check out {upstream}: {e}");
    }
}

/// Commits the status the pass wrote and pushes it.
fn publish(git: &Git, branch: &str) {
    let dirty = git
        .run(&["status", "--porcelain"])
        .is_ok_and(|s| !s.is_empty());
    if dirty {
        let committed = git
            .run(&["add", "--all"])
            .and_then(|_| git.run(&["commit", "--quiet", "-m", "ignited: VM status"]));
        if let Err(e) = committed {
            tracing::error!("cannot commit the status: {e}");
            return;
        }
    }
    let upstream = format!("origin/{branch}");
    let ahead = git
        .run(&["rev-list", "--count", &format!("{upstream}..HEAD")])
        .is_ok_and(|n| n != "0");
    if !ahead {
        return;
    }
    match git.run(&["push", "--quiet", "origin", &format!("HEAD:{branch}")]) {
        Ok(_) => tracing::info!("pushed the VMs' status to {branch}"),
        Err(e) => tracing::warn!(
            "cannot push the status ({e}); fetching, rebasing and retrying next time"
        ),
    }
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
    fn remotes_are_writable_only_with_credentials() {
        assert!(access(&args(&["file:///srv/vms.git"])).unwrap().writable);
        assert!(
            !access(&args(&["git://127.0.0.1/vms.git"]))
                .unwrap()
                .writable
        );
        assert!(
            !access(&args(&["https://example.org/vms.git"]))
                .unwrap()
                .writable
        );
        let e = access(&args(&["ssh://git@example.org/vms.git"]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("--known-hosts-file"), "{e}");
        let ssh = access(&args(&[
            "git@example.org:vms.git",
            "--identity-file",
            "/k/id",
            "--known-hosts-file",
            "/k/known hosts",
        ]))
        .unwrap();
        assert!(ssh.writable);
        assert_eq!(
            ssh.env[0].1,
            "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile='/k/known hosts' -o IdentitiesOnly=yes -i '/k/id'"
        );
        // Without a key SSH is read-only (the agent may still fetch).
        let ro = access(&args(&[
            "ssh://git@example.org/vms.git",
            "--known-hosts-file",
            "/k/kh",
        ]));
        assert!(!ro.unwrap().writable);
    }
}
