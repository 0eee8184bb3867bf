//! Posting each reply of a delivery exactly once, across retries of the call and of the
//! delivery, crashes included.
//!
//! Before posting, the reply is recorded in the database as the n-th of its delivery's
//! handling; once posted, it is marked with GitHub's id. A later try of the same delivery
//! counts its posts the same way and gets GitHub's id back for every one that went out.
//! Where the outcome of a post was never learned (a 5xx, a timeout, a crash between the
//! post and the mark), the post carried a hidden marker, and GitHub is searched for it
//! before posting again.
//!
//! A reply found posted by an earlier try is edited to what this try would have posted:
//! the earlier try may have died before it brought the reply up to date (a status comment
//! left at "preparing" while its workspace became ready), and what people read should say
//! where things stand now.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use anyhow::Context;
use sqlx::PgPool;

use super::retry::{self, Failure};
use crate::database::replies;

/// The replies of one delivery's handling, counted in the order they are posted.
pub struct Ledger {
    db: PgPool,
    delivery_id: i64,
    github_delivery: String,
    next: AtomicI32,
}

impl Ledger {
    /// A ledger for one try of the delivery stored as `delivery_id`, GitHub's
    /// `X-GitHub-Delivery` being `github_delivery`.
    pub fn new(db: PgPool, delivery_id: i64, github_delivery: &str) -> Self {
        Self {
            db,
            delivery_id,
            github_delivery: github_delivery.to_owned(),
            next: AtomicI32::new(0),
        }
    }
}

/// What kind of thing a reply is on GitHub.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Comment,
    CheckRun,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Comment => "comment",
            Kind::CheckRun => "check_run",
        }
    }
}

/// The hidden text a reply carries so it can be found again: an HTML comment, which
/// GitHub's Markdown does not show.
pub fn marker(github_delivery: &str, seq: i32) -> String {
    format!("<!-- sam:reply {github_delivery}/{seq} -->")
}

/// The calls that post a reply, look for it, and edit it, each given the reply's marker.
pub struct Calls<P, F, E> {
    /// Posts the reply and returns GitHub's id.
    pub post: P,
    /// Looks on GitHub for a reply carrying the marker.
    pub find: F,
    /// Replaces the reply with this id by this try's text.
    pub edit: E,
}

/// Posts a reply once, or edits the one an earlier try posted; returns GitHub's id.
pub async fn post<P, PF, F, FF, E, EF>(
    ledger: &Ledger,
    kind: Kind,
    target: &str,
    calls: Calls<P, F, E>,
) -> anyhow::Result<u64>
where
    P: Fn(String) -> PF,
    PF: Future<Output = Result<u64, octocrab::Error>>,
    F: Fn(String) -> FF,
    FF: Future<Output = Result<Option<u64>, octocrab::Error>>,
    E: Fn(u64, String) -> EF,
    EF: Future<Output = Result<(), octocrab::Error>>,
{
    let Calls { post, find, edit } = calls;
    let seq = ledger.next.fetch_add(1, Ordering::SeqCst);
    let intent = replies::intend(&ledger.db, ledger.delivery_id, seq, kind.as_str(), target)
        .await
        .context("recording a reply before posting it")?;
    let marker = marker(&ledger.github_delivery, seq);
    if let Some(id) = intent.github_id {
        let kind = kind.as_str();
        tracing::info!(
            seq,
            github_id = id,
            kind,
            "reply already posted; editing it"
        );
        let id = id as u64;
        retry::run("editing a reply", retry::idempotent, || {
            edit(id, marker.clone())
        })
        .await
        .map_err(anyhow::Error::new)
        .with_context(|| format!("editing a {kind} posted earlier"))?;
        return Ok(id);
    }
    // An intent an earlier try recorded may have been posted without its id coming back.
    let unsure = AtomicBool::new(!intent.fresh);
    let attempt = || async {
        if unsure.load(Ordering::SeqCst)
            && let Some(id) = find(marker.clone()).await?
        {
            tracing::info!(
                seq,
                github_id = id,
                "found a reply whose posting was not confirmed"
            );
            edit(id, marker.clone()).await?;
            return Ok(id);
        }
        let posted = post(marker.clone()).await;
        if let Err(error) = &posted
            && matches!(retry::classify(error), Failure::Uncertain { .. })
        {
            unsure.store(true, Ordering::SeqCst);
        }
        posted
    };
    let id = retry::run("posting a reply", retry::idempotent, attempt)
        .await
        .map_err(anyhow::Error::new)
        .with_context(|| format!("posting a {}", kind.as_str()))?;
    replies::posted(&ledger.db, ledger.delivery_id, seq, id as i64)
        .await
        .context("recording a posted reply")?;
    Ok(id)
}
