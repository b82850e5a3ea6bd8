//! TLS through rustls (aws-lc-rs): the client configurations behind each [`SslMode`].

use std::sync::Arc;

use psm_core::{Error, Result};
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{PostgresConfig, SslMode};

/// The TLS connector for `config`, or `None` for `sslmode = disable`.
///
/// - `prefer` and `require` encrypt without authenticating the server (libpq's meaning): the
///   handshake signature is still checked against the presented certificate, but the certificate
///   is not checked against any root or name.
/// - `verify-full` checks the chain against `sslrootcert` (a PEM file) or, without it, the
///   system's root store, and checks the host name.
///
/// # Errors
/// `ProviderConfiguration` when the root certificates cannot be read or none is usable.
pub(crate) fn connector(config: &PostgresConfig) -> Result<Option<MakeRustlsConnect>> {
    let client = match config.sslmode {
        SslMode::Disable => return Ok(None),
        SslMode::Prefer | SslMode::Require => unverified_config()?,
        SslMode::VerifyFull => verified_config(config)?,
    };
    Ok(Some(MakeRustlsConnect::new(client)))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>> {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::configuration("postgres tls setup failed").with_source(e))
}

fn verified_config(config: &PostgresConfig) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    match &config.sslrootcert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| {
                    Error::configuration("postgres config `sslrootcert` cannot be read")
                        .with_detail("key", "sslrootcert")
                        .with_source(e)
                })?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| {
                    Error::configuration("postgres config `sslrootcert` is not valid pem")
                        .with_detail("key", "sslrootcert")
                        .with_source(e)
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(Error::configuration(
                    "postgres config `sslrootcert` holds no usable certificate",
                )
                .with_detail("key", "sslrootcert"));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(Error::configuration(
                    "sslmode verify-full found no system root certificates; set sslrootcert",
                )
                .with_detail("key", "sslrootcert"));
            }
        }
    }
    Ok(builder()?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

fn unverified_config() -> Result<ClientConfig> {
    let algorithms = provider().signature_verification_algorithms;
    Ok(builder()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(EncryptOnly { algorithms }))
        .with_no_client_auth())
}

/// Accepts any server certificate (libpq `prefer`/`require`: encryption without authentication),
/// while still verifying that the server holds the certificate's key.
#[derive(Debug)]
struct EncryptOnly {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::io::Write;

    use super::*;

    fn cfg(mode: SslMode) -> PostgresConfig {
        PostgresConfig {
            sslmode: mode,
            ..PostgresConfig::default()
        }
    }

    #[test]
    fn disable_builds_no_connector_and_the_others_do() {
        assert!(connector(&cfg(SslMode::Disable)).unwrap().is_none());
        assert!(connector(&cfg(SslMode::Prefer)).unwrap().is_some());
        assert!(connector(&cfg(SslMode::Require)).unwrap().is_some());
    }

    #[test]
    fn verify_full_reads_the_root_file_and_rejects_bad_ones() {
        let mut missing = cfg(SslMode::VerifyFull);
        missing.sslrootcert = Some("/nonexistent/psm-root.pem".into());
        let e = connector(&missing).err().unwrap();
        assert_eq!(e.kind(), psm_core::ErrorKind::ProviderConfiguration);
        assert_eq!(e.detail("key"), Some("sslrootcert"));

        let mut empty = tempfile::NamedTempFile::new().unwrap();
        empty.write_all(b"not a certificate\n").unwrap();
        let mut bad = cfg(SslMode::VerifyFull);
        bad.sslrootcert = Some(empty.path().to_path_buf());
        let e = connector(&bad).err().unwrap();
        assert_eq!(e.kind(), psm_core::ErrorKind::ProviderConfiguration);
    }

    #[test]
    fn verify_full_accepts_a_pem_bundle() {
        let bundle = "/etc/ssl/certs/ca-certificates.crt";
        assert!(
            std::path::Path::new(bundle).exists(),
            "this test needs the system CA bundle at {bundle} (package ca-certificates)"
        );
        let mut c = cfg(SslMode::VerifyFull);
        c.sslrootcert = Some(bundle.into());
        assert!(connector(&c).unwrap().is_some());
    }

    #[test]
    fn verify_full_uses_system_roots_when_present() {
        // The system store may be empty in a minimal container; then the error must say so.
        match connector(&cfg(SslMode::VerifyFull)) {
            Ok(c) => assert!(c.is_some()),
            Err(e) => assert_eq!(e.detail("key"), Some("sslrootcert")),
        }
    }
}
