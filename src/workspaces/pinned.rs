//! TLS to an agent on a host sam created, trusting exactly the certificate that agent sent
//! at registration.
//!
//! The agent's certificate is self-signed and names no address (the agent may not know
//! the address sam reaches it at), so neither a certificate authority nor a name can
//! vouch for it. The bootstrap token, which only that host had, vouched for the
//! certificate when sam stored it; from then on a connection is to that agent exactly
//! when the peer presents the same certificate and proves, by signing the handshake,
//! that it holds the certificate's key.

use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, SignatureScheme};

/// Longest certificate sam takes from an agent; the agent's own are about 400 bytes.
pub const MAX_CERTIFICATE_LEN: usize = 16 * 1024;

/// Checks that `der` is one X.509 certificate whose key rustls can check signatures of,
/// before sam pins it: a pin that no handshake could ever match is better refused at once.
pub fn check_certificate(der: &[u8]) -> anyhow::Result<()> {
    anyhow::ensure!(
        !der.is_empty() && der.len() <= MAX_CERTIFICATE_LEN,
        "a certificate of {} bytes is not the agent's",
        der.len()
    );
    let certificate = CertificateDer::from(der);
    webpki::EndEntityCert::try_from(&certificate)
        .map_err(|error| anyhow::anyhow!("the certificate cannot be read: {error}"))?;
    Ok(())
}

/// A client configuration that completes a handshake only with the holder of
/// `certificate`'s key presenting that very certificate.
pub fn client_config(certificate: &[u8]) -> anyhow::Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCertificate {
        certificate: CertificateDer::from(certificate.to_vec()),
        algorithms: provider.signature_verification_algorithms,
    });
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("the TLS provider supports no protocol version")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The server name a TLS client needs for `address`; the pin, not the name, decides.
pub fn server_name(address: &str) -> anyhow::Result<ServerName<'static>> {
    ServerName::try_from(address.to_owned())
        .with_context(|| format!("{address:?} is neither an address nor a host name"))
}

#[derive(Debug)]
struct PinnedCertificate {
    certificate: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        // Certificates are public: comparing them in variable time gives nothing away.
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    // The certificate matched the pin; these prove the peer holds its private key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_pinned_certificate_passes() {
        let pinned = PinnedCertificate {
            certificate: CertificateDer::from(vec![0x30, 1, 2, 3]),
            algorithms: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        };
        let name = server_name("192.0.2.7").unwrap();
        let check = |der: Vec<u8>| {
            pinned.verify_server_cert(&CertificateDer::from(der), &[], &name, &[], UnixTime::now())
        };
        assert!(check(vec![0x30, 1, 2, 3]).is_ok());
        assert!(check(vec![0x30, 1, 2, 4]).is_err());
        assert!(check(vec![0x30, 1, 2]).is_err());
        assert!(check(Vec::new()).is_err());
    }

    #[test]
    fn garbage_is_no_certificate() {
        assert!(check_certificate(b"").is_err());
        assert!(check_certificate(b"not a certificate").is_err());
        assert!(check_certificate(&vec![0x30; MAX_CERTIFICATE_LEN + 1]).is_err());
    }
}
