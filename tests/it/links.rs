//! Who a terminal link opens for: the person it was made for, or someone with write access,
//! signed in through GitHub; never a link alone, an old or altered link, or another site.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::LOCATION;

use crate::scene::{REPO, ReadyWorkspace, ready_workspace, workspace_of};

/// A browser-like client: keeps cookies and follows redirects, across sam and the stand-in.
fn visitor() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The same link with its token replaced by `token`.
fn with_token(link: &str, token: &str) -> String {
    format!("{}?t={token}", link.split('?').next().unwrap())
}

/// A link token minted with sam's own key, as if sam had made it at `iat` and until `exp`.
fn minted(scene: &ReadyWorkspace, workspace: &str, login: &str, iat: u64, exp: u64) -> String {
    let key = std::fs::read(scene.sam.data_dir.path().join("link-signing.key")).unwrap();
    let claims = serde_json::json!({ "sub": workspace, "login": login, "aud": "sam-link", "iat": iat, "exp": exp });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&key),
    )
    .unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The status of a WebSocket handshake to the workspace's terminal with `cookie`, sent from
/// a page of `origin`.
async fn socket_status(scene: &ReadyWorkspace, cookie: &str, origin: &str) -> u16 {
    match tokio_tungstenite::connect_async(scene.terminal_request("t1", cookie, origin)).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(error) => panic!("unexpected handshake error: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_open_only_for_the_right_person_signed_in_through_github() {
    let scene = ready_workspace("feature/links").await;
    let github = &scene.github;
    let workspace = workspace_of(&scene.link);

    // No one signed in at GitHub: the link leads to GitHub's sign-in, never to a terminal.
    github.sign_out();
    let manual = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let first = manual.get(&scene.link).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let location = first.headers()[LOCATION].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/login/oauth/authorize?", github.url())),
        "{location}"
    );
    assert!(
        !location.contains("t="),
        "the link's token must not travel to GitHub: {location}"
    );
    let page = visitor()
        .get(format!("{}/w/{workspace}", scene.sam.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        page.status(),
        StatusCode::UNAUTHORIZED,
        "no session, no terminal page"
    );
    // A link cut short in the copying gets sam's page, which says what to do.
    let cut = visitor()
        .get(format!("{}/w/{}", scene.sam.url, &workspace[..20]))
        .send()
        .await
        .unwrap();
    assert_eq!(cut.status(), StatusCode::NOT_FOUND);
    let cut = cut.text().await.unwrap();
    assert!(cut.contains("copy the whole link"), "{cut}");

    // Someone else, with only read access, signed in: refused, even holding the link.
    github.set_permission(REPO, "mallory", "read");
    github.sign_in_as("mallory");
    let refused = visitor().get(&scene.link).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("opened for someone else")
    );

    // A maintainer of the repository may look in.
    github.set_permission(REPO, "maintainer", "maintain");
    github.sign_in_as("maintainer");
    let maintainer = visitor();
    let page = maintainer.get(&scene.link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.url().query().is_none(),
        "the token is gone from the address bar: {}",
        page.url()
    );
    assert!(page.text().await.unwrap().contains("feature/links"));

    // The requester, signed in: the terminal page.
    github.sign_in_as("chhsia0");
    let owner = visitor();
    let page = owner.get(&scene.link).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);

    // Old, altered and misdirected links are refused before any sign-in.
    let expired = minted(
        &scene,
        &workspace,
        "chhsia0",
        now() - 100_000,
        now() - 10_000,
    );
    let response = owner
        .get(with_token(&scene.link, &expired))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("expired"));

    let token = scene.link.split("t=").nth(1).unwrap().to_owned();
    let mut tampered = token.clone().into_bytes();
    let middle = tampered.len() / 2;
    tampered[middle] = if tampered[middle] == b'A' { b'B' } else { b'A' };
    let response = owner
        .get(with_token(
            &scene.link,
            std::str::from_utf8(&tampered).unwrap(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    let other = uuid::Uuid::new_v4().to_string();
    let elsewhere = minted(&scene, &other, "chhsia0", now(), now() + 600);
    let response = owner
        .get(with_token(&scene.link, &elsewhere))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "a link for another workspace"
    );
    assert!(response.text().await.unwrap().contains("another workspace"));

    // The terminal socket: sam's own origin is let through, another site's is not.
    let cookie = scene.session_cookie().await;
    assert_eq!(socket_status(&scene, &cookie, &scene.sam.url).await, 101);
    assert_eq!(
        socket_status(&scene, &cookie, "http://evil.example").await,
        403
    );
    assert_eq!(
        socket_status(&scene, "sam_session=forged", &scene.sam.url).await,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_workspace_state_is_told_only_to_a_session_of_that_workspace() {
    let scene = ready_workspace("feature/state").await;
    let client = visitor();
    let state_of = |id: &str, cookie: Option<&str>| {
        let mut request = client.get(format!("{}/w/{id}/state", scene.sam.url));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let workspace = workspace_of(&scene.link);
    let cookie = scene.session_cookie().await;

    let other = uuid::Uuid::new_v4().to_string();
    for (id, cookie) in [
        (workspace.as_str(), None),
        (workspace.as_str(), Some("sam_session=forged")),
        // A session of one workspace says nothing of another, not even whether it exists.
        (other.as_str(), Some(cookie.as_str())),
    ] {
        let response = state_of(id, cookie).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{id} with {cookie:?}"
        );
        let body = response.text().await.unwrap();
        assert!(!body.contains("ready"), "{body}");
    }

    let response = state_of(&workspace, Some(&cookie)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "state": "ready" }));

    scene.set_state("stopped").await;
    let body: serde_json::Value = state_of(&workspace, Some(&cookie))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, serde_json::json!({ "state": "stopped" }));
}
