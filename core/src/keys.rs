//! age keys: recipients (public, everywhere) and identities (private, restore side only).
//!
//! Whatever writes backups holds only recipients, so it cannot read what it wrote. An
//! identity file is refused when group or others can read it, as garage refuses its key
//! files, and its contents never reach an error message or a log.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use age::secrecy::ExposeSecret;
use sha2::{Digest, Sha256};

/// Problems with keys and key files. None of them carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0:?} is not an age X25519 recipient (expected age1…)")]
    InvalidRecipient(String),
    #[error(
        "an identity (AGE-SECRET-KEY-1…, a private key) was given where a recipient (age1…, its public key) belongs; it is not shown here. Give the recipient (`age-keygen -y`), and keep the identity away from backup hosts"
    )]
    IdentityGivenAsRecipient,
    #[error("{path} cannot be read: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}")]
    TooOpen { path: String, mode: u32 },
    #[error("{path} is not an age identity file (no AGE-SECRET-KEY-1… line could be parsed)")]
    InvalidIdentityFile { path: String },
    #[error("{path} already exists; refusing to overwrite a key")]
    AlreadyExists { path: String },
    #[error("{path} cannot be written: {source}")]
    Unwritable {
        path: String,
        source: std::io::Error,
    },
}

/// A public key backups are encrypted to.
#[derive(Clone)]
pub struct Recipient {
    text: String,
    key: age::x25519::Recipient,
}

impl Recipient {
    pub fn age_recipient(&self) -> &age::x25519::Recipient {
        &self.key
    }

    /// A short, stable name for this key in manifests: the first 8 bytes of SHA-256 of
    /// its `age1…` text, in hex.
    pub fn fingerprint(&self) -> String {
        fingerprint_of(&self.text)
    }
}

/// The fingerprint of the recipient whose `age1…` text is `recipient_text`.
fn fingerprint_of(recipient_text: &str) -> String {
    let digest = Sha256::digest(recipient_text.as_bytes());
    hex::encode(&digest[..8])
}

impl FromStr for Recipient {
    type Err = KeyError;
    fn from_str(text: &str) -> Result<Self, KeyError> {
        let trimmed = text.trim();
        let key = age::x25519::Recipient::from_str(trimmed).map_err(|_| {
            // An identity pasted where its recipient belongs is a secret: never repeat it.
            if trimmed.to_ascii_uppercase().starts_with("AGE-SECRET-KEY-") {
                KeyError::IdentityGivenAsRecipient
            } else {
                KeyError::InvalidRecipient(trimmed.to_owned())
            }
        })?;
        Ok(Self {
            text: trimmed.to_owned(),
            key,
        })
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.text)
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "Recipient({})", self.text)
    }
}

/// Private keys loaded from an identity file, for decrypting backups.
pub struct Identities {
    identities: Vec<Arc<dyn age::Identity + Send + Sync>>,
    /// The fingerprints of the recipients these identities open (X25519 ones).
    recipient_fingerprints: Vec<String>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "Identities([{} redacted])",
            self.identities.len()
        )
    }
}

impl Identities {
    /// Read an identity file, refusing one that group or others can read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text = read_private_file(path)?;
        let display = path.display().to_string();
        let identity_file = age::IdentityFile::from_buffer(text.as_bytes()).map_err(|_| {
            KeyError::InvalidIdentityFile {
                path: display.clone(),
            }
        })?;
        let identities =
            identity_file
                .into_identities()
                .map_err(|_| KeyError::InvalidIdentityFile {
                    path: display.clone(),
                })?;
        if identities.is_empty() {
            return Err(KeyError::InvalidIdentityFile { path: display });
        }
        // The file parsed: each X25519 identity line gives its public key.
        let recipient_fingerprints = text
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("AGE-SECRET-KEY-1"))
            .filter_map(|line| age::x25519::Identity::from_str(line).ok())
            .map(|identity| fingerprint_of(&identity.to_public().to_string()))
            .collect();
        Ok(Self {
            identities: identities.into_iter().map(Arc::from).collect(),
            recipient_fingerprints,
        })
    }

    /// These identities and `more` (tenant identities unwrapped in memory,
    /// `tenant_keys`), as one set to decrypt with.
    pub fn extended_with(
        &self,
        more: impl IntoIterator<Item = age::x25519::Identity>,
    ) -> Identities {
        let mut identities = self.identities.clone();
        let mut recipient_fingerprints = self.recipient_fingerprints.clone();
        for identity in more {
            recipient_fingerprints.push(fingerprint_of(&identity.to_public().to_string()));
            identities.push(Arc::new(identity));
        }
        Identities {
            identities,
            recipient_fingerprints,
        }
    }

    /// The fingerprints ([`Recipient::fingerprint`]) of the recipients whose backups these
    /// identities open: what a manifest's `recipient_fingerprints` is compared with.
    pub fn recipient_fingerprints(&self) -> &[String] {
        &self.recipient_fingerprints
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn age::Identity> {
        self.identities
            .iter()
            .map(|identity| identity.as_ref() as &dyn age::Identity)
    }
}

/// Refuse a file that group or others can read: it holds a secret.
pub fn check_private_file_permissions(path: &Path) -> Result<(), KeyError> {
    let display = path.display().to_string();
    let metadata = fs::metadata(path).map_err(|source| KeyError::Unreadable {
        path: display.clone(),
        source,
    })?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::TooOpen {
            path: display,
            mode,
        });
    }
    Ok(())
}

/// Read a secret file after checking its permissions.
pub fn read_private_file(path: &Path) -> Result<String, KeyError> {
    check_private_file_permissions(path)?;
    fs::read_to_string(path).map_err(|source| KeyError::Unreadable {
        path: path.display().to_string(),
        source,
    })
}

/// Write a new X25519 identity to `path` with mode 0600 and return its recipient.
/// The file has the same layout as `age-keygen` writes, so the stock `age` tool reads it.
pub fn generate_identity_file(path: &Path) -> Result<Recipient, KeyError> {
    let display = path.display().to_string();
    let identity = age::x25519::Identity::generate();
    let recipient_text = identity.to_public().to_string();
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::AlreadyExists {
                    path: display.clone(),
                }
            } else {
                KeyError::Unwritable {
                    path: display.clone(),
                    source,
                }
            }
        })?;
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let contents = format!(
        "# created: {created}\n# public key: {recipient_text}\n{}\n",
        identity.to_string().expose_secret()
    );
    let write_result = file
        .write_all(contents.as_bytes())
        .and_then(|()| file.sync_all());
    if let Err(source) = write_result {
        let _ = fs::remove_file(path);
        return Err(KeyError::Unwritable {
            path: display,
            source,
        });
    }
    Recipient::from_str(&recipient_text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_identity_is_private_and_loads() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("identity.txt");
        let recipient = generate_identity_file(&path).expect("keygen");
        assert!(recipient.to_string().starts_with("age1"));
        let mode = fs::metadata(&path).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(Identities::load(&path).expect("load").iter().count(), 1);
        assert!(matches!(
            generate_identity_file(&path),
            Err(KeyError::AlreadyExists { .. })
        ));
    }

    #[test]
    fn identity_readable_by_others_is_refused_without_showing_the_key() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("identity.txt");
        generate_identity_file(&path).expect("keygen");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let error = Identities::load(&path).expect_err("open identity refused");
        let message = error.to_string();
        assert!(message.contains("chmod 600"), "{message}");
        assert!(!message.contains("AGE-SECRET-KEY"), "{message}");
    }

    #[test]
    fn invalid_recipient_is_named() {
        let error = Recipient::from_str("age1nope").expect_err("refused");
        assert!(error.to_string().contains("age1nope"));
    }
}
