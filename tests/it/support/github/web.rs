//! The browser side of GitHub (`GITHUB_URL`): OAuth sign-in and App registration from a
//! manifest, plus the two API calls that complete them (`GET /user`, the manifest
//! conversion).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::Shared;
use super::answers;
use super::auth;
use super::errors::ApiError;
use super::keys::AppKey;
use super::model::{App, ManifestCode, OAuthCode, random_hex};

/// How long an OAuth code stays valid, as on GitHub.
const OAUTH_CODE_LIFETIME: time::Duration = time::Duration::minutes(10);

type Stand = State<Arc<Shared>>;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(access_token))
        .route("/user", get(get_user))
        .route("/settings/apps/new", post(register_app))
        .route(
            "/organizations/{org}/settings/apps/new",
            post(register_org_app),
        )
        .route("/app-manifests/{code}/conversions", post(convert_manifest))
}

#[derive(Deserialize)]
struct Authorize {
    client_id: String,
    redirect_uri: Option<String>,
    state: Option<String>,
}

/// Signs the stand-in's current browser user in at once (no consent page) and redirects
/// back with a code, or answers with a plain-text page saying what is wrong.
async fn authorize(State(shared): Stand, Query(query): Query<Authorize>) -> Response {
    shared.update(|model| {
        if query.client_id != model.app.client_id {
            return page(StatusCode::NOT_FOUND, "unknown client_id");
        }
        let Some(login) = model.signed_in.clone() else {
            return page(
                StatusCode::UNAUTHORIZED,
                "no one is signed in to the GitHub stand-in: call sign_in_as",
            );
        };
        let Some(redirect) = query
            .redirect_uri
            .clone()
            .or_else(|| model.app.callback_urls.first().cloned())
        else {
            return page(
                StatusCode::BAD_REQUEST,
                "no redirect_uri and no callback URL registered",
            );
        };
        let allowed = model.app.callback_urls.is_empty()
            || model
                .app
                .callback_urls
                .iter()
                .any(|c| redirect.starts_with(c.as_str()));
        if !allowed {
            return page(
                StatusCode::BAD_REQUEST,
                "redirect_uri is not associated with this application",
            );
        }

        let code = random_hex(20);
        let expires_at = OffsetDateTime::now_utc() + OAUTH_CODE_LIFETIME;
        let client_id = query.client_id.clone();
        let redirect_uri = query.redirect_uri.clone();
        model.oauth_codes.insert(
            code.clone(),
            OAuthCode {
                login,
                client_id,
                redirect_uri,
                expires_at,
            },
        );
        let mut pairs = vec![("code", code.as_str())];
        if let Some(state) = &query.state {
            pairs.push(("state", state));
        }
        redirect_with(&redirect, &pairs)
    })
}

/// Exchanges a code for a `gho_` token. Like GitHub, it answers 200 even for errors, with
/// `error` set, and JSON only when asked with `Accept: application/json`.
async fn access_token(
    State(shared): Stand,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = request_params(&headers, query.as_deref(), &body);
    let param = |name: &str| params.get(name).map(String::as_str);
    let wants_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));

    let outcome = shared.update(|model| {
        if param("client_id") != Some(&model.app.client_id)
            || param("client_secret") != Some(&model.app.client_secret)
        {
            return Err((
                "incorrect_client_credentials",
                "The client_id and/or client_secret passed are incorrect.",
            ));
        }
        let code = param("code").and_then(|c| model.oauth_codes.remove(c));
        let Some(code) = code.filter(|c| {
            c.expires_at > OffsetDateTime::now_utc() && c.client_id == model.app.client_id
        }) else {
            return Err((
                "bad_verification_code",
                "The code passed is incorrect or expired.",
            ));
        };
        if let (Some(expected), Some(given)) = (&code.redirect_uri, param("redirect_uri"))
            && expected != given
        {
            return Err((
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
            ));
        }
        let token = format!("gho_{}", random_hex(36));
        model.user_tokens.insert(token.clone(), code.login);
        Ok(token)
    });

    let fields: Vec<(&str, String)> = match &outcome {
        Ok(token) => vec![("access_token", token.clone()), ("token_type", "bearer".into()), ("scope", String::new())],
        Err((error, description)) => vec![
            ("error", (*error).to_owned()),
            ("error_description", (*description).to_owned()),
            ("error_uri", "https://docs.github.com/apps/troubleshooting-oauth-app-access-token-request-errors".into()),
        ],
    };
    if wants_json {
        let object: serde_json::Map<String, Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        axum::Json(Value::Object(object)).into_response()
    } else {
        let encoded = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        (
            [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
            encoded,
        )
            .into_response()
    }
}

/// The signed-in person behind a `gho_` token.
async fn get_user(State(shared): Stand, headers: HeaderMap) -> Result<Response, ApiError> {
    shared.read(|model| {
        let login = auth::require_user(model, &headers)?;
        let user = model
            .find_user(&login)
            .ok_or_else(ApiError::bad_credentials)?;
        let mut answer = answers::user(model, user);
        answer["name"] = json!(login);
        Ok(axum::Json(answer).into_response())
    })
}

#[derive(Deserialize)]
struct StateQuery {
    state: Option<String>,
}

/// The form a browser posts to register an App from a manifest (a `manifest` field
/// holding JSON); redirects to the manifest's `redirect_url` with a code.
async fn register_app(
    State(shared): Stand,
    Query(query): Query<StateQuery>,
    body: Bytes,
) -> Response {
    register(&shared, None, query.state, &body)
}

async fn register_org_app(
    State(shared): Stand,
    Path(org): Path<String>,
    Query(query): Query<StateQuery>,
    body: Bytes,
) -> Response {
    register(&shared, Some(org), query.state, &body)
}

fn register(shared: &Shared, org: Option<String>, state: Option<String>, body: &Bytes) -> Response {
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let Some(manifest) = form
        .get("manifest")
        .and_then(|m| serde_json::from_str::<Value>(m).ok())
    else {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the form has no manifest field holding JSON",
        );
    };
    if manifest["url"].as_str().is_none() || manifest["hook_attributes"]["url"].as_str().is_none() {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the manifest needs url and hook_attributes.url",
        );
    }
    let Some(redirect) = manifest["redirect_url"].as_str().map(str::to_owned) else {
        return page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "the manifest has no redirect_url",
        );
    };
    let code = shared.update(|model| {
        let owner = org
            .or_else(|| model.signed_in.clone())
            .unwrap_or_else(|| "octocat".to_owned());
        insert_manifest_code(model, manifest, owner)
    });
    let mut pairs = vec![("code", code.as_str())];
    if let Some(state) = &state {
        pairs.push(("state", state));
    }
    redirect_with(&redirect, &pairs)
}

pub(super) fn insert_manifest_code(
    model: &mut super::model::Model,
    manifest: Value,
    owner: String,
) -> String {
    let code = random_hex(20);
    model.user(&owner, "User");
    model
        .manifest_codes
        .insert(code.clone(), ManifestCode { manifest, owner });
    code
}

/// Completes a registration: the App becomes the one the manifest describes, with a new
/// id, a freshly generated key and new secrets, all returned once, as GitHub does.
async fn convert_manifest(
    State(shared): Stand,
    Path(code): Path<String>,
) -> Result<Response, ApiError> {
    let registration = shared
        .update(|model| model.manifest_codes.remove(&code))
        .ok_or_else(ApiError::not_found)?;
    let key = tokio::task::spawn_blocking(AppKey::generate)
        .await
        .expect("generate a key");
    let manifest = &registration.manifest;

    let answer = shared.update(|model| {
        let name = manifest["name"].as_str().unwrap_or("sam").to_owned();
        let app = App {
            id: model.next_id(),
            slug: slug(&name),
            name,
            client_id: format!("Iv1.{}", random_hex(16)),
            client_secret: random_hex(40),
            webhook_secret: manifest.get("hook_attributes").map(|_| random_hex(40)),
            key,
            owner: registration.owner.clone(),
            callback_urls: string_list(&manifest["callback_urls"]),
            permissions: manifest
                .get("default_permissions")
                .cloned()
                .unwrap_or_else(|| json!({})),
            events: string_list(&manifest["default_events"]),
        };
        let secrets = json!({
            "client_secret": app.client_secret,
            "webhook_secret": app.webhook_secret,
            "pem": app.key.private_pem,
            "description": manifest["description"].as_str().unwrap_or_default(),
            "external_url": manifest["url"],
            "created_at": super::model::timestamp(OffsetDateTime::now_utc()),
            "updated_at": super::model::timestamp(OffsetDateTime::now_utc()),
        });
        model.app = app;
        let mut answer = answers::app(model);
        for (field, value) in secrets.as_object().expect("an object") {
            answer[field] = value.clone();
        }
        answer
    });
    Ok((StatusCode::CREATED, axum::Json(answer)).into_response())
}

/// GitHub's slug for an App name: lower case, runs of other characters made one `-`.
fn slug(name: &str) -> String {
    let lowered: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    lowered
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Parameters from the query string and a form or JSON body, the body winning.
fn request_params(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Bytes,
) -> HashMap<String, String> {
    let mut params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if is_json {
        if let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) {
            for (key, value) in fields {
                if let Some(text) = value.as_str() {
                    params.insert(key, text.to_owned());
                }
            }
        }
    } else {
        params.extend(url::form_urlencoded::parse(body).into_owned());
    }
    params
}

/// A 302 to `target` with `pairs` added to its query, as GitHub redirects.
fn redirect_with(target: &str, pairs: &[(&str, &str)]) -> Response {
    let Ok(mut url) = url::Url::parse(target) else {
        return page(
            StatusCode::BAD_REQUEST,
            "the redirect URL is not a valid URL",
        );
    };
    url.query_pairs_mut().extend_pairs(pairs);
    (StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response()
}

/// A plain-text page, standing in for GitHub's HTML error pages.
fn page(status: StatusCode, text: &str) -> Response {
    (status, format!("GitHub stand-in: {text}\n")).into_response()
}
