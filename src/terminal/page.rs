//! The terminal page: link exchange, the page itself, and its WebSocket endpoint.

use askama::Template;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::Deserialize;
use uuid::Uuid;

use super::link::{Grant, LinkError, SESSION_TTL};
use super::{relay, signin};
use crate::server::{AppState, pages};
use crate::workspaces::State as WorkspaceState;

const SESSION_COOKIE: &str = "sam_session";

/// Sent with every page: nothing but sam's own scripts, styles and socket.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self' data:; font-src 'self'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

#[derive(Template)]
#[template(path = "terminal.html")]
struct TerminalPage<'a> {
    repo: &'a str,
    branch: &'a str,
    state: &'a str,
    workspace_id: String,
    ws_path: String,
    /// Where the page asks for the workspace's state: see [`workspace_state`].
    state_path: String,
    asset_base: &'a str,
    /// The agent refuses more sessions than this, so the page offers no more tabs.
    max_tabs: usize,
}

/// The query of a link: `?t=<signed token>`.
#[derive(Deserialize)]
pub struct LinkQuery {
    t: Option<String>,
}

/// `GET /w/{id}`: with `?t=`, trades the link for a session cookie and a clean URL;
/// without, shows the terminal to a browser holding a session for this workspace.
pub async fn open(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<LinkQuery>,
    jar: CookieJar,
) -> Response {
    // Read here rather than by the extractor, so that a link cut short gets sam's page.
    let Ok(id) = Uuid::parse_str(&id) else {
        return refused(
            StatusCode::NOT_FOUND,
            "this address names no workspace; if it came from a link, copy the whole link",
        );
    };
    if let Some(token) = query.t {
        let grant = match state.signer.verify_link(&token, id) {
            Ok(grant) => grant,
            Err(error) => return refused(StatusCode::FORBIDDEN, &error.to_string()),
        };
        let Some(viewer) = signin::signed_in_login(&state, &jar) else {
            let return_to = format!("/w/{id}?t={}", urlencoding::encode(&token));
            return signin::start(&state, jar, &return_to);
        };
        return match may_use(&state, id, &grant, &viewer).await {
            Ok(()) => exchange_link(&state, id, &viewer, jar),
            Err(response) => *response,
        };
    }

    let grant = match session(&state, &jar, id) {
        Ok(grant) => grant,
        Err(response) => return *response,
    };
    let workspace = match state.workspaces.get(id).await {
        Ok(Some(workspace)) => workspace,
        Ok(None) => return refused(StatusCode::NOT_FOUND, "this workspace does not exist"),
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "reading a workspace for its page"
            );
            return refused(
                StatusCode::SERVICE_UNAVAILABLE,
                "sam cannot reach its database; try again shortly",
            );
        }
    };
    tracing::debug!(workspace = %id, login = %grant.login, "terminal page opened");
    let page = TerminalPage {
        repo: &workspace.repo_full_name,
        branch: &workspace.branch,
        state: workspace.state.as_str(),
        workspace_id: id.to_string(),
        ws_path: format!("/w/{id}/ws"),
        state_path: format!("/w/{id}/state"),
        asset_base: "/assets",
        max_tabs: sam_protocol::MAX_SESSIONS_PER_WORKSPACE,
    };
    html(StatusCode::OK, page.render())
}

/// The person the link was made for may use it, and so may anyone with write access to the
/// repository; nobody else, whoever passed the link on.
async fn may_use(
    state: &AppState,
    id: Uuid,
    grant: &Grant,
    viewer: &str,
) -> Result<(), Box<Response>> {
    if viewer.eq_ignore_ascii_case(&grant.login) {
        return Ok(());
    }
    let unavailable = || {
        Box::new(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "sam cannot check your access right now; try again shortly",
        ))
    };
    let workspace = match state.workspaces.get(id).await {
        Ok(Some(workspace)) => workspace,
        Ok(None) => {
            return Err(Box::new(refused(
                StatusCode::NOT_FOUND,
                "this workspace does not exist",
            )));
        }
        Err(_) => return Err(unavailable()),
    };
    let permission = async {
        state
            .github
            .repo(workspace.installation_id as u64, &workspace.repo_full_name)?
            .permission(viewer)
            .await
    };
    match permission.await {
        Ok(permission) if permission.may_open_workspaces() => Ok(()),
        Ok(_) => {
            tracing::info!(workspace = %id, %viewer, owner = %grant.login, "link refused to another person");
            Err(Box::new(refused(
                StatusCode::FORBIDDEN,
                "this workspace was opened for someone else, and you do not have write access to the repository",
            )))
        }
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "checking a viewer's permission"
            );
            Err(unavailable())
        }
    }
}

fn exchange_link(state: &AppState, id: Uuid, viewer: &str, jar: CookieJar) -> Response {
    let cookie = Cookie::build((SESSION_COOKIE, state.signer.session(id, viewer)))
        .path(format!("/w/{id}"))
        .http_only(true)
        // Lax, not Strict: the link is followed from github.com, and the redirect below must
        // carry the cookie; cross-site sub-requests and sockets still never do.
        .same_site(SameSite::Lax)
        .secure(state.config.public_url.scheme() == "https")
        .max_age(time::Duration::seconds(SESSION_TTL.as_secs() as i64))
        .build();
    let mut response = (jar.add(cookie), Redirect::to(&format!("/w/{id}"))).into_response();
    no_store(response.headers_mut());
    response
}

fn session(state: &AppState, jar: &CookieJar, id: Uuid) -> Result<Grant, Box<Response>> {
    let Some(cookie) = jar.get(SESSION_COOKIE) else {
        return Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            "open this workspace from the link sam posted on GitHub",
        )));
    };
    state
        .signer
        .verify_session(cookie.value(), id)
        .map_err(|error| {
            let reason = match error {
                LinkError::Expired => {
                    "your session for this workspace has expired; open the link from GitHub again"
                }
                _ => "open this workspace from the link sam posted on GitHub",
            };
            Box::new(refused(StatusCode::UNAUTHORIZED, reason))
        })
}

/// The query of the terminal socket: which of the workspace's sessions (tabs) to attach to.
#[derive(Deserialize)]
pub struct SocketQuery {
    session: Option<String>,
}

/// `GET /w/{id}/ws`: the browser's socket, relayed to the workspace's agent.
pub async fn socket(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(query): Query<SocketQuery>,
    headers: HeaderMap,
    jar: CookieJar,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Browsers always send Origin on WebSocket handshakes; a page elsewhere must not be able
    // to drive a terminal with the cookie of someone who visits it.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(state.config.public_origin().as_str()) {
        return (
            StatusCode::FORBIDDEN,
            "cross-origin terminal connections are refused",
        )
            .into_response();
    }
    if let Err(response) = session(&state, &jar, id) {
        return *response;
    }
    let name = query.session.unwrap_or_else(|| "main".to_owned());
    if !is_session_name(&name) {
        return (
            StatusCode::BAD_REQUEST,
            "session names are 1 to 64 letters, digits, - or _",
        )
            .into_response();
    }
    match state.workspaces.get(id).await {
        Ok(Some(workspace)) if workspace.state == WorkspaceState::Ready => {}
        Ok(Some(workspace)) => {
            return (
                StatusCode::CONFLICT,
                format!("the workspace is {}", workspace.state),
            )
                .into_response();
        }
        Ok(None) => return (StatusCode::NOT_FOUND, "no such workspace").into_response(),
        Err(_) => return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response(),
    }
    let agent = match state.workspaces.provider().agent_for(id).await {
        Ok(agent) => agent,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "no agent for a terminal");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the workspace host is unavailable",
            )
                .into_response();
        }
    };
    let activity = state.workspaces.activity().clone();
    upgrade
        .max_message_size(sam_protocol::frame::MAX_MESSAGE)
        .on_upgrade(move |browser| relay::run(browser, agent, activity, id, name))
}

/// `GET /w/{id}/state`: `{"state":"ready"}` and the like, for the page to the same people.
/// A socket refused before its upgrade (409 for a stopped workspace) shows the browser
/// nothing but a failure, so the page asks here whether retrying can help.
pub async fn workspace_state(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    jar: CookieJar,
) -> Response {
    if let Err(response) = session(&state, &jar, id) {
        return *response;
    }
    let (status, body) = match state.workspaces.get(id).await {
        Ok(Some(workspace)) => (
            StatusCode::OK,
            serde_json::json!({ "state": workspace.state.as_str() }),
        ),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            serde_json::json!({ "state": "missing" }),
        ),
        Err(error) => {
            tracing::error!(
                error = format!("{error:#}"),
                "reading a workspace for its state"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "error": "database unavailable" }),
            )
        }
    };
    let mut response = (status, axum::Json(body)).into_response();
    no_store(response.headers_mut());
    response
}

fn is_session_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A page that says, in plain words, why the terminal stays closed.
pub fn refused(status: StatusCode, reason: &str) -> Response {
    html(status, pages::refused(reason))
}

fn html(status: StatusCode, rendered: askama::Result<String>) -> Response {
    pages::html(status, rendered, CONTENT_SECURITY_POLICY, CookieJar::new())
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}
