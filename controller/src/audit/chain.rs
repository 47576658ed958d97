//! The chain's arithmetic: the canonical encoding of an entry, its keyed hash, the genesis
//! value the first chained entry points back to, and the audit key.
//!
//! `entry_hash = HMAC-SHA-256(key, encoding)`, where the encoding is a domain tag followed by
//! every field in a fixed order, each as a presence byte (for the optional ones) and a
//! big-endian length before its bytes, so no two different entries share an encoding:
//! id, at (microseconds since the epoch, exactly what `timestamptz` stores), actor, role,
//! tenant, action, reason, address, details (the catalog's jsonb text of them), key id and
//! the previous entry's hash.
//!
//! Why a key: whoever holds the catalog's SQL credentials can rewrite rows and recompute a
//! plain SHA-256 chain from the change onwards. With HMAC they would need the key, which
//! lives in a file beside the configuration (`audit_key_file`), never in the catalog.
//! Without a configured key the chain still links entries, hashed with a public key
//! ([`UNKEYED`]): that detects accidents and careless edits, not a deliberate rewrite.

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The length of every hash in the chain.
pub const HASH_BYTES: usize = 32;

/// The public "key" of entries chained without an audit key.
const UNKEYED: &[u8] = b"lifeboat audit log without a key";

/// The shortest secret an audit key file may hold.
const MIN_KEY_CHARACTERS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error("audit_key_file: {0}")]
    Unreadable(#[from] lifeboat_core::keys::KeyError),
    #[error(
        "audit_key_file {path}: holds {characters} characters; it needs a secret of at least {MIN_KEY_CHARACTERS} (`lifeboat audit keygen FILE` writes one)"
    )]
    TooShort { path: String, characters: usize },
}

/// The secret that keys the chain's hashes. `Debug` shows only its id.
#[derive(Clone)]
pub struct AuditKey {
    secret: Vec<u8>,
    id: String,
}

impl fmt::Debug for AuditKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "AuditKey({}, secret redacted)", self.id)
    }
}

impl AuditKey {
    /// Read the key file (refused when group or others can read it). Its content, trimmed,
    /// is the secret.
    pub fn load(path: &Path) -> Result<AuditKey, AuditKeyError> {
        let text = lifeboat_core::keys::read_private_file(path)?;
        let secret = text.trim();
        let characters = secret.chars().count();
        if characters < MIN_KEY_CHARACTERS {
            return Err(AuditKeyError::TooShort {
                path: path.display().to_string(),
                characters,
            });
        }
        Ok(AuditKey::from_secret(secret.as_bytes()))
    }

    /// The key of `secret` (tests build keys this way).
    pub fn from_secret(secret: &[u8]) -> AuditKey {
        let mut mac = new_mac(secret);
        mac.update(b"lifeboat audit key id");
        let id = hex::encode(&mac.finalize().into_bytes()[..8]);
        AuditKey {
            secret: secret.to_vec(),
            id,
        }
    }

    /// A short public name of the key, stored with every entry it chains, so `verify` can
    /// say which key an entry needs. It reveals nothing of the secret.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Write a new audit key (64 hex characters: 244 random bits from two UUIDv4, from the
/// operating system's generator) to `path` with mode 0600; an existing file is refused.
pub fn generate_key_file(path: &Path) -> Result<AuditKey, std::io::Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let secret = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{secret}\n").as_bytes())?;
    file.sync_all()?;
    Ok(AuditKey::from_secret(secret.as_bytes()))
}

/// The key this process chains new entries with. Set once at start from the configuration
/// ([`crate::catalog::Catalog::open`]), so that every writer, deep in any transaction, uses
/// it without each caller passing it along.
static WRITER_KEY: RwLock<Option<Arc<AuditKey>>> = RwLock::new(None);

/// Chain this process's new entries with `key` (None: without a key).
pub fn use_key_for_writing(key: Option<AuditKey>) {
    let mut slot = WRITER_KEY
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = key.map(Arc::new);
}

pub(crate) fn writer_key() -> Option<Arc<AuditKey>> {
    WRITER_KEY
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length; this cannot fail.
    HmacSha256::new_from_slice(key).expect("HMAC accepts any key length")
}

/// What the first chained entry points back to: a hash naming where the chain starts, so
/// that moving the boundary with the unchained entries of before V11 breaks the chain.
pub fn genesis(legacy_last_id: i64) -> [u8; HASH_BYTES] {
    let mut hasher = Sha256::new();
    hasher.update(b"lifeboat audit genesis v1\0");
    hasher.update(legacy_last_id.to_be_bytes());
    hasher.finalize().into()
}

/// One entry's fields, as stored.
#[derive(Debug, Clone, Copy)]
pub struct EntryFields<'a> {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: &'a str,
    pub role: &'a str,
    pub tenant: Option<&'a str>,
    pub action: &'a str,
    pub reason: Option<&'a str>,
    pub address: Option<IpAddr>,
    /// The catalog's text of the jsonb value (`details::text`).
    pub details: &'a str,
    pub key_id: Option<&'a str>,
    pub prev_hash: &'a [u8],
}

impl EntryFields<'_> {
    /// The canonical encoding (see the module's documentation).
    fn encode(&self) -> Vec<u8> {
        fn bytes(out: &mut Vec<u8>, value: &[u8]) {
            out.extend_from_slice(&(value.len() as u64).to_be_bytes());
            out.extend_from_slice(value);
        }
        fn optional(out: &mut Vec<u8>, value: Option<&[u8]>) {
            match value {
                None => out.push(0),
                Some(value) => {
                    out.push(1);
                    bytes(out, value);
                }
            }
        }
        let mut out = Vec::with_capacity(256 + self.details.len());
        out.extend_from_slice(b"lifeboat audit entry v1\0");
        out.extend_from_slice(&self.id.to_be_bytes());
        out.extend_from_slice(&self.at.timestamp_micros().to_be_bytes());
        bytes(&mut out, self.actor.as_bytes());
        bytes(&mut out, self.role.as_bytes());
        optional(&mut out, self.tenant.map(str::as_bytes));
        bytes(&mut out, self.action.as_bytes());
        optional(&mut out, self.reason.map(str::as_bytes));
        let address = self.address.map(|address| address.to_string());
        optional(&mut out, address.as_deref().map(str::as_bytes));
        bytes(&mut out, self.details.as_bytes());
        optional(&mut out, self.key_id.map(str::as_bytes));
        bytes(&mut out, self.prev_hash);
        out
    }

    /// The entry's hash under `key` (None: the public, unkeyed one). The caller makes sure
    /// `key` is the key `key_id` names.
    pub fn hash(&self, key: Option<&AuditKey>) -> [u8; HASH_BYTES] {
        let secret = key.map_or(UNKEYED, |key| key.secret.as_slice());
        let mut mac = new_mac(secret);
        mac.update(&self.encode());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>(details: &'a str, prev: &'a [u8]) -> EntryFields<'a> {
        EntryFields {
            id: 7,
            at: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(),
            actor: "alice",
            role: "operator",
            tenant: Some("acme"),
            action: "tenant.add",
            reason: None,
            address: None,
            details,
            key_id: None,
            prev_hash: prev,
        }
    }

    #[test]
    fn every_field_and_the_key_change_the_hash() {
        let prev = genesis(0);
        let base = fields("{}", &prev);
        let key = AuditKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let unkeyed = base.hash(None);
        assert_ne!(unkeyed, base.hash(Some(&key)));
        let changed = [
            EntryFields { id: 8, ..base },
            EntryFields {
                actor: "alicf",
                ..base
            },
            EntryFields {
                role: "admin",
                ..base
            },
            EntryFields {
                tenant: None,
                ..base
            },
            EntryFields {
                reason: Some(""),
                ..base
            },
            EntryFields {
                address: Some(IpAddr::from([127, 0, 0, 1])),
                ..base
            },
            EntryFields {
                details: "{\"a\": 1}",
                ..base
            },
            EntryFields {
                key_id: Some("x"),
                ..base
            },
        ];
        for other in changed {
            assert_ne!(unkeyed, other.hash(None), "{other:?}");
        }
    }

    #[test]
    fn field_boundaries_cannot_be_moved() {
        let prev = genesis(0);
        let one = EntryFields {
            actor: "ab",
            role: "c",
            ..fields("{}", &prev)
        };
        let other = EntryFields {
            actor: "a",
            role: "bc",
            ..fields("{}", &prev)
        };
        assert_ne!(one.hash(None), other.hash(None));
    }

    #[test]
    fn genesis_names_where_the_chain_starts() {
        assert_ne!(genesis(0), genesis(1));
    }

    #[test]
    fn key_debug_hides_the_secret() {
        let key = AuditKey::from_secret(b"a very secret audit key of 32+ chars");
        assert!(!format!("{key:?}").contains("secret audit"));
        assert_eq!(key.id().len(), 16);
    }
}
