//! Calls to GitHub that failed for a passing reason are tried again, a few times and within
//! a bounded time: server errors, answers that never came, and rate limits, after the wait
//! GitHub names.
//!
//! What may be tried again depends on what the failure says about GitHub's side. A rate
//! limit means GitHub refused before doing anything, so any call may be repeated. A 5xx or
//! a lost answer leaves it unknown whether GitHub acted: reads and edits may be repeated,
//! but a new comment or check run may not be posted again blindly (`once.rs` looks first).
//! The backoff itself is `backon`'s exponential policy with jitter.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use backon::{ExponentialBuilder, Retryable};
use http::HeaderMap;
use tokio::time::Instant;

/// Tries in all, the first included.
const ATTEMPTS: usize = 5;
/// The longest all tries of one call may take, waits included; a rate limit that lasts
/// longer fails the call, and the delivery is tried again later as a whole.
const BUDGET: Duration = Duration::from_secs(30);
/// The first wait when GitHub names none; it doubles, with jitter, up to `MAX_WAIT`.
const FIRST_WAIT: Duration = Duration::from_millis(200);
const MAX_WAIT: Duration = Duration::from_secs(8);
/// The wait after a secondary rate limit that names none: GitHub asks for at least a minute,
/// more than the budget, so such a call fails to the delivery's own retry.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// What a failed call says about trying it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// GitHub refused before acting (a rate limit): any call may be repeated, after `wait`
    /// when GitHub named one.
    Refused { wait: Option<Duration> },
    /// GitHub may or may not have acted (a 5xx, a timeout, a broken connection).
    Uncertain { wait: Option<Duration> },
    /// Trying again would fail the same way (a 4xx other than a rate limit, a bad body).
    Permanent,
}

impl Failure {
    /// The wait GitHub asked for, if any.
    fn wait(self) -> Option<Duration> {
        match self {
            Failure::Refused { wait } | Failure::Uncertain { wait } => wait,
            Failure::Permanent => None,
        }
    }
}

/// Reads an error of octocrab's as one of the [`Failure`]s.
pub fn classify(error: &octocrab::Error) -> Failure {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let empty = HeaderMap::new();
            let headers = source.headers.as_ref().unwrap_or(&empty);
            classify_answer(source.status_code.as_u16(), headers, &source.message)
        }
        // No answer, or one cut off: the request may have reached GitHub.
        octocrab::Error::Service { .. } | octocrab::Error::Hyper { .. } => {
            Failure::Uncertain { wait: None }
        }
        _ => Failure::Permanent,
    }
}

/// Reads an error answer by its status, headers and message.
pub fn classify_answer(status: u16, headers: &HeaderMap, message: &str) -> Failure {
    let retry_after = header_seconds(headers, "retry-after").map(Duration::from_secs);
    let exhausted = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    let until_reset = header_seconds(headers, "x-ratelimit-reset").map(|reset| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // The reset is a whole second; one more keeps the retry from landing just before.
        Duration::from_secs(reset.saturating_sub(now) + 1)
    });
    match status {
        429 => Failure::Refused {
            wait: retry_after.or(until_reset),
        },
        // GitHub says 403 for both rate limits and for lacking permission; only the former
        // carry these signs.
        403 if retry_after.is_some() => Failure::Refused { wait: retry_after },
        403 if exhausted => Failure::Refused { wait: until_reset },
        403 if message.to_ascii_lowercase().contains("rate limit") => Failure::Refused {
            wait: Some(SECONDARY_LIMIT_WAIT),
        },
        500 | 502 | 503 | 504 => Failure::Uncertain { wait: retry_after },
        _ => Failure::Permanent,
    }
}

/// An error in a line of a log: octocrab's own `Display` of an answer says only "GitHub".
fn describe(error: &octocrab::Error) -> String {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            format!("{} {}", source.status_code, source.message)
        }
        other => other.to_string(),
    }
}

fn header_seconds(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// Runs `call` until it succeeds, fails for good, or the tries or the time run out.
/// `may_repeat` says which failures allow another try of this call.
pub async fn run<T, F, Fut>(
    what: &str,
    may_repeat: impl Fn(Failure) -> bool,
    call: F,
) -> Result<T, octocrab::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, octocrab::Error>>,
{
    run_classified(what, classify, describe, may_repeat, call).await
}

/// [`run`] for any error that `classify` reads.
async fn run_classified<T, E, F, Fut>(
    what: &str,
    classify: impl Fn(&E) -> Failure,
    describe: impl Fn(&E) -> String,
    may_repeat: impl Fn(Failure) -> bool,
    call: F,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let policy = ExponentialBuilder::new()
        .with_min_delay(FIRST_WAIT)
        .with_max_delay(MAX_WAIT)
        .with_max_times(ATTEMPTS - 1)
        .with_jitter();
    call.retry(policy)
        .sleep(tokio::time::sleep)
        .when(|error| may_repeat(classify(error)))
        .adjust(|error, backoff| {
            // The wait GitHub names wins over the policy's; both stay within the budget.
            let wait = match (classify(error).wait(), backoff) {
                (Some(named), Some(own)) => named.max(own),
                (None, own) => own?,
                (Some(_), None) => return None,
            };
            (started.elapsed() + wait <= BUDGET).then_some(wait)
        })
        .notify(|error, wait| {
            let error = describe(error);
            tracing::warn!(%error, ?wait, call = what, "GitHub call failed; trying again");
        })
        .await
}

/// Reads, edits and anything else that leaves GitHub the same however often it is done.
pub fn idempotent(failure: Failure) -> bool {
    failure != Failure::Permanent
}

/// Calls that create something: repeated only when GitHub certainly did nothing.
pub fn refused_only(failure: Failure) -> bool {
    matches!(failure, Failure::Refused { .. })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn rate_limits_are_refusals_with_githubs_wait() {
        assert_eq!(
            classify_answer(429, &headers(&[("retry-after", "3")]), "API rate limit"),
            Failure::Refused {
                wait: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(
            classify_answer(403, &headers(&[("retry-after", "1")]), "secondary"),
            Failure::Refused {
                wait: Some(Duration::from_secs(1))
            }
        );
        let soon = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 10;
        let primary = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &soon.to_string()),
        ]);
        let Failure::Refused { wait: Some(wait) } = classify_answer(403, &primary, "") else {
            panic!("a spent primary limit is a refusal with a wait");
        };
        assert!(
            wait > Duration::from_secs(8) && wait <= Duration::from_secs(11),
            "{wait:?}"
        );
        assert_eq!(
            classify_answer(
                403,
                &HeaderMap::new(),
                "You have exceeded a secondary rate limit"
            ),
            Failure::Refused {
                wait: Some(SECONDARY_LIMIT_WAIT)
            }
        );
    }

    #[test]
    fn server_errors_are_uncertain_and_other_refusals_permanent() {
        for status in [500, 502, 503, 504] {
            assert_eq!(
                classify_answer(status, &HeaderMap::new(), ""),
                Failure::Uncertain { wait: None },
                "{status}"
            );
        }
        for status in [400, 401, 404, 410, 422, 501] {
            assert_eq!(
                classify_answer(status, &HeaderMap::new(), "Not Found"),
                Failure::Permanent,
                "{status}"
            );
        }
        // A 403 without the signs of a rate limit is a missing permission.
        assert_eq!(
            classify_answer(
                403,
                &HeaderMap::new(),
                "Resource not accessible by integration"
            ),
            Failure::Permanent
        );
    }

    /// Runs `failures` in turn through the policy (then succeeds); returns the outcome and
    /// how many calls were made.
    async fn through(
        may_repeat: impl Fn(Failure) -> bool,
        failures: &[Failure],
    ) -> (Result<(), Failure>, usize) {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let result = run_classified(
            "test",
            |f: &Failure| *f,
            |f| format!("{f:?}"),
            may_repeat,
            || async {
                let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                failures.get(n).map_or(Ok(()), |f| Err(*f))
            },
        )
        .await;
        (result, calls.into_inner())
    }

    const SERVER_ERROR: Failure = Failure::Uncertain { wait: None };

    #[tokio::test(start_paused = true)]
    async fn tries_are_bounded_in_count() {
        let (result, calls) = through(idempotent, &[SERVER_ERROR; 10]).await;
        assert_eq!(result, Err(SERVER_ERROR));
        assert_eq!(calls, ATTEMPTS);
        let (result, calls) = through(idempotent, &[SERVER_ERROR; ATTEMPTS - 1]).await;
        assert_eq!(result, Ok(()));
        assert_eq!(calls, ATTEMPTS);
    }

    #[tokio::test(start_paused = true)]
    async fn githubs_wait_is_kept_and_bounded_by_the_budget() {
        let started = Instant::now();
        let short = Failure::Refused {
            wait: Some(Duration::from_secs(5)),
        };
        let (result, calls) = through(idempotent, &[short]).await;
        assert_eq!((result, calls), (Ok(()), 2));
        assert!(
            started.elapsed() >= Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );

        let long = Failure::Refused {
            wait: Some(Duration::from_secs(3600)),
        };
        let (result, calls) = through(idempotent, &[long]).await;
        assert_eq!(
            (result, calls),
            (Err(long), 1),
            "a wait past the budget fails at once"
        );

        let started = Instant::now();
        let (result, _) = through(idempotent, &[short; 10]).await;
        assert_eq!(result, Err(short));
        assert!(started.elapsed() <= BUDGET, "{:?}", started.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn uncertain_failures_are_not_repeated_for_creations() {
        let refused = Failure::Refused {
            wait: Some(Duration::from_secs(1)),
        };
        let (result, calls) = through(refused_only, &[refused, SERVER_ERROR]).await;
        assert_eq!(result, Err(SERVER_ERROR));
        assert_eq!(
            calls, 2,
            "the refusal is tried again, the server error is not"
        );
        let (result, calls) = through(idempotent, &[Failure::Permanent]).await;
        assert_eq!((result, calls), (Err(Failure::Permanent), 1));
    }
}
