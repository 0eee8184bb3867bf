//! TLS for the API of an agent on a host sam created. The agent makes its own self-signed
//! certificate; sam learns it at registration and accepts that certificate alone, so no
//! certificate authority or name is involved, and the private key never leaves the host.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A client that connects and then says nothing must not hold a task for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for the server to take them.
const BACKLOG: usize = 64;

/// The agent's certificate and its private key.
pub struct Identity {
    certificate: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
}

impl Identity {
    /// A new key (ECDSA P-256) and a self-signed certificate for it. The certificate names
    /// no address: sam pins its bytes rather than checking a name.
    pub fn generate() -> anyhow::Result<Self> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .context("cannot generate the agent's TLS key")?;
        let mut params = rcgen::CertificateParams::new(vec!["sam-agent".to_owned()])
            .context("cannot describe the agent's certificate")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sam-agent");
        let certificate = params
            .self_signed(&key)
            .context("cannot sign the agent's certificate")?;
        Ok(Self {
            certificate: certificate.der().clone(),
            key: PrivatePkcs8KeyDer::from(key.serialize_der()),
        })
    }

    /// An identity saved earlier: the certificate's DER and the key's PKCS#8 DER.
    pub fn from_der(certificate: Vec<u8>, key: Vec<u8>) -> Self {
        Self {
            certificate: CertificateDer::from(certificate),
            key: PrivatePkcs8KeyDer::from(key),
        }
    }

    /// The certificate, DER-encoded: what sam pins.
    pub fn certificate(&self) -> &[u8] {
        self.certificate.as_ref()
    }

    /// The private key, PKCS#8 DER-encoded.
    pub fn key(&self) -> &[u8] {
        self.key.secret_pkcs8_der()
    }

    /// The server side of TLS with this identity; no client certificates, as sam proves
    /// itself with the tokens each request carries.
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("the TLS provider supports no protocol version")?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.certificate.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .context("the agent's TLS key does not fit its certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A listener whose connections are TLS streams. Handshakes run side by side in tasks of
/// their own, so one slow or silent client delays nobody else's connection.
pub struct TlsListener {
    handshaken: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accepting: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> anyhow::Result<Self> {
        let local = listener.local_addr().context("no local address")?;
        let (sender, handshaken) = mpsc::channel(BACKLOG);
        let accepting = tokio::spawn(accept(listener, TlsAcceptor::from(config), sender));
        Ok(Self {
            handshaken,
            local,
            accepting,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn accept(
    mut listener: TcpListener,
    acceptor: TlsAcceptor,
    sender: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = sender.closed() => return,
        };
        let acceptor = acceptor.clone();
        let sender = sender.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = sender.send((stream, peer)).await;
                }
                Ok(Err(error)) => tracing::debug!(%peer, %error, "a TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "a TLS handshake took too long"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.handshaken.recv().await {
            Some(connection) => connection,
            // The accepting task never ends while this receiver lives; should it die
            // anyway (a panic), no connection comes again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_identity_serves_the_same_certificate() {
        let identity = Identity::generate().unwrap();
        let again = Identity::from_der(identity.certificate().to_vec(), identity.key().to_vec());
        assert_eq!(again.certificate(), identity.certificate());
        again
            .server_config()
            .expect("the saved key fits the saved certificate");
        assert_ne!(
            Identity::generate().unwrap().certificate(),
            identity.certificate(),
            "each agent makes a certificate of its own"
        );
    }
}
