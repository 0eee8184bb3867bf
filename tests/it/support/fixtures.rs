//! The shared GitHub fixtures: real webhook payloads and GitHub's example REST responses,
//! described in `shared/fixtures/github/README.md`.

use std::path::PathBuf;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The fixtures folder: `$SAM_FIXTURES_DIR`, else `shared/fixtures/github` beside the
/// repository, where CI and `scripts/test` expect it.
pub fn dir() -> PathBuf {
    let dir = match std::env::var_os("SAM_FIXTURES_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/github"),
    };
    assert!(
        dir.join("webhooks").is_dir(),
        "GitHub fixtures not found at {}: put the shared/ folder beside the repository or set \
         SAM_FIXTURES_DIR to its fixtures/github folder",
        dir.display()
    );
    dir
}

/// The exact bytes of `webhooks/<event>/<variant>.json`; `event` is the `X-GitHub-Event`
/// header value.
pub fn webhook(event: &str, variant: &str) -> Vec<u8> {
    let path = dir()
        .join("webhooks")
        .join(event)
        .join(format!("{variant}.json"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `rest/<name>.json` parsed, `name` being e.g. `"pulls.get.200"`.
pub fn rest(name: &str) -> serde_json::Value {
    let path = dir().join("rest").join(format!("{name}.json"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

/// Every webhook fixture as `(event, variant, bytes)`, sorted by event then variant.
pub fn all_webhooks() -> Vec<(String, String, Vec<u8>)> {
    let mut all = Vec::new();
    for event in sorted_entries(dir().join("webhooks")) {
        let Some(event_name) = file_name(&event) else {
            continue;
        };
        for file in sorted_entries(event) {
            let Some(variant) =
                file_name(&file).and_then(|n| n.strip_suffix(".json").map(str::to_owned))
            else {
                continue;
            };
            let bytes =
                std::fs::read(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
            all.push((event_name.clone(), variant, bytes));
        }
    }
    all
}

/// The `X-Hub-Signature-256` header value GitHub sends for `body` signed with `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn sorted_entries(dir: PathBuf) -> Vec<PathBuf> {
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    paths.sort();
    paths
}

fn file_name(path: &std::path::Path) -> Option<String> {
    path.file_name().and_then(|n| n.to_str()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_matches_githubs_documented_vector() {
        assert_eq!(
            sign("It's a Secret to Everybody", b"Hello, World!"),
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
    }

    #[test]
    fn webhook_returns_the_files_exact_bytes() {
        let bytes = webhook("ping", "app");
        assert_eq!(bytes.len(), 688, "size listed in the fixtures README");
        assert!(serde_json::from_slice::<serde_json::Value>(&bytes).is_ok());
    }

    #[test]
    fn all_webhooks_lists_every_payload_once() {
        let all = all_webhooks();
        assert!(
            all.len() >= 25,
            "the README lists 25 payloads, found {}",
            all.len()
        );
        assert!(
            all.iter()
                .any(|(event, variant, _)| event == "issue_comment" && variant == "created")
        );
        for (event, variant, bytes) in &all {
            assert!(
                serde_json::from_slice::<serde_json::Value>(bytes).is_ok(),
                "{event}/{variant} is not JSON"
            );
        }
    }

    #[test]
    fn rest_parses_an_example_response() {
        let pull = rest("pulls.get.200");
        assert!(pull["head"]["sha"].is_string());
    }
}
