//! What the agent and sam, its control plane, agree on outside the protocol crate: the
//! form of the key their tokens are signed with, and how sam says why it refuses.

use anyhow::{Context, bail};
use serde::Deserialize;

/// Shortest accepted key: HS256 wants at least 128 bits of secret.
pub const MIN_KEY_BYTES: usize = 16;

/// The token key in its hex form, surrounding whitespace ignored.
pub fn parse_key(text: &str) -> anyhow::Result<Vec<u8>> {
    let key = hex::decode(text.trim()).context("the key is not hex")?;
    if key.len() < MIN_KEY_BYTES {
        bail!("the key must hold at least {MIN_KEY_BYTES} bytes");
    }
    Ok(key)
}

/// The body of sam's refusals.
#[derive(Deserialize)]
struct Refusal {
    error: String,
}

/// Why sam answered `response` with an error status: the `error` it sent, else the
/// status itself.
pub async fn refusal_reason(response: reqwest::Response) -> String {
    let status = response.status();
    match response.json::<Refusal>().await {
        Ok(refusal) => refusal.error,
        Err(_) => format!("sam answered {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_trimmed_hex_of_at_least_the_minimum_length() {
        let hex_key = "ab".repeat(MIN_KEY_BYTES);
        assert_eq!(
            parse_key(&format!("  {hex_key}\n")).unwrap(),
            vec![0xab; MIN_KEY_BYTES]
        );
        let short = parse_key(&"ab".repeat(MIN_KEY_BYTES - 1)).unwrap_err();
        assert!(short.to_string().contains("at least"), "{short:#}");
        let not_hex = parse_key(&"zz".repeat(MIN_KEY_BYTES)).unwrap_err();
        assert!(not_hex.to_string().contains("not hex"), "{not_hex:#}");
    }
}
