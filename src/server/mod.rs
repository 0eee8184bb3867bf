//! The HTTP server: routes, the webhook endpoint, health, metrics, the status page, and
//! static assets.

pub mod agents;
mod assets;
mod health;
pub mod metrics;
pub mod pages;
pub mod signature;
mod status;
mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{mpsc, watch};
use tower::ServiceBuilder;
use tower_http::classify::ServerErrorsFailureClass;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::setup;
use crate::terminal::{page, signin};

/// Shared state of every handler.
pub type AppState = Arc<App>;

/// How long a client may take to send a request's headers: a client that trickles them
/// (or sends none) would otherwise hold a connection, and a descriptor, forever.
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an ordinary request may take, its body and sam's answer included. The longest
/// wait of any of them is one call to GitHub or to a cloud provider.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// All of sam's routes.
pub fn router(state: AppState) -> Router {
    // A terminal socket lives as long as someone works in it: it is the one route without
    // a time limit.
    let sockets = Router::new().route("/w/{id}/ws", get(page::socket));
    Router::new()
        .route("/", get(setup::front))
        .route(&format!("/{}", setup::DONE_PATH), get(setup::done))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::scrape))
        .route("/status", get(status::page))
        .route(
            "/api/github/webhook",
            post(webhook::receive)
                .layer(webhook::body_limit())
                .layer(axum::middleware::from_fn(webhook::few_large_bodies))
                .layer(axum::middleware::from_fn(metrics::count_deliveries)),
        )
        .route(
            "/api/agents/workspaces/{id}/git-credentials",
            post(agents::credentials::issue),
        )
        .route("/api/agents/register", post(agents::register::register))
        .route("/w/{id}", get(page::open))
        .route("/w/{id}/state", get(page::workspace_state))
        .route("/auth/github/callback", get(signin::callback))
        .nest("/assets", assets::router())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .merge(sockets)
        // Browsers must take every answer of sam's for the type it says it is.
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        // Every request gets an `x-request-id` (the caller's, or a new one), in its log
        // lines and in the answer, so that a person's report can be found in the log.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_failure(log_failure),
                )
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
        .with_state(state)
}

/// A span per request naming the method and path only: link tokens and OAuth codes travel
/// in query strings, and must never reach a log line. A webhook's delivery id ties its
/// answer to the worker's lines about it, which carry the same id.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= 200)
            .unwrap_or_default()
            .to_owned()
    };
    let request_id = header("x-request-id");
    let delivery = header("x-github-delivery");
    if delivery.is_empty() {
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
    } else {
        tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id, delivery)
    }
}

/// tower_http's default logs every 5xx at ERROR. sam answers 503 on purpose (no App yet,
/// the database away) and its handlers log why at the level the cause deserves, so such an
/// answer is no error of its own, and must not count in `sam_log_events_total` as one.
/// Any other server error, or a request that ended with no answer, is worth a warning.
fn log_failure(class: ServerErrorsFailureClass, latency: Duration, _span: &tracing::Span) {
    let latency_ms = latency.as_millis();
    match class {
        ServerErrorsFailureClass::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::debug!(latency_ms, "answered 503: unavailable for now");
        }
        class => tracing::warn!(%class, latency_ms, "request failed"),
    }
}

/// Takes the address sam listens on. Done before anything else starts, so that a port in
/// use stops sam before it migrates the database or starts an agent.
pub async fn listen(address: SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {}", listen_error(&error)))
}

/// Serves on `listener` until the process is asked to stop.
pub async fn serve(state: AppState, listener: tokio::net::TcpListener) -> anyhow::Result<()> {
    tracing::info!(listen = %listener.local_addr()?, public_url = %state.config.public_url, "sam is serving");
    // Requests in flight are answered before the server stops; then the workers finish
    // the deliveries in hand. Anything not finished is claimed again at the next start.
    serve_connections(
        listener,
        router(state.clone()),
        HEADER_TIMEOUT,
        shutdown_signal(),
    )
    .await;
    state.stop_workers().await;
    tracing::info!("stopped");
    Ok(())
}

/// The cause of a failed bind in a few words, without the OS error number.
fn listen_error(error: &std::io::Error) -> String {
    match error.kind() {
        std::io::ErrorKind::AddrInUse => {
            "address in use (another program, or another sam, listens there; set SAM_LISTEN)"
                .to_owned()
        }
        std::io::ErrorKind::AddrNotAvailable => {
            "no interface of this machine has that address".to_owned()
        }
        std::io::ErrorKind::PermissionDenied => {
            "permission denied (ports below 1024 need privileges)".to_owned()
        }
        _ => error.to_string(),
    }
}

/// Accepts connections until `shutdown` completes, then lets each finish the request in
/// hand and waits for them. This is axum::serve's loop, with a timer: hyper then closes a
/// connection whose request headers do not arrive within `header_timeout`.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let (stop, _) = watch::channel(());
    // Each connection holds a clone; once every clone is dropped, all have ended.
    let (alive, mut all_ended) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    // Out of descriptors, most likely: wait for connections to close
                    // rather than spin.
                    tracing::warn!(%error, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let connection = http
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = stop.subscribe();
        let alive = alive.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = ended {
                tracing::debug!(%error, "connection ended");
            }
            drop(alive);
        });
    }
    drop(listener);
    stop.send_replace(());
    drop(alive);
    let _ = all_ended.recv().await;
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    #[tokio::test]
    async fn a_client_that_does_not_finish_its_headers_is_disconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "hello" }));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let bound = Duration::from_millis(300);
        let server = tokio::spawn(serve_connections(listener, router, bound, async {
            let _ = stopped.await;
        }));

        let mut slow = TcpStream::connect(address).await.unwrap();
        slow.write_all(b"GET / HT").await.unwrap();
        let started = Instant::now();
        let mut answer = Vec::new();
        // Closed or reset: either way the connection is gone.
        let _ = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer))
            .await
            .expect("the connection was still open 10 s later");
        assert!(started.elapsed() >= bound / 2, "{:?}", started.elapsed());

        // A whole request is answered as before.
        let mut client = TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nhost: sam\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("hello"), "{answer}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("the server stopped")
            .unwrap();
    }
}
