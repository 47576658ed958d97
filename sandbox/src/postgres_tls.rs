//! TLS for a sandbox PostgreSQL cluster: a throwaway certificate authority and a server
//! certificate it signs, so tests can prove that lifeboat checks what it is told to check
//! (`sslmode` verify-full, verify-ca, require) against a real server.
//!
//! The authority's private key stays in memory; only its certificate is written out (the
//! `ssl_root_cert` a test configures). The server's key is written 0600 and owned by the
//! server's account, as PostgreSQL demands.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// How a sandbox cluster serves TLS.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The host names and addresses the server's certificate is valid for (addresses
    /// such as `127.0.0.1` become IP entries).
    pub server_names: Vec<String>,
    /// `pg_hba.conf` accepts TCP connections only over TLS (`hostssl`); the socket stays
    /// trusted for the sandbox's own connections.
    pub hostssl_only: bool,
}

impl Default for ServerTls {
    /// Valid for `localhost` and `127.0.0.1`, plain TCP still accepted.
    fn default() -> Self {
        ServerTls {
            server_names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            hostssl_only: false,
        }
    }
}

/// A certificate authority for tests.
pub struct TestCertificateAuthority {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCertificateAuthority {
    /// The certificate only: the key stays out of any output.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TestCertificateAuthority")
            .field("certificate", &self.certificate.pem())
            .finish_non_exhaustive()
    }
}

impl TestCertificateAuthority {
    /// A new authority named `common_name`.
    pub fn generate(common_name: &str) -> anyhow::Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new())
            .context("describe the test CA certificate")?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().context("generate the test CA key")?;
        let certificate = params
            .self_signed(&key)
            .context("sign the test CA certificate")?;
        Ok(TestCertificateAuthority { certificate, key })
    }

    /// The authority's certificate in PEM form (what a client trusts).
    pub fn certificate_pem(&self) -> String {
        self.certificate.pem()
    }

    /// Write the authority's certificate to `path`, readable by everyone.
    pub fn write_certificate(&self, path: &Path) -> anyhow::Result<()> {
        fs::write(path, self.certificate_pem())
            .with_context(|| format!("write {}", path.display()))?;
        fs::set_permissions(path, fs::Permissions::from_mode(0o644))
            .with_context(|| format!("make {} readable", path.display()))
    }

    /// A server certificate for `names` and its private key, both in PEM form.
    pub fn issue_server_certificate(&self, names: &[String]) -> anyhow::Result<(String, String)> {
        let mut params =
            CertificateParams::new(names.to_vec()).context("describe the server certificate")?;
        if let Some(first) = names.first() {
            params
                .distinguished_name
                .push(DnType::CommonName, first.as_str());
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().context("generate the server key")?;
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .context("sign the server certificate")?;
        Ok((certificate.pem(), key.serialize_pem()))
    }
}
