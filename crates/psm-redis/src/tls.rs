//! TLS through rustls: system roots plus `ssl_ca_certs`, or (only when asked) no verification.

use std::sync::Arc;

use fred::types::config::{TlsConfig, TlsConnector};
use psm_core::{Error, Result};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, aws_lc_rs, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use crate::config::{RedisConfig, SslCertReqs};

fn tls_error(msg: &'static str) -> Error {
    Error::configuration(msg).with_detail("key", "ssl_ca_certs")
}

/// The rustls client configuration for `config` (exposed for tests through [`build_tls`]).
pub(crate) fn client_config(config: &RedisConfig) -> Result<ClientConfig> {
    let provider = Arc::new(aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::configuration("tls protocol versions unavailable"))?;
    if config.ssl_cert_reqs == SslCertReqs::None {
        tracing::warn!(
            provider = crate::PROVIDER,
            "ssl_cert_reqs is \"none\": the redis server certificate is NOT verified (insecure)"
        );
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth());
    }
    let mut roots = RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A malformed system certificate is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = &config.ssl_ca_certs {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|_| tls_error("cannot read the ssl_ca_certs pem file"))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|_| tls_error("ssl_ca_certs holds a malformed certificate"))?;
            roots
                .add(cert)
                .map_err(|_| tls_error("ssl_ca_certs holds an unusable certificate"))?;
            added += 1;
        }
        if added == 0 {
            return Err(tls_error("ssl_ca_certs holds no certificate"));
        }
    }
    if roots.is_empty() {
        return Err(tls_error(
            "no root certificates: set ssl_ca_certs or install system roots",
        ));
    }
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

/// fred's TLS settings for `config`.
pub(crate) fn build_tls(config: &RedisConfig) -> Result<TlsConfig> {
    Ok(TlsConnector::from(client_config(config)?).into())
}

/// Accepts every certificate; only for `ssl_cert_reqs: "none"`. Signatures are still checked so
/// the handshake is well formed.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
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
