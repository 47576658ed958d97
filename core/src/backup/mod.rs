//! One backup of one tenant: dump → zstd → age → every region → manifests.
//!
//! The order is what makes a backup trustworthy: the dump streams through the encoder
//! and goes to every region (one PutObject each when it is a single part, else a
//! multipart upload each, fanned out part by part: see `send`), uploads complete, the
//! objects' sizes are checked, and only then is the manifest written to each region that
//! holds the whole object. The manifest is the commit point: a failure anywhere before it
//! aborts every open upload and deletes any stored object, so a failed backup leaves
//! neither a manifest nor an open multipart upload behind (except in a region that is down
//! and cannot be told; scrub cleans those up).

mod encode;
mod fanout;
mod send;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures::future::join_all;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{Config, TenantConfig};
use crate::ids::{BackupId, RegionName};
use crate::manifest::{BackupKind, Manifest, ObjectKey, Pipeline, Source, StoredObject};
use crate::policy;
use crate::postgres::{self, PgTools, PostgresError};
use crate::progress::{Progress, Stage};
use crate::region::{Region, RegionError, RegionErrorKind};

use encode::{EncodeError, EncodeJob};
use fanout::{FanOutError, FanOutLimits, UploadOutcome};
use send::{Cleanup, NotSent, SendJob, Sent};

/// Why a backup failed. Nothing of it was committed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    UnknownName(#[from] crate::config::UnknownName),
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error("{0}")]
    Encode(String),
    #[error("backup needs {min_regions} regions but only {available} took it: {reasons}")]
    TooFewRegions {
        min_regions: usize,
        available: usize,
        reasons: String,
    },
    #[error(
        "backup needs {min_regions} regions but only {answered} answered, so nothing was dumped: {reasons}"
    )]
    RegionsUnreachable {
        min_regions: usize,
        answered: usize,
        reasons: String,
    },
    #[error("cancelled")]
    Cancelled,
}

/// How one region fared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionResult {
    pub region: RegionName,
    pub stored: bool,
    /// Why the region does not hold the backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A committed backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub manifest: Manifest,
    pub regions: Vec<RegionResult>,
    /// Fewer regions than configured hold it; repair will copy it later.
    pub degraded: bool,
    pub duration: Duration,
    /// Time spent counting rows, concurrently with the dump.
    pub row_count_duration: Duration,
}

/// What to back up, and how.
pub struct BackupRequest<'a> {
    pub config: &'a Config,
    /// The tenant and where its database is; the catalog or the config says.
    pub tenant: &'a TenantConfig,
    pub kind: BackupKind,
    /// The id to give the backup (the controller hands one to each job attempt); default:
    /// a new one.
    pub backup_id: Option<BackupId>,
    pub regions: Vec<Region>,
    pub progress: Arc<dyn Progress>,
    pub cancel: CancellationToken,
}

impl std::fmt::Debug for BackupRequest<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("BackupRequest")
            .field("tenant", &self.tenant.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

fn describe_failures(failures: &[(RegionName, String)]) -> String {
    if failures.is_empty() {
        return "no region failed".to_owned();
    }
    failures
        .iter()
        .map(|(region, reason)| format!("{region}: {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Before pg_dump takes its snapshot and locks, ask every region for its bucket and wait
/// until `min_regions` have answered, each within the straggler allowance (at least
/// [`policy::REGION_CHECK_MIN_TIMEOUT`]). Uploads open only once the dump has output, so
/// without this a backup with every region wedged (answering nothing, not refusing) would
/// hold the tenant's locks until the S3 timeouts ran out. Any answer but "no such bucket"
/// counts: a key allowed to write but not to HeadBucket (a write-only policy) is the
/// upload's business. A region that fails here is still offered the object: it may answer
/// by then.
async fn check_regions_answer(
    regions: &[Region],
    limits: &FanOutLimits,
    cancel: &CancellationToken,
) -> Result<(), BackupError> {
    let timeout = limits
        .straggler_allowance()
        .max(policy::REGION_CHECK_MIN_TIMEOUT);
    let requests = regions
        .iter()
        .map(|region| async move {
            match tokio::time::timeout(timeout, region.check_bucket()).await {
                Ok(checked) => region_answered(checked),
                Err(_) => Err(format!(
                    "no answer to HeadBucket in {} s",
                    timeout.as_secs()
                )),
            }
        })
        .collect();
    // Only whether enough regions answer matters: stop as soon as they have.
    let (results, cancelled) = crate::stragglers::join_bounded(
        requests,
        limits.min_regions,
        Duration::ZERO,
        "still checking its bucket",
        Some(cancel),
    )
    .await;
    if cancelled {
        return Err(BackupError::Cancelled);
    }
    let answered = results.iter().filter(|result| result.is_ok()).count();
    if answered >= limits.min_regions {
        return Ok(());
    }
    let failures: Vec<(RegionName, String)> = regions
        .iter()
        .zip(results)
        .filter_map(|(region, result)| result.err().map(|reason| (region.name().clone(), reason)))
        .collect();
    Err(BackupError::RegionsUnreachable {
        min_regions: limits.min_regions,
        answered,
        reasons: describe_failures(&failures),
    })
}

/// Whether a HeadBucket result shows a region that can be offered the object: any answer
/// but "unreachable" or "no such bucket" (see [`check_regions_answer`]).
fn region_answered(checked: Result<(), RegionError>) -> Result<(), String> {
    match checked {
        Err(error)
            if matches!(
                error.kind,
                RegionErrorKind::Unreachable | RegionErrorKind::BucketMissing
            ) =>
        {
            Err(error.to_string())
        }
        Ok(()) | Err(_) => Ok(()),
    }
}

/// Take one backup of `request.tenant` and commit it to at least `min_regions` regions.
pub async fn run_backup(request: BackupRequest<'_>) -> Result<BackupReport, BackupError> {
    let backup_id = request.backup_id.unwrap_or_default();
    let span = tracing::info_span!("backup", tenant = %request.tenant.name, backup = %backup_id);
    run_backup_as(request, backup_id).instrument(span).await
}

async fn run_backup_as(
    request: BackupRequest<'_>,
    backup_id: BackupId,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let started_at = Utc::now();
    let config = request.config;
    let tenant = request.tenant;
    let cluster = config.cluster(&tenant.cluster)?;
    let tools = PgTools::locate(config.pg_bin_dir.as_deref());
    let object_key = ObjectKey::Dump(&tenant.name, backup_id).to_key();
    request.progress.stage(Stage::Connecting);
    let limits = FanOutLimits {
        min_regions: config.min_regions,
        max_region_lag_parts: config.max_region_lag_parts,
        patience: config.region_patience,
    };
    check_regions_answer(&request.regions, &limits, &request.cancel).await?;

    let snapshot_client = postgres::connect(cluster, &tenant.database).await?;
    let server_version = postgres::server_version(cluster, &snapshot_client).await?;
    let pg_dump_version = tools.version("pg_dump")?;
    let snapshot = postgres::export_snapshot(cluster, &snapshot_client).await?;

    request.progress.stage(Stage::Dumping);
    let (pg_dump, pg_dump_stderr) =
        postgres::spawn_pg_dump(&tools, cluster, &tenant.database, &snapshot)?;
    let (parts_sender, parts_receiver) = mpsc::channel::<Bytes>(1);
    let encode_job = EncodeJob {
        pg_dump,
        pg_dump_stderr,
        recipients: config.recipients.clone(),
        compression_level: config.compression_level,
        part_size_bytes: config.part_size_bytes,
        parts: parts_sender,
        progress: request.progress.clone(),
    };
    let encoder = tokio::task::spawn_blocking(move || encode::encode_dump(encode_job));
    let send_job = SendJob {
        regions: &request.regions,
        key: &object_key,
        parts: parts_receiver,
        encoder,
        limits,
        cancel: &request.cancel,
    };
    let mut failures: Vec<(RegionName, String)> = Vec::new();
    let counting = async {
        let counting_started = Instant::now();
        let counts = postgres::count_rows(cluster, &snapshot_client).await;
        (counts, counting_started.elapsed())
    };
    let ((row_counts, row_count_duration), (sent, encoded)) =
        tokio::join!(counting, send::send_object(send_job, &mut failures));
    drop(snapshot_client);

    let sent = match sent {
        Ok(sent) => sent,
        Err(NotSent { error, cleanup }) => {
            cleanup
                .run_with_timeout(object_key.clone(), CLEANUP_TIMEOUT)
                .await;
            return Err(match (error, encoded) {
                (FanOutError::Cancelled, _) => BackupError::Cancelled,
                // A failed dump explains more than the regions it starved.
                (_, Err(encode_error)) if !matches!(encode_error, EncodeError::UploadsStopped) => {
                    encode_error_to_backup_error(encode_error)
                }
                (FanOutError::SourceFailed, _) => {
                    BackupError::Encode("the dump produced no output".to_owned())
                }
                (
                    FanOutError::TooFewRegions {
                        min_regions,
                        available,
                        dropped,
                    },
                    _,
                ) => {
                    failures.extend(dropped);
                    BackupError::TooFewRegions {
                        min_regions,
                        available,
                        reasons: describe_failures(&failures),
                    }
                }
            });
        }
    };
    let (encoded, row_counts) = match (encoded, row_counts) {
        (Ok(encoded), Ok(row_counts)) => (encoded, row_counts),
        (Err(error), _) => {
            sent.into_cleanup()
                .run_with_timeout(object_key.clone(), CLEANUP_TIMEOUT)
                .await;
            return Err(encode_error_to_backup_error(error));
        }
        (_, Err(error)) => {
            sent.into_cleanup()
                .run_with_timeout(object_key.clone(), CLEANUP_TIMEOUT)
                .await;
            return Err(error.into());
        }
    };

    // Complete what was sent in parts; then check each region's object by its size.
    request.progress.stage(Stage::Committing);
    let mut to_finish = Vec::new();
    let mut dropped = Cleanup::default();
    match sent {
        Sent::Whole { stored, not_stored } => {
            to_finish.extend(stored.into_iter().map(|region| (region, None)));
            dropped.objects_in = not_stored;
        }
        Sent::Multipart(outcomes) => {
            for (upload, outcome) in outcomes {
                match outcome {
                    UploadOutcome::Stored(parts) => {
                        to_finish.push((upload.region.clone(), Some((upload, parts))));
                    }
                    UploadOutcome::Dropped(reason) => {
                        failures.push((upload.region.name().clone(), reason));
                        dropped.uploads.push(upload);
                    }
                }
            }
        }
    }
    // Dropped regions may be dead: don't let their cleanup hold the commit up for long.
    let clean_dropped = tokio::spawn(dropped.run_with_timeout(object_key.clone(), CLEANUP_TIMEOUT));

    // A region that hangs here gets the same bounded allowance as during the upload.
    let allowance = limits.straggler_allowance();
    let (key, stored_bytes) = (&object_key, encoded.stored_bytes);
    let requests = to_finish
        .iter()
        .map(|(region, upload)| async move {
            if let Some((upload, parts)) = upload {
                upload
                    .region
                    .complete_multipart_upload(&upload.key, &upload.upload_id, parts)
                    .await
                    .map_err(|error| error.to_string())?;
            }
            match region.object_size(key).await {
                Ok(Some(size)) if size == stored_bytes => Ok(()),
                Ok(Some(size)) => Err(format!(
                    "stored object has {size} bytes, expected {stored_bytes}"
                )),
                Ok(None) => Err("stored object is missing after it was stored".to_owned()),
                Err(error) => Err(error.to_string()),
            }
        })
        .collect();
    let (finished, _) = crate::stragglers::join_bounded(
        requests,
        config.min_regions,
        allowance,
        "still completing the upload",
        None,
    )
    .await;
    let mut holding_regions = Vec::new();
    let mut late = Cleanup::default();
    for ((region, upload), checked) in to_finish.into_iter().zip(finished) {
        match checked {
            Ok(()) => holding_regions.push(region),
            Err(reason) => {
                failures.push((region.name().clone(), reason));
                late.uploads.extend(upload.map(|(upload, _)| upload));
                late.objects_in.push(region);
            }
        }
    }
    let clean_dropped = tokio::spawn({
        let key = object_key.clone();
        async move {
            let clean_late = late.run_with_timeout(key, CLEANUP_TIMEOUT);
            let _ = tokio::join!(clean_dropped, clean_late);
        }
    });

    let mut manifest = Manifest {
        version: crate::manifest::MANIFEST_VERSION,
        tenant: tenant.name.clone(),
        backup_id,
        kind: request.kind,
        started_at,
        finished_at: Utc::now(),
        source: Source {
            cluster: cluster.name.clone(),
            database: tenant.database.clone(),
            server_version,
            pg_dump_version,
        },
        pipeline: Pipeline {
            format: "pg_dump custom (--compress=0)".to_owned(),
            compression: "zstd".to_owned(),
            compression_level: config.compression_level,
            encryption: "age X25519".to_owned(),
            recipient_fingerprints: config.recipients.iter().map(|r| r.fingerprint()).collect(),
        },
        object: StoredObject {
            key: object_key.clone(),
            dump_bytes: encoded.dump_bytes,
            stored_bytes: encoded.stored_bytes,
            sha256: encoded.sha256,
            part_size_bytes: config.part_size_bytes,
            part_count: encoded.part_count,
        },
        regions: holding_regions
            .iter()
            .map(|region| region.name().clone())
            .collect(),
        row_counts,
    };
    if holding_regions.len() < config.min_regions {
        delete_objects(&holding_regions, &[object_key.as_str()]).await;
        let _ = clean_dropped.await;
        return Err(BackupError::TooFewRegions {
            min_regions: config.min_regions,
            available: holding_regions.len(),
            reasons: describe_failures(&failures),
        });
    }

    // The commit point: the manifest, in every region holding the whole object.
    let manifest_key = ObjectKey::Manifest(&tenant.name, backup_id).to_key();
    let manifest_bytes = Bytes::from(manifest.to_json());
    let requests = holding_regions
        .iter()
        .map(|region| {
            let manifest_bytes = manifest_bytes.clone();
            let manifest_key = manifest_key.clone();
            async move {
                region
                    .put_object(&manifest_key, manifest_bytes)
                    .await
                    .map_err(|error| error.to_string())
            }
        })
        .collect();
    let (written, _) = crate::stragglers::join_bounded(
        requests,
        config.min_regions,
        allowance,
        "still writing the manifest",
        None,
    )
    .await;
    let mut committed = Vec::new();
    let mut uncommitted = Vec::new();
    for (region, result) in holding_regions.into_iter().zip(written) {
        match result {
            Ok(()) => committed.push(region),
            Err(reason) => {
                failures.push((region.name().clone(), reason));
                uncommitted.push(region);
            }
        }
    }
    delete_objects(&uncommitted, &[manifest_key.as_str(), object_key.as_str()]).await;
    if committed.len() < config.min_regions {
        delete_objects(&committed, &[manifest_key.as_str(), object_key.as_str()]).await;
        let _ = clean_dropped.await;
        return Err(BackupError::TooFewRegions {
            min_regions: config.min_regions,
            available: committed.len(),
            reasons: describe_failures(&failures),
        });
    }
    let _ = clean_dropped.await;
    // The manifests list the regions that held the object when they were written; a
    // region that then failed to take its manifest is reported below and left to repair.
    manifest
        .regions
        .retain(|region| committed.iter().any(|held| held.name() == region));

    let mut regions: Vec<RegionResult> = committed
        .iter()
        .map(|region| RegionResult {
            region: region.name().clone(),
            stored: true,
            error: None,
        })
        .collect();
    regions.extend(failures.into_iter().map(|(region, reason)| RegionResult {
        region,
        stored: false,
        error: Some(reason),
    }));
    let degraded = committed.len() < request.regions.len();
    request.progress.stage(Stage::Done);
    tracing::info!(
        regions = committed.len(),
        degraded,
        stored_bytes = manifest.object.stored_bytes,
        "backup committed"
    );
    Ok(BackupReport {
        manifest,
        regions,
        degraded,
        duration: started.elapsed(),
        row_count_duration,
    })
}

fn encode_error_to_backup_error(error: EncodeError) -> BackupError {
    match error {
        EncodeError::PgDump(error) => BackupError::Postgres(error),
        other => BackupError::Encode(other.to_string()),
    }
}

/// How long deleting or aborting what a failed step left may take; then scrub's job.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Delete `keys` in every one of `regions`, one after the other in each region (so a
/// manifest listed first never outlives its object), giving up after [`CLEANUP_TIMEOUT`].
async fn delete_objects(regions: &[Region], keys: &[&str]) {
    let deletes = join_all(regions.iter().map(|region| async move {
        for key in keys {
            if let Err(error) = region.delete_object(key).await {
                tracing::warn!(region = %region.name(), %error, "could not delete uncommitted object");
            }
        }
    }));
    if tokio::time::timeout(CLEANUP_TIMEOUT, deletes)
        .await
        .is_err()
    {
        tracing::warn!("deleting uncommitted objects timed out");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_bucket_error(kind: RegionErrorKind) -> Result<(), RegionError> {
        Err(RegionError {
            region: RegionName::parse("eu").expect("region"),
            operation: "head bucket",
            key: String::new(),
            kind,
            message: "refused".to_owned(),
        })
    }

    #[test]
    fn only_silence_and_a_missing_bucket_keep_a_region_from_counting_as_answered() {
        assert!(region_answered(Ok(())).is_ok());
        // A write-only key may not HeadBucket: the region answered all the same.
        assert!(region_answered(head_bucket_error(RegionErrorKind::AccessDenied)).is_ok());
        assert!(region_answered(head_bucket_error(RegionErrorKind::Other)).is_ok());
        for kind in [RegionErrorKind::Unreachable, RegionErrorKind::BucketMissing] {
            let reason = region_answered(head_bucket_error(kind)).expect_err("not answered");
            assert!(reason.contains("region eu"), "{reason}");
        }
    }
}
