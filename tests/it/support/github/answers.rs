//! GitHub-shaped answers: each starts from GitHub's own example in the fixtures and
//! overwrites the fields the model knows, so fields sam does not read still look real.

use serde_json::{Value, json};

use super::model::{
    CheckRun, Comment, Installation, Model, PullRequest, Reaction, Repo, User, timestamp,
};
use crate::support::fixtures;

/// A user, organization or bot.
pub(super) fn user(model: &Model, user: &User) -> Value {
    let mut value = fixtures::rest("pulls.get.200")["user"].clone();
    rebase_urls(
        &mut value,
        "https://api.github.com/users/octocat",
        &format!("{}/users/{}", model.base_url, user.login),
    );
    rebase_urls(
        &mut value,
        "https://github.com/octocat",
        &format!("{}/{}", model.base_url, user.login),
    );
    merge(
        &mut value,
        json!({
            "login": user.login,
            "id": user.id,
            "node_id": format!("U_{}", user.id),
            "type": user.kind,
            "site_admin": false,
        }),
    );
    value
}

/// A repository, with `clone_url` under the clone base (`https://github.com/` unless a
/// test changed it) so that `GitServer`'s URL rewrite applies.
pub(super) fn repo(model: &Model, repo: &Repo) -> Value {
    let owner_login = repo.full_name.split('/').next().unwrap_or_default();
    let owner = model.find_user(owner_login).cloned().unwrap_or(User {
        id: 1,
        login: owner_login.to_owned(),
        kind: "User".to_owned(),
    });
    let name = repo.full_name.split('/').nth(1).unwrap_or_default();

    let mut value = fixtures::rest("pulls.get.200")["base"]["repo"].clone();
    let api = format!("{}/repos/{}", model.base_url, repo.full_name);
    let web = format!("{}/{}", model.base_url, repo.full_name);
    rebase_urls(
        &mut value,
        "https://api.github.com/repos/octocat/Hello-World",
        &api,
    );
    rebase_urls(&mut value, "https://github.com/octocat/Hello-World", &web);
    merge(
        &mut value,
        json!({
            "id": repo.id,
            "node_id": format!("R_{}", repo.id),
            "name": name,
            "full_name": repo.full_name,
            "owner": user(model, &owner),
            "private": repo.private,
            "visibility": if repo.private { "private" } else { "public" },
            "fork": false,
            "default_branch": repo.default_branch,
            "clone_url": format!("{}{}.git", model.clone_base, repo.full_name),
            "git_url": format!("git://github.com/{}.git", repo.full_name),
            "ssh_url": format!("git@github.com:{}.git", repo.full_name),
            "svn_url": web,
            "mirror_url": null,
        }),
    );
    value
}

pub(super) fn installation(model: &Model, installation: &Installation) -> Value {
    let mut value = fixtures::rest("apps.get-repo-installation.200");
    let account = model
        .find_user(&installation.account)
        .cloned()
        .expect("the account exists");
    merge(
        &mut value,
        json!({
            "id": installation.id,
            "account": user(model, &account),
            "repository_selection": "selected",
            "access_tokens_url": format!("{}/app/installations/{}/access_tokens", model.base_url, installation.id),
            "repositories_url": format!("{}/installation/repositories", model.base_url),
            "html_url": format!("{}/settings/installations/{}", model.base_url, installation.id),
            "app_id": model.app.id,
            "app_slug": model.app.slug,
            "client_id": model.app.client_id,
            "target_id": account.id,
            "target_type": account.kind,
            "permissions": installation.permissions,
            "events": model.app.events,
            "suspended_at": null,
            "suspended_by": null,
        }),
    );
    value
}

/// The App itself, as `GET /app` answers (no secrets).
pub(super) fn app(model: &Model) -> Value {
    let mut value = fixtures::rest("apps.create-from-manifest.201");
    let object = value.as_object_mut().expect("the fixture is an object");
    for secret in ["client_secret", "webhook_secret", "pem"] {
        object.remove(secret);
    }
    let owner = model.find_user(&model.app.owner).cloned().unwrap_or(User {
        id: 1,
        login: model.app.owner.clone(),
        kind: "Organization".to_owned(),
    });
    merge(
        &mut value,
        json!({
            "id": model.app.id,
            "slug": model.app.slug,
            "node_id": format!("A_{}", model.app.id),
            "name": model.app.name,
            "client_id": model.app.client_id,
            "owner": user(model, &owner),
            "html_url": format!("{}/apps/{}", model.base_url, model.app.slug),
            "permissions": model.app.permissions,
            "events": model.app.events,
            "installations_count": model.installations.len(),
        }),
    );
    value
}

pub(super) fn pull(model: &Model, base: &Repo, number: u64, pull: &PullRequest) -> Value {
    let spec = &pull.spec;
    let author = model
        .find_user(&spec.author)
        .cloned()
        .expect("the author exists");
    let head_repo = match (&spec.head_repo, spec.head_repo_deleted) {
        (_, true) => Value::Null,
        (None, false) => repo(model, base),
        (Some(fork), false) => repo(model, model.expect_repo(fork)),
    };
    let head_owner = head_repo["owner"].clone();
    let head_label_owner = head_owner["login"].as_str().unwrap_or("ghost").to_owned();
    let base_repo = repo(model, base);
    let base_sha = model
        .branch_sha(base, &spec.base_ref)
        .unwrap_or_else(|| "0".repeat(40));

    let mut value = fixtures::rest("pulls.get.200");
    let api = format!("{}/repos/{}", model.base_url, base.full_name);
    let web = format!("{}/{}", model.base_url, base.full_name);
    rebase_urls(
        &mut value,
        "https://api.github.com/repos/octocat/Hello-World",
        &api,
    );
    rebase_urls(&mut value, "https://github.com/octocat/Hello-World", &web);
    merge(
        &mut value,
        json!({
            "id": pull.id,
            "node_id": format!("PR_{}", pull.id),
            "number": number,
            "url": format!("{api}/pulls/{number}"),
            "html_url": format!("{web}/pull/{number}"),
            "issue_url": format!("{api}/issues/{number}"),
            "state": spec.state,
            "title": spec.title,
            "user": user(model, &author),
            "draft": spec.draft,
            "merged": false,
            "merged_at": null,
            "closed_at": null,
            "head": {
                "label": format!("{head_label_owner}:{}", spec.head_ref),
                "ref": spec.head_ref,
                "sha": spec.head_sha,
                "user": head_owner,
                "repo": head_repo,
            },
            "base": {
                "label": format!("{}:{}", base_repo["owner"]["login"].as_str().unwrap_or_default(), spec.base_ref),
                "ref": spec.base_ref,
                "sha": base_sha,
                "user": base_repo["owner"].clone(),
                "repo": base_repo,
            },
        }),
    );
    value
}

pub(super) fn comment(model: &Model, comment: &Comment) -> Value {
    let author = model
        .find_user(&comment.author)
        .cloned()
        .expect("the author exists");
    let api = format!("{}/repos/{}", model.base_url, comment.repo);
    let web = format!("{}/{}", model.base_url, comment.repo);
    let mut value = fixtures::rest("issues.create-comment.201");
    merge(
        &mut value,
        json!({
            "id": comment.id,
            "node_id": format!("IC_{}", comment.id),
            "url": format!("{api}/issues/comments/{}", comment.id),
            "html_url": format!("{web}/issues/{}#issuecomment-{}", comment.issue, comment.id),
            "issue_url": format!("{api}/issues/{}", comment.issue),
            "body": comment.body,
            "user": user(model, &author),
            "created_at": timestamp(comment.created_at),
            "updated_at": timestamp(comment.updated_at),
            "author_association": if author.kind == "Bot" { "NONE" } else { "CONTRIBUTOR" },
        }),
    );
    value
}

pub(super) fn reaction(model: &Model, reaction: &Reaction) -> Value {
    let author = model
        .find_user(&reaction.user)
        .cloned()
        .expect("the reacting user exists");
    json!({
        "id": reaction.id,
        "node_id": format!("REA_{}", reaction.id),
        "user": user(model, &author),
        "content": reaction.content,
        "created_at": timestamp(time::OffsetDateTime::now_utc()),
    })
}

pub(super) fn check_run(model: &Model, run: &CheckRun) -> Value {
    let api = format!("{}/repos/{}", model.base_url, run.repo);
    let mut value = fixtures::rest("checks.create.201.in-progress");
    merge(
        &mut value,
        json!({
            "id": run.id,
            "node_id": format!("CR_{}", run.id),
            "head_sha": run.head_sha,
            "name": run.name,
            "external_id": run.external_id,
            "url": format!("{api}/check-runs/{}", run.id),
            "html_url": format!("{}/{}/runs/{}", model.base_url, run.repo, run.id),
            "details_url": run.details_url,
            "status": run.status,
            "conclusion": run.conclusion,
            "app": app(model),
            "pull_requests": [],
        }),
    );
    if !run.output.is_null() {
        merge(&mut value, json!({ "output": run.output }));
    }
    value
}

/// Overwrites `target`'s fields with `fields`' (objects are merged key by key).
fn merge(target: &mut Value, fields: Value) {
    match (target, fields) {
        (Value::Object(target), Value::Object(fields)) => {
            for (key, value) in fields {
                match target.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge(existing, value)
                    }
                    _ => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (target, fields) => *target = fields,
    }
}

/// Replaces the prefix `from` by `to` in every string of `value`, so that the example's
/// URL templates point at the stand-in.
fn rebase_urls(value: &mut Value, from: &str, to: &str) {
    match value {
        Value::String(s) => {
            if let Some(rest) = s.strip_prefix(from) {
                *s = format!("{to}{rest}");
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rebase_urls(v, from, to)),
        Value::Object(fields) => fields.values_mut().for_each(|v| rebase_urls(v, from, to)),
        _ => {}
    }
}
