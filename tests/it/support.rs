//! The test harness shared by every integration test: the GitHub fixtures, a fresh
//! database per test, git repositories, and a stand-in for GitHub.

#![allow(
    dead_code,
    reason = "each test module uses a different part of the harness"
)]

pub mod db;
pub mod fixtures;
pub mod git;
pub mod git_http;
pub mod github;
pub mod hetzner;
pub mod visitor;

/// An HTTP client for tests: it does not follow redirects (tests look at them), and it
/// installs rustls' ring provider first, which reqwest's `rustls-no-provider` requires
/// even for plain-HTTP clients.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("build an HTTP client")
}
