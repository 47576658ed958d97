//! The copies of a backup, region by region: check one (scrub), make one again from another
//! region (repair), and clean up multipart uploads that nobody will complete.
//!
//! A copy is the stored object and its manifest, byte for byte as the backup wrote them. They
//! stay encrypted throughout: repair needs no keys, and neither does scrub, which compares the
//! stored bytes against the SHA-256 the catalog holds. Three rules keep a copy trustworthy:
//! - a region that does not answer says nothing about its copies: [`check_copy`] returns an
//!   error, never `Missing`, so the catalog keeps what it knew;
//! - [`replicate`] hashes every byte while it copies and completes the upload only if the
//!   hash and size match; a bad source is abandoned for the next one;
//! - the manifest is written last, because it is the commit point: until it is there the
//!   copy does not exist, and on any failure the upload is aborted or the object deleted.

use std::collections::HashSet;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::api::{CopyCheck, CopyState, ScrubTarget};
use crate::ids::{BackupId, RegionName, TenantName};
use crate::manifest::{self, Manifest, ObjectKey};
use crate::policy;
use crate::region::{Region, RegionError, RegionErrorKind};

/// Manifests are small; anything larger is not one.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

/// Copies checked at once in one region: HEADs are cheap, full reads share the link.
pub const CHECKS_IN_FLIGHT: usize = 4;

/// Uploads younger than this may belong to a backup or repair still running.
pub const STALE_UPLOAD_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// Check one copy of a backup in `region` against the catalog's size and SHA-256.
///
/// `Missing` when the manifest or the object is not there; `Corrupt` when the manifest cannot
/// be read or disagrees with the catalog, or the object has the wrong size or (with `full`,
/// which reads the whole object) the wrong SHA-256. An error means the region could not be
/// asked; the copy's state is then unknown.
pub async fn check_copy(
    region: &Region,
    tenant: &TenantName,
    backup_id: BackupId,
    stored_bytes: u64,
    sha256: &str,
    full: bool,
) -> Result<CopyCheck, RegionError> {
    let manifest_key = ObjectKey::Manifest(tenant, backup_id).to_key();
    let object_key = ObjectKey::Dump(tenant, backup_id).to_key();
    let verdict = |state: CopyState, hashed: bool, detail: Option<String>| CopyCheck {
        backup_id,
        state,
        hashed,
        detail,
    };
    let manifest_bytes = match fetch_manifest(region, &manifest_key).await? {
        FetchedManifest::Missing => {
            return Ok(verdict(
                CopyState::Missing,
                false,
                Some(format!("manifest {manifest_key} is missing")),
            ));
        }
        FetchedManifest::TooLarge(bytes) => {
            return Ok(verdict(
                CopyState::Corrupt,
                false,
                Some(format!(
                    "manifest {manifest_key} has {bytes} bytes, more than a manifest may have"
                )),
            ));
        }
        FetchedManifest::Read(bytes) => bytes,
    };
    let expected = Expected {
        tenant,
        backup_id,
        object_key: &object_key,
        stored_bytes,
        sha256,
    };
    if let Some(problem) = manifest_problem(&manifest_key, &manifest_bytes, &expected) {
        return Ok(verdict(CopyState::Corrupt, false, Some(problem)));
    }
    let Some(actual_bytes) = region.object_size(&object_key).await? else {
        return Ok(verdict(
            CopyState::Missing,
            false,
            Some(format!(
                "object {object_key} is missing (its manifest is there)"
            )),
        ));
    };
    if actual_bytes != stored_bytes {
        return Ok(verdict(
            CopyState::Corrupt,
            false,
            Some(format!(
                "object {object_key} has {actual_bytes} bytes, the catalog says {stored_bytes}"
            )),
        ));
    }
    if !full {
        return Ok(verdict(CopyState::Present, false, None));
    }
    let (read_bytes, actual_sha256) = hash_object(region, &object_key).await?;
    if read_bytes != stored_bytes {
        return Ok(verdict(
            CopyState::Corrupt,
            true,
            Some(format!(
                "object {object_key} read back {read_bytes} bytes, the catalog says {stored_bytes}"
            )),
        ));
    }
    if actual_sha256 != sha256 {
        return Ok(verdict(
            CopyState::Corrupt,
            true,
            Some(format!(
                "object {object_key} has SHA-256 {actual_sha256}, the catalog says {sha256}"
            )),
        ));
    }
    Ok(verdict(CopyState::Present, true, None))
}

/// Check every target in `region`, [`CHECKS_IN_FLIGHT`] at a time, in the targets' order.
pub async fn check_copies(
    region: &Region,
    targets: &[ScrubTarget],
) -> Vec<(BackupId, Result<CopyCheck, RegionError>)> {
    // Owned targets: a closure over borrowed ones makes the future's Send-ness depend on
    // higher-ranked lifetimes the compiler cannot prove when the agent spawns it.
    futures::stream::iter(targets.iter().cloned())
        .map(|target: ScrubTarget| async move {
            let checked = check_copy(
                region,
                &target.tenant,
                target.backup_id,
                target.stored_bytes,
                &target.sha256,
                target.full,
            )
            .await;
            (target.backup_id, checked)
        })
        .buffered(CHECKS_IN_FLIGHT)
        .collect()
        .await
}

/// What the catalog says a copy must be.
struct Expected<'a> {
    tenant: &'a TenantName,
    backup_id: BackupId,
    object_key: &'a str,
    stored_bytes: u64,
    sha256: &'a str,
}

enum FetchedManifest {
    Missing,
    TooLarge(u64),
    Read(Bytes),
}

async fn fetch_manifest(region: &Region, key: &str) -> Result<FetchedManifest, RegionError> {
    let reader = match region.get_object(key).await {
        Ok(reader) => reader,
        Err(error) if error.kind == RegionErrorKind::NotFound => {
            return Ok(FetchedManifest::Missing);
        }
        Err(error) => return Err(error),
    };
    if let Some(length) = reader.content_length
        && length > MAX_MANIFEST_BYTES
    {
        return Ok(FetchedManifest::TooLarge(length));
    }
    let collected = reader
        .body
        .collect()
        .await
        .map_err(|error| stream_error(region, "get object", key, &error))?;
    Ok(FetchedManifest::Read(collected.into_bytes()))
}

/// Why a manifest cannot stand for the catalog's backup, if it cannot.
fn manifest_problem(key: &str, bytes: &[u8], expected: &Expected<'_>) -> Option<String> {
    let manifest = match Manifest::from_json(key, bytes) {
        Ok(manifest) => manifest,
        Err(error) => return Some(error.to_string()),
    };
    let mut disagreements = Vec::new();
    if &manifest.tenant != expected.tenant || manifest.backup_id != expected.backup_id {
        disagreements.push(format!(
            "it names backup {} of tenant {}",
            manifest.backup_id, manifest.tenant
        ));
    }
    if manifest.object.key != expected.object_key {
        disagreements.push(format!("its object key is {}", manifest.object.key));
    }
    if manifest.object.stored_bytes != expected.stored_bytes {
        disagreements.push(format!(
            "it says {} stored bytes, the catalog {}",
            manifest.object.stored_bytes, expected.stored_bytes
        ));
    }
    if manifest.object.sha256 != expected.sha256 {
        disagreements.push(format!(
            "its SHA-256 is {}, the catalog's {}",
            manifest.object.sha256, expected.sha256
        ));
    }
    if disagreements.is_empty() {
        None
    } else {
        Some(format!(
            "manifest {key} disagrees with the catalog: {}",
            disagreements.join("; ")
        ))
    }
}

/// Read a whole object and return its length and SHA-256 (hex). Memory: one chunk.
async fn hash_object(region: &Region, key: &str) -> Result<(u64, String), RegionError> {
    let mut body = region.get_object(key).await?.body;
    let mut hasher = Sha256::new();
    let mut bytes_read = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|error| stream_error(region, "get object", key, &error))?;
        hasher.update(&chunk);
        bytes_read += chunk.len() as u64;
    }
    Ok((bytes_read, hex::encode(hasher.finalize())))
}

/// A body that broke off while being read: the region stopped answering.
fn stream_error(
    region: &Region,
    operation: &'static str,
    key: &str,
    error: &(dyn std::error::Error + 'static),
) -> RegionError {
    RegionError {
        region: region.name().clone(),
        operation,
        key: key.to_owned(),
        part_number: None,
        kind: RegionErrorKind::Unreachable,
        message: crate::region::describe_cause(error),
    }
}

/// Why a replication failed. The target holds no new object and no open upload of it.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error("replicate backup {backup} of tenant {tenant}: no source regions were given")]
    NoSources {
        tenant: TenantName,
        backup: BackupId,
    },
    #[error(
        "replicate backup {backup} of tenant {tenant}: no source region has a good copy ({reasons})"
    )]
    NoGoodSource {
        tenant: TenantName,
        backup: BackupId,
        reasons: String,
    },
    #[error("replicate to region {to}: {source}")]
    Target { to: RegionName, source: RegionError },
}

impl ReplicateError {
    /// Whether trying again later cannot help (nothing to copy from).
    pub fn is_permanent(&self) -> bool {
        matches!(self, ReplicateError::NoSources { .. })
    }
}

/// A copy made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicated {
    pub source: RegionName,
    pub part_count: u64,
}

/// Copy a backup's object and then its manifest, as stored, from the first of `sources` that
/// has a good copy into `to`.
///
/// Memory is two parts of `part_size_bytes`: one uploading while the next is read. A source
/// whose manifest disagrees with the catalog, whose object has the wrong size or SHA-256, or
/// that stops answering, is abandoned (its upload aborted) for the next. A failure in `to`
/// stops at once: another source would not help.
pub async fn replicate(
    sources: &[Region],
    to: &Region,
    tenant: &TenantName,
    backup_id: BackupId,
    stored_bytes: u64,
    sha256: &str,
    part_size_bytes: u64,
) -> Result<Replicated, ReplicateError> {
    if sources.is_empty() {
        return Err(ReplicateError::NoSources {
            tenant: tenant.clone(),
            backup: backup_id,
        });
    }
    let part_size_bytes = usize::try_from(part_size_bytes.max(*policy::PART_SIZE_BYTES.start()))
        .unwrap_or(usize::MAX);
    let object_key = ObjectKey::Dump(tenant, backup_id).to_key();
    let expected = Expected {
        tenant,
        backup_id,
        object_key: &object_key,
        stored_bytes,
        sha256,
    };
    let mut reasons = Vec::new();
    for source in sources {
        match replicate_from(source, to, &expected, part_size_bytes).await {
            Ok(part_count) => {
                tracing::info!(
                    tenant = %tenant, backup = %backup_id, source = %source.name(),
                    region = %to.name(), part_count, "copy replicated"
                );
                return Ok(Replicated {
                    source: source.name().clone(),
                    part_count,
                });
            }
            Err(AttemptError::Source(reason)) => {
                tracing::warn!(
                    tenant = %tenant, backup = %backup_id, source = %source.name(),
                    region = %to.name(), %reason, "source abandoned; trying the next"
                );
                reasons.push(format!("{}: {reason}", source.name()));
            }
            Err(AttemptError::Target(error)) => {
                return Err(ReplicateError::Target {
                    to: to.name().clone(),
                    source: error,
                });
            }
        }
    }
    Err(ReplicateError::NoGoodSource {
        tenant: tenant.clone(),
        backup: backup_id,
        reasons: reasons.join("; "),
    })
}

/// Whose fault a failed attempt was: the source's (try the next) or the target's (stop).
enum AttemptError {
    Source(String),
    Target(RegionError),
}

/// The retention a repaired copy is written with in a locked region: the source copy's,
/// else (an unlocked source) the lock of a backup written now with the default trash
/// period. Maintenance extends it later as it does every kept backup's.
async fn repair_lock(
    source: &Region,
    object_key: &str,
    manifest_bytes: &[u8],
) -> Result<DateTime<Utc>, RegionError> {
    if let Some(retention) = source.object_retention(object_key, None).await? {
        return Ok(retention.retain_until);
    }
    let kind = serde_json::from_slice::<Manifest>(manifest_bytes)
        .map_or(manifest::BackupKind::Scheduled, |manifest| manifest.kind);
    Ok(policy::lock_at_write(
        kind,
        Utc::now(),
        policy::DEFAULT_TRASH_PERIOD,
    ))
}

/// One attempt from one source; returns the number of parts written.
async fn replicate_from(
    source: &Region,
    to: &Region,
    expected: &Expected<'_>,
    part_size_bytes: usize,
) -> Result<u64, AttemptError> {
    let manifest_key = ObjectKey::Manifest(expected.tenant, expected.backup_id).to_key();
    let object_key = expected.object_key;
    let source_failed = |error: RegionError| AttemptError::Source(error.to_string());
    let manifest_bytes = match fetch_manifest(source, &manifest_key)
        .await
        .map_err(source_failed)?
    {
        FetchedManifest::Read(bytes) => bytes,
        FetchedManifest::Missing => {
            return Err(AttemptError::Source(format!(
                "manifest {manifest_key} is missing"
            )));
        }
        FetchedManifest::TooLarge(bytes) => {
            return Err(AttemptError::Source(format!(
                "manifest {manifest_key} has {bytes} bytes, more than a manifest may have"
            )));
        }
    };
    if let Some(problem) = manifest_problem(&manifest_key, &manifest_bytes, expected) {
        return Err(AttemptError::Source(problem));
    }
    let locked_target;
    let to = if to.lock_mode().is_some() {
        locked_target = to.retaining_until(
            repair_lock(source, object_key, &manifest_bytes)
                .await
                .map_err(source_failed)?,
        );
        &locked_target
    } else {
        to
    };
    let object = source.get_object(object_key).await.map_err(source_failed)?;
    if let Some(length) = object.content_length
        && length != expected.stored_bytes
    {
        return Err(AttemptError::Source(format!(
            "object {object_key} has {length} bytes, the catalog says {}",
            expected.stored_bytes
        )));
    }

    let upload_id = to
        .create_multipart_upload(object_key)
        .await
        .map_err(AttemptError::Target)?;
    let reader = PartReader {
        body: object.body,
        leftover: Bytes::new(),
        hasher: Sha256::new(),
        bytes_read: 0,
        byte_limit: expected.stored_bytes,
        part_size_bytes,
        object_key,
    };
    let copied = match copy_parts(reader, to, object_key, &upload_id).await {
        Ok(copied) => copied,
        Err(error) => {
            abort_upload(to, object_key, &upload_id).await;
            return Err(error);
        }
    };
    if copied.bytes_read != expected.stored_bytes || copied.sha256 != expected.sha256 {
        abort_upload(to, object_key, &upload_id).await;
        return Err(AttemptError::Source(format!(
            "object {object_key} read {} bytes with SHA-256 {}, the catalog says {} bytes with {} (corrupt)",
            copied.bytes_read, copied.sha256, expected.stored_bytes, expected.sha256
        )));
    }

    // Commit. An old manifest goes first, so that no manifest stands beside an object being
    // replaced; the new one goes last, once the whole object is in place with its size.
    if let Err(error) = to.delete_object(&manifest_key).await
        && error.kind != RegionErrorKind::NotFound
    {
        abort_upload(to, object_key, &upload_id).await;
        return Err(AttemptError::Target(error));
    }
    if let Err(error) = to
        .complete_multipart_upload(object_key, &upload_id, &copied.parts)
        .await
    {
        abort_upload(to, object_key, &upload_id).await;
        return Err(AttemptError::Target(error));
    }
    let stored = match to.object_size(object_key).await {
        Ok(Some(size)) if size == expected.stored_bytes => Ok(()),
        Ok(size) => Err(RegionError {
            region: to.name().clone(),
            operation: "head object",
            key: object_key.to_owned(),
            part_number: None,
            kind: RegionErrorKind::Other,
            message: format!(
                "the completed object has {} bytes, not {}",
                size.map_or_else(|| "no".to_owned(), |size| size.to_string()),
                expected.stored_bytes
            ),
        }),
        Err(error) => Err(error),
    };
    let committed = match stored {
        Ok(()) => to.put_object(&manifest_key, manifest_bytes).await,
        Err(error) => Err(error),
    };
    if let Err(error) = committed {
        if let Err(delete_error) = to.delete_object(object_key).await {
            tracing::warn!(region = %to.name(), error = %delete_error, "cannot delete a half-replicated object");
        }
        return Err(AttemptError::Target(error));
    }
    Ok(copied.parts.len() as u64)
}

async fn abort_upload(to: &Region, key: &str, upload_id: &str) {
    if let Err(error) = to.abort_multipart_upload(key, upload_id).await {
        tracing::warn!(region = %to.name(), %error, "cannot abort a replication upload; scrub will");
    }
}

struct CopiedParts {
    parts: Vec<(i32, String)>,
    bytes_read: u64,
    sha256: String,
}

/// Upload part N while part N+1 is read: at most two parts in memory.
async fn copy_parts(
    mut reader: PartReader<'_>,
    to: &Region,
    key: &str,
    upload_id: &str,
) -> Result<CopiedParts, AttemptError> {
    let mut parts = Vec::new();
    // An empty object still needs one (empty) part.
    let mut next = Some(reader.next_part().await?.unwrap_or_default());
    let mut part_number = 0i32;
    while let Some(current) = next.take() {
        part_number += 1;
        let (uploaded, read) = tokio::join!(
            to.upload_part(key, upload_id, part_number, current),
            reader.next_part()
        );
        parts.push((part_number, uploaded.map_err(AttemptError::Target)?));
        next = read?;
    }
    Ok(CopiedParts {
        parts,
        bytes_read: reader.bytes_read,
        sha256: hex::encode(reader.hasher.finalize()),
    })
}

/// Cuts a source object's body into parts, hashing every byte once.
struct PartReader<'a> {
    body: ByteStream,
    /// The rest of a chunk that straddled a part boundary (already hashed).
    leftover: Bytes,
    hasher: Sha256,
    bytes_read: u64,
    /// Reading past this means the object is not the catalog's; stop rather than copy it.
    byte_limit: u64,
    part_size_bytes: usize,
    object_key: &'a str,
}

impl PartReader<'_> {
    async fn next_part(&mut self) -> Result<Option<Bytes>, AttemptError> {
        let mut part = BytesMut::with_capacity(self.part_size_bytes);
        while part.len() < self.part_size_bytes {
            let chunk = if self.leftover.is_empty() {
                match self.body.next().await {
                    None => break,
                    Some(Ok(chunk)) => {
                        self.hasher.update(&chunk);
                        self.bytes_read += chunk.len() as u64;
                        if self.bytes_read > self.byte_limit {
                            return Err(AttemptError::Source(format!(
                                "object {} is longer than the catalog's {} bytes",
                                self.object_key, self.byte_limit
                            )));
                        }
                        chunk
                    }
                    Some(Err(error)) => {
                        return Err(AttemptError::Source(format!(
                            "reading object {} broke off: {error}",
                            self.object_key
                        )));
                    }
                }
            } else {
                std::mem::take(&mut self.leftover)
            };
            let room = self.part_size_bytes - part.len();
            if chunk.len() > room {
                part.extend_from_slice(&chunk[..room]);
                self.leftover = chunk.slice(room..);
            } else {
                part.extend_from_slice(&chunk);
            }
        }
        if part.is_empty() {
            return Ok(None);
        }
        Ok(Some(part.freeze()))
    }
}

/// The creation time before which an upload is older than `age`, now.
pub fn created_before_age(age: Duration) -> DateTime<Utc> {
    Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX)
}

/// Abort the multipart uploads under `prefix` created before `initiated_before`: left by a
/// backup whose region died before it could be told, or by a process that was killed.
///
/// Returns how many were aborted. A server without ListMultipartUploads (s3s-fs answers 501)
/// counts as none, with a warning. Uploads whose creation time the server does not give are
/// left alone, and so is one that cannot be aborted (a warning says which).
pub async fn abort_stale_uploads(
    region: &Region,
    prefix: &str,
    initiated_before: DateTime<Utc>,
    keep: &HashSet<BackupId>,
) -> Result<usize, RegionError> {
    let Some(uploads) = region.list_open_uploads(prefix).await? else {
        tracing::info!(
            region = %region.name(),
            "the region does not list multipart uploads; stale uploads cannot be aborted (use a bucket lifecycle rule)"
        );
        return Ok(0);
    };
    let mut aborted = 0;
    for upload in uploads {
        let Some(initiated) = upload.initiated else {
            tracing::debug!(region = %region.name(), key = %upload.key, "upload without a creation time left alone");
            continue;
        };
        if initiated >= initiated_before {
            continue;
        }
        // A backup still running (longer than the stale age) is not stale.
        if manifest::parse_dump_key(&upload.key)
            .is_some_and(|(_, backup_id)| keep.contains(&backup_id))
        {
            tracing::debug!(region = %region.name(), key = %upload.key, "upload of a backup the catalog knows left alone");
            continue;
        }
        match region
            .abort_multipart_upload(&upload.key, &upload.upload_id)
            .await
        {
            Ok(()) => {
                tracing::info!(region = %region.name(), key = %upload.key, %initiated, "stale upload aborted");
                aborted += 1;
            }
            Err(error) if error.kind == RegionErrorKind::NotFound => {}
            Err(error) => {
                tracing::warn!(region = %region.name(), key = %upload.key, %error, "cannot abort a stale upload");
            }
        }
    }
    Ok(aborted)
}

/// Delete the dump objects under `prefix` that have no manifest beside them, were last
/// written before `modified_before`, and are not in `known` (the backups the catalog
/// expects in this region): left by a request that a wedged region carried out after
/// the backup had given up on it and deleted the key, or by a process killed between
/// the object and its manifest. A backup in progress is younger than any sensible
/// `modified_before`.
///
/// Returns how many were deleted. Objects whose time the server does not give are left
/// alone, and so is one that cannot be deleted (a warning says which).
pub async fn delete_orphan_objects(
    region: &Region,
    prefix: &str,
    modified_before: DateTime<Utc>,
    known: &HashSet<BackupId>,
) -> Result<usize, RegionError> {
    let objects = region.list_objects(prefix).await?;
    let with_manifest: HashSet<BackupId> = objects
        .iter()
        .filter_map(|object| manifest::parse_manifest_key(&object.key))
        .map(|(_, backup_id)| backup_id)
        .collect();
    let mut deleted = 0;
    for object in &objects {
        let Some((tenant, backup_id)) = manifest::parse_dump_key(&object.key) else {
            continue;
        };
        let stale = object
            .last_modified
            .is_some_and(|modified| modified < modified_before);
        if !stale || with_manifest.contains(&backup_id) || known.contains(&backup_id) {
            continue;
        }
        // The listing is a snapshot: a manifest written since keeps the object.
        let manifest_key = ObjectKey::Manifest(&tenant, backup_id).to_key();
        if !matches!(region.object_size(&manifest_key).await, Ok(None)) {
            continue;
        }
        match region.delete_object(&object.key).await {
            Ok(()) => {
                tracing::info!(region = %region.name(), key = %object.key, "orphan object deleted");
                deleted += 1;
            }
            Err(error) => {
                tracing::warn!(region = %region.name(), key = %object.key, %error, "cannot delete an orphan object");
            }
        }
    }
    Ok(deleted)
}
