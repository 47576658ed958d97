//! Reading a backup back: find its manifest, stream its object from a region through
//! SHA-256, age and zstd into `pg_restore`.
//!
//! The object is never written to disk. Corruption is caught three ways: the size
//! against the manifest before reading, age's authenticated 64 KiB chunks while reading
//! (a flipped bit stops the stream before it reaches pg_restore), and SHA-256 of every
//! stored byte at the end, checked before pg_restore is allowed to commit its single
//! transaction. Errors say whether another region could do better
//! ([`RestoreError::is_region_specific`]).

use std::io::{self, BufReader, Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use crate::config::ClusterConfig;
use crate::ids::{BackupId, RegionName, TenantName};
use crate::keys::Identities;
use crate::manifest::{self, Manifest, ManifestError, ObjectKey};
use crate::policy;
use crate::postgres::{self, PgTools, PostgresError};
use crate::progress::Progress;
use crate::region::{Region, RegionError};

/// Manifests are small; anything larger is not one.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Region(#[from] RegionError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("region {region}: manifest {key} is not the one asked for: {reason}")]
    ManifestMismatch {
        region: RegionName,
        key: String,
        reason: String,
    },
    #[error("tenant {tenant} has no backups in any reachable region{}", if reasons.is_empty() { String::new() } else { format!(" ({reasons})") })]
    NoBackups { tenant: TenantName, reasons: String },
    #[error("backup {backup} of tenant {tenant} was found in no region: {reasons}")]
    BackupNotFound {
        tenant: TenantName,
        backup: BackupId,
        reasons: String,
    },
    #[error(
        "region {region}: object {key} has {actual} bytes but the manifest says {expected} (truncated or replaced)"
    )]
    SizeMismatch {
        region: RegionName,
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("region {region}: object {key} does not match the manifest's SHA-256 (corrupt)")]
    ChecksumMismatch { region: RegionName, key: String },
    #[error(
        "region {region}: object {key} is not a valid age stream (corrupt or truncated): {message}"
    )]
    Corrupt {
        region: RegionName,
        key: String,
        message: String,
    },
    #[error(
        "the identity file does not match any recipient of backup {backup} (encrypted to key fingerprints {fingerprints})"
    )]
    WrongIdentity {
        backup: BackupId,
        fingerprints: String,
    },
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error("restore worker failed: {0}")]
    Worker(String),
}

impl RestoreError {
    /// Whether trying the same backup from another region may succeed.
    pub fn is_region_specific(&self) -> bool {
        matches!(
            self,
            RestoreError::Region(_)
                | RestoreError::Manifest(_)
                | RestoreError::ManifestMismatch { .. }
                | RestoreError::SizeMismatch { .. }
                | RestoreError::ChecksumMismatch { .. }
                | RestoreError::Corrupt { .. }
        )
    }
}

/// Which backup to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupSelector {
    Id(BackupId),
    Latest,
}

/// Read the manifest of `backup_id` of `tenant` from `region`, and check that it is that
/// manifest: its tenant, backup id and object key must be the ones asked for. Whoever can
/// write one bucket could otherwise put tenant B's manifest (and object) under tenant A's
/// name, and A's restore would deliver B's data.
pub async fn read_manifest(
    region: &Region,
    tenant: &TenantName,
    backup_id: BackupId,
) -> Result<Manifest, RestoreError> {
    let key = ObjectKey::Manifest(tenant, backup_id).to_key();
    let bytes = region.get_small_object(&key, MAX_MANIFEST_BYTES).await?;
    let manifest = Manifest::from_json(&key, &bytes)?;
    let mismatch = |reason: String| RestoreError::ManifestMismatch {
        region: region.name().clone(),
        key: key.clone(),
        reason,
    };
    if &manifest.tenant != tenant {
        return Err(mismatch(format!(
            "it is for tenant {}, not {tenant}",
            manifest.tenant
        )));
    }
    if manifest.backup_id != backup_id {
        return Err(mismatch(format!(
            "it is for backup {}, not {backup_id}",
            manifest.backup_id
        )));
    }
    let object_key = ObjectKey::Dump(tenant, backup_id).to_key();
    if manifest.object.key != object_key {
        return Err(mismatch(format!(
            "it names object {:?}, not {object_key:?}",
            manifest.object.key
        )));
    }
    Ok(manifest)
}

/// Check a manifest read from a region against what the catalog recorded when the backup
/// was committed: a manifest rewritten in a bucket since then is not believed.
pub fn check_manifest_against_catalog(
    region: &RegionName,
    manifest: &Manifest,
    catalog_sha256: &str,
) -> Result<(), RestoreError> {
    if manifest.object.sha256.eq_ignore_ascii_case(catalog_sha256) {
        return Ok(());
    }
    Err(RestoreError::ManifestMismatch {
        region: region.clone(),
        key: ObjectKey::Manifest(&manifest.tenant, manifest.backup_id).to_key(),
        reason: format!(
            "its SHA-256 {} differs from the catalog's {catalog_sha256}",
            manifest.object.sha256
        ),
    })
}

/// The backup ids of `tenant` (or of every tenant) that have a manifest in `region`, oldest first.
pub async fn list_backup_ids(
    region: &Region,
    tenant: Option<&TenantName>,
) -> Result<Vec<(TenantName, BackupId)>, RegionError> {
    let keys = region.list_keys(&manifest::listing_prefix(tenant)).await?;
    let mut ids: Vec<(TenantName, BackupId)> = keys
        .iter()
        .filter_map(|key| manifest::parse_manifest_key(key))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The backup `selector` names. For the newest, every region is listed, because a degraded
/// backup may be in some only. A committed backup was written to at least `min_regions`
/// of them, so once all but `min_regions - 1` have answered, one of those holds the
/// newest; the rest get `policy::LISTING_GRACE`, and one still silent then is left out
/// with a warning, so a wedged region costs seconds, not the request timeout.
pub async fn resolve_backup(
    regions: &[Region],
    min_regions: usize,
    tenant: &TenantName,
    selector: BackupSelector,
) -> Result<ResolvedBackup, RestoreError> {
    let mut unlisted = Vec::new();
    let backup_id = match selector {
        BackupSelector::Id(backup_id) => backup_id,
        BackupSelector::Latest => {
            let requests = regions
                .iter()
                .map(|region| async move {
                    list_backup_ids(region, Some(tenant))
                        .await
                        .map_err(|error| error.to_string())
                })
                .collect();
            let enough = regions.len().saturating_sub(min_regions.max(1)) + 1;
            let (listings, _) = crate::stragglers::join_bounded(
                requests,
                enough,
                policy::LISTING_GRACE,
                "still listing backups",
                None,
            )
            .await;
            let mut reasons = Vec::new();
            let mut newest: Option<BackupId> = None;
            for (region, listing) in regions.iter().zip(listings) {
                match listing {
                    Ok(ids) => {
                        let region_newest = ids.last().map(|(_, backup_id)| *backup_id);
                        newest = newest.max(region_newest);
                    }
                    Err(reason) => {
                        tracing::warn!(region = %region.name(), %reason, "the newest backup is chosen without this region");
                        reasons.push(format!("region {}: {reason}", region.name()));
                        unlisted.push((region.name().clone(), reason));
                    }
                }
            }
            newest.ok_or_else(|| RestoreError::NoBackups {
                tenant: tenant.clone(),
                reasons: reasons.join("; "),
            })?
        }
    };
    Ok(ResolvedBackup {
        backup_id,
        unlisted,
    })
}

/// The backup a selector named, and the regions left out of the search for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBackup {
    pub backup_id: BackupId,
    /// With `--latest`, the regions that could not be listed, and why: a newer backup
    /// that only they hold was not considered.
    pub unlisted: Vec<(RegionName, String)>,
}

/// Where a restore writes.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    pub tools: PgTools,
    pub cluster: ClusterConfig,
    /// Must exist and be empty.
    pub database: String,
    /// Restore as this role (`pg_restore --no-owner --role`): every object, large objects
    /// included, is owned by it. `None`: as the dump says (and as the cluster's user).
    pub owner_role: Option<String>,
}

/// What one streamed restore did.
#[derive(Debug, Clone)]
pub struct StreamedRestore {
    pub region: RegionName,
    pub stored_bytes: u64,
    pub dump_bytes: u64,
    pub duration: Duration,
}

/// Hashes and counts every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}

/// Stream `manifest`'s object from `region` into pg_restore on `target`.
pub async fn stream_restore(
    region: &Region,
    manifest: &Manifest,
    identities: Arc<Identities>,
    target: &RestoreTarget,
    progress: Arc<dyn Progress>,
) -> Result<StreamedRestore, RestoreError> {
    let started = Instant::now();
    let key = manifest.object.key.clone();
    let expected_bytes = manifest.object.stored_bytes;
    let object = region.get_object(&key).await?;
    if let Some(actual) = object.content_length
        && actual != expected_bytes
    {
        return Err(RestoreError::SizeMismatch {
            region: region.name().clone(),
            key,
            expected: expected_bytes,
            actual,
        });
    }
    let (mut pg_restore, pg_restore_stderr) = postgres::spawn_pg_restore(
        &target.tools,
        &target.cluster,
        &target.database,
        target.owner_role.as_deref(),
    )?;
    let stdin = pg_restore.stdin.take();
    let reader = SyncIoBridge::new(object.body.into_async_read());
    let region_name = region.name().clone();
    let manifest = manifest.clone();
    let worker = tokio::task::spawn_blocking(move || {
        let mut hashing = HashingReader {
            inner: reader,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let corrupt = |message: String| RestoreError::Corrupt {
            region: region_name.clone(),
            key: manifest.object.key.clone(),
            message,
        };
        let mut stdin = stdin;
        let streamed = (|| -> Result<u64, RestoreError> {
            let stdin = stdin
                .as_mut()
                .ok_or_else(|| RestoreError::Worker("pg_restore has no stdin".to_owned()))?;
            let decryptor =
                age::Decryptor::new_buffered(BufReader::with_capacity(256 * 1024, &mut hashing))
                    .map_err(|error| corrupt(error.to_string()))?;
            let plaintext = decryptor
                .decrypt(identities.iter())
                .map_err(|error| match error {
                    age::DecryptError::NoMatchingKeys => RestoreError::WrongIdentity {
                        backup: manifest.backup_id,
                        fingerprints: manifest.pipeline.recipient_fingerprints.join(", "),
                    },
                    other => corrupt(other.to_string()),
                })?;
            let mut decoder = zstd::stream::read::Decoder::new(plaintext)
                .map_err(|error| corrupt(error.to_string()))?;
            let mut buffer = vec![0u8; 256 * 1024];
            let mut dump_bytes = 0u64;
            loop {
                let read = match decoder.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(corrupt(error.to_string())),
                };
                if stdin.write_all(&buffer[..read]).is_err() {
                    // pg_restore stopped reading: its own error says why.
                    return Err(RestoreError::Postgres(PostgresError::ToolFailed {
                        program: "pg_restore".to_owned(),
                        status: "stopped reading its input".to_owned(),
                        stderr: pg_restore_stderr.text(),
                    }));
                }
                dump_bytes += read as u64;
                progress.add_bytes(read as u64);
            }
            // Read whatever follows the zstd frame, so every stored byte is hashed.
            io::copy(&mut decoder.finish(), &mut io::sink())
                .map_err(|error| corrupt(error.to_string()))?;
            Ok(dump_bytes)
        })();
        let dump_bytes = match streamed {
            Ok(dump_bytes) => dump_bytes,
            Err(error) => {
                let _ = pg_restore.kill();
                let _ = pg_restore.wait();
                return Err(error);
            }
        };
        let sha256 = hex::encode(hashing.hasher.finalize());
        if hashing.bytes != manifest.object.stored_bytes || sha256 != manifest.object.sha256 {
            // Killed before it reads end-of-input, pg_restore never commits.
            let _ = pg_restore.kill();
            let _ = pg_restore.wait();
            return Err(RestoreError::ChecksumMismatch {
                region: region_name,
                key: manifest.object.key.clone(),
            });
        }
        // End of input only now, after the checksum: the dump was the one committed.
        drop(stdin);
        postgres::wait_for_tool("pg_restore", &mut pg_restore, &pg_restore_stderr)?;
        Ok((hashing.bytes, dump_bytes))
    });
    let (stored_bytes, dump_bytes) = worker
        .await
        .map_err(|join_error| RestoreError::Worker(join_error.to_string()))??;
    Ok(StreamedRestore {
        region: region.name().clone(),
        stored_bytes,
        dump_bytes,
        duration: started.elapsed(),
    })
}
