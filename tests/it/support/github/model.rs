//! What the stand-in knows: the App, its installations, repositories, people and
//! everything sam created through the API. Tests read it through the values below.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;

use super::faults::PlannedFailure;
use super::keys::AppKey;

/// A GitHub account: a person, an organization or a bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub login: String,
    /// `User`, `Organization` or `Bot`, as GitHub's `type` field.
    pub kind: String,
}

/// An issue or pull-request comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    /// `owner/name` as the repository was added.
    pub repo: String,
    pub issue: u64,
    pub author: String,
    pub body: String,
    /// Whether it was posted through the API (by sam), rather than added by the test.
    pub via_api: bool,
    /// How many times it was edited through the API.
    pub edits: u32,
    /// The bodies it had before each edit, oldest first.
    pub earlier: Vec<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// A reaction on an issue comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaction {
    pub id: u64,
    pub comment_id: u64,
    /// `+1`, `-1`, `laugh`, `confused`, `heart`, `hooray`, `rocket` or `eyes`.
    pub content: String,
    pub user: String,
}

/// A check run as last written by sam.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckRun {
    pub id: u64,
    pub repo: String,
    pub name: String,
    pub head_sha: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub external_id: Option<String>,
    /// The `output` object (title, summary, text), `Null` when never given.
    pub output: Value,
    /// The buttons (`actions`), `Null` when never given.
    pub actions: Value,
    /// How many times it was updated with PATCH.
    pub updates: u32,
}

/// What a test says about a pull request; the rest of GitHub's answer comes from the
/// fixture `pulls.get.200`.
#[derive(Clone, Debug)]
pub struct PullRequestSpec {
    pub head_ref: String,
    pub head_sha: String,
    /// `owner/name` of the head repository: `None` for the base repository itself. A fork
    /// must have been added with `add_repo` (it needs no installation).
    pub head_repo: Option<String>,
    /// Whether the head repository was deleted (GitHub then answers `head.repo: null`).
    pub head_repo_deleted: bool,
    pub base_ref: String,
    pub author: String,
    /// `open` or `closed`.
    pub state: String,
    pub title: String,
    pub draft: bool,
}

impl Default for PullRequestSpec {
    fn default() -> Self {
        Self {
            head_ref: "feature".to_owned(),
            head_sha: "0123456789abcdef0123456789abcdef01234567".to_owned(),
            head_repo: None,
            head_repo_deleted: false,
            base_ref: "main".to_owned(),
            author: "octocat".to_owned(),
            state: "open".to_owned(),
            title: "A pull request".to_owned(),
            draft: false,
        }
    }
}

/// How a request authenticated, as far as its `Authorization` header shows. Tokens
/// themselves are never recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    None,
    /// A JWT signed (or claiming to be signed) by the App.
    AppJwt,
    /// An installation token, `ghs_…`.
    InstallationToken,
    /// An OAuth user token, `gho_…`.
    UserToken,
    Basic,
    Other,
}

/// One request the stand-in answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The path only: query strings can carry codes and secrets.
    pub path: String,
    pub auth: AuthKind,
    pub status: u16,
    /// Whether `fail_next` made up this answer.
    pub injected: bool,
}

/// One request of git's smart HTTP protocol the stand-in answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitAccess {
    /// `owner/name`.
    pub repo: String,
    /// Whether it was part of a push (else of a fetch).
    pub push: bool,
    /// The token sent as the Basic password, if any.
    pub token: Option<String>,
    pub status: u16,
}

/// A token the stand-in issued, as a test may look at it.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    pub token: String,
    pub installation: u64,
    /// Lower-case `owner/name` of the repositories it was narrowed to; `None` for all of
    /// the installation's.
    pub repos: Option<Vec<String>>,
    pub permissions: Value,
}

pub(super) struct App {
    pub id: u64,
    pub slug: String,
    pub name: String,
    pub client_id: String,
    pub client_secret: String,
    pub webhook_secret: Option<String>,
    pub key: AppKey,
    pub owner: String,
    /// Redirect URIs accepted by the OAuth flow; empty accepts any.
    pub callback_urls: Vec<String>,
    pub permissions: Value,
    pub events: Vec<String>,
}

impl App {
    /// The login GitHub gives the App's bot user.
    pub fn bot_login(&self) -> String {
        format!("{}[bot]", self.slug)
    }
}

pub(super) struct Installation {
    pub id: u64,
    pub account: String,
    /// Repository keys (lower-case `owner/name`).
    pub repos: BTreeSet<String>,
    pub permissions: Value,
    /// What `GET /rate_limit` says is left of the installation's 5,000 calls an hour.
    pub rate_limit_remaining: u64,
}

pub(super) struct Repo {
    pub id: u64,
    pub full_name: String,
    pub private: bool,
    pub default_branch: String,
    pub installation: Option<u64>,
}

pub(super) struct PullRequest {
    pub id: u64,
    pub spec: PullRequestSpec,
}

pub(super) struct IssuedToken {
    pub installation: u64,
    pub expires_at: OffsetDateTime,
    /// Repository keys when the token was narrowed, `None` for all of the installation's.
    pub repos: Option<BTreeSet<String>>,
    pub permissions: Value,
}

pub(super) struct OAuthCode {
    pub login: String,
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub expires_at: OffsetDateTime,
}

pub(super) struct ManifestCode {
    pub manifest: Value,
    pub owner: String,
}

pub(super) struct Model {
    pub base_url: String,
    pub clone_base: String,
    pub app: App,
    pub installations: BTreeMap<u64, Installation>,
    pub repos: BTreeMap<String, Repo>,
    pub users: BTreeMap<String, User>,
    /// (repository key, login key) → role name.
    pub permissions: HashMap<(String, String), String>,
    pub pulls: BTreeMap<(String, u64), PullRequest>,
    /// (repository key, branch) → sha, set by tests; else read from `git_dir`.
    pub branches: HashMap<(String, String), String>,
    pub git_dir: Option<PathBuf>,
    pub comments: Vec<Comment>,
    pub reactions: Vec<Reaction>,
    pub check_runs: Vec<CheckRun>,
    pub tokens: HashMap<String, IssuedToken>,
    pub token_lifetime: Duration,
    pub user_tokens: HashMap<String, String>,
    pub oauth_codes: HashMap<String, OAuthCode>,
    pub manifest_codes: HashMap<String, ManifestCode>,
    pub signed_in: Option<String>,
    pub requests: Vec<RequestRecord>,
    pub git_accesses: Vec<GitAccess>,
    pub failures: Vec<PlannedFailure>,
    next_id: u64,
}

impl Model {
    pub fn new(base_url: String, app: App) -> Self {
        Self {
            base_url,
            clone_base: "https://github.com/".to_owned(),
            app,
            installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            users: BTreeMap::new(),
            permissions: HashMap::new(),
            pulls: BTreeMap::new(),
            branches: HashMap::new(),
            git_dir: None,
            comments: Vec::new(),
            reactions: Vec::new(),
            check_runs: Vec::new(),
            tokens: HashMap::new(),
            token_lifetime: Duration::from_secs(3600),
            user_tokens: HashMap::new(),
            oauth_codes: HashMap::new(),
            manifest_codes: HashMap::new(),
            signed_in: None,
            requests: Vec::new(),
            git_accesses: Vec::new(),
            failures: Vec::new(),
            next_id: 1000,
        }
    }

    /// A fresh id; one sequence for every kind of object, so ids never collide.
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// The account `login`, created as a `kind` account if it is new.
    pub fn user(&mut self, login: &str, kind: &str) -> User {
        let key = login.to_lowercase();
        if let Some(user) = self.users.get(&key) {
            return user.clone();
        }
        let user = User {
            id: self.next_id(),
            login: login.to_owned(),
            kind: kind.to_owned(),
        };
        self.users.insert(key, user.clone());
        user
    }

    pub fn find_user(&self, login: &str) -> Option<&User> {
        self.users.get(&login.to_lowercase())
    }

    pub fn repo(&self, full_name: &str) -> Option<&Repo> {
        self.repos.get(&repo_key(full_name))
    }

    /// The repository `full_name`, panicking (a mistake in the test) when it was not added.
    pub fn expect_repo(&self, full_name: &str) -> &Repo {
        self.repo(full_name)
            .unwrap_or_else(|| panic!("repository {full_name} was not added"))
    }

    pub fn comment(&self, id: u64) -> Option<&Comment> {
        self.comments.iter().find(|c| c.id == id)
    }

    /// The sha of `branch`: what a test set, else the branch in the git server, if any.
    pub fn branch_sha(&self, repo: &Repo, branch: &str) -> Option<String> {
        let key = (repo_key(&repo.full_name), branch.to_owned());
        if let Some(sha) = self.branches.get(&key) {
            return Some(sha.clone());
        }
        let git_dir = self
            .git_dir
            .as_ref()?
            .join(format!("{}.git", repo.full_name));
        let output = std::process::Command::new("git")
            .args([
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("refs/heads/{branch}"),
            ])
            .env("GIT_DIR", git_dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// The key repositories are stored under: GitHub's names are case-insensitive.
pub(super) fn repo_key(full_name: &str) -> String {
    full_name.to_lowercase()
}

/// A timestamp as GitHub writes them: RFC 3339, whole seconds, `Z`.
pub(super) fn timestamp(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).expect("0 is a valid nanosecond");
    at.format(&time::format_description::well_known::Rfc3339)
        .expect("format a timestamp")
}

/// A random string of `len` hex digits, for codes, secrets and tokens.
pub(super) fn random_hex(len: usize) -> String {
    let mut out = String::with_capacity(len + 32);
    while out.len() < len {
        out.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    out.truncate(len);
    out
}
