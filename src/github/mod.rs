//! Talking to GitHub as an App: authentication, the few REST operations sam uses, and the
//! narrow shapes of the webhook payloads it reads.

pub mod client;
pub mod events;
pub mod headroom;
pub mod once;
pub mod retry;
pub mod tokens;

pub use client::{GitHub, Permission, PullRequest, RepoClient, answer_status, clone_url};

/// Whether a login belongs to a bot: such comments never trigger anything, sam's own included.
pub fn is_bot(login: &str, kind: Option<&str>) -> bool {
    kind.is_some_and(|k| k.eq_ignore_ascii_case("Bot")) || login.ends_with("[bot]")
}
