//! First run: with no GitHub App configured, sam still serves, and its front page explains
//! what is missing and registers an App through GitHub's manifest flow. GitHub hands the
//! new App's id, key and secrets back once; sam stores them ([`store`]) and runs as the App
//! at once, without a restart.
//!
//! Only someone who can read sam's data directory gets the form: it asks for a setup code
//! that sam writes there at start, so that a stranger who finds a fresh sam cannot make it
//! theirs. The `state` of the round trip is bound to the browser that started it by a signed
//! cookie, so a code GitHub hands another browser is refused.

pub mod store;

use std::time::Duration;

use anyhow::Context;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use rand::RngExt;
use serde::Deserialize;
use serde_json::Value;
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::config::{AppCredentials, Config};
use crate::server::{AppState, pages};

/// Where GitHub sends the browser back with the registration's code.
pub const DONE_PATH: &str = "setup/github/done";
/// The file, in the data directory, holding the link to the registration form.
pub const LINK_FILE: &str = "setup-link";
const STATE_COOKIE: &str = "sam_setup";
/// What the signed state cookie says it is for, so no other signed state passes for it.
const STATE_PURPOSE: &str = "register-app";
/// GitHub limits App names to 34 characters.
const MAX_NAME: usize = 34;
/// The App's settings as kept in the repository: permissions, events, description.
const MANIFEST: &str = include_str!("../../app-manifest.json");

/// A fresh setup code.
pub fn new_token() -> String {
    hex::encode(rand::rng().random::<[u8; 16]>())
}

/// The App sam runs as: the one its settings name, else the one a registration stored.
pub fn app_to_run_as(config: &Config) -> anyhow::Result<Option<AppCredentials>> {
    match &config.app {
        Some(app) => Ok(Some(app.clone())),
        None => stored_app(config),
    }
}

/// The App a registration stored in the data directory, when the configuration names none.
pub fn stored_app(config: &Config) -> anyhow::Result<Option<AppCredentials>> {
    let Some(registration) = store::load(&config.data_dir)? else {
        return Ok(None);
    };
    let path = store::path(&config.data_dir);
    let app = registration
        .credentials()
        .with_context(|| format!("the App stored in {}", path.display()))?;
    Ok(Some(app))
}

/// Removes a setup link an earlier start left behind, now that sam has an App: its code
/// is void, and a file that looks like a way in only misleads.
pub fn forget_link(config: &Config) {
    let path = config.data_dir.join(LINK_FILE);
    match std::fs::remove_file(&path) {
        Ok(()) => {
            tracing::info!(link_file = %path.display(), "removed the setup link: sam has an App")
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => {
            tracing::warn!(%error, link_file = %path.display(), "cannot remove the stale setup link")
        }
    }
}

/// True when `url` names this machine only (`localhost`, 127.0.0.0/8, `::1`), where
/// GitHub's webhooks cannot reach sam.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name.to_ascii_lowercase().ends_with(".localhost")
        }
        // 0.0.0.0 is no address to reach anything at, least of all from GitHub.
        Some(url::Host::Ipv4(ip)) => ip.is_loopback() || ip.is_unspecified(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback() || ip.is_unspecified(),
        None => false,
    }
}

/// Writes the link to the registration form (setup code included) where only sam's user
/// can read it, and says in the log where it is. The code itself never reaches the log.
pub fn announce(app: &App) -> anyhow::Result<()> {
    let path = app.config.data_dir.join(LINK_FILE);
    let mut link = app.config.public_url.clone();
    link.query_pairs_mut()
        .append_pair("setup", &app.setup_token);
    crate::private_files::replace(&path, format!("{link}\n").as_bytes())?;
    tracing::warn!(
        link_file = %path.display(),
        "no GitHub App is configured: open the link in the link file to register one, or set the GITHUB_* settings"
    );
    Ok(())
}

/// The manifest of the App to register: `app-manifest.json`, with every URL pointing at
/// this sam.
pub fn manifest(config: &Config, name: &str) -> Value {
    let mut manifest: Value =
        serde_json::from_str(MANIFEST).expect("app-manifest.json is JSON (a unit test checks)");
    let url = |path: &str| {
        config
            .public_url
            .join(path)
            .map(String::from)
            .unwrap_or_default()
    };
    manifest["name"] = name.into();
    manifest["url"] = url("").into();
    manifest["hook_attributes"]["url"] = url("api/github/webhook").into();
    manifest["callback_urls"] = vec![url("auth/github/callback")].into();
    manifest["redirect_url"] = url(DONE_PATH).into();
    // After someone installs the App, GitHub sends them to sam's front page.
    manifest["setup_url"] = url("").into();
    manifest
}

/// The front page's query: the setup code, and the App's name and owning organization.
#[derive(Deserialize)]
pub struct FrontQuery {
    setup: Option<String>,
    name: Option<String>,
    org: Option<String>,
}

#[derive(Template)]
#[template(path = "front.html")]
struct FrontPage<'a> {
    /// Set when sam runs as an App.
    app_slug: Option<&'a str>,
    install_url: String,
    /// Set when the setup code was given: the form to post to GitHub.
    form: Option<RegisterForm>,
    setup_code: &'a str,
    link_file: String,
    /// Set when a setup code was given and it is not this sam's.
    wrong_code: bool,
    /// Set when `SAM_PUBLIC_URL` is a loopback address, which GitHub cannot reach.
    unreachable_url: Option<String>,
}

struct RegisterForm {
    action: String,
    manifest: String,
    name: String,
    org: String,
}

/// `GET /`: what sam is running as, or what is missing and the way to register an App.
pub async fn front(
    State(state): State<AppState>,
    Query(query): Query<FrontQuery>,
    jar: CookieJar,
) -> Response {
    // Named relative to the data directory: where sam's files lie on its machine is no
    // business of whoever comes by.
    let link_file = format!("SAM_DATA_DIR/{LINK_FILE}");
    if let Some(app) = state.registered() {
        let page = FrontPage {
            app_slug: Some(&app.slug),
            install_url: install_url(&state.config, &app.slug),
            form: None,
            setup_code: "",
            link_file,
            wrong_code: false,
            unreachable_url: None,
        };
        return html(&state.config, StatusCode::OK, page.render(), jar);
    }
    let code_given = query.setup.as_deref().unwrap_or_default();
    let code_ok = bool::from(code_given.as_bytes().ct_eq(state.setup_token.as_bytes()));
    if !code_ok {
        let page = FrontPage {
            app_slug: None,
            install_url: String::new(),
            form: None,
            setup_code: "",
            link_file,
            wrong_code: !code_given.is_empty(),
            unreachable_url: None,
        };
        let status = if page.wrong_code {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::OK
        };
        return html(&state.config, status, page.render(), jar);
    }

    let name = query
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("sam");
    let org = query.org.as_deref().map(str::trim).unwrap_or_default();
    if name.chars().count() > MAX_NAME {
        return refusal(
            &state.config,
            StatusCode::BAD_REQUEST,
            "GitHub App names are at most 34 characters long; go back and choose a shorter one",
        );
    }
    if !org.is_empty() && !crate::config::is_login(org) {
        return refusal(
            &state.config,
            StatusCode::BAD_REQUEST,
            "the organization must be a GitHub login (letters, digits and dashes); go back and correct it",
        );
    }
    let nonce = new_token();
    let path = if org.is_empty() {
        "settings/apps/new".to_owned()
    } else {
        format!("organizations/{org}/settings/apps/new")
    };
    let Ok(mut action) = state.config.github_url.join(&path) else {
        return refusal(
            &state.config,
            StatusCode::INTERNAL_SERVER_ERROR,
            "GITHUB_URL cannot be joined",
        );
    };
    action.query_pairs_mut().append_pair("state", &nonce);
    let form = RegisterForm {
        action: action.into(),
        manifest: manifest(&state.config, name).to_string(),
        name: name.to_owned(),
        org: org.to_owned(),
    };
    let cookie = Cookie::build((
        STATE_COOKIE,
        state.signer.oauth_state(&nonce, STATE_PURPOSE),
    ))
    .path("/")
    .http_only(true)
    // Lax: the browser comes back from GitHub with a top-level GET, which carries it.
    .same_site(SameSite::Lax)
    .secure(state.config.public_url.scheme() == "https")
    .max_age(time::Duration::minutes(10))
    .build();
    let page = FrontPage {
        app_slug: None,
        install_url: String::new(),
        form: Some(form),
        setup_code: &state.setup_token,
        link_file,
        wrong_code: false,
        unreachable_url: is_loopback(&state.config.public_url)
            .then(|| state.config.public_url.to_string()),
    };
    html(
        &state.config,
        StatusCode::OK,
        page.render(),
        jar.add(cookie),
    )
}

/// GitHub's redirect back after registering the App.
#[derive(Deserialize)]
pub struct Done {
    code: Option<String>,
    state: Option<String>,
}

#[derive(Template)]
#[template(path = "registered.html")]
struct RegisteredPage<'a> {
    slug: &'a str,
    owner: &'a str,
    install_url: String,
}

/// `GET /setup/github/done`: checks the state, trades the code for the App's credentials,
/// stores them and runs as the App.
pub async fn done(
    State(state): State<AppState>,
    Query(query): Query<Done>,
    jar: CookieJar,
) -> Response {
    if let Some(app) = state.registered() {
        return refusal(
            &state.config,
            StatusCode::CONFLICT,
            &format!(
                "sam already runs as the GitHub App {}; to replace it, stop sam, remove its settings, and start again",
                app.slug
            ),
        );
    }
    let pending = jar
        .get(STATE_COOKIE)
        .and_then(|c| state.signer.verify_oauth_state(c.value()).ok())
        .filter(|pending| pending.return_to == STATE_PURPOSE);
    let Some(pending) = pending else {
        return refusal(
            &state.config,
            StatusCode::BAD_REQUEST,
            "this registration did not start in this browser, or took longer than 10 minutes; open the setup link again",
        );
    };
    if query.state.as_deref() != Some(pending.nonce.as_str()) {
        return refusal(
            &state.config,
            StatusCode::BAD_REQUEST,
            "this registration did not start here; open the setup link again",
        );
    }
    let Some(code) = query.code.filter(|c| !c.is_empty() && c.len() <= 100) else {
        return refusal(
            &state.config,
            StatusCode::BAD_REQUEST,
            "GitHub sent no registration code; open the setup link again",
        );
    };
    let registration = match convert(&state.config, &code).await {
        Ok(registration) => registration,
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                "registering the GitHub App failed"
            );
            return refusal(
                &state.config,
                StatusCode::BAD_GATEWAY,
                "GitHub did not hand over the new App's credentials (sam's log says why). GitHub has \
                 made the App already: reload this page to try again within the hour instead of \
                 registering a second one, or copy the App's settings from its page on GitHub \
                 into sam's settings",
            );
        }
    };
    let stored = async {
        let app = registration.credentials()?;
        store::save(&state.config.data_dir, &registration)?;
        state.register(app)
    };
    if let Err(error) = stored.await {
        tracing::error!(
            error = format!("{error:#}"),
            "cannot keep the new GitHub App"
        );
        return refusal(
            &state.config,
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!(
                "GitHub registered the App {}, but sam cannot keep its credentials: {error:#}. Delete the App on GitHub and try again once this is fixed",
                registration.slug
            ),
        );
    }
    forget_link(&state.config);
    let page = RegisteredPage {
        slug: &registration.slug,
        owner: registration.owner.as_deref().unwrap_or("you"),
        install_url: install_url(&state.config, &registration.slug),
    };
    let jar = jar.remove(Cookie::build(STATE_COOKIE).path("/"));
    html(&state.config, StatusCode::OK, page.render(), jar)
}

/// `POST /app-manifests/{code}/conversions`: the new App, with its key and secrets.
async fn convert(config: &Config, code: &str) -> anyhow::Result<store::Registration> {
    #[derive(Deserialize)]
    struct Owner {
        login: String,
    }
    #[derive(Deserialize)]
    struct Answer {
        id: u64,
        slug: String,
        owner: Option<Owner>,
        pem: String,
        webhook_secret: Option<String>,
        client_id: String,
        client_secret: String,
    }
    let url = config.github_api_url.join(&format!(
        "app-manifests/{}/conversions",
        urlencoding::encode(code)
    ))?;
    let answer: Answer = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(url)
        .header("accept", "application/vnd.github+json")
        .header("user-agent", "sam")
        .send()
        .await
        .context("asking GitHub for the new App")?
        .error_for_status()
        .context("asking GitHub for the new App")?
        .json()
        .await
        .context("reading GitHub's answer")?;
    let webhook_secret = answer
        .webhook_secret
        .filter(|s| !s.is_empty())
        .context("GitHub gave the App no webhook secret")?;
    Ok(store::Registration {
        id: answer.id,
        slug: answer.slug,
        owner: answer.owner.map(|o| o.login),
        pem: answer.pem,
        webhook_secret,
        client_id: answer.client_id,
        client_secret: answer.client_secret,
    })
}

/// Where people install the App on their repositories.
pub fn install_url(config: &Config, slug: &str) -> String {
    config
        .github_url
        .join(&format!(
            "apps/{}/installations/new",
            urlencoding::encode(slug)
        ))
        .map(String::from)
        .unwrap_or_default()
}

/// A page of sam's own saying why it cannot do what was asked.
pub(crate) fn refusal(config: &Config, status: StatusCode, reason: &str) -> Response {
    html(config, status, pages::refused(reason), CookieJar::new())
}

/// A page of sam's own: no script anywhere, and forms may go to sam or to GitHub only.
pub fn html(
    config: &Config,
    status: StatusCode,
    rendered: askama::Result<String>,
    jar: CookieJar,
) -> Response {
    let policy = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {}; frame-ancestors 'none'; base-uri 'none'",
        config.github_url.origin().ascii_serialization()
    );
    pages::html(status, rendered, &policy, jar)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Source;

    fn config() -> Config {
        Config::from_source(&Source::from_pairs([
            ("DATABASE_URL", "postgres://db/sam"),
            ("SAM_PUBLIC_URL", "https://sam.example.org"),
        ]))
        .unwrap()
    }

    #[test]
    fn the_manifest_points_at_this_sam_and_keeps_the_permissions() {
        let manifest = manifest(&config(), "our sam");
        let file: Value = serde_json::from_str(MANIFEST).unwrap();
        assert_eq!(manifest["name"], "our sam");
        assert_eq!(manifest["url"], "https://sam.example.org/");
        assert_eq!(
            manifest["hook_attributes"]["url"],
            "https://sam.example.org/api/github/webhook"
        );
        assert_eq!(
            manifest["callback_urls"][0],
            "https://sam.example.org/auth/github/callback"
        );
        assert_eq!(
            manifest["redirect_url"],
            "https://sam.example.org/setup/github/done"
        );
        assert_eq!(manifest["default_permissions"], file["default_permissions"]);
        assert_eq!(manifest["default_events"], file["default_events"]);
    }

    #[test]
    fn loopback_addresses_are_recognised() {
        for url in [
            "http://127.0.0.1:3000/",
            "http://localhost:3000/",
            "http://[::1]:3000/",
            "http://127.1.2.3/",
            "http://0.0.0.0:3000/",
        ] {
            assert!(is_loopback(&url.parse().unwrap()), "{url}");
        }
        for url in ["https://sam.example.org/", "http://10.0.0.5:3000/"] {
            assert!(!is_loopback(&url.parse().unwrap()), "{url}");
        }
    }
}
