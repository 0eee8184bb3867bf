//! Git repositories standing in for GitHub's: bare repositories in a temporary folder, and
//! a git config that sends clones of `https://github.com/owner/name.git` to them.
//!
//! Give sam and its agent `GIT_CONFIG_GLOBAL=<gitconfig_path()>`. The rewrite is git's
//! `url.<base>.insteadOf`, a plain prefix match: a URL with credentials in it
//! (`https://x-access-token:…@github.com/…`) does not match, so tokens must reach git some
//! other way (a credential helper or `http.extraHeader`), which is better anyway.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// The author and committer of every commit made here.
const IDENTITY: [&str; 4] = [
    "-c",
    "user.name=sam tests",
    "-c",
    "user.email=tests@sam.invalid",
];

/// Bare repositories under `<dir>/<owner>/<name>.git`, removed on drop.
pub struct GitServer {
    dir: TempDir,
    url_prefixes: Vec<String>,
    /// Where the prefixes lead instead of the folder: an HTTP server of the repositories.
    http_base: Option<String>,
}

impl GitServer {
    /// An empty server whose config maps `https://github.com/` to it.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sam-git-")
            .tempdir()
            .expect("create tempdir");
        let server = Self {
            dir,
            url_prefixes: vec!["https://github.com/".to_owned()],
            http_base: None,
        };
        server.write_gitconfig();
        server
    }

    /// The folder holding the bare repositories.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The git config to give sam and its agent as `GIT_CONFIG_GLOBAL`.
    pub fn gitconfig_path(&self) -> PathBuf {
        self.dir.path().join("gitconfig")
    }

    /// Also map `prefix` (e.g. the GitHub stand-in's URL with a trailing `/`) to this
    /// server, for code that builds clone URLs from its configured GitHub URL.
    pub fn also_serve(&mut self, prefix: &str) {
        let prefix = if prefix.ends_with('/') {
            prefix.to_owned()
        } else {
            format!("{prefix}/")
        };
        self.url_prefixes.push(prefix);
        self.write_gitconfig();
    }

    /// Sends the mapped prefixes to `base` (the GitHub stand-in's URL, which serves these
    /// repositories over smart HTTP and checks tokens) instead of to the folder, so that
    /// every fetch and push needs credentials, as on GitHub.
    pub fn serve_over_http(&mut self, base: &str) {
        let base = if base.ends_with('/') {
            base.to_owned()
        } else {
            format!("{base}/")
        };
        self.http_base = Some(base);
        self.write_gitconfig();
    }

    /// The bare repository of `full_name` ("owner/name").
    pub fn repo_path(&self, full_name: &str) -> PathBuf {
        self.dir.path().join(format!("{full_name}.git"))
    }

    /// Creates the bare repository `full_name` with one commit on `main` (a README), and
    /// returns that commit's sha.
    pub fn create_repo(&self, full_name: &str) -> String {
        let path = self.repo_path(full_name);
        assert!(!path.exists(), "repository {full_name} already exists");
        std::fs::create_dir_all(&path).expect("create repository folder");
        git(
            &path,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
            None,
        );
        self.commit(
            full_name,
            "main",
            &[("README.md", format!("# {full_name}\n").as_bytes())],
        )
    }

    /// Commits `files` (path, contents) on top of `branch` (or of `main` when `branch` does
    /// not exist yet), moves `branch` to that commit, and returns its sha.
    pub fn push_branch(&self, full_name: &str, branch: &str, files: &[(&str, &str)]) -> String {
        let files: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(path, contents)| (*path, contents.as_bytes()))
            .collect();
        self.commit(full_name, branch, &files)
    }

    /// [`GitServer::push_branch`] with contents of any bytes.
    pub fn push_branch_bytes(
        &self,
        full_name: &str,
        branch: &str,
        files: &[(&str, &[u8])],
    ) -> String {
        self.commit(full_name, branch, files)
    }

    /// Packs the objects of `full_name`, as a hosted repository keeps them: a fetch then
    /// sends them as they are, where loose objects are compressed again for every fetch.
    pub fn repack(&self, full_name: &str) {
        git(
            &self.repo_path(full_name),
            &["repack", "-a", "-d", "--quiet"],
            None,
        );
    }

    /// Points `refs/pull/<number>/head` at `sha`, as GitHub does for every pull request.
    pub fn pull_ref(&self, full_name: &str, number: u64, sha: &str) {
        let reference = format!("refs/pull/{number}/head");
        git(
            &self.repo_path(full_name),
            &["update-ref", &reference, sha],
            None,
        );
    }

    /// The sha `reference` (a branch name or full ref) points at.
    pub fn rev_parse(&self, full_name: &str, reference: &str) -> String {
        git(
            &self.repo_path(full_name),
            &["rev-parse", "--verify", reference],
            None,
        )
    }

    /// A new commit on `branch`, made with a private index: a bare repository has no work
    /// tree, and plumbing commands need none.
    fn commit(&self, full_name: &str, branch: &str, files: &[(&str, &[u8])]) -> String {
        let repo = self.repo_path(full_name);
        assert!(
            repo.exists(),
            "repository {full_name} does not exist: call create_repo first"
        );
        let branch_ref = format!("refs/heads/{branch}");
        let parent =
            try_git(&repo, &["rev-parse", "--verify", "--quiet", &branch_ref]).or_else(|| {
                try_git(
                    &repo,
                    &["rev-parse", "--verify", "--quiet", "refs/heads/main"],
                )
            });

        let index = tempfile::NamedTempFile::new_in(self.dir.path()).expect("index file");
        let index_env = ("GIT_INDEX_FILE", index.path().as_os_str());
        let env = [index_env];
        // An empty file is not a valid index: git must create it.
        std::fs::remove_file(index.path()).expect("remove placeholder index");
        if let Some(parent) = &parent {
            git_env(&repo, &["read-tree", parent], None, &env);
        }
        for (path, contents) in files {
            let blob = git(&repo, &["hash-object", "-w", "--stdin"], Some(contents));
            let entry = format!("100644,{blob},{path}");
            git_env(
                &repo,
                &["update-index", "--add", "--cacheinfo", &entry],
                None,
                &env,
            );
        }
        let tree = git_env(&repo, &["write-tree"], None, &env);

        let message = format!("Update {branch}");
        let mut args = vec!["commit-tree", tree.as_str(), "-m", message.as_str()];
        if let Some(parent) = &parent {
            args.extend(["-p", parent.as_str()]);
        }
        let sha = git(&repo, &args, None);
        git(&repo, &["update-ref", &branch_ref, &sha], None);
        sha
    }

    /// Holds every fetch from these repositories until the returned gate is released (or
    /// dropped, or a minute has passed): git's `uploadpack.packObjectsHook`, read from the
    /// global config only, waits before packing. Call it after any [`GitServer::also_serve`],
    /// which rewrites the config.
    pub fn hold_fetches(&self) -> FetchGate {
        let open = self.dir.path().join("fetch-gate.open");
        let hook = self.dir.path().join("fetch-gate.sh");
        let open_path = open.to_str().expect("UTF-8 temp path");
        assert!(
            !open_path.contains('\''),
            "a temp path to quote: {open_path}"
        );
        let open_quoted = format!("'{open_path}'");
        let script = format!(
            "#!/bin/sh\ni=0\nwhile [ ! -e {open_quoted} ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done\nexec \"$@\"\n"
        );
        std::fs::write(&hook, script).expect("write the fetch gate");
        std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make the fetch gate executable");
        let mut config = std::fs::read_to_string(self.gitconfig_path()).expect("read gitconfig");
        config.push_str(&format!(
            "[uploadpack]\n\tpackObjectsHook = {}\n",
            hook.display()
        ));
        std::fs::write(self.gitconfig_path(), config).expect("write gitconfig");
        FetchGate { open }
    }

    /// `git log -1 --format=<format> <reference>` in `full_name`.
    pub fn show(&self, full_name: &str, format: &str, reference: &str) -> String {
        git(
            &self.repo_path(full_name),
            &["log", "-1", &format!("--format={format}"), reference, "--"],
            None,
        )
    }

    /// Whether `reference` exists in `full_name`.
    pub fn has_ref(&self, full_name: &str, reference: &str) -> bool {
        try_git(
            &self.repo_path(full_name),
            &["rev-parse", "--verify", "--quiet", reference],
        )
        .is_some()
    }

    fn write_gitconfig(&self) {
        let base = match &self.http_base {
            Some(base) => base.clone(),
            None => format!("{}/", self.dir.path().display()),
        };
        let mut config = format!("[url \"{base}\"]\n");
        for prefix in &self.url_prefixes {
            config.push_str(&format!("\tinsteadOf = {prefix}\n"));
        }
        // The repositories may be read by a process running as another user.
        config.push_str("[safe]\n\tdirectory = *\n");
        std::fs::write(self.gitconfig_path(), config).expect("write gitconfig");
    }
}

/// Fetches held by [`GitServer::hold_fetches`] go on once this is released or dropped.
pub struct FetchGate {
    open: PathBuf,
}

impl FetchGate {
    /// Lets held and later fetches go on.
    pub fn release(&self) {
        std::fs::write(&self.open, b"").expect("open the fetch gate");
    }
}

impl Drop for FetchGate {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.open, b"");
    }
}

impl Default for GitServer {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs git in `repo` and returns its trimmed stdout; panics with stderr on failure.
fn git(repo: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    git_env(repo, args, stdin, &[])
}

fn git_env(
    repo: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &std::ffi::OsStr)],
) -> String {
    let output = run_git(repo, args, stdin, env);
    assert!(
        output.status.success(),
        "git {} in {} failed: {}",
        args.join(" "),
        repo.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("git printed UTF-8")
        .trim()
        .to_owned()
}

/// Like [`git`], but `None` instead of a panic when git fails.
fn try_git(repo: &Path, args: &[&str]) -> Option<String> {
    let output = run_git(repo, args, None, &[]);
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn run_git(
    repo: &Path,
    args: &[&str],
    stdin: Option<&[u8]>,
    env: &[(&str, &std::ffi::OsStr)],
) -> std::process::Output {
    use std::io::Write;

    let mut command = Command::new("git");
    command
        .args(IDENTITY)
        .args(args)
        .env("GIT_DIR", repo)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().expect("run git (is it installed?)");
    if let Some(bytes) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(bytes)
            .expect("write to git");
    }
    child.wait_with_output().expect("wait for git")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clones `url` the way sam's agent would, with only the server's config.
    fn clone(server: &GitServer, url: &str, into: &Path) -> std::process::Output {
        Command::new("git")
            .args(["clone", "--quiet", url])
            .arg(into)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", server.gitconfig_path())
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .expect("run git clone")
    }

    #[test]
    fn github_urls_clone_from_the_bare_repository() {
        let server = GitServer::new();
        server.create_repo("octo/hello");
        let sha = server.push_branch("octo/hello", "feature", &[("src/lib.rs", "// hi\n")]);

        let work = tempfile::tempdir().expect("tempdir");
        let checkout = work.path().join("hello");
        let output = clone(&server, "https://github.com/octo/hello.git", &checkout);
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );

        assert!(checkout.join("README.md").exists());
        let head = Command::new("git")
            .args(["-C"])
            .arg(&checkout)
            .args(["rev-parse", "origin/feature"])
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("rev-parse");
        assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), sha);
    }

    #[test]
    fn push_branch_builds_on_the_branch_and_keeps_other_files() {
        let server = GitServer::new();
        let main = server.create_repo("octo/hello");
        let first = server.push_branch("octo/hello", "topic", &[("a.txt", "a\n")]);
        let second = server.push_branch("octo/hello", "topic", &[("b.txt", "b\n")]);

        let parent = git(
            &server.repo_path("octo/hello"),
            &["rev-parse", &format!("{second}^")],
            None,
        );
        assert_eq!(parent, first);
        let files = git(
            &server.repo_path("octo/hello"),
            &["ls-tree", "--name-only", &second],
            None,
        );
        assert_eq!(
            files.lines().collect::<Vec<_>>(),
            ["README.md", "a.txt", "b.txt"]
        );
        assert_eq!(server.rev_parse("octo/hello", "main"), main);
    }

    #[test]
    fn pull_ref_is_fetchable() {
        let server = GitServer::new();
        server.create_repo("octo/hello");
        let sha = server.push_branch("octo/hello", "fork-branch", &[("x", "1")]);
        server.pull_ref("octo/hello", 7, &sha);
        assert_eq!(server.rev_parse("octo/hello", "refs/pull/7/head"), sha);
    }

    #[test]
    fn also_serve_maps_another_prefix() {
        let mut server = GitServer::new();
        server.create_repo("octo/hello");
        server.also_serve("http://127.0.0.1:9");
        let work = tempfile::tempdir().expect("tempdir");
        let output = clone(
            &server,
            "http://127.0.0.1:9/octo/hello.git",
            &work.path().join("h"),
        );
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
