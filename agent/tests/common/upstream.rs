//! A bare repository standing in for GitHub, with a working clone to push from.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

pub struct Upstream {
    /// `https://github.com/o/<name>.git`, mapped to `bare` by the test git config.
    pub url: String,
    pub bare: PathBuf,
    work: PathBuf,
    gitconfig: PathBuf,
}

impl Upstream {
    /// Creates `<scratch>/remote/o/<name>.git` with one commit on `main`.
    pub fn create(scratch: &Path, name: &str) -> Upstream {
        let bare = scratch.join("remote/o").join(format!("{name}.git"));
        let work = scratch.join(format!("work-{name}"));
        std::fs::create_dir_all(&bare).unwrap();
        let upstream = Upstream {
            url: format!("https://github.com/o/{name}.git"),
            bare,
            work,
            gitconfig: scratch.join("gitconfig"),
        };
        upstream.git(&upstream.bare, &["init", "--quiet", "--bare"]);
        upstream.git(
            scratch,
            &["init", "--quiet", upstream.work.to_str().unwrap()],
        );
        upstream.git(&upstream.work, &["remote", "add", "origin", &upstream.url]);
        upstream.commit("initial");
        upstream.git(
            &upstream.work,
            &["push", "--quiet", "origin", "HEAD:refs/heads/main"],
        );
        upstream
    }

    /// Adds a commit and returns its sha.
    pub fn commit(&self, message: &str) -> String {
        self.git(
            &self.work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        self.git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Adds a commit and pushes it as `refs/heads/<branch>`; returns its sha.
    pub fn push_branch(&self, branch: &str) -> String {
        self.push_ref(&format!("refs/heads/{branch}"))
    }

    /// Adds a commit and pushes it as `refname`; returns its sha.
    pub fn push_ref(&self, refname: &str) -> String {
        let sha = self.commit(&format!("commit for {refname}"));
        self.git(
            &self.work,
            &["push", "--quiet", "origin", &format!("HEAD:{refname}")],
        );
        sha
    }

    /// The checkout request for `branch` at `commit`, fetched from its own ref.
    pub fn request(&self, branch: &str, commit: &str) -> Value {
        json!({
            "clone_url": self.url,
            "branch": branch,
            "commit": commit,
            "fetch_ref": format!("refs/heads/{branch}"),
        })
    }

    /// Runs git in `dir` with the test git config; panics on failure, returns stdout.
    pub fn git(&self, dir: &Path, args: &[&str]) -> String {
        git_in(dir, &self.gitconfig, args)
    }
}

/// Runs git in `dir` with `gitconfig` as the global config.
pub fn git_in(dir: &Path, gitconfig: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", gitconfig)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}
