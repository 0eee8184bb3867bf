//! Short-lived tokens that let sam call its agent for one workspace.
//!
//! sam and the agent share a secret key; sam mints a token per request (or per
//! terminal socket) naming the workspace it is about, and the agent refuses any
//! request whose token does not name the workspace in the path. A leaked token is
//! worth one workspace for a few minutes, never the whole agent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The audience every agent token carries, so a token minted for another purpose
/// with the same key is never accepted by the agent.
pub const AUDIENCE: &str = "sam-agent";

/// The audience of tokens the agent presents to sam (asking for a workspace's git
/// credentials), so that a token sam minted for the agent is never accepted by sam, nor
/// one the agent minted accepted by the agent.
pub const CONTROL_PLANE_AUDIENCE: &str = "sam";

/// Clock skew between sam and the agent that is forgiven when checking expiry.
pub const LEEWAY: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    aud: String,
    sub: String,
    iat: u64,
    exp: u64,
}

/// Why a token was refused. The agent answers all of them with 401; the variants
/// exist for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// The token is not a well-formed HS256 JWT with the claims the agent needs.
    #[error("token is malformed")]
    Malformed,
    /// The signature does not match the key.
    #[error("token signature is invalid")]
    BadSignature,
    /// The token has expired.
    #[error("token has expired")]
    Expired,
    /// The token was minted for another audience.
    #[error("token is not meant for sam-agent")]
    WrongAudience,
    /// The token names another workspace.
    #[error("token is for another workspace")]
    WrongWorkspace,
}

/// Mints a token for `workspace` that expires after `ttl`.
pub fn mint(key: &[u8], workspace: &str, ttl: Duration) -> String {
    mint_for(key, AUDIENCE, workspace, ttl)
}

/// Mints a token for `workspace`, meant for `audience` ([`AUDIENCE`] or
/// [`CONTROL_PLANE_AUDIENCE`]), that expires after `ttl`.
pub fn mint_for(key: &[u8], audience: &str, workspace: &str, ttl: Duration) -> String {
    let now = unix_now();
    let claims = Claims {
        aud: audience.to_owned(),
        sub: workspace.to_owned(),
        iat: now,
        exp: now.saturating_add(ttl.as_secs()),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key),
    )
    .expect("HS256 signing of a plain claim set cannot fail")
}

/// Checks that `token` was signed with `key`, is meant for the agent, has not
/// expired (allowing [`LEEWAY`]) and names `workspace`.
pub fn verify(key: &[u8], token: &str, workspace: &str) -> Result<(), TokenError> {
    verify_for(key, AUDIENCE, token, workspace)
}

/// [`verify`] for a token meant for `audience`.
pub fn verify_for(
    key: &[u8],
    audience: &str,
    token: &str,
    workspace: &str,
) -> Result<(), TokenError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.leeway = LEEWAY.as_secs();
    validation.sub = Some(workspace.to_owned());

    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(key), &validation)
        .map(drop)
        .map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::ExpiredSignature => TokenError::Expired,
            ErrorKind::InvalidAudience => TokenError::WrongAudience,
            ErrorKind::InvalidSubject => TokenError::WrongWorkspace,
            _ => TokenError::Malformed,
        })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const WORKSPACE: &str = "6f1c1c52-8a8e-4a53-9c1b-6e0f2a8f0b11";

    fn signed(claims: &Claims, key: &[u8]) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(key),
        )
        .unwrap()
    }

    fn claims(aud: &str, sub: &str, exp: u64) -> Claims {
        Claims {
            aud: aud.into(),
            sub: sub.into(),
            iat: unix_now(),
            exp,
        }
    }

    #[test]
    fn fresh_token_for_the_workspace_is_accepted() {
        let token = mint(KEY, WORKSPACE, Duration::from_secs(60));
        assert_eq!(verify(KEY, &token, WORKSPACE), Ok(()));
    }

    #[test]
    fn token_signed_with_another_key_is_refused() {
        let token = mint(
            b"another key entirely, 32 bytes..",
            WORKSPACE,
            Duration::from_secs(60),
        );
        assert_eq!(
            verify(KEY, &token, WORKSPACE),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn expired_token_is_refused() {
        let token = signed(&claims(AUDIENCE, WORKSPACE, unix_now() - 60), KEY);
        assert_eq!(verify(KEY, &token, WORKSPACE), Err(TokenError::Expired));
    }

    #[test]
    fn token_expired_within_the_leeway_is_accepted() {
        let token = signed(&claims(AUDIENCE, WORKSPACE, unix_now() - 2), KEY);
        assert_eq!(verify(KEY, &token, WORKSPACE), Ok(()));
    }

    #[test]
    fn token_for_another_workspace_is_refused() {
        let token = mint(KEY, "another-workspace", Duration::from_secs(60));
        assert_eq!(
            verify(KEY, &token, WORKSPACE),
            Err(TokenError::WrongWorkspace)
        );
    }

    #[test]
    fn token_for_another_audience_is_refused() {
        let token = signed(&claims("sam-web", WORKSPACE, unix_now() + 60), KEY);
        assert_eq!(
            verify(KEY, &token, WORKSPACE),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn agent_and_control_plane_tokens_are_not_interchangeable() {
        let for_sam = mint_for(
            KEY,
            CONTROL_PLANE_AUDIENCE,
            WORKSPACE,
            Duration::from_secs(60),
        );
        assert_eq!(
            verify(KEY, &for_sam, WORKSPACE),
            Err(TokenError::WrongAudience)
        );
        assert_eq!(
            verify_for(KEY, CONTROL_PLANE_AUDIENCE, &for_sam, WORKSPACE),
            Ok(())
        );
        let for_agent = mint(KEY, WORKSPACE, Duration::from_secs(60));
        assert_eq!(
            verify_for(KEY, CONTROL_PLANE_AUDIENCE, &for_agent, WORKSPACE),
            Err(TokenError::WrongAudience)
        );
    }

    #[test]
    fn token_without_a_subject_is_refused() {
        #[derive(Serialize)]
        struct NoSubject {
            aud: &'static str,
            exp: u64,
        }
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &NoSubject {
                aud: AUDIENCE,
                exp: unix_now() + 60,
            },
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert_eq!(verify(KEY, &token, WORKSPACE), Err(TokenError::Malformed));
    }

    #[test]
    fn token_with_another_algorithm_is_refused() {
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(AUDIENCE, WORKSPACE, unix_now() + 60),
            &EncodingKey::from_secret(KEY),
        )
        .unwrap();
        assert!(verify(KEY, &token, WORKSPACE).is_err());
    }

    #[test]
    fn garbage_is_malformed() {
        for garbage in ["", "not a token", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..."] {
            assert_eq!(verify(KEY, garbage, WORKSPACE), Err(TokenError::Malformed));
        }
    }
}
