//! The GitHub REST client, authenticated as the App and as its installations.
//!
//! octocrab mints the App JWT (RS256, issued a minute in the past, expiring in nine
//! minutes) and caches each installation's token, renewing it before it expires. sam keeps
//! one octocrab per installation so that the cache is shared by every delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, anyhow};
use arc_swap::ArcSwapOption;
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};
use octocrab::service::middleware::retry::RetryConfig;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use url::Url;

use super::once::{self, Kind, Ledger};
use super::retry;
use crate::config::{AppCredentials, Config};

/// The App's clients: one authenticated as the App, one per installation on demand.
///
/// Clones share one slot for the App, so that registering an App while sam runs (or
/// replacing it) reaches every holder at once; until then, every call fails saying that
/// sam has no App.
#[derive(Clone)]
pub struct GitHub {
    base: String,
    current: Arc<ArcSwapOption<AppClients>>,
}

/// The clients of one App.
pub(super) struct AppClients {
    pub(super) app: Octocrab,
    /// Shared, not cloned: cloning an `Octocrab` copies its token cache, and the copy's
    /// tokens never reach the others, so each caller would mint a token of its own.
    installations: Mutex<HashMap<u64, Arc<Octocrab>>>,
}

impl GitHub {
    /// The client against `GITHUB_API_URL`, with no App until [`GitHub::use_app`].
    pub fn new(config: &Config) -> Self {
        Self {
            base: config
                .github_api_url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            current: Arc::default(),
        }
    }

    /// Acts as `app` from now on, for every clone of this client.
    pub fn use_app(&self, app: &AppCredentials) -> anyhow::Result<()> {
        let crab = Octocrab::builder()
            .base_uri(self.base.as_str())
            .context("GITHUB_API_URL is not a valid base URI")?
            .app(AppId(app.id), app.private_key.clone())
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(30)))
            .build()
            .context("building the GitHub client")?;
        self.current.store(Some(Arc::new(AppClients {
            app: crab,
            installations: Mutex::default(),
        })));
        Ok(())
    }

    pub(super) fn clients(&self) -> anyhow::Result<Arc<AppClients>> {
        self.current
            .load_full()
            .ok_or_else(|| anyhow!("sam has no GitHub App yet; register one on its front page"))
    }

    /// The login of the account that owns the App, as GitHub says.
    pub async fn app_owner(&self) -> anyhow::Result<String> {
        #[derive(Deserialize)]
        struct Owner {
            login: String,
        }
        #[derive(Deserialize)]
        struct AppAnswer {
            owner: Owner,
        }
        let answer: AppAnswer = self
            .clients()?
            .app
            .get("/app", None::<&()>)
            .await
            .context("asking GitHub about the App")?;
        Ok(answer.owner.login)
    }

    /// The installation of the App on a repository, for payloads that do not name it.
    pub async fn repo_installation(&self, owner: &str, repo: &str) -> anyhow::Result<u64> {
        #[derive(Deserialize)]
        struct Installation {
            id: u64,
        }
        let route = format!("/repos/{}/{}/installation", segment(owner), segment(repo));
        let clients = self.clients()?;
        let installation: Installation =
            retry::run("finding an installation", retry::idempotent, || {
                clients.app.get(&route, None::<&()>)
            })
            .await
            .with_context(|| format!("finding the App's installation on {owner}/{repo}"))?;
        Ok(installation.id)
    }

    /// A client acting as one installation, sharing its token cache with every caller.
    pub fn installation(&self, id: u64) -> anyhow::Result<Arc<Octocrab>> {
        let clients = self.clients()?;
        let mut installations = clients
            .installations
            .lock()
            .map_err(|_| anyhow!("poisoned lock"))?;
        if let Some(crab) = installations.get(&id) {
            return Ok(crab.clone());
        }
        let crab = Arc::new(
            clients
                .app
                .installation(InstallationId(id))
                .context("installation client")?,
        );
        installations.insert(id, crab.clone());
        Ok(crab)
    }

    /// The installations sam has a client for (those it acted for since it started),
    /// by id.
    pub(super) fn installation_clients(&self) -> Vec<(u64, Arc<Octocrab>)> {
        let Ok(clients) = self.clients() else {
            return Vec::new();
        };
        let installations = clients.installations.lock();
        let mut listed: Vec<_> = installations
            .map(|map| map.iter().map(|(id, crab)| (*id, crab.clone())).collect())
            .unwrap_or_default();
        listed.sort_unstable_by_key(|(id, _)| *id);
        listed
    }

    /// The ids of the installations sam acted for since it started, in order.
    pub fn installations_called(&self) -> Vec<u64> {
        self.installation_clients()
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// Operations on one repository, as its installation.
    pub fn repo(&self, installation: u64, full_name: &str) -> anyhow::Result<RepoClient> {
        let (owner, name) = full_name
            .split_once('/')
            .ok_or_else(|| anyhow!("repository name {full_name:?} has no owner"))?;
        Ok(RepoClient {
            crab: self.installation(installation)?,
            path: format!("/repos/{}/{}", segment(owner), segment(name)),
            ledger: None,
        })
    }
}

/// Percent-encodes one path segment: logins and names are data, not path syntax.
fn segment(value: &str) -> String {
    urlencoding::encode(value).into_owned()
}

/// What a person may do on a repository, as GitHub's collaborator-permission endpoint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Admin,
    Maintain,
    Write,
    Triage,
    Read,
    None,
}

impl Permission {
    /// Opening a shell on a branch is as powerful as pushing to it.
    pub fn may_open_workspaces(self) -> bool {
        matches!(
            self,
            Permission::Admin | Permission::Maintain | Permission::Write
        )
    }
}

/// The parts of a pull request that decide what to check out.
#[derive(Debug, Clone)]
pub struct PullRequest {
    pub number: u64,
    pub head_ref: String,
    pub head_sha: String,
    /// `None` when the head repository was deleted.
    pub head_repo_full_name: Option<String>,
    pub base_repo_full_name: String,
    pub state: String,
}

impl PullRequest {
    /// Whether the head branch lives in another repository than the base.
    pub fn is_from_fork(&self) -> bool {
        self.head_repo_full_name.as_deref() != Some(self.base_repo_full_name.as_str())
    }
}

/// REST operations on one repository, as an installation. Calls that fail for a passing
/// reason are tried again (`retry.rs`); with a [`Ledger`], new comments and check runs are
/// posted exactly once per delivery (`once.rs`), without one at most once.
#[derive(Clone)]
pub struct RepoClient {
    crab: Arc<Octocrab>,
    path: String,
    ledger: Option<Arc<Ledger>>,
}

impl RepoClient {
    /// The same client, posting its comments and check runs once for this delivery.
    pub fn with_ledger(mut self, ledger: Arc<Ledger>) -> Self {
        self.ledger = Some(ledger);
        self
    }

    /// GET, tried again while it fails for a passing reason.
    async fn get<T: DeserializeOwned>(&self, route: &str) -> Result<T, octocrab::Error> {
        retry::run(route, retry::idempotent, || {
            self.crab.get::<T, _, ()>(route, None)
        })
        .await
    }

    /// PATCH, tried again likewise: the same edit twice leaves the same result.
    async fn patch(&self, route: &str, body: &serde_json::Value) -> Result<(), octocrab::Error> {
        retry::run(route, retry::idempotent, || {
            self.crab
                .patch::<serde_json::Value, _, _>(route, Some(body))
        })
        .await
        .map(drop)
    }

    /// The person's permission; a 404 (not a collaborator) means none.
    pub async fn permission(&self, login: &str) -> anyhow::Result<Permission> {
        #[derive(Deserialize)]
        struct Answer {
            permission: String,
            #[serde(default)]
            role_name: Option<String>,
        }
        let route = format!("{}/collaborators/{}/permission", self.path, segment(login));
        let answer: Answer = match self.get(&route).await {
            Ok(answer) => answer,
            Err(e) if status_of(&e) == Some(404) => return Ok(Permission::None),
            Err(e) => return Err(e).context("reading collaborator permission"),
        };
        // `role_name` knows `maintain`, which `permission` folds into `write`.
        let name = answer.role_name.unwrap_or(answer.permission);
        Ok(match name.as_str() {
            "admin" => Permission::Admin,
            "maintain" => Permission::Maintain,
            "write" | "push" => Permission::Write,
            "triage" => Permission::Triage,
            "read" | "pull" => Permission::Read,
            _ => Permission::None,
        })
    }

    /// Reads a pull request's head and base.
    pub async fn pull_request(&self, number: u64) -> anyhow::Result<PullRequest> {
        #[derive(Deserialize)]
        struct Repo {
            full_name: String,
        }
        #[derive(Deserialize)]
        struct Head {
            #[serde(rename = "ref")]
            ref_name: String,
            sha: String,
            repo: Option<Repo>,
        }
        #[derive(Deserialize)]
        struct Base {
            repo: Repo,
        }
        #[derive(Deserialize)]
        struct Answer {
            number: u64,
            state: String,
            head: Head,
            base: Base,
        }
        let route = format!("{}/pulls/{number}", self.path);
        let pr: Answer = self.get(&route).await.context("reading the pull request")?;
        Ok(PullRequest {
            number: pr.number,
            head_ref: pr.head.ref_name,
            head_sha: pr.head.sha,
            head_repo_full_name: pr.head.repo.map(|r| r.full_name),
            base_repo_full_name: pr.base.repo.full_name,
            state: pr.state,
        })
    }

    /// The commit a branch points at, or `None` when there is no such branch.
    pub async fn branch_head(&self, branch: &str) -> anyhow::Result<Option<String>> {
        #[derive(Deserialize)]
        struct Commit {
            sha: String,
        }
        #[derive(Deserialize)]
        struct Answer {
            commit: Commit,
        }
        // Slashes in branch names stay literal: GitHub routes `branches/a/b` to branch `a/b`.
        let encoded = segment(branch).replace("%2F", "/");
        let route = format!("{}/branches/{encoded}", self.path);
        match self.get::<Answer>(&route).await {
            Ok(answer) => Ok(Some(answer.commit.sha)),
            Err(e) if status_of(&e) == Some(404) => Ok(None),
            Err(e) => Err(e).context("reading the branch"),
        }
    }

    /// Puts a reaction on an issue or pull-request comment.
    pub async fn react_to_comment(&self, comment_id: u64, content: &str) -> anyhow::Result<()> {
        let route = format!("{}/issues/comments/{comment_id}/reactions", self.path);
        // GitHub answers a reaction that is there already with the one it has: repeatable.
        let body = json!({ "content": content });
        retry::run(&route, retry::idempotent, || {
            self.crab.post::<_, serde_json::Value>(&route, Some(&body))
        })
        .await
        .context("adding a reaction")?;
        Ok(())
    }

    /// Posts a comment and returns its id: once per delivery with a ledger.
    pub async fn create_comment(&self, issue: u64, body: &str) -> anyhow::Result<u64> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let route = format!("{}/issues/{issue}/comments", self.path);
        let text = |marker: &str| {
            if marker.is_empty() {
                body.to_owned()
            } else {
                format!("{body}\n\n{marker}")
            }
        };
        let post = |marker: String| {
            let text = text(&marker);
            let route = &route;
            async move {
                let created: Created = self
                    .crab
                    .post(route, Some(&json!({ "body": text })))
                    .await?;
                Ok(created.id)
            }
        };
        match &self.ledger {
            Some(ledger) => {
                let calls = once::Calls {
                    post,
                    find: |marker: String| self.find_comment(issue, marker),
                    edit: |id: u64, marker: String| {
                        let route = format!("{}/issues/comments/{id}", self.path);
                        let body = json!({ "body": text(&marker) });
                        async move {
                            self.crab
                                .patch::<serde_json::Value, _, _>(route, Some(&body))
                                .await
                                .map(drop)
                        }
                    },
                };
                once::post(ledger, Kind::Comment, &route, calls).await
            }
            None => retry::run(&route, retry::refused_only, || post(String::new()))
                .await
                .context("posting a comment"),
        }
    }

    /// The comment of sam's on `issue` carrying `marker`, among those of the last day,
    /// newest last; at most ten pages are read.
    async fn find_comment(
        &self,
        issue: u64,
        marker: String,
    ) -> Result<Option<u64>, octocrab::Error> {
        #[derive(Deserialize)]
        struct Listed {
            id: u64,
            #[serde(default)]
            body: Option<String>,
            user: Option<super::events::Account>,
        }
        const PER_PAGE: usize = 100;
        let since = (time::OffsetDateTime::now_utc() - time::Duration::days(1))
            .format(time::macros::format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
            ))
            .expect("a UTC time formats");
        for page in 1..=10 {
            let route = format!(
                "{}/issues/{issue}/comments?per_page={PER_PAGE}&page={page}&since={since}",
                self.path
            );
            let listed: Vec<Listed> = self.crab.get(&route, None::<&()>).await?;
            let found = listed.iter().find(|c| {
                c.user.as_ref().is_some_and(|u| u.is_bot())
                    && c.body.as_deref().is_some_and(|b| b.contains(&marker))
            });
            if let Some(found) = found {
                return Ok(Some(found.id));
            }
            if listed.len() < PER_PAGE {
                break;
            }
        }
        Ok(None)
    }

    /// Creates a check run on `head_sha` and returns its id: once per delivery with a
    /// ledger. The marker goes in the run's `output.text`, which GitHub shows as Markdown.
    pub async fn create_check_run(
        &self,
        head_sha: &str,
        run: &serde_json::Value,
    ) -> anyhow::Result<u64> {
        #[derive(Deserialize)]
        struct Created {
            id: u64,
        }
        let route = format!("{}/check-runs", self.path);
        let marked = |marker: &str| {
            let mut body = run.clone();
            body["head_sha"] = json!(head_sha);
            if !marker.is_empty() {
                body["output"]["text"] = json!(marker);
            }
            body
        };
        let post = |marker: String| {
            let body = marked(&marker);
            let route = &route;
            async move {
                let created: Created = self.crab.post(route, Some(&body)).await?;
                Ok(created.id)
            }
        };
        match &self.ledger {
            Some(ledger) => {
                let name = run["name"].as_str().unwrap_or_default();
                let target = format!("{}/commits/{head_sha}", self.path);
                let calls = once::Calls {
                    post,
                    find: |marker: String| self.find_check_run(head_sha, name, marker),
                    edit: |id: u64, marker: String| {
                        let route = format!("{}/check-runs/{id}", self.path);
                        let body = marked(&marker);
                        async move {
                            self.crab
                                .patch::<serde_json::Value, _, _>(route, Some(&body))
                                .await
                                .map(drop)
                        }
                    },
                };
                once::post(ledger, Kind::CheckRun, &target, calls).await
            }
            None => retry::run(&route, retry::refused_only, || post(String::new()))
                .await
                .context("creating a check run"),
        }
    }

    /// The check run named `name` on `head_sha` whose output carries `marker`.
    async fn find_check_run(
        &self,
        head_sha: &str,
        name: &str,
        marker: String,
    ) -> Result<Option<u64>, octocrab::Error> {
        #[derive(Deserialize)]
        struct Output {
            #[serde(default)]
            text: Option<String>,
        }
        #[derive(Deserialize)]
        struct Run {
            id: u64,
            output: Option<Output>,
        }
        #[derive(Deserialize)]
        struct Listed {
            check_runs: Vec<Run>,
        }
        let route = format!(
            "{}/commits/{head_sha}/check-runs?check_name={}&filter=all&per_page=100",
            self.path,
            urlencoding::encode(name)
        );
        let listed: Listed = self.crab.get(&route, None::<&()>).await?;
        Ok(listed
            .check_runs
            .iter()
            .find(|r| {
                r.output
                    .as_ref()
                    .and_then(|o| o.text.as_deref())
                    .is_some_and(|t| t.contains(&marker))
            })
            .map(|r| r.id))
    }

    /// Changes the fields of a check run that `run` names.
    pub async fn update_check_run(
        &self,
        check_run_id: u64,
        run: &serde_json::Value,
    ) -> anyhow::Result<()> {
        let route = format!("{}/check-runs/{check_run_id}", self.path);
        self.patch(&route, run)
            .await
            .context("updating a check run")?;
        Ok(())
    }

    /// Replaces a comment's body.
    pub async fn update_comment(&self, comment_id: u64, body: &str) -> anyhow::Result<()> {
        let route = format!("{}/issues/comments/{comment_id}", self.path);
        self.patch(&route, &json!({ "body": body }))
            .await
            .context("editing a comment")?;
        Ok(())
    }
}

/// The HTTP status of the GitHub answer behind an error, when there was one.
pub fn answer_status(error: &anyhow::Error) -> Option<u16> {
    error
        .chain()
        .find_map(|cause| cause.downcast_ref::<octocrab::Error>())
        .and_then(status_of)
}

/// The HTTP status of a GitHub error answer, when it was one.
pub fn status_of(error: &octocrab::Error) -> Option<u16> {
    match error {
        octocrab::Error::GitHub { source, .. } => Some(source.status_code.as_u16()),
        _ => None,
    }
}

/// The HTTPS clone URL of a repository under `GITHUB_URL`.
pub fn clone_url(github_url: &Url, full_name: &str) -> anyhow::Result<String> {
    Ok(github_url.join(&format!("{full_name}.git"))?.to_string())
}
