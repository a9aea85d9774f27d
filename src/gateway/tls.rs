//! TLS for the gateway's listener (`[gateway.tls]`), served with rustls on *ring*.
//!
//! The certificate and key are read from their files at start, and again whenever either file
//! changes on disk ([`super::watch`]): a renewed pair (certbot, cert-manager, a cron job) serves
//! the next handshake, with no restart and no signal. A pair that fails to load (a half-written
//! file, a key that does not match) is logged and the previous one kept. With `client_ca`, every client must present a
//! certificate of that CA (mutual TLS).

use crate::config::GatewayTls;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the certificate, the key or the CA.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA cannot verify clients.
    #[error("client_ca: {0}")]
    ClientCa(String),
}

fn file_error(path: &Path, message: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// The certificates of a PEM file, in order.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no CERTIFICATE in it"));
    }
    Ok(certs)
}

/// The certificate chain and key of `tls`, checked against each other.
fn load(tls: &GatewayTls, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(&tls.cert)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| file_error(&tls.key, e))?;
    Ok(CertifiedKey::from_der(chain, key, provider)?)
}

/// Serves the pair of [`load`], read again when its files change.
#[derive(Debug)]
struct Reloading(super::watch::Watched<CertifiedKey>);

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// The acceptor for `[gateway.tls]`: its pair loaded now (an error names the file), reloaded as
/// its files change.
pub fn acceptor(tls: &GatewayTls) -> Result<tokio_rustls::TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let first = load(tls, &provider)?;
    let (again, p) = (tls.clone(), Arc::clone(&provider));
    let resolver = Reloading(super::watch::Watched::new(
        "gateway TLS certificate",
        vec![tls.cert.clone(), tls.key.clone()],
        first,
        move || load(&again, &p).map_err(|e| e.to_string()),
    ));
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &tls.client_ca {
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates(path)? {
                roots.add(cert).map_err(|e| file_error(path, e))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| TlsError::ClientCa(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
