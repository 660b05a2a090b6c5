//! TLS for `https` checks (keepalived's `SSL_GET`): rustls with the ring
//! provider. Like keepalived, the certificate is not verified unless asked
//! (`tls_verify`); the handshake's signatures always are. Client configs are
//! built once per (verify, CA file) and shared.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use netcfg::model::HealthCheck;
use tokio::net::TcpStream;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{self, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::{client::TlsStream, TlsConnector};

/// The system's certificate authorities (Debian's ca-certificates).
const SYSTEM_CA: &str = "/etc/ssl/certs/ca-certificates.crt";

type Key = (bool, Option<PathBuf>);

fn configs() -> &'static Mutex<HashMap<Key, Arc<ClientConfig>>> {
    static CONFIGS: OnceLock<Mutex<HashMap<Key, Arc<ClientConfig>>>> = OnceLock::new();
    CONFIGS.get_or_init(Mutex::default)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The client config for `check` (shared between probes).
fn config(check: &HealthCheck) -> Result<Arc<ClientConfig>, String> {
    let key = (check.tls_verify, check.tls_ca.clone());
    // The lock guards a map lookup and, once per key, reading a CA file;
    // never held across an await.
    let mut map = configs().lock().map_err(|_| "TLS config cache poisoned")?;
    if let Some(c) = map.get(&key) {
        return Ok(c.clone());
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = if check.tls_verify {
        let ca = check
            .tls_ca
            .as_deref()
            .unwrap_or_else(|| Path::new(SYSTEM_CA));
        builder
            .with_root_certificates(roots(ca)?)
            .with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
            .with_no_client_auth()
    };
    let config = Arc::new(config);
    map.insert(key, config.clone());
    Ok(config)
}

fn roots(ca: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    Ok(roots)
}

/// The TLS handshake over `tcp`. `name` is sent as SNI and verified; without
/// one the address is (and no SNI is sent).
pub async fn connect(
    check: &HealthCheck,
    name: Option<&str>,
    address: IpAddr,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let server_name = match name {
        Some(n) => {
            ServerName::try_from(n.to_string()).map_err(|e| format!("TLS name {n:?}: {e}"))?
        }
        None => ServerName::IpAddress(address.into()),
    };
    TlsConnector::from(config(check)?)
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// Accepts any certificate (keepalived's default), still checking that the
/// server holds its key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
