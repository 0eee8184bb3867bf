//! The App's RSA key pair and the JWTs made with it.

use std::sync::OnceLock;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use rsa::PrivateKey;
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey, LineEnding};
use serde_json::json;

/// An RSA key pair, in the forms GitHub hands out (PKCS#1 PEM) and jsonwebtoken takes (DER).
#[derive(Clone)]
pub(super) struct AppKey {
    pub private_pem: String,
    private_der: Vec<u8>,
    public_der: Vec<u8>,
}

impl AppKey {
    /// A new 2048-bit key. Takes about half a second in a debug build.
    pub fn generate() -> Self {
        let private = PrivateKey::new(&mut rand::rng(), 2048).expect("generate an RSA key");
        Self {
            private_pem: private
                .to_pkcs1_pem(LineEnding::LF)
                .expect("encode PEM")
                .to_string(),
            private_der: private
                .to_pkcs1_der()
                .expect("encode DER")
                .as_bytes()
                .to_vec(),
            public_der: private
                .to_public_key()
                .to_pkcs1_der()
                .expect("encode DER")
                .as_bytes()
                .to_vec(),
        }
    }

    /// One key generated per test process and shared by every stand-in, so that starting
    /// a stand-in stays cheap. Keys made by the manifest flow are always fresh.
    pub fn shared() -> Self {
        static KEY: OnceLock<AppKey> = OnceLock::new();
        KEY.get_or_init(Self::generate).clone()
    }

    pub fn decoding_key(&self) -> DecodingKey {
        DecodingKey::from_rsa_der(&self.public_der)
    }

    /// An App JWT with the given claims, signed RS256 as GitHub expects.
    pub fn sign(&self, iss: &serde_json::Value, iat: i64, exp: i64) -> String {
        let claims = json!({ "iat": iat, "exp": exp, "iss": iss });
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &claims,
            &EncodingKey::from_rsa_der(&self.private_der),
        )
        .expect("sign a JWT")
    }
}
