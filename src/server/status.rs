//! `GET /status`: what sam is configured with, where the App is installed from, and the
//! workspaces running now, for the App's owner and the logins in `SAM_OPERATORS` only.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::CookieJar;

use super::AppState;
use crate::app::App;
use crate::database::hosts;
use crate::setup;
use crate::terminal::signin;

#[derive(Template)]
#[template(path = "status.html")]
struct StatusPage<'a> {
    viewer: &'a str,
    settings: Vec<(&'static str, String)>,
    install_url: String,
    workspaces: Vec<Running>,
    workspaces_error: bool,
}

struct Running {
    repo: String,
    number: i64,
    branch: String,
    requester: String,
    state: String,
    host: String,
    since: String,
}

/// The page; sends people who are not signed in to sign in with GitHub first.
pub async fn page(State(state): State<AppState>, jar: CookieJar) -> Response {
    let Some(app) = state.registered() else {
        return refusal(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "sam has no GitHub App yet, so nobody can sign in to see its status; register one on sam's front page",
        );
    };
    let Some(viewer) = signin::signed_in_login(&state, &jar) else {
        return signin::start(&state, jar, "/status");
    };
    let owner = match may_see(&state, &viewer).await {
        Ok(Some(owner)) => owner,
        Ok(None) => {
            tracing::info!(%viewer, "status page refused");
            return refusal(
                &state,
                StatusCode::FORBIDDEN,
                &format!(
                    "you are signed in as {viewer}; only the App's owner and the logins in SAM_OPERATORS may see sam's status"
                ),
            );
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "cannot learn the App's owner");
            // GitHub refusing the App itself will not pass with time.
            let reason = match crate::github::answer_status(&error) {
                Some(401 | 404) => format!(
                    "GitHub does not know the App sam signs in as (id {}): check GITHUB_APP_ID and the App's private key, or list your login in SAM_OPERATORS to see this page meanwhile",
                    app.id
                ),
                _ => {
                    "sam cannot ask GitHub who owns the App right now; try again shortly".to_owned()
                }
            };
            return refusal(&state, StatusCode::BAD_GATEWAY, &reason);
        }
    };

    let config = &state.config;
    let yes_no = |set: bool| if set { "set" } else { "not set" }.to_owned();
    let settings = vec![
        ("Public URL", config.public_url.to_string()),
        ("GitHub", config.github_url.to_string()),
        ("GitHub API", config.github_api_url.to_string()),
        ("App", format!("{} (id {})", app.slug, app.id)),
        ("App owner", owner),
        ("OAuth client", app.oauth.client_id.clone()),
        ("Webhook secret", yes_no(true)),
        (
            "Previous webhook secret (rotation under way)",
            yes_no(app.previous_webhook_secret.is_some()),
        ),
        ("Operators", config.operators.join(", ")),
        (
            "Idle timeout",
            config.idle_timeout.map_or("off".to_owned(), |t| {
                humantime::format_duration(t).to_string()
            }),
        ),
        ("Data directory", config.data_dir.display().to_string()),
        ("Workspaces run on", config.provider.describe()),
    ];
    let (workspaces, workspaces_error) = match running(&state).await {
        Ok(running) => (running, false),
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot list workspaces for /status"
            );
            (Vec::new(), true)
        }
    };
    let page = StatusPage {
        viewer: &viewer,
        settings,
        install_url: setup::install_url(config, &app.slug),
        workspaces,
        workspaces_error,
    };
    setup::html(config, StatusCode::OK, page.render(), jar)
}

/// The workspaces running now, each with the host it runs on.
async fn running(state: &App) -> anyhow::Result<Vec<Running>> {
    let ready = state.workspaces.ready().await?;
    let host_ids: Vec<_> = ready.iter().filter_map(|w| w.host_id).collect();
    let hosts: HashMap<_, _> = hosts::get_many(&state.db, &host_ids)
        .await?
        .into_iter()
        .map(|host| (host.id, host))
        .collect();
    let mut running = Vec::new();
    for w in ready {
        let host = match w.host_id {
            // The local provider keeps no hosts: its one agent runs beside sam.
            None => "this machine (local agent)".to_owned(),
            Some(id) => match hosts.get(&id) {
                Some(host) => format!(
                    "{} ({}, {})",
                    host.server_name,
                    host.size,
                    host.address.as_deref().unwrap_or("no address yet")
                ),
                None => format!("host {id} (gone)"),
            },
        };
        running.push(Running {
            repo: w.repo_full_name,
            number: w.issue_number,
            branch: w.branch,
            requester: w.requester_login,
            state: w.state.to_string(),
            host,
            since: w
                .updated_at
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        });
    }
    Ok(running)
}

/// The App's owner when `viewer` may see the page: the owner or an operator.
async fn may_see(state: &App, viewer: &str) -> anyhow::Result<Option<String>> {
    let is_operator = state
        .config
        .operators
        .iter()
        .any(|o| o.eq_ignore_ascii_case(viewer));
    let owner = match state.app_owner().await {
        Ok(owner) => owner,
        // Operators need not wait on GitHub to see the page.
        Err(_) if is_operator => "unknown: GitHub did not say".to_owned(),
        Err(error) => return Err(error),
    };
    Ok((is_operator || owner.eq_ignore_ascii_case(viewer)).then_some(owner))
}

fn refusal(state: &App, status: StatusCode, reason: &str) -> Response {
    setup::refusal(&state.config, status, reason)
}
