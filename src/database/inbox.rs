//! Stores webhook deliveries as they arrive, several to a commit.
//!
//! GitHub must hear 2xx only once a delivery is durable, and each durable commit waits for
//! PostgreSQL to flush its write-ahead log: one commit per delivery makes that flush the
//! ceiling of the intake. Here requests queue, and a few writers each take everything
//! waiting, insert it in one statement and one commit, and answer each request once that
//! commit is done. A delivery that arrives alone is written at once, so batching adds no
//! wait when sam is quiet; under load a batch forms while the previous commit flushes.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use super::deliveries::{self, NewDelivery, Stored};

/// Commits in flight at once; more lets a batch form behind each, up to the pool's size.
const WRITERS: usize = 4;
/// The most deliveries in one commit, which bounds its statement and its wait.
const MOST_PER_COMMIT: usize = 256;

/// Why a delivery could not be stored; shared by every delivery of the failed commit.
pub type StoreError = Arc<sqlx::Error>;

/// The queue in front of the `deliveries` table.
pub struct Inbox {
    queue: mpsc::Sender<Waiting>,
}

struct Waiting {
    delivery: NewDelivery,
    stored: oneshot::Sender<Result<Stored, StoreError>>,
}

impl Inbox {
    /// Starts the writers on the current runtime.
    pub fn start(db: PgPool) -> Self {
        let (queue, arrivals) = mpsc::channel(WRITERS * MOST_PER_COMMIT);
        let arrivals = Arc::new(Mutex::new(arrivals));
        for _ in 0..WRITERS {
            tokio::spawn(write(db.clone(), arrivals.clone()));
        }
        Self { queue }
    }

    /// Stores `delivery` and returns once it is committed, or why it is not.
    pub async fn store(&self, delivery: NewDelivery) -> Result<Stored, StoreError> {
        let (stored, answer) = oneshot::channel();
        self.queue
            .send(Waiting { delivery, stored })
            .await
            .map_err(|_| Arc::new(sqlx::Error::PoolClosed))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Arc::new(sqlx::Error::PoolClosed)))
    }
}

/// One writer: takes what is waiting, commits it, answers, and again.
async fn write(db: PgPool, arrivals: Arc<Mutex<mpsc::Receiver<Waiting>>>) {
    let mut batch = Vec::with_capacity(MOST_PER_COMMIT);
    loop {
        // The lock is held only while taking a batch: the next writer takes the next one
        // while this one commits.
        let taken = arrivals
            .lock()
            .await
            .recv_many(&mut batch, MOST_PER_COMMIT)
            .await;
        if taken == 0 {
            return;
        }
        let (deliveries, answers): (Vec<_>, Vec<_>) = batch
            .drain(..)
            .map(|waiting| (waiting.delivery, waiting.stored))
            .unzip();
        match deliveries::store_many(&db, &deliveries).await {
            Ok(inserted) => {
                // Of two deliveries with one id in the same batch, the first is the new one.
                let mut inserted: HashSet<String> = inserted.into_iter().collect();
                for (delivery, answer) in deliveries.iter().zip(answers) {
                    let stored = if inserted.remove(&delivery.github_delivery) {
                        Stored::New
                    } else {
                        Stored::Duplicate
                    };
                    let _ = answer.send(Ok(stored));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
    }
}
