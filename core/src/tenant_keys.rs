//! Per-tenant age keys: each tenant's backups are encrypted to its own recipient, and its
//! identity is kept only *wrapped*, i.e. age-encrypted to the organisation's recipients.
//!
//! Why: a departed tenant's data can then be erased everywhere by destroying a few hundred
//! bytes (its wrapped identities), even while its backups stay in object-locked storage:
//! crypto-shredding. Whoever holds the organisation's identity unwraps a tenant's identities
//! in memory when it restores; the plaintext identity is never stored or logged.
//!
//! The wrapped form is a plain age file whose plaintext is an age identity file, so
//! break-glass needs only the stock tool: `age -d -i ORG_KEY identity.age > tenant.key`.
//! One such file holds either one identity (a catalog row) or all of a tenant's identities
//! not shredded, newest first (the `tenants/<tenant>/identity.age` object, and what
//! restore jobs carry).

use std::fmt;
use std::io::{Read, Write};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use chrono::{DateTime, SecondsFormat, Utc};

use crate::ids::TenantName;
use crate::keys::{Identities, Recipient};

/// The largest wrapped identity file accepted (a tenant rotating daily for years stays
/// far below it): whatever comes from a region or the network is bounded.
pub const MAX_WRAPPED_BYTES: usize = 256 * 1024;

/// The object key of a tenant's wrapped identities in a region.
pub fn identity_object_key(tenant: &TenantName) -> String {
    format!("tenants/{tenant}/identity.age")
}

/// Problems wrapping or unwrapping tenant identities. None carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TenantKeyError {
    #[error("no organisation recipients to wrap the tenant identity to")]
    NoOrgRecipients,
    #[error("age could not wrap the tenant identity: {0}")]
    Wrap(String),
    #[error(
        "the organisation's identity file does not open tenant {tenant}'s wrapped identities (a wrong or outdated identity_file?)"
    )]
    WrongOrgIdentity { tenant: String },
    #[error("tenant {tenant}'s wrapped identities are not a valid age file: {reason}")]
    Corrupt { tenant: String, reason: String },
    #[error("tenant {tenant}'s wrapped identities are larger than {MAX_WRAPPED_BYTES} bytes")]
    TooLarge { tenant: String },
}

/// A freshly generated tenant identity, in memory only.
pub struct TenantIdentity {
    identity: age::x25519::Identity,
    created_at: DateTime<Utc>,
}

impl fmt::Debug for TenantIdentity {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "TenantIdentity({} redacted)", self.recipient())
    }
}

impl TenantIdentity {
    pub fn generate() -> TenantIdentity {
        TenantIdentity {
            identity: age::x25519::Identity::generate(),
            created_at: Utc::now(),
        }
    }

    /// Its public key, which backups are encrypted to.
    pub fn recipient(&self) -> Recipient {
        let text = self.identity.to_public().to_string();
        // An X25519 identity's public key always parses as a recipient.
        Recipient::from_str(&text).unwrap_or_else(|_| unreachable!("age1 recipient"))
    }

    pub fn created_at(&self) -> DateTime<Utc> {
        self.created_at
    }

    /// This identity alone, wrapped to `org_recipients`.
    pub fn wrap(&self, org_recipients: &[Recipient]) -> Result<Vec<u8>, TenantKeyError> {
        wrap_identities(std::slice::from_ref(self), org_recipients)
    }
}

/// An identity file with `identities` (newest first, each after a `# created` comment),
/// age-encrypted to `org_recipients`.
pub fn wrap_identities(
    identities: &[TenantIdentity],
    org_recipients: &[Recipient],
) -> Result<Vec<u8>, TenantKeyError> {
    if org_recipients.is_empty() {
        return Err(TenantKeyError::NoOrgRecipients);
    }
    let mut sorted: Vec<&TenantIdentity> = identities.iter().collect();
    sorted.sort_by_key(|identity| std::cmp::Reverse(identity.created_at));
    let mut plaintext = String::new();
    for identity in sorted {
        plaintext.push_str(&format!(
            "# created: {}\n# public key: {}\n{}\n",
            identity
                .created_at
                .to_rfc3339_opts(SecondsFormat::Secs, true),
            identity.recipient(),
            identity.identity.to_string().expose_secret()
        ));
    }
    let plaintext = secrecy::SecretString::from(plaintext);
    let encryptor = age::Encryptor::with_recipients(
        org_recipients
            .iter()
            .map(|recipient| recipient.age_recipient() as &dyn age::Recipient),
    )
    .map_err(|error| TenantKeyError::Wrap(error.to_string()))?;
    let mut wrapped = Vec::new();
    let mut writer = encryptor
        .wrap_output(&mut wrapped)
        .map_err(|error| TenantKeyError::Wrap(error.to_string()))?;
    writer
        .write_all(plaintext.expose_secret().as_bytes())
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|error| TenantKeyError::Wrap(error.to_string()))?;
    Ok(wrapped)
}

/// Open `wrapped` (a wrapped identity file of `tenant`) with the organisation's
/// `org_identities`: the tenant identities in it, newest first, in memory only.
pub fn unwrap_identities(
    tenant: &TenantName,
    wrapped: &[u8],
    org_identities: &Identities,
) -> Result<Vec<TenantIdentity>, TenantKeyError> {
    let corrupt = |reason: String| TenantKeyError::Corrupt {
        tenant: tenant.to_string(),
        reason,
    };
    if wrapped.len() > MAX_WRAPPED_BYTES {
        return Err(TenantKeyError::TooLarge {
            tenant: tenant.to_string(),
        });
    }
    let decryptor = age::Decryptor::new(wrapped).map_err(|error| corrupt(error.to_string()))?;
    let reader = decryptor
        .decrypt(org_identities.iter())
        .map_err(|error| match error {
            age::DecryptError::NoMatchingKeys => TenantKeyError::WrongOrgIdentity {
                tenant: tenant.to_string(),
            },
            other => corrupt(other.to_string()),
        })?;
    let mut plaintext = String::new();
    reader
        .take(MAX_WRAPPED_BYTES as u64)
        .read_to_string(&mut plaintext)
        .map_err(|error| corrupt(error.to_string()))?;
    let plaintext = secrecy::SecretString::from(plaintext);
    let mut identities = Vec::new();
    let mut created_at = None;
    for line in plaintext.expose_secret().lines().map(str::trim) {
        if let Some(created) = line.strip_prefix("# created: ") {
            created_at = DateTime::parse_from_rfc3339(created)
                .ok()
                .map(|time| time.with_timezone(&Utc));
            continue;
        }
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // Never repeat the line: it is a secret.
        let identity = age::x25519::Identity::from_str(line)
            .map_err(|_| corrupt("a line is not an AGE-SECRET-KEY-1… identity".to_owned()))?;
        identities.push(TenantIdentity {
            identity,
            created_at: created_at.take().unwrap_or(DateTime::UNIX_EPOCH),
        });
    }
    if identities.is_empty() {
        return Err(corrupt("it holds no identity".to_owned()));
    }
    Ok(identities)
}

impl Identities {
    /// These (the organisation's) identities and the tenant identities `wrapped` holds,
    /// unwrapped with them: what a restore of a per-tenant backup decrypts with. Backups
    /// made before per-tenant keys still open with the organisation's identities.
    pub fn with_tenant_identities(
        &self,
        tenant: &TenantName,
        wrapped: &[u8],
    ) -> Result<Identities, TenantKeyError> {
        let unwrapped = unwrap_identities(tenant, wrapped, self)?;
        Ok(self.extended_with(
            unwrapped
                .into_iter()
                .map(|tenant_identity| tenant_identity.identity),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org() -> (tempfile::TempDir, Identities, Recipient) {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("org.txt");
        let recipient = crate::keys::generate_identity_file(&path).expect("keygen");
        let identities = Identities::load(&path).expect("load");
        (directory, identities, recipient)
    }

    #[test]
    fn wrapped_identities_unwrap_newest_first_with_the_org_identity_only() {
        let (_dir, org_identities, org_recipient) = org();
        let tenant = TenantName::parse("acme").expect("name");
        let older = TenantIdentity {
            created_at: Utc::now() - chrono::Duration::days(1),
            ..TenantIdentity::generate()
        };
        let newer = TenantIdentity::generate();
        let wrapped = wrap_identities(
            &[
                TenantIdentity {
                    identity: older.identity.clone(),
                    created_at: older.created_at,
                },
                TenantIdentity {
                    identity: newer.identity.clone(),
                    created_at: newer.created_at,
                },
            ],
            &[org_recipient],
        )
        .expect("wrap");
        assert!(
            !String::from_utf8_lossy(&wrapped).contains("AGE-SECRET-KEY"),
            "the identities are not in the clear"
        );
        let unwrapped = unwrap_identities(&tenant, &wrapped, &org_identities).expect("unwrap");
        let recipients: Vec<String> = unwrapped
            .iter()
            .map(|identity| identity.recipient().to_string())
            .collect();
        assert_eq!(
            recipients,
            [newer.recipient().to_string(), older.recipient().to_string()]
        );
        let (_other_dir, other_identities, _) = org();
        let error = unwrap_identities(&tenant, &wrapped, &other_identities)
            .expect_err("another org identity is refused");
        assert!(matches!(error, TenantKeyError::WrongOrgIdentity { .. }));
        assert!(!error.to_string().contains("AGE-SECRET-KEY"));
        let combined = org_identities
            .with_tenant_identities(&tenant, &wrapped)
            .expect("combine");
        assert_eq!(combined.iter().count(), 3);
        assert!(
            combined
                .recipient_fingerprints()
                .contains(&newer.recipient().fingerprint())
        );
    }
}
