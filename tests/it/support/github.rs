//! A stateful stand-in for the parts of GitHub sam talks to: the REST API as the App, as
//! its installations and as a signed-in person, and the browser pages of OAuth sign-in and
//! App registration, and git's smart HTTP protocol on the bare repositories of a
//! `GitServer` (`GITHUB_URL/owner/name.git`, for installation tokens only). One HTTP server
//! on 127.0.0.1 serves both `GITHUB_API_URL` and `GITHUB_URL` (their paths do not collide).
//!
//! Credentials are checked as GitHub checks them (JWT signature and lifetime, token expiry
//! and repository scope, token permissions), so a test fails where GitHub would refuse.
//! Tests set the scene with the `add_*`/`set_*` methods, then wait on what sam does with
//! the `wait_for_*` sync points, which return as soon as the model changes: no sleeps.
//!
//! Limits: issues are not modelled (any issue number takes comments; pull requests are),
//! nothing is paginated but issue comments, and no webhooks are sent: tests post the
//! fixtures to sam themselves.

mod answers;
mod auth;
mod errors;
mod faults;
mod git;
mod keys;
mod model;
mod rest;
mod web;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::{oneshot, watch};

pub use faults::Failure;
pub use model::{
    AuthKind, CheckRun, Comment, GitAccess, PullRequestSpec, Reaction, RequestRecord, TokenRecord,
};

use keys::AppKey;
use model::{App, Installation, Model, PullRequest, Repo, repo_key};

/// What an installation may do unless a test says otherwise: what sam's manifest asks for.
fn default_installation_permissions() -> Value {
    json!({
        "metadata": "read",
        "contents": "write",
        "issues": "write",
        "pull_requests": "write",
        "checks": "write",
    })
}

/// Records a comment written on GitHub by a person (not through the API).
fn insert_human_comment(
    model: &mut Model,
    repo: &str,
    issue: u64,
    id: u64,
    author: &str,
    body: &str,
) -> Comment {
    let repo = model.expect_repo(repo).full_name.clone();
    model.user(author, "User");
    let now = OffsetDateTime::now_utc();
    let comment = Comment {
        id,
        repo,
        issue,
        author: author.to_owned(),
        body: body.to_owned(),
        via_api: false,
        edits: 0,
        earlier: Vec::new(),
        created_at: now,
        updated_at: now,
    };
    model.comments.push(comment.clone());
    comment
}

/// The model behind a lock, and a counter bumped on every change for the sync points.
struct Shared {
    model: Mutex<Model>,
    changed: watch::Sender<u64>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Model> {
        // A test that panicked while holding the lock leaves a usable model behind.
        self.model
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read<T>(&self, f: impl FnOnce(&Model) -> T) -> T {
        f(&self.lock())
    }

    fn update<T>(&self, f: impl FnOnce(&mut Model) -> T) -> T {
        let result = f(&mut self.lock());
        self.changed.send_modify(|version| *version += 1);
        result
    }
}

/// The running stand-in. Dropping it stops the server.
pub struct GitHubStandIn {
    shared: Arc<Shared>,
    url: String,
    _shutdown: oneshot::Sender<()>,
}

impl GitHubStandIn {
    /// Starts the server on a free port of 127.0.0.1 with an App (id, slug `sam-test`,
    /// client id and secret, an RSA key) and nothing else.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("local address"));
        let key = tokio::task::spawn_blocking(AppKey::shared)
            .await
            .expect("generate the App key");
        let app = App {
            id: 4242,
            slug: "sam-test".to_owned(),
            name: "sam test".to_owned(),
            client_id: format!("Iv1.{}", model::random_hex(16)),
            client_secret: model::random_hex(40),
            webhook_secret: None,
            key,
            owner: "sam-owner".to_owned(),
            callback_urls: Vec::new(),
            permissions: default_installation_permissions(),
            events: vec!["issue_comment".to_owned(), "pull_request".to_owned()],
        };
        let mut model = Model::new(url.clone(), app);
        model.user("sam-owner", "Organization");
        model.user("sam-test[bot]", "Bot");

        let shared = Arc::new(Shared {
            model: Mutex::new(model),
            changed: watch::Sender::new(0),
        });
        let router = rest::routes()
            .merge(web::routes())
            .merge(git::routes())
            .layer(axum::middleware::from_fn_with_state(
                shared.clone(),
                faults::record_and_inject,
            ))
            .with_state(shared.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let stop = async {
                let _ = stopped.await;
            };
            axum::serve(listener, router)
                .with_graceful_shutdown(stop)
                .await
                .expect("serve the stand-in");
        });
        Self {
            shared,
            url,
            _shutdown: shutdown,
        }
    }

    /// The base URL, `http://127.0.0.1:<port>`, for both `GITHUB_API_URL` and `GITHUB_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    // --- the App --------------------------------------------------------------------------

    /// The App's id, for `GITHUB_APP_ID`; a new one after the manifest flow.
    pub fn app_id(&self) -> u64 {
        self.shared.read(|m| m.app.id)
    }

    /// The App's slug (`sam-test`); its bot comments as `<slug>[bot]`.
    pub fn app_slug(&self) -> String {
        self.shared.read(|m| m.app.slug.clone())
    }

    /// The App's private key, PKCS#1 PEM, as GitHub hands it out.
    pub fn private_key_pem(&self) -> String {
        self.shared.read(|m| m.app.key.private_pem.clone())
    }

    /// The App's OAuth client id, for `GITHUB_CLIENT_ID`.
    pub fn client_id(&self) -> String {
        self.shared.read(|m| m.app.client_id.clone())
    }

    /// The App's OAuth client secret, for `GITHUB_CLIENT_SECRET`.
    pub fn client_secret(&self) -> String {
        self.shared.read(|m| m.app.client_secret.clone())
    }

    /// The webhook secret the manifest flow generated; `None` before it ran.
    pub fn webhook_secret(&self) -> Option<String> {
        self.shared.read(|m| m.app.webhook_secret.clone())
    }

    /// A valid App JWT (issued a minute ago, expiring in nine minutes), for tests that
    /// call App endpoints themselves.
    pub fn app_jwt(&self) -> String {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        self.app_jwt_with(json!(self.app_id()), now - 60, now + 540)
    }

    /// An App JWT with the given claims, signed with the App's key.
    pub fn app_jwt_with(&self, iss: Value, iat: i64, exp: i64) -> String {
        self.shared.read(|m| m.app.key.sign(&iss, iat, exp))
    }

    /// Only these redirect URIs (prefixes) pass the OAuth flow; by default any does.
    pub fn set_callback_urls(&self, urls: &[&str]) {
        self.shared
            .update(|m| m.app.callback_urls = urls.iter().map(|u| (*u).to_owned()).collect());
    }

    // --- accounts, installations, repositories --------------------------------------------

    /// Adds a person's account (idempotent) and returns its id.
    pub fn add_user(&self, login: &str) -> u64 {
        self.shared.update(|m| m.user(login, "User").id)
    }

    /// Installs the App on `account` (created as an organization if new); returns the
    /// installation id. Its permissions are those sam's manifest asks for.
    pub fn add_installation(&self, account: &str) -> u64 {
        self.shared.update(|m| {
            m.user(account, "Organization");
            let id = m.next_id();
            let installation = Installation {
                id,
                account: account.to_owned(),
                repos: BTreeSet::new(),
                permissions: default_installation_permissions(),
                rate_limit_remaining: 5000,
            };
            m.installations.insert(id, installation);
            id
        })
    }

    /// Sets what `GET /rate_limit` reports as left to `installation`.
    pub fn set_rate_limit_remaining(&self, installation: u64, remaining: u64) {
        self.shared.update(|m| {
            if let Some(installation) = m.installations.get_mut(&installation) {
                installation.rate_limit_remaining = remaining;
            }
        })
    }

    /// Replaces an installation's permissions, e.g. `json!({"metadata": "read"})`.
    pub fn set_installation_permissions(&self, installation: u64, permissions: Value) {
        self.shared.update(|m| {
            let installation = m
                .installations
                .get_mut(&installation)
                .expect("no such installation");
            installation.permissions = permissions;
        });
    }

    /// Adds the public repository `full_name` ("owner/name") with default branch `main`,
    /// on the installation; returns its id.
    pub fn add_repo(&self, full_name: &str, installation: u64) -> u64 {
        let id = self.add_repo_without_installation(full_name);
        self.shared.update(|m| {
            let key = repo_key(full_name);
            let entry = m
                .installations
                .get_mut(&installation)
                .expect("no such installation");
            entry.repos.insert(key.clone());
            m.repos.get_mut(&key).expect("just added").installation = Some(installation);
        });
        id
    }

    /// The id of repository `full_name`, as payloads about it name it.
    pub fn repo_id(&self, full_name: &str) -> u64 {
        self.shared.read(|m| m.expect_repo(full_name).id)
    }

    /// Adds a repository the App is not installed on (a fork, say); returns its id.
    pub fn add_repo_without_installation(&self, full_name: &str) -> u64 {
        let (owner, _) = full_name.split_once('/').expect("full_name is owner/name");
        self.shared.update(|m| {
            m.user(owner, "User");
            let id = m.next_id();
            let repo = Repo {
                id,
                full_name: full_name.to_owned(),
                private: false,
                default_branch: "main".to_owned(),
                installation: None,
            };
            m.repos.insert(repo_key(full_name), repo);
            id
        })
    }

    /// Makes a repository private (or public again): it changes what people without a
    /// role may do.
    pub fn set_repo_private(&self, full_name: &str, private: bool) {
        self.shared.update(|m| {
            m.repos
                .get_mut(&repo_key(full_name))
                .expect("no such repository")
                .private = private;
        });
    }

    /// Gives `user` a role on `repo`: `admin`, `maintain`, `write`, `triage`, `read` or
    /// `none`. A user given no role reads a public repository and has `none` on a private
    /// one; a login never mentioned to the stand-in is not an account (404).
    pub fn set_permission(&self, repo: &str, user: &str, role: &str) {
        const ROLES: [&str; 6] = ["admin", "maintain", "write", "triage", "read", "none"];
        assert!(
            ROLES.contains(&role),
            "unknown role {role:?}: use one of {ROLES:?}"
        );
        self.shared.update(|m| {
            m.expect_repo(repo);
            m.user(user, "User");
            m.permissions
                .insert((repo_key(repo), user.to_lowercase()), role.to_owned());
        });
    }

    /// Adds (or replaces) pull request `number` of `repo`.
    pub fn add_pull_request(&self, repo: &str, number: u64, spec: PullRequestSpec) {
        self.shared.update(|m| {
            m.expect_repo(repo);
            if let Some(fork) = &spec.head_repo {
                m.expect_repo(fork);
            }
            m.user(&spec.author, "User");
            let id = m.next_id();
            m.pulls
                .insert((repo_key(repo), number), PullRequest { id, spec });
        });
    }

    /// Makes `branch` of `repo` point at `sha` for the branches endpoint.
    pub fn set_branch(&self, repo: &str, branch: &str, sha: &str) {
        self.shared.update(|m| {
            m.expect_repo(repo);
            m.branches
                .insert((repo_key(repo), branch.to_owned()), sha.to_owned());
        });
    }

    /// Answers the branches endpoint from the bare repositories in `dir` (a `GitServer`'s
    /// `dir()`) for branches not set with `set_branch`.
    pub fn use_git_server(&self, dir: &std::path::Path) {
        self.shared.update(|m| m.git_dir = Some(dir.to_owned()));
    }

    /// The prefix of `clone_url` in repository answers; `https://github.com/` by default.
    pub fn set_clone_base(&self, base: &str) {
        let base = if base.ends_with('/') {
            base.to_owned()
        } else {
            format!("{base}/")
        };
        self.shared.update(|m| m.clone_base = base);
    }

    /// A comment written by a person on GitHub (what a webhook would then announce), for
    /// sam to react to or answer. Returns it with its id.
    pub fn add_comment(&self, repo: &str, issue: u64, author: &str, body: &str) -> Comment {
        self.shared.update(|m| {
            let id = m.next_id();
            insert_human_comment(m, repo, issue, id, author, body)
        })
    }

    /// The comment an `issue_comment` webhook payload announces, recorded with the
    /// payload's own comment id, repository, issue number, author and body, so that sam
    /// can react to it and answer. The repository must have been added. Returns it.
    pub fn add_comment_from_webhook(&self, payload: &[u8]) -> Comment {
        let event: Value = serde_json::from_slice(payload).expect("the payload is JSON");
        let field = |pointer: &str| {
            event
                .pointer(pointer)
                .unwrap_or_else(|| panic!("the payload has no {pointer}"))
        };
        let repo = field("/repository/full_name")
            .as_str()
            .expect("a repository name");
        let issue = field("/issue/number").as_u64().expect("an issue number");
        let id = field("/comment/id").as_u64().expect("a comment id");
        let author = field("/comment/user/login").as_str().expect("a login");
        let body = field("/comment/body").as_str().unwrap_or_default();
        self.shared.update(|m| {
            m.comments.retain(|c| c.id != id);
            insert_human_comment(m, repo, issue, id, author, body)
        })
    }

    // --- the browser ------------------------------------------------------------------------

    /// Makes `login` the person signed in to GitHub in "the browser": the OAuth authorize
    /// page lets them straight through.
    pub fn sign_in_as(&self, login: &str) {
        self.shared.update(|m| {
            m.user(login, "User");
            m.signed_in = Some(login.to_owned());
        });
    }

    /// Leaves no one signed in: the OAuth authorize page then refuses.
    pub fn sign_out(&self) {
        self.shared.update(|m| m.signed_in = None);
    }

    /// A code for `POST /app-manifests/{code}/conversions`, as if the manifest had been
    /// posted from a browser and GitHub had redirected back.
    pub fn create_manifest_code(&self, manifest: Value) -> String {
        self.shared.update(|m| {
            let owner = m.signed_in.clone().unwrap_or_else(|| "octocat".to_owned());
            web::insert_manifest_code(m, manifest, owner)
        })
    }

    // --- tokens ---------------------------------------------------------------------------

    /// Lifetime of installation tokens minted from now on (GitHub: one hour).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.shared.update(|m| m.token_lifetime = lifetime);
    }

    /// Expires every installation token issued so far, as if an hour had passed.
    pub fn expire_tokens(&self) {
        let past = OffsetDateTime::now_utc() - Duration::from_secs(1);
        self.shared
            .update(|m| m.tokens.values_mut().for_each(|t| t.expires_at = past));
    }

    /// How many installation tokens were issued.
    pub fn tokens_issued(&self) -> usize {
        self.shared.read(|m| m.tokens.len())
    }

    /// Every installation token issued so far, with its scope.
    pub fn issued_tokens(&self) -> Vec<TokenRecord> {
        self.shared.read(|m| {
            m.tokens
                .iter()
                .map(|(token, issued)| TokenRecord {
                    token: token.clone(),
                    installation: issued.installation,
                    repos: issued.repos.as_ref().map(|r| r.iter().cloned().collect()),
                    permissions: issued.permissions.clone(),
                })
                .collect()
        })
    }

    /// The requests of git's smart HTTP protocol answered so far, oldest first.
    pub fn git_accesses(&self) -> Vec<GitAccess> {
        self.shared.read(|m| m.git_accesses.clone())
    }

    // --- what sam did -----------------------------------------------------------------------

    /// The comments on `repo`#`issue`, oldest first.
    pub fn comments(&self, repo: &str, issue: u64) -> Vec<Comment> {
        self.shared.read(|m| {
            m.comments
                .iter()
                .filter(|c| repo_key(&c.repo) == repo_key(repo) && c.issue == issue)
                .cloned()
                .collect()
        })
    }

    /// The comment with this id, as last edited.
    pub fn comment(&self, id: u64) -> Option<Comment> {
        self.shared.read(|m| m.comment(id).cloned())
    }

    /// The reactions on a comment, oldest first.
    pub fn reactions(&self, comment_id: u64) -> Vec<Reaction> {
        self.shared.read(|m| {
            m.reactions
                .iter()
                .filter(|r| r.comment_id == comment_id)
                .cloned()
                .collect()
        })
    }

    /// The check runs created on `repo`, oldest first.
    pub fn check_runs(&self, repo: &str) -> Vec<CheckRun> {
        self.shared.read(|m| {
            m.check_runs
                .iter()
                .filter(|r| repo_key(&r.repo) == repo_key(repo))
                .cloned()
                .collect()
        })
    }

    /// Every request answered so far, in the order the answers went out.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.read(|m| m.requests.clone())
    }

    /// The next request with this method (e.g. `"POST"`) whose path fits `path_pattern`
    /// (`*` is one segment, a final `**` any rest: `/repos/*/*/issues/*/comments`) gets
    /// `failure` instead of its answer. Each call plans one failure; they are used in order.
    pub fn fail_next(&self, method: &str, path_pattern: &str, failure: Failure) {
        let planned = faults::PlannedFailure {
            method: method.to_owned(),
            pattern: path_pattern.to_owned(),
            failure,
        };
        self.shared.update(|m| m.failures.push(planned));
    }

    // --- sync points ------------------------------------------------------------------------

    /// The first comment sam posted on `repo`#`issue`, waiting up to `timeout` for it.
    pub async fn wait_for_comment(&self, repo: &str, issue: u64, timeout: Duration) -> Comment {
        self.wait_for_comment_where(repo, issue, timeout, |c| c.via_api)
            .await
    }

    /// The first comment on `repo`#`issue` for which `matches` holds (it sees edits, so it
    /// can wait for a comment to be updated), waiting up to `timeout`.
    pub async fn wait_for_comment_where(
        &self,
        repo: &str,
        issue: u64,
        timeout: Duration,
        matches: impl Fn(&Comment) -> bool,
    ) -> Comment {
        let key = repo_key(repo);
        self.wait_for(
            &format!("a matching comment on {repo}#{issue}"),
            timeout,
            |m| {
                m.comments
                    .iter()
                    .find(|c| repo_key(&c.repo) == key && c.issue == issue && matches(c))
                    .cloned()
            },
        )
        .await
    }

    /// The first reaction on comment `comment_id`, waiting up to `timeout`.
    pub async fn wait_for_reaction(&self, comment_id: u64, timeout: Duration) -> Reaction {
        self.wait_for(
            &format!("a reaction on comment {comment_id}"),
            timeout,
            |m| {
                m.reactions
                    .iter()
                    .find(|r| r.comment_id == comment_id)
                    .cloned()
            },
        )
        .await
    }

    /// The first check run on `repo` for which `matches` holds, waiting up to `timeout`.
    pub async fn wait_for_check_run(
        &self,
        repo: &str,
        timeout: Duration,
        matches: impl Fn(&CheckRun) -> bool,
    ) -> CheckRun {
        let key = repo_key(repo);
        self.wait_for(&format!("a matching check run on {repo}"), timeout, |m| {
            m.check_runs
                .iter()
                .find(|r| repo_key(&r.repo) == key && matches(r))
                .cloned()
        })
        .await
    }

    /// The first answered request with `method` and a path fitting `path_pattern` (as in
    /// `fail_next`), waiting up to `timeout`.
    pub async fn wait_for_request(
        &self,
        method: &str,
        path_pattern: &str,
        timeout: Duration,
    ) -> RequestRecord {
        self.wait_for(
            &format!("a {method} {path_pattern} request"),
            timeout,
            |m| {
                m.requests
                    .iter()
                    .find(|r| {
                        r.method.eq_ignore_ascii_case(method)
                            && faults::path_matches(path_pattern, &r.path)
                    })
                    .cloned()
            },
        )
        .await
    }

    /// Checks `found` now and after every change of the model until it finds something;
    /// panics after `timeout`, listing the requests seen, to show what sam did instead.
    async fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut found: impl FnMut(&Model) -> Option<T>,
    ) -> T {
        let mut changes = self.shared.changed.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            changes.borrow_and_update();
            if let Some(value) = self.shared.read(&mut found) {
                return value;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                let requests: Vec<String> = self
                    .requests()
                    .iter()
                    .map(|r| format!("  {} {} -> {} ({:?})", r.method, r.path, r.status, r.auth))
                    .collect();
                panic!(
                    "the GitHub stand-in saw no {what} within {timeout:?}; requests so far:\n{}",
                    if requests.is_empty() {
                        "  (none)".to_owned()
                    } else {
                        requests.join("\n")
                    }
                );
            }
        }
    }
}
