//! `X-Hub-Signature-256`: HMAC-SHA256 of the exact bytes received, keyed by the webhook secret.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a signature was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Hub-Signature-256 header is missing")]
    Missing,
    #[error("the X-Hub-Signature-256 header is not sha256= and 64 hex digits")]
    Malformed,
    #[error("the signature does not match the webhook secret")]
    Mismatch,
}

/// Checks `header` against `body`, in constant time.
pub fn verify(secret: &[u8], header: Option<&str>, body: &[u8]) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or(SignatureError::Malformed)?;
    if hex_digest.len() != 64 {
        return Err(SignatureError::Malformed);
    }
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// Checks `header` against `body` under each secret in turn: while a secret is being
/// rotated, deliveries signed with the old one and with the new one are both genuine.
pub fn verify_any(
    secrets: &[&[u8]],
    header: Option<&str>,
    body: &[u8],
) -> Result<(), SignatureError> {
    let mut outcome = Err(SignatureError::Mismatch);
    for secret in secrets {
        outcome = verify(secret, header, body);
        if outcome != Err(SignatureError::Mismatch) {
            return outcome;
        }
    }
    outcome
}

/// The header value GitHub would send for `body`; for `sam receive` and tests.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    // GitHub's published test vector for webhook validation.
    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const PAYLOAD: &[u8] = b"Hello, World!";
    const HEADER: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    #[test]
    fn githubs_test_vector_verifies() {
        assert_eq!(verify(SECRET, Some(HEADER), PAYLOAD), Ok(()));
        assert_eq!(sign(SECRET, PAYLOAD), HEADER);
    }

    #[test]
    fn one_changed_byte_is_a_mismatch() {
        assert_eq!(
            verify(SECRET, Some(HEADER), b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        assert_eq!(verify(SECRET, None, PAYLOAD), Err(SignatureError::Missing));
        for bad in [
            "",
            "sha256=",
            "sha1=01dc10d0c83e72ed246219cdd91669667fe2ca59",
            &HEADER[7..],
            "sha256=zz",
            &HEADER[..70],
        ] {
            assert_eq!(
                verify(SECRET, Some(bad), PAYLOAD),
                Err(SignatureError::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn any_of_several_secrets_verifies() {
        let old: &[u8] = b"the previous secret";
        assert_eq!(verify_any(&[old, SECRET], Some(HEADER), PAYLOAD), Ok(()));
        assert_eq!(verify_any(&[SECRET, old], Some(HEADER), PAYLOAD), Ok(()));
        assert_eq!(
            verify_any(&[old], Some(HEADER), PAYLOAD),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_any(&[old, SECRET], None, PAYLOAD),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_any(&[], Some(HEADER), PAYLOAD),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn uppercase_hex_is_accepted() {
        let upper = format!("sha256={}", HEADER[7..].to_uppercase());
        assert_eq!(verify(SECRET, Some(&upper), PAYLOAD), Ok(()));
    }
}
