//! Signed terminal links and the browser sessions they are exchanged for.
//!
//! A link names one workspace and the person who asked for it, and expires. Opening it
//! sets a cookie scoped to that workspace's path and redirects to a clean URL, so the
//! token does not linger in the address bar, history or `Referer` headers.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How long a posted link can be opened.
pub const LINK_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How long a browser keeps its access to a workspace after opening the link.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 60 * 60);

/// How long a browser stays signed in to sam after signing in with GitHub.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(12 * 60 * 60);
/// How long a sign-in with GitHub may take, from leaving sam to coming back.
pub const OAUTH_STATE_TTL: Duration = Duration::from_secs(10 * 60);

const LINK_AUDIENCE: &str = "sam-link";
const SESSION_AUDIENCE: &str = "sam-terminal-session";
const SIGN_IN_AUDIENCE: &str = "sam-sign-in";
const OAUTH_STATE_AUDIENCE: &str = "sam-oauth-state";

/// Signs and checks links and sessions with a key only this sam installation knows.
#[derive(Clone)]
pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Who may use a workspace's terminal, as a verified link or session says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Grant {
    /// The workspace id.
    pub sub: String,
    /// The GitHub login of the person the link was made for.
    pub login: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

impl Grant {
    /// The workspace this grant is for.
    pub fn workspace(&self) -> Option<Uuid> {
        self.sub.parse().ok()
    }
}

/// Why a link or session was refused; the text is shown to the person holding it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("this link has expired; write `/sam open` again for a new one")]
    Expired,
    #[error("this link is not valid")]
    Invalid,
    #[error("this link is for another workspace")]
    OtherWorkspace,
}

/// A person signed in to sam through GitHub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SignedIn {
    pub login: String,
    pub aud: String,
    pub exp: u64,
}

/// A sign-in under way: the nonce sent to GitHub as `state`, and where to go afterwards.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OAuthState {
    pub nonce: String,
    pub return_to: String,
    pub aud: String,
    pub exp: u64,
}

impl Signer {
    /// A signer over raw key bytes.
    pub fn new(key: &[u8]) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
        }
    }

    /// Loads the key from `<data_dir>/link-signing.key`, creating it (mode 0600) on first run.
    pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let key = crate::private_files::key(
            &data_dir.join("link-signing.key"),
            "links already given out stop working",
        )?;
        Ok(Self::new(&key))
    }

    /// A link token for `login` to open `workspace`.
    pub fn link(&self, workspace: Uuid, login: &str) -> String {
        self.sign(workspace, login, LINK_AUDIENCE, LINK_TTL)
    }

    /// A browser session token, issued in exchange for a verified link.
    pub fn session(&self, workspace: Uuid, login: &str) -> String {
        self.sign(workspace, login, SESSION_AUDIENCE, SESSION_TTL)
    }

    /// Checks a link token for `workspace`.
    pub fn verify_link(&self, token: &str, workspace: Uuid) -> Result<Grant, LinkError> {
        self.verify(token, workspace, LINK_AUDIENCE)
    }

    /// Checks a session token for `workspace`.
    pub fn verify_session(&self, token: &str, workspace: Uuid) -> Result<Grant, LinkError> {
        self.verify(token, workspace, SESSION_AUDIENCE)
    }

    /// The cookie value of a person signed in as `login`.
    pub fn signed_in(&self, login: &str) -> String {
        let exp = now() + SIGN_IN_TTL.as_secs();
        self.encode(&SignedIn {
            login: login.to_owned(),
            aud: SIGN_IN_AUDIENCE.to_owned(),
            exp,
        })
    }

    /// Checks a signed-in cookie.
    pub fn verify_signed_in(&self, token: &str) -> Result<SignedIn, LinkError> {
        self.decode(token, SIGN_IN_AUDIENCE)
    }

    /// The cookie value that carries a sign-in under way.
    pub fn oauth_state(&self, nonce: &str, return_to: &str) -> String {
        let exp = now() + OAUTH_STATE_TTL.as_secs();
        let state = OAuthState {
            nonce: nonce.to_owned(),
            return_to: return_to.to_owned(),
            aud: OAUTH_STATE_AUDIENCE.to_owned(),
            exp,
        };
        self.encode(&state)
    }

    /// Checks the cookie of a sign-in under way.
    pub fn verify_oauth_state(&self, token: &str) -> Result<OAuthState, LinkError> {
        self.decode(token, OAUTH_STATE_AUDIENCE)
    }

    fn sign(&self, workspace: Uuid, login: &str, audience: &str, ttl: Duration) -> String {
        let now = now();
        self.encode(&Grant {
            sub: workspace.to_string(),
            login: login.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
        })
    }

    fn verify(&self, token: &str, workspace: Uuid, audience: &str) -> Result<Grant, LinkError> {
        let grant: Grant = self.decode(token, audience)?;
        if grant.workspace() != Some(workspace) {
            return Err(LinkError::OtherWorkspace);
        }
        Ok(grant)
    }

    fn encode(&self, claims: &impl Serialize) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing cannot fail")
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
        audience: &str,
    ) -> Result<T, LinkError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<T>(token, &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => LinkError::Expired,
                _ => LinkError::Invalid,
            })
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(&[7; 32])
    }

    #[test]
    fn link_opens_its_own_workspace() {
        let id = Uuid::new_v4();
        let grant = signer()
            .verify_link(&signer().link(id, "octocat"), id)
            .unwrap();
        assert_eq!(grant.login, "octocat");
    }

    #[test]
    fn link_for_another_workspace_is_refused() {
        let token = signer().link(Uuid::new_v4(), "octocat");
        assert_eq!(
            signer().verify_link(&token, Uuid::new_v4()),
            Err(LinkError::OtherWorkspace)
        );
    }

    #[test]
    fn tampered_link_is_refused() {
        let id = Uuid::new_v4();
        let token = signer().link(id, "octocat");
        let forged = Signer::new(&[8; 32]).link(id, "mallory");
        let (head, _) = forged.rsplit_once('.').unwrap();
        let (_, signature) = token.rsplit_once('.').unwrap();
        assert_eq!(
            signer().verify_link(&format!("{head}.{signature}"), id),
            Err(LinkError::Invalid)
        );
    }

    #[test]
    fn expired_link_is_refused() {
        let id = Uuid::new_v4();
        let s = signer();
        let grant = Grant {
            sub: id.to_string(),
            login: "a".into(),
            aud: LINK_AUDIENCE.into(),
            iat: 1,
            exp: 2,
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &grant, &s.encoding).unwrap();
        assert_eq!(s.verify_link(&token, id), Err(LinkError::Expired));
    }

    #[test]
    fn a_session_is_not_a_link() {
        let id = Uuid::new_v4();
        assert_eq!(
            signer().verify_link(&signer().session(id, "a"), id),
            Err(LinkError::Invalid)
        );
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let id = Uuid::new_v4();
        let token = Signer::load_or_create(dir.path()).unwrap().link(id, "a");
        let mode = std::fs::metadata(dir.path().join("link-signing.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(
            Signer::load_or_create(dir.path())
                .unwrap()
                .verify_link(&token, id)
                .is_ok()
        );
    }
}
