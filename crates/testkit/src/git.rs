//! Git as a test author uses it.

use std::path::Path;
use std::process::{Command, Output};

fn run(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "tester")
        .env("GIT_AUTHOR_EMAIL", "tester@localhost")
        .env("GIT_COMMITTER_NAME", "tester")
        .env("GIT_COMMITTER_EMAIL", "tester@localhost")
        .output()
        .unwrap()
}

/// Runs git in `dir` as a test author; panics on failure and returns stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = run(dir, args);
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pushes `branch` to `origin` as an author does while `ignited` daemons push
/// status commits to the same branch: a push rejected because the remote
/// moved on is rebased onto it and tried again (a bounded number of times).
pub fn push_rebasing(work: &Path, branch: &str) {
    const TRIES: usize = 20;
    let mut last = String::new();
    for _ in 0..TRIES {
        let out = run(work, &["push", "--quiet", "origin", branch]);
        if out.status.success() {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        // Only a remote that moved on is retried; anything else is the test's failure.
        assert!(
            last.contains("fetch first") || last.contains("non-fast-forward"),
            "git push origin {branch}: {last}"
        );
        git(work, &["pull", "--quiet", "--rebase", "origin", branch]);
    }
    panic!("git push origin {branch} was rejected {TRIES} times; the last: {last}");
}
