//! A copy hidden in a locked region, brought back from its locked version.
//!
//! In a bucket with versioning and object lock, a stolen key cannot remove a backup: a
//! plain DELETE only adds a delete marker, an overwrite only adds a version. Scrub then
//! finds the copy missing (the marker) or corrupt (the overwrite), but its locked version
//! is still there. [`recover_copy`] finds, among the versions of the dump, the newest
//! whose SHA-256 is the catalog's, and among those of the manifest the newest whose
//! content is the catalog's manifest, and makes each current again with a server-side
//! copy of that version (a new version, the same bytes, locked as the old one). Nothing is
//! deleted: the marker and the attacker's version stay below, as evidence.

use sha2::{Digest, Sha256};

use crate::ids::{BackupId, TenantName};
use crate::manifest::ObjectKey;
use crate::region::{ObjectVersion, Region, RegionError};

/// Manifests are small; a version larger than this is not one.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// What the catalog knows of the copy to recover.
#[derive(Debug, Clone)]
pub struct ExpectedCopy<'a> {
    pub tenant: &'a TenantName,
    pub backup_id: BackupId,
    pub stored_bytes: u64,
    pub sha256: &'a str,
    /// The manifest as the catalog recorded it.
    pub manifest: &'a serde_json::Value,
}

/// What was done to one object of the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionFix {
    /// Its current version was already the right one.
    AlreadyCurrent,
    /// The right version was made current again; `hidden_by` says what had hidden it.
    Restored { hidden_by: String },
}

/// The dump's fix and the manifest's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub object: VersionFix,
    pub manifest: VersionFix,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("{0}")]
    Region(#[from] RegionError),
    #[error("no version of {key} is the backup's ({why})")]
    NoGoodVersion { key: String, why: String },
}

/// Make the catalog's version of the dump and of the manifest of `expected` current again
/// in `region` (signing with the manager's key: restoring a version writes one).
pub async fn recover_copy(
    region: &Region,
    expected: &ExpectedCopy<'_>,
) -> Result<Recovered, RecoverError> {
    let object_key = ObjectKey::Dump(expected.tenant, expected.backup_id).to_key();
    let manifest_key = ObjectKey::Manifest(expected.tenant, expected.backup_id).to_key();
    let object = recover_key(region, &object_key, |version| {
        let key = object_key.clone();
        async move {
            if version.size != expected.stored_bytes {
                return Ok(false);
            }
            let mut body = region
                .get_object_version(&key, &version.version_id)
                .await?
                .body;
            let mut hasher = Sha256::new();
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else {
                    return Ok(false);
                };
                hasher.update(&chunk);
            }
            Ok(hex::encode(hasher.finalize()) == expected.sha256)
        }
    })
    .await?;
    let manifest = recover_key(region, &manifest_key, |version| {
        let key = manifest_key.clone();
        async move {
            if version.size > MAX_MANIFEST_BYTES {
                return Ok(false);
            }
            let body = region
                .get_object_version(&key, &version.version_id)
                .await?
                .body
                .collect()
                .await;
            let Ok(body) = body else {
                return Ok(false);
            };
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body.into_bytes());
            Ok(parsed.is_ok_and(|parsed| parsed == *expected.manifest))
        }
    })
    .await?;
    Ok(Recovered { object, manifest })
}

/// The newest version of `key` that `is_right` accepts, made current if it is not.
async fn recover_key<F, Fut>(
    region: &Region,
    key: &str,
    is_right: F,
) -> Result<VersionFix, RecoverError>
where
    F: Fn(ObjectVersion) -> Fut,
    Fut: Future<Output = Result<bool, RegionError>>,
{
    let mut versions: Vec<ObjectVersion> = region
        .list_versions(key)
        .await?
        .into_iter()
        .filter(|version| version.key == key)
        .collect();
    versions.sort_by_key(|version| std::cmp::Reverse(version.last_modified));
    let latest = versions
        .iter()
        .find(|version| version.is_latest)
        .or(versions.first())
        .cloned();
    let mut examined = 0;
    for version in versions.iter().filter(|version| !version.delete_marker) {
        examined += 1;
        if !is_right(version.clone()).await? {
            continue;
        }
        if version.is_latest {
            return Ok(VersionFix::AlreadyCurrent);
        }
        let retention = region
            .object_retention(key, Some(&version.version_id))
            .await?;
        region
            .restore_version(
                key,
                &version.version_id,
                retention.map(|retention| retention.retain_until),
            )
            .await?;
        let hidden_by = match latest {
            Some(latest) if latest.delete_marker => "a delete marker".to_owned(),
            Some(latest) => format!("a newer version of {} bytes", latest.size),
            None => "nothing listed".to_owned(),
        };
        return Ok(VersionFix::Restored { hidden_by });
    }
    Err(RecoverError::NoGoodVersion {
        key: key.to_owned(),
        why: format!("{examined} versions examined"),
    })
}
