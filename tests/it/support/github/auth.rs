//! Who a request is: the App (a JWT), an installation (a `ghs_` token) or a person (a
//! `gho_` OAuth token), checked the way GitHub checks them.

use axum::http::HeaderMap;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use time::OffsetDateTime;

use super::errors::ApiError;
use super::model::{AuthKind, IssuedToken, Model, repo_key};

/// The longest an App JWT may live, from now: GitHub refuses an `exp` further out.
const MAX_JWT_LIFETIME_SECS: i64 = 600;

/// The credential in `Authorization: Bearer X` or `Authorization: token X`.
pub(super) fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .then(|| credential.trim())
}

/// What kind of credential a request carries, for the request log.
pub(super) fn kind(headers: &HeaderMap) -> AuthKind {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return AuthKind::None;
    };
    let value = value.to_str().unwrap_or_default();
    if value
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("basic "))
    {
        return AuthKind::Basic;
    }
    match credential(headers) {
        Some(c) if c.starts_with("ghs_") => AuthKind::InstallationToken,
        Some(c) if c.starts_with("gho_") => AuthKind::UserToken,
        Some(c) if c.split('.').count() == 3 => AuthKind::AppJwt,
        _ => AuthKind::Other,
    }
}

#[derive(Deserialize)]
struct AppClaims {
    iat: i64,
    exp: i64,
    iss: serde_json::Value,
}

/// Checks an App JWT: RS256 with the App's key, `iss` the App id (or its client id),
/// `iat` not in the future, `exp` in the future but at most ten minutes away.
pub(super) fn require_app(model: &Model, headers: &HeaderMap) -> Result<(), ApiError> {
    let jwt = credential(headers)
        .ok_or_else(|| ApiError::new(401, "A JSON web token could not be decoded"))?;

    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    validation.required_spec_claims.clear();
    let claims = jsonwebtoken::decode::<AppClaims>(jwt, &model.app.key.decoding_key(), &validation)
        .map_err(|_| ApiError::new(401, "A JSON web token could not be decoded"))?
        .claims;

    let app = &model.app;
    let issuer_matches = match &claims.iss {
        serde_json::Value::Number(n) => n.as_u64() == Some(app.id),
        serde_json::Value::String(s) => *s == app.id.to_string() || *s == app.client_id,
        _ => false,
    };
    if !issuer_matches {
        return Err(ApiError::new(401, "A JSON web token could not be decoded"));
    }

    let now = OffsetDateTime::now_utc().unix_timestamp();
    if claims.iat > now {
        return Err(ApiError::new(
            401,
            "'Issued at' claim ('iat') must be an Integer representing a time in the past.",
        ));
    }
    if claims.exp <= now {
        return Err(ApiError::new(
            401,
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires.",
        ));
    }
    if claims.exp > now + MAX_JWT_LIFETIME_SECS {
        return Err(ApiError::new(
            401,
            "'Expiration time' claim ('exp') is too far in the future.",
        ));
    }
    Ok(())
}

/// What an endpoint needs of an installation token: a permission and a level.
#[derive(Clone, Copy)]
pub(super) struct Needs {
    pub permission: &'static str,
    pub write: bool,
}

/// Checks an installation token for `full_name`: known and unexpired (else 401), valid
/// for that repository (else 404, as GitHub hides what a token may not see), and holding
/// the permission (else 403). Returns the installation id.
pub(super) fn require_installation(
    model: &Model,
    headers: &HeaderMap,
    full_name: &str,
    needs: Needs,
) -> Result<u64, ApiError> {
    let token = credential(headers)
        .and_then(|c| model.tokens.get(c))
        .filter(|t| t.expires_at > OffsetDateTime::now_utc())
        .ok_or_else(ApiError::bad_credentials)?;

    let key = repo_key(full_name);
    let installation = model
        .installations
        .get(&token.installation)
        .ok_or_else(ApiError::bad_credentials)?;
    let in_scope = installation.repos.contains(&key)
        && token
            .repos
            .as_ref()
            .is_none_or(|repos| repos.contains(&key));
    if !in_scope {
        return Err(ApiError::not_found());
    }

    if !grants(token, needs) {
        return Err(ApiError::not_accessible());
    }
    Ok(token.installation)
}

fn grants(token: &IssuedToken, needs: Needs) -> bool {
    match token
        .permissions
        .get(needs.permission)
        .and_then(|level| level.as_str())
    {
        Some("write") | Some("admin") => true,
        Some("read") => !needs.write,
        _ => false,
    }
}

/// The login behind an OAuth user token.
pub(super) fn require_user(model: &Model, headers: &HeaderMap) -> Result<String, ApiError> {
    credential(headers)
        .and_then(|c| model.user_tokens.get(c))
        .cloned()
        .ok_or_else(ApiError::bad_credentials)
}
