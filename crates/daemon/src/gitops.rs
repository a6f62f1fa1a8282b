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

    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command(args)
            .output()
            .map_err(|e| format!("cannot run git ({e}): install git"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(redact(&format!(
                "git {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
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

fn access(args: &GitopsArgs) -> anyhow::Result<Access> {
    let (url, url_user, url_password) = split_credentials(&args.url);
    let url = url.as_str();
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
        let password = url_password.or_else(|| std::env::var(PASSWORD_ENV).ok());
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
    let Access {
        url,
        config,
        env,
        writable,
    } = access(args)?;
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
    let interval = Duration::from_secs(args.interval.max(1));
    let mut git = Git {
        dir: checkout.clone(),
        config,
        env,
    };
    clone(&mut git, &url, args, &stop, interval)?;
    if stop.load(Ordering::Relaxed) {
        return Ok(());
    }
    git.run(&["config", "user.name", "ignited"])
        .map_err(anyhow::Error::msg)?;
    git.run(&["config", "user.email", "ignited@localhost"])
        .map_err(anyhow::Error::msg)?;
    let branch = match &args.branch {
        Some(b) => b.clone(),
        None => {
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
        "following {} ({branch}) in {}{}",
        redact(&args.url),
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
    let mut reconcile = ReconcileLoop::new(
        reconciler,
        dir,
        interval,
        ignite_runtime::policy::Origin::Gitops,
    );
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
    url: &str,
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
        let mut clone_args = vec![
            "clone".to_string(),
            "--quiet".into(),
            "--config".into(),
            "core.symlinks=false".into(),
        ];
        if let Some(b) = &args.branch {
            clone_args.push(format!("--branch={b}"));
        }
        // Nothing after --end-of-options is taken for an option, whatever it starts with.
        clone_args.extend([
            "--end-of-options".into(),
            url.to_string(),
            partial.to_string_lossy().into_owned(),
        ]);
        let clone_args: Vec<&str> = clone_args.iter().map(String::as_str).collect();
        match cloner.run(&clone_args) {
            Ok(_) => {
                std::fs::rename(&partial, &target)
                    .with_context(|| format!("cannot move the clone to {}", target.display()))?;
                return Ok(());
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
    Ok(())
}

/// Brings the clone to the remote branch, keeping its own unpushed status commits on top.
fn sync(git: &Git, branch: &str) {
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
        return;
    }
    if ahead > 0 {
        // The remote changed the same lines: its version wins, status is written again.
        let _ = git.run(&["rebase", "--abort"]);
    }
    if let Err(e) = git.run(&["reset", "--quiet", "--hard", "--end-of-options", &upstream]) {
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
        let a = access(&args(&["https://alice:s3cret@example.org/vms.git"])).unwrap();
        assert_eq!(a.url, "https://alice@example.org/vms.git");
        assert!(a.writable);
        assert!(!a.config.iter().any(|c| c.contains("s3cret")));
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
