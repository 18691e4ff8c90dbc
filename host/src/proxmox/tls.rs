//! TLS for Proxmox endpoints: verify (public roots plus an optional CA), pin the node
//! certificate's SHA-256 fingerprint, or (explicitly) accept any certificate.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::{Digest, Sha256};

/// How the server certificate is checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlsMode {
    /// Full verification against public roots and, if given, this CA (PEM; e.g. the
    /// cluster's `pve-root-ca.pem`).
    Verify {
        /// Extra trusted CA certificates, PEM.
        ca_pem: Option<String>,
    },
    /// Accept only a leaf certificate with this SHA-256 fingerprint (hex, colons optional),
    /// as Proxmox shows it in `ssl_fingerprint`.
    Fingerprint(String),
    /// Accept any certificate (the plugin's `verify_ssl=false`).
    Insecure,
}

/// A rustls client configuration for `mode`.
pub fn client_config(mode: &TlsMode) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match mode {
        TlsMode::Verify { ca_pem } => {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(pem) = ca_pem {
                for cert in pem_certificates(pem)? {
                    roots
                        .add(cert)
                        .map_err(|e| format!("bad CA certificate: {e}"))?;
                }
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        TlsMode::Fingerprint(fingerprint) => {
            let expected = parse_fingerprint(fingerprint)?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Pinned {
                    expected: Some(expected),
                    provider,
                }))
                .with_no_client_auth()
        }
        TlsMode::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                expected: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// SHA-256 of a DER certificate as upper-case colon hex (Proxmox's `ssl_fingerprint` form).
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], String> {
    let hex_digits: String = text
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect();
    let bytes = hex::decode(&hex_digits).map_err(|_| format!("fingerprint `{text}` is not hex"))?;
    bytes
        .try_into()
        .map_err(|_| format!("fingerprint `{text}` is not a SHA-256 (32 bytes)"))
}

fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    let certs = certs.map_err(|e| format!("bad CA PEM: {e}"))?;
    if certs.is_empty() {
        return Err("the CA PEM holds no certificate".into());
    }
    Ok(certs)
}

/// Accepts the leaf whose fingerprint matches (or any leaf when `expected` is `None`);
/// handshake signatures are still verified.
#[derive(Debug)]
struct Pinned {
    expected: Option<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.expected {
            None => Ok(ServerCertVerified::assertion()),
            Some(expected) if Sha256::digest(end_entity.as_ref()).as_slice() == expected => {
                Ok(ServerCertVerified::assertion())
            }
            Some(_) => Err(rustls::Error::General(format!(
                "certificate fingerprint {} does not match the pinned one",
                fingerprint(end_entity.as_ref())
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
