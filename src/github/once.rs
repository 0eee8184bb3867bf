//! Posting each reply of a delivery exactly once, across retries of the call and of the
//! delivery, crashes included.
//!
//! Before posting, the reply is recorded in the database as the n-th of its delivery's
//! handling; once posted, it is marked with GitHub's id. A later try of the same delivery
//! counts its posts the same way and gets GitHub's id back for every one that went out.
//! Where the outcome of a post was never learned (a 5xx, a timeout, a crash between the
//! post and the mark), the post carried a hidden marker, and GitHub is searched for it
//! before posting again.

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

/// Posts a reply once. `post` posts it with the marker it is given and returns GitHub's
/// id; `find` looks on GitHub for a reply carrying the marker.
pub async fn post<P, PF, F, FF>(
    ledger: &Ledger,
    kind: Kind,
    target: &str,
    post: P,
    find: F,
) -> anyhow::Result<u64>
where
    P: Fn(String) -> PF,
    PF: Future<Output = Result<u64, octocrab::Error>>,
    F: Fn(String) -> FF,
    FF: Future<Output = Result<Option<u64>, octocrab::Error>>,
{
    let seq = ledger.next.fetch_add(1, Ordering::SeqCst);
    let intent = replies::intend(&ledger.db, ledger.delivery_id, seq, kind.as_str(), target)
        .await
        .context("recording a reply before posting it")?;
    if let Some(id) = intent.github_id {
        tracing::info!(
            seq,
            github_id = id,
            kind = kind.as_str(),
            "reply already posted"
        );
        return Ok(id as u64);
    }
    let marker = marker(&ledger.github_delivery, seq);
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
