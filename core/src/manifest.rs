//! The manifest: the versioned JSON that commits a backup, and the keys objects live at.
//!
//! A backup exists once its manifest exists in a region, and not before. The manifest
//! describes itself fully (tenant, source, pipeline, sizes, SHA-256, row counts), so the
//! catalog can be rebuilt from the manifests of any one region and a stored object can be
//! restored with stock tools. Every key is built here, through [`ObjectKey`], so the layout
//! has one definition:
//!
//! ```text
//! tenants/<tenant>/<yyyy>/<mm>/<backup-id>.dump.zst.age
//! tenants/<tenant>/<yyyy>/<mm>/<backup-id>.manifest.json
//! ```

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::database_facts::DatabaseFacts;
use crate::ids::{BackupId, ClusterName, RegionName, TenantName};

/// The manifest version this build writes; it reads this one only.
pub const MANIFEST_VERSION: u32 = 1;

const TENANTS_PREFIX: &str = "tenants/";
const OBJECT_SUFFIX: &str = ".dump.zst.age";
const MANIFEST_SUFFIX: &str = ".manifest.json";

/// Where an object of a backup is stored, the same in every region.
#[derive(Debug, Clone, Copy)]
pub enum ObjectKey<'a> {
    /// The encrypted, compressed dump.
    Dump(&'a TenantName, BackupId),
    /// The manifest beside it.
    Manifest(&'a TenantName, BackupId),
}

impl ObjectKey<'_> {
    pub fn to_key(&self) -> String {
        let (tenant, backup_id, suffix) = match self {
            ObjectKey::Dump(tenant, backup_id) => (tenant, backup_id, OBJECT_SUFFIX),
            ObjectKey::Manifest(tenant, backup_id) => (tenant, backup_id, MANIFEST_SUFFIX),
        };
        let created_at = backup_id.created_at();
        format!(
            "{TENANTS_PREFIX}{tenant}/{:04}/{:02}/{backup_id}{suffix}",
            created_at.year(),
            created_at.month()
        )
    }
}

/// The prefix under which all of a tenant's objects are, or all tenants' objects.
pub fn listing_prefix(tenant: Option<&TenantName>) -> String {
    match tenant {
        Some(tenant) => format!("{TENANTS_PREFIX}{tenant}/"),
        None => TENANTS_PREFIX.to_owned(),
    }
}

/// The tenant and backup id of a manifest key; `None` for any other key.
pub fn parse_manifest_key(key: &str) -> Option<(TenantName, BackupId)> {
    parse_key(key, MANIFEST_SUFFIX)
}

/// The tenant and backup id of a dump object's key; `None` for any other key.
pub fn parse_dump_key(key: &str) -> Option<(TenantName, BackupId)> {
    parse_key(key, OBJECT_SUFFIX)
}

fn parse_key(key: &str, suffix: &str) -> Option<(TenantName, BackupId)> {
    let rest = key.strip_prefix(TENANTS_PREFIX)?;
    let file_name = rest.rsplit('/').next()?;
    let tenant = rest.split('/').next()?;
    let backup_id = file_name.strip_suffix(suffix)?;
    Some((
        TenantName::parse(tenant).ok()?,
        BackupId::parse(backup_id).ok()?,
    ))
}

/// Why the backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupKind {
    Scheduled,
    Manual,
    PreRestore,
    /// The final backup `tenant deprovision` takes before it drops the database.
    PreDestroy,
}

impl BackupKind {
    /// The name stored in the catalog and shown to people, as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            BackupKind::Scheduled => "scheduled",
            BackupKind::Manual => "manual",
            BackupKind::PreRestore => "pre-restore",
            BackupKind::PreDestroy => "pre-destroy",
        }
    }
}

/// Where the dump came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    pub cluster: ClusterName,
    pub database: String,
    pub server_version: String,
    pub pg_dump_version: String,
}

/// How the stored bytes were made, outermost last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pipeline {
    /// `pg_dump --format=custom --compress=0`.
    pub format: String,
    pub compression: String,
    pub compression_level: i32,
    pub encryption: String,
    pub recipient_fingerprints: Vec<String>,
}

/// The stored object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    pub key: String,
    /// Bytes pg_dump wrote.
    pub dump_bytes: u64,
    /// Bytes stored in each region, after zstd and age.
    pub stored_bytes: u64,
    /// SHA-256 of the stored bytes, in hex.
    pub sha256: String,
    pub part_size_bytes: u64,
    pub part_count: u64,
}

/// Exact rows of one table, counted inside the dump's own snapshot.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TableRowCount {
    pub schema: String,
    pub table: String,
    pub rows: u64,
}

/// The commit record of one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub tenant: TenantName,
    pub backup_id: BackupId,
    pub kind: BackupKind,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub source: Source,
    pub pipeline: Pipeline,
    pub object: StoredObject,
    /// The regions that held the whole object when the backup was committed.
    pub regions: Vec<RegionName>,
    pub row_counts: Vec<TableRowCount>,
    /// Owners, grants, extensions and large objects, read in the dump's snapshot; absent
    /// from manifests written before they were recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_facts: Option<DatabaseFacts>,
}

/// A manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {key} is not valid JSON: {source}")]
    Malformed {
        key: String,
        source: serde_json::Error,
    },
    #[error(
        "manifest {key} has version {version}; this lifeboat reads version {MANIFEST_VERSION} (upgrade lifeboat to restore it)"
    )]
    UnknownVersion { key: String, version: u64 },
    #[error("manifest {key} has no version field")]
    MissingVersion { key: String },
}

impl Manifest {
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of plain fields always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Parse a manifest read from `key`, checking its version before its shape.
    pub fn from_json(key: &str, bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|source| ManifestError::Malformed {
                key: key.to_owned(),
                source,
            })?;
        let version = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| ManifestError::MissingVersion {
                key: key.to_owned(),
            })?;
        if version != u64::from(MANIFEST_VERSION) {
            return Err(ManifestError::UnknownVersion {
                key: key.to_owned(),
                version,
            });
        }
        serde_json::from_value(value).map_err(|source| ManifestError::Malformed {
            key: key.to_owned(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_listable_by_tenant_and_parse_back() {
        let tenant = TenantName::parse("acme").expect("tenant");
        let backup_id = BackupId::new();
        let key = ObjectKey::Manifest(&tenant, backup_id).to_key();
        assert!(key.starts_with(&listing_prefix(Some(&tenant))), "{key}");
        assert!(
            ObjectKey::Dump(&tenant, backup_id)
                .to_key()
                .ends_with(".dump.zst.age")
        );
        assert_eq!(parse_manifest_key(&key), Some((tenant, backup_id)));
        assert_eq!(
            parse_manifest_key("tenants/acme/2026/01/x.manifest.json"),
            None
        );
    }

    #[test]
    fn backup_kind_names_are_the_serialised_ones() {
        for kind in [
            BackupKind::Scheduled,
            BackupKind::Manual,
            BackupKind::PreRestore,
        ] {
            assert_eq!(
                serde_json::to_string(&kind).expect("serialise"),
                format!("\"{}\"", kind.as_str())
            );
        }
    }

    #[test]
    fn unknown_manifest_version_is_refused_by_name() {
        let error = Manifest::from_json("k.manifest.json", br#"{"version": 9}"#)
            .expect_err("version 9 refused");
        assert!(error.to_string().contains("version 9"), "{error}");
        assert!(Manifest::from_json("k", b"{").is_err());
    }
}
