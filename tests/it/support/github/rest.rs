//! The REST endpoints (`GITHUB_API_URL`) sam calls, answering from the model.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Shared;
use super::answers;
use super::auth::{self, Needs};
use super::errors::ApiError;
use super::model::{
    CheckRun, Comment, IssuedToken, Model, Reaction, random_hex, repo_key, timestamp,
};

type Answer = Result<Response, ApiError>;
type Stand = State<Arc<Shared>>;

const READ_METADATA: Needs = Needs {
    permission: "metadata",
    write: false,
};
const READ_CONTENTS: Needs = Needs {
    permission: "contents",
    write: false,
};
const READ_PULLS: Needs = Needs {
    permission: "pull_requests",
    write: false,
};
const READ_ISSUES: Needs = Needs {
    permission: "issues",
    write: false,
};
const WRITE_ISSUES: Needs = Needs {
    permission: "issues",
    write: true,
};
const WRITE_CHECKS: Needs = Needs {
    permission: "checks",
    write: true,
};
const READ_CHECKS: Needs = Needs {
    permission: "checks",
    write: false,
};

/// The reactions GitHub accepts.
const REACTIONS: [&str; 8] = [
    "+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes",
];

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/app", get(get_app))
        .route("/rate_limit", get(get_rate_limit))
        .route("/app/installations/{id}", get(get_installation))
        .route(
            "/app/installations/{id}/access_tokens",
            post(create_installation_token),
        )
        .route("/repos/{owner}/{repo}", get(get_repo))
        .route(
            "/repos/{owner}/{repo}/installation",
            get(get_repo_installation),
        )
        .route(
            "/repos/{owner}/{repo}/collaborators/{login}/permission",
            get(get_permission),
        )
        .route("/repos/{owner}/{repo}/pulls/{number}", get(get_pull))
        .route("/repos/{owner}/{repo}/branches/{*branch}", get(get_branch))
        .route(
            "/repos/{owner}/{repo}/issues/{number}/comments",
            get(list_comments).post(create_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}",
            get(get_comment).patch(update_comment),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{id}/reactions",
            post(create_reaction),
        )
        .route("/repos/{owner}/{repo}/check-runs", post(create_check_run))
        .route(
            "/repos/{owner}/{repo}/commits/{sha}/check-runs",
            get(list_check_runs),
        )
        .route(
            "/repos/{owner}/{repo}/check-runs/{id}",
            patch(update_check_run),
        )
}

// --- as the App ----------------------------------------------------------------------------

async fn get_app(State(shared): Stand, headers: HeaderMap) -> Answer {
    shared.read(|model| {
        auth::require_app(model, &headers)?;
        ok(answers::app(model))
    })
}

/// An installation token's rate limit; GitHub does not count this call against it.
async fn get_rate_limit(State(shared): Stand, headers: HeaderMap) -> Answer {
    shared.read(|model| {
        let installation = auth::credential(&headers)
            .and_then(|c| model.tokens.get(c))
            .filter(|t| t.expires_at > OffsetDateTime::now_utc())
            .and_then(|t| model.installations.get(&t.installation))
            .ok_or_else(ApiError::bad_credentials)?;
        let core = json!({
            "limit": 5000,
            "used": 5000 - installation.rate_limit_remaining,
            "remaining": installation.rate_limit_remaining,
            "reset": OffsetDateTime::now_utc().unix_timestamp() + 3600,
            "resource": "core",
        });
        ok(json!({ "resources": { "core": core }, "rate": core }))
    })
}

async fn get_installation(State(shared): Stand, Path(id): Path<u64>, headers: HeaderMap) -> Answer {
    shared.read(|model| {
        auth::require_app(model, &headers)?;
        let installation = model
            .installations
            .get(&id)
            .ok_or_else(ApiError::not_found)?;
        ok(answers::installation(model, installation))
    })
}

async fn get_repo_installation(
    State(shared): Stand,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    shared.read(|model| {
        auth::require_app(model, &headers)?;
        let installation = model
            .repo(&format!("{owner}/{repo}"))
            .and_then(|r| r.installation)
            .and_then(|id| model.installations.get(&id))
            .ok_or_else(ApiError::not_found)?;
        ok(answers::installation(model, installation))
    })
}

/// Mints a `ghs_` token, optionally narrowed to some of the installation's repositories
/// (`repositories` by name, `repository_ids`) and permissions.
async fn create_installation_token(
    State(shared): Stand,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let request = body_json(&body)?;
    shared.update(|model| {
        auth::require_app(model, &headers)?;
        let installation = model
            .installations
            .get(&id)
            .ok_or_else(ApiError::not_found)?;

        let narrowed = narrowed_repos(model, id, &request)?;
        let permissions = match request.get("permissions") {
            Some(asked) => narrowed_permissions(&installation.permissions, asked)?,
            None => installation.permissions.clone(),
        };
        let expires_at = OffsetDateTime::now_utc() + model.token_lifetime;
        let token = format!("ghs_{}", random_hex(36));

        let mut answer =
            crate::support::fixtures::rest("apps.create-installation-access-token.201");
        answer["token"] = json!(token);
        answer["expires_at"] = json!(timestamp(expires_at));
        answer["permissions"] = permissions.clone();
        answer["repository_selection"] = json!("selected");
        match &narrowed {
            Some(keys) => {
                let repos: Vec<Value> = keys
                    .iter()
                    .map(|key| answers::repo(model, &model.repos[key]))
                    .collect();
                answer["repositories"] = json!(repos);
            }
            None => {
                answer
                    .as_object_mut()
                    .expect("an object")
                    .remove("repositories");
            }
        }

        let issued = IssuedToken {
            installation: id,
            expires_at,
            repos: narrowed,
            permissions,
        };
        model.tokens.insert(token, issued);
        created(answer)
    })
}

fn narrowed_repos(
    model: &Model,
    id: u64,
    request: &Value,
) -> Result<Option<BTreeSet<String>>, ApiError> {
    let installation = &model.installations[&id];
    let refused = || {
        ApiError::invalid(
            "There is at least one repository that does not exist or is not accessible to the parent installation.",
        )
    };
    let mut keys = BTreeSet::new();
    let mut narrowed = false;
    if let Some(names) = request.get("repositories").and_then(Value::as_array) {
        narrowed = true;
        for name in names {
            let name = name.as_str().ok_or_else(refused)?;
            let key = repo_key(&format!("{}/{name}", installation.account));
            installation
                .repos
                .contains(&key)
                .then_some(())
                .ok_or_else(refused)?;
            keys.insert(key);
        }
    }
    if let Some(ids) = request.get("repository_ids").and_then(Value::as_array) {
        narrowed = true;
        for repo_id in ids {
            let key = installation
                .repos
                .iter()
                .find(|key| Some(model.repos[*key].id) == repo_id.as_u64())
                .ok_or_else(refused)?;
            keys.insert(key.clone());
        }
    }
    Ok(narrowed.then_some(keys))
}

fn narrowed_permissions(granted: &Value, asked: &Value) -> Result<Value, ApiError> {
    let refused =
        || ApiError::invalid("The permissions requested are not granted to this installation.");
    let asked = asked.as_object().ok_or_else(refused)?;
    for (permission, level) in asked {
        let has = granted.get(permission).and_then(Value::as_str);
        let allowed = matches!(
            (has, level.as_str()),
            (Some("write" | "admin"), Some(_)) | (Some("read"), Some("read"))
        );
        if !allowed {
            return Err(refused());
        }
    }
    Ok(Value::Object(asked.clone()))
}

// --- as an installation ---------------------------------------------------------------------

async fn get_repo(
    State(shared): Stand,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    shared.read(|model| {
        auth::require_installation(model, &headers, &full_name, READ_METADATA)?;
        ok(answers::repo(
            model,
            model.repo(&full_name).ok_or_else(ApiError::not_found)?,
        ))
    })
}

/// A collaborator's permission. Modelled on GitHub's documented answers: 200 with
/// `permission` (admin, write, read, none; maintain counts as write and triage as read)
/// and `role_name`; 404 for a login that is not a GitHub account. An account the test
/// gave no permission has `read` on a public repository (anyone may read it) and `none`
/// on a private one.
async fn get_permission(
    State(shared): Stand,
    Path((owner, repo, login)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    shared.read(|model| {
        auth::require_installation(model, &headers, &full_name, READ_METADATA)?;
        let repo = model.repo(&full_name).ok_or_else(ApiError::not_found)?;
        let user = model.find_user(&login).ok_or_else(ApiError::not_found)?;
        let granted = model
            .permissions
            .get(&(repo_key(&full_name), login.to_lowercase()));
        let role = granted.map_or(if repo.private { "none" } else { "read" }, String::as_str);
        let permission = match role {
            "admin" => "admin",
            "maintain" | "write" => "write",
            "triage" | "read" => "read",
            _ => "none",
        };
        let rank = ["none", "read", "triage", "write", "maintain", "admin"]
            .iter()
            .position(|r| *r == role)
            .unwrap_or(0);
        let mut user_json = answers::user(model, user);
        user_json["permissions"] = json!({
            "pull": rank >= 1, "triage": rank >= 2, "push": rank >= 3,
            "maintain": rank >= 4, "admin": rank >= 5,
        });
        user_json["role_name"] = json!(role);
        ok(json!({ "permission": permission, "role_name": role, "user": user_json }))
    })
}

async fn get_pull(
    State(shared): Stand,
    Path((owner, repo, number)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    shared.read(|model| {
        auth::require_installation(model, &headers, &full_name, READ_PULLS)?;
        let base = model.repo(&full_name).ok_or_else(ApiError::not_found)?;
        let pull = model
            .pulls
            .get(&(repo_key(&full_name), number))
            .ok_or_else(ApiError::not_found)?;
        ok(answers::pull(model, base, number, pull))
    })
}

/// A branch by name; the name may hold slashes (`a/b`), as GitHub routes them.
async fn get_branch(
    State(shared): Stand,
    Path((owner, repo, branch)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    shared.read(|model| {
        auth::require_installation(model, &headers, &full_name, READ_CONTENTS)?;
        let repo = model.repo(&full_name).ok_or_else(ApiError::not_found)?;
        let sha = model
            .branch_sha(repo, &branch)
            .ok_or_else(|| ApiError::new(404, "Branch not found"))?;
        let api = format!("{}/repos/{full_name}", model.base_url);
        ok(json!({
            "name": branch,
            "commit": { "sha": sha, "url": format!("{api}/commits/{sha}") },
            "protected": false,
            "_links": {
                "self": format!("{api}/branches/{branch}"),
                "html": format!("{}/{full_name}/tree/{branch}", model.base_url),
            },
        }))
    })
}

#[derive(Deserialize)]
struct Page {
    per_page: Option<usize>,
    page: Option<usize>,
}

/// An issue's comments, oldest first, paginated as GitHub does (`per_page` ≤ 100, default
/// 30, with a `Link` header).
async fn list_comments(
    State(shared): Stand,
    Path((owner, repo, issue)): Path<(String, String, u64)>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    shared.read(|model| {
        auth::require_installation(model, &headers, &full_name, READ_ISSUES)?;
        let all: Vec<&Comment> = model
            .comments
            .iter()
            .filter(|c| repo_key(&c.repo) == repo_key(&full_name) && c.issue == issue)
            .collect();
        let per_page = page.per_page.unwrap_or(30).clamp(1, 100);
        let last = all.len().div_ceil(per_page).max(1);
        let number = page.page.unwrap_or(1).max(1);
        let items: Vec<Value> =
            all.iter().skip((number - 1) * per_page).take(per_page).map(|c| answers::comment(model, c)).collect();

        let mut response = Json(Value::Array(items)).into_response();
        if number < last {
            let url = format!("{}/repos/{full_name}/issues/{issue}/comments", model.base_url);
            let link = format!(
                "<{url}?per_page={per_page}&page={}>; rel=\"next\", <{url}?per_page={per_page}&page={last}>; rel=\"last\"",
                number + 1
            );
            response.headers_mut().insert(header::LINK, link.parse().expect("a valid header"));
        }
        Ok(response)
    })
}

async fn create_comment(
    State(shared): Stand,
    Path((owner, repo, issue)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    let text = required_string(&body_json(&body)?, "body")?;
    shared.update(|model| {
        auth::require_installation(model, &headers, &full_name, WRITE_ISSUES)?;
        let repo = model
            .repo(&full_name)
            .ok_or_else(ApiError::not_found)?
            .full_name
            .clone();
        let bot = model.app.bot_login();
        model.user(&bot, "Bot");
        let now = OffsetDateTime::now_utc();
        let comment = Comment {
            id: model.next_id(),
            repo,
            issue,
            author: bot,
            body: text,
            via_api: true,
            edits: 0,
            earlier: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        let answer = answers::comment(model, &comment);
        model.comments.push(comment);
        created(answer)
    })
}

async fn get_comment(
    State(shared): Stand,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    shared.read(|model| {
        auth::require_installation(model, &headers, &full_name, READ_ISSUES)?;
        let comment = comment_in(model, &full_name, id)?;
        ok(answers::comment(model, comment))
    })
}

async fn update_comment(
    State(shared): Stand,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    let text = required_string(&body_json(&body)?, "body")?;
    shared.update(|model| {
        auth::require_installation(model, &headers, &full_name, WRITE_ISSUES)?;
        comment_in(model, &full_name, id)?;
        let comment = model
            .comments
            .iter_mut()
            .find(|c| c.id == id)
            .expect("found above");
        comment
            .earlier
            .push(std::mem::replace(&mut comment.body, text));
        comment.edits += 1;
        comment.updated_at = OffsetDateTime::now_utc();
        let comment = comment.clone();
        ok(answers::comment(model, &comment))
    })
}

/// 201 for a new reaction, 200 with the existing one when the App already reacted so.
async fn create_reaction(
    State(shared): Stand,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    let content = required_string(&body_json(&body)?, "content")?;
    shared.update(|model| {
        auth::require_installation(model, &headers, &full_name, WRITE_ISSUES)?;
        comment_in(model, &full_name, id)?;
        if !REACTIONS.contains(&content.as_str()) {
            return Err(ApiError::invalid(format!(
                "content {content:?} is not a valid reaction"
            )));
        }
        let bot = model.app.bot_login();
        model.user(&bot, "Bot");
        let existing = model
            .reactions
            .iter()
            .find(|r| r.comment_id == id && r.user == bot && r.content == content);
        if let Some(existing) = existing {
            return ok(answers::reaction(model, existing));
        }
        let reaction = Reaction {
            id: model.next_id(),
            comment_id: id,
            content,
            user: bot,
        };
        let answer = answers::reaction(model, &reaction);
        model.reactions.push(reaction);
        created(answer)
    })
}

fn comment_in<'m>(model: &'m Model, full_name: &str, id: u64) -> Result<&'m Comment, ApiError> {
    model
        .comment(id)
        .filter(|c| repo_key(&c.repo) == repo_key(full_name))
        .ok_or_else(ApiError::not_found)
}

async fn create_check_run(
    State(shared): Stand,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    let request = body_json(&body)?;
    let name = required_string(&request, "name")?;
    let head_sha = required_string(&request, "head_sha")?;
    shared.update(|model| {
        auth::require_installation(model, &headers, &full_name, WRITE_CHECKS)?;
        let repo = model
            .repo(&full_name)
            .ok_or_else(ApiError::not_found)?
            .full_name
            .clone();
        let mut run = CheckRun {
            id: model.next_id(),
            repo,
            name,
            head_sha,
            status: "queued".to_owned(),
            conclusion: None,
            details_url: None,
            external_id: None,
            output: Value::Null,
            actions: Value::Null,
            updates: 0,
        };
        apply_check_run_fields(&mut run, &request)?;
        let answer = answers::check_run(model, &run);
        model.check_runs.push(run);
        created(answer)
    })
}

#[derive(Deserialize)]
struct CheckRunFilter {
    check_name: Option<String>,
}

/// The check runs on a commit (named by its sha; branch names are not resolved), newest
/// first as GitHub lists them, optionally only those named `check_name`. One page.
async fn list_check_runs(
    State(shared): Stand,
    Path((owner, repo, sha)): Path<(String, String, String)>,
    Query(filter): Query<CheckRunFilter>,
    headers: HeaderMap,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    shared.read(|model| {
        auth::require_installation(model, &headers, &full_name, READ_CHECKS)?;
        let runs: Vec<Value> = model
            .check_runs
            .iter()
            .rev()
            .filter(|r| repo_key(&r.repo) == repo_key(&full_name) && r.head_sha == sha)
            .filter(|r| {
                filter
                    .check_name
                    .as_ref()
                    .is_none_or(|name| &r.name == name)
            })
            .map(|r| answers::check_run(model, r))
            .collect();
        ok(json!({ "total_count": runs.len(), "check_runs": runs }))
    })
}

async fn update_check_run(
    State(shared): Stand,
    Path((owner, repo, id)): Path<(String, String, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let full_name = format!("{owner}/{repo}");
    let request = body_json(&body)?;
    shared.update(|model| {
        auth::require_installation(model, &headers, &full_name, WRITE_CHECKS)?;
        let run = model
            .check_runs
            .iter_mut()
            .find(|r| r.id == id && repo_key(&r.repo) == repo_key(&full_name))
            .ok_or_else(ApiError::not_found)?;
        if let Some(name) = request.get("name").and_then(Value::as_str) {
            run.name = name.to_owned();
        }
        apply_check_run_fields(run, &request)?;
        run.updates += 1;
        let run = run.clone();
        ok(answers::check_run(model, &run))
    })
}

/// The fields create and update share. A conclusion completes the run; a completed run
/// needs a conclusion, as GitHub insists.
fn apply_check_run_fields(run: &mut CheckRun, request: &Value) -> Result<(), ApiError> {
    let text = |field: &str| {
        request
            .get(field)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if let Some(status) = text("status") {
        run.status = status;
    }
    if let Some(conclusion) = text("conclusion") {
        run.conclusion = Some(conclusion);
        run.status = "completed".to_owned();
    }
    if run.status == "completed" && run.conclusion.is_none() {
        return Err(ApiError::invalid(
            "Invalid request.\n\n\"conclusion\" wasn't supplied.",
        ));
    }
    if let Some(url) = text("details_url") {
        run.details_url = Some(url);
    }
    if let Some(external_id) = text("external_id") {
        run.external_id = Some(external_id);
    }
    if let Some(output) = request.get("output") {
        run.output = output.clone();
    }
    if let Some(actions) = request.get("actions") {
        run.actions = actions.clone();
    }
    Ok(())
}

// --- shared bits -----------------------------------------------------------------------------

/// The request body as JSON; an empty body is an empty object.
pub(super) fn body_json(body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|_| ApiError::new(400, "Problems parsing JSON"))
}

fn required_string(request: &Value, field: &str) -> Result<String, ApiError> {
    request
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::invalid(format!("Invalid request.\n\n\"{field}\" wasn't supplied."))
        })
}

fn ok(body: Value) -> Answer {
    Ok(Json(body).into_response())
}

fn created(body: Value) -> Answer {
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
