//! Signing in with GitHub (the App's OAuth client), so that a link alone never gives anyone
//! a shell: whoever opens it must prove, through GitHub, who they are.

use std::time::Duration;

use anyhow::{Context, bail};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use rand::RngExt;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::link::{OAUTH_STATE_TTL, SIGN_IN_TTL};
use super::page::refused;
use crate::app::App;
use crate::server::AppState;

/// The cookie of a person signed in to sam.
pub const SIGNED_IN_COOKIE: &str = "sam_user";
const OAUTH_COOKIE: &str = "sam_oauth";
const CALLBACK_PATH: &str = "auth/github/callback";

/// The person a browser is signed in as, if any.
pub fn signed_in_login(state: &App, jar: &CookieJar) -> Option<String> {
    let cookie = jar.get(SIGNED_IN_COOKIE)?;
    state
        .signer
        .verify_signed_in(cookie.value())
        .ok()
        .map(|s| s.login)
}

/// Sends the browser to GitHub to sign in, remembering (in a signed cookie bound to the
/// `state` nonce) where to come back to.
pub fn start(state: &App, jar: CookieJar, return_to: &str) -> Response {
    let Some(app) = state.registered() else {
        return refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "sam has no GitHub App yet, so nobody can sign in; register one on sam's front page",
        );
    };
    let nonce = hex::encode(rand::rng().random::<[u8; 16]>());
    let cookie = cookie(
        state,
        OAUTH_COOKIE,
        state.signer.oauth_state(&nonce, return_to),
        OAUTH_STATE_TTL,
    );
    let mut authorize = match state.config.github_url.join("login/oauth/authorize") {
        Ok(url) => url,
        Err(_) => {
            return refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "GITHUB_URL cannot be joined",
            );
        }
    };
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &app.oauth.client_id)
        .append_pair("redirect_uri", &callback_url(state))
        .append_pair("state", &nonce)
        .append_pair("allow_signup", "false");
    (jar.add(cookie), Redirect::to(authorize.as_str())).into_response()
}

/// GitHub's redirect back after sign-in.
#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/github/callback`: checks the state, learns who signed in, and returns to the link.
pub async fn callback(
    State(state): State<AppState>,
    Query(query): Query<Callback>,
    jar: CookieJar,
) -> Response {
    let pending = jar
        .get(OAUTH_COOKIE)
        .and_then(|c| state.signer.verify_oauth_state(c.value()).ok());
    let Some(pending) = pending else {
        return refused(
            StatusCode::BAD_REQUEST,
            "this sign-in took too long or did not start here; open the link again",
        );
    };
    if query.state.as_deref() != Some(pending.nonce.as_str()) {
        return refused(
            StatusCode::BAD_REQUEST,
            "this sign-in did not start here; open the link again",
        );
    }
    if query.error.is_some() {
        return refused(
            StatusCode::FORBIDDEN,
            "signing in with GitHub was cancelled, so the terminal stays closed",
        );
    }
    let Some(code) = query.code else {
        return refused(
            StatusCode::BAD_REQUEST,
            "GitHub sent no sign-in code; open the link again",
        );
    };
    let login = match who_signed_in(&state, &code).await {
        Ok(login) => login,
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "sign-in with GitHub failed");
            return refused(
                StatusCode::BAD_GATEWAY,
                "sam could not confirm your sign-in with GitHub; try again",
            );
        }
    };
    tracing::info!(%login, "signed in with GitHub");
    // Only sam's own terminal paths and its status page are valid destinations: no open
    // redirect.
    let return_to = if pending.return_to.starts_with("/w/") || pending.return_to == "/status" {
        pending.return_to
    } else {
        "/".to_owned()
    };
    let signed_in = cookie(
        &state,
        SIGNED_IN_COOKIE,
        state.signer.signed_in(&login),
        SIGN_IN_TTL,
    );
    let jar = jar
        .remove(Cookie::build(OAUTH_COOKIE).path("/"))
        .add(signed_in);
    (jar, Redirect::to(&return_to)).into_response()
}

async fn who_signed_in(state: &App, code: &str) -> anyhow::Result<String> {
    #[derive(Deserialize)]
    struct Token {
        access_token: Option<String>,
        error: Option<String>,
    }
    #[derive(Deserialize)]
    struct User {
        login: String,
    }
    let app = state.registered().context("sam has no GitHub App")?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let token: Token = http
        .post(state.config.github_url.join("login/oauth/access_token")?)
        .header("accept", "application/json")
        .form(&[
            ("client_id", app.oauth.client_id.as_str()),
            ("client_secret", app.oauth.client_secret.expose_secret()),
            ("code", code),
            ("redirect_uri", &callback_url(state)),
        ])
        .send()
        .await
        .context("exchanging the sign-in code")?
        .json()
        .await
        .context("reading GitHub's token answer")?;
    let Some(access_token) = token.access_token else {
        bail!(
            "GitHub refused the sign-in code: {}",
            token.error.unwrap_or_default()
        );
    };
    let user: User = http
        .get(state.config.github_api_url.join("user")?)
        .bearer_auth(access_token)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "sam")
        .send()
        .await
        .context("asking GitHub who signed in")?
        .error_for_status()
        .context("asking GitHub who signed in")?
        .json()
        .await
        .context("reading GitHub's user answer")?;
    Ok(user.login)
}

fn callback_url(state: &App) -> String {
    state
        .config
        .public_url
        .join(CALLBACK_PATH)
        .map(String::from)
        .unwrap_or_default()
}

fn cookie(state: &App, name: &'static str, value: String, ttl: Duration) -> Cookie<'static> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        // Lax: the browser arrives here from github.com, and must carry these cookies back.
        .same_site(SameSite::Lax)
        .secure(state.config.public_url.scheme() == "https")
        .max_age(time::Duration::seconds(ttl.as_secs() as i64))
        .build()
}
