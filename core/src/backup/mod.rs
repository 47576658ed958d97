//! One backup of one tenant: dump → zstd → age → every region → manifests.
//!
//! The order is what makes a backup trustworthy: multipart uploads open in every region,
//! the dump streams through the encoder and is fanned out, uploads complete, their sizes
//! are checked, and only then is the manifest written to each region that holds the
//! whole object. The manifest is the commit point: a failure anywhere before it aborts
//! every open upload and deletes any completed object, so a failed backup leaves neither
//! a manifest nor an open multipart upload behind (except in a region that is down and
//! cannot be told; scrub cleans those up).

mod encode;
mod fanout;

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
use crate::postgres::{self, PgTools, PostgresError};
use crate::progress::{Progress, Stage};
use crate::region::Region;

use encode::{EncodeError, EncodeJob};
use fanout::{FanOutError, FanOutLimits, OpenUpload, UploadOutcome};

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

    let snapshot_client = postgres::connect(cluster, &tenant.database).await?;
    let server_version = postgres::server_version(cluster, &snapshot_client).await?;
    let pg_dump_version = tools.version("pg_dump")?;
    let snapshot = postgres::export_snapshot(cluster, &snapshot_client).await?;

    // Open an upload in every region; one that refuses is dropped now.
    let mut failures: Vec<(RegionName, String)> = Vec::new();
    let opened = join_all(request.regions.iter().map(|region| async {
        (
            region.clone(),
            region.create_multipart_upload(&object_key).await,
        )
    }))
    .await;
    let mut uploads = Vec::new();
    for (region, result) in opened {
        match result {
            Ok(upload_id) => uploads.push(OpenUpload {
                region,
                key: object_key.clone(),
                upload_id,
            }),
            Err(error) => {
                tracing::warn!(region = %region.name(), %error, "region refused the upload");
                failures.push((region.name().clone(), error.to_string()));
            }
        }
    }
    if uploads.len() < config.min_regions {
        abort_uploads(&uploads).await;
        return Err(BackupError::TooFewRegions {
            min_regions: config.min_regions,
            available: uploads.len(),
            reasons: describe_failures(&failures),
        });
    }

    request.progress.stage(Stage::Dumping);
    let (pg_dump, pg_dump_stderr) =
        match postgres::spawn_pg_dump(&tools, cluster, &tenant.database, &snapshot) {
            Ok(spawned) => spawned,
            Err(error) => {
                abort_uploads(&uploads).await;
                return Err(error.into());
            }
        };
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
    let limits = FanOutLimits {
        min_regions: config.min_regions,
        max_region_lag_parts: config.max_region_lag_parts,
        patience: config.region_patience,
    };
    let counting = async {
        let counting_started = Instant::now();
        let counts = postgres::count_rows(cluster, &snapshot_client).await;
        (counts, counting_started.elapsed())
    };
    let ((row_counts, row_count_duration), fanned_out) = tokio::join!(
        counting,
        fanout::fan_out(uploads, parts_receiver, limits, &request.cancel)
    );
    // The fan-out has stopped taking parts, so the encoder cannot block any more.
    let encoded = match encoder.await {
        Ok(result) => result,
        Err(join_error) => Err(EncodeError::Encode(std::io::Error::other(
            join_error.to_string(),
        ))),
    };
    drop(snapshot_client);

    let outcomes = match fanned_out {
        Ok(outcomes) => outcomes,
        Err((uploads, error)) => {
            abort_uploads(&uploads).await;
            return Err(match (error, encoded) {
                (FanOutError::Cancelled, _) => BackupError::Cancelled,
                // A failed dump explains more than the regions it starved.
                (_, Err(encode_error)) if !matches!(encode_error, EncodeError::UploadsStopped) => {
                    encode_error_to_backup_error(encode_error)
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
    let all_uploads: Vec<OpenUpload> = outcomes.iter().map(|(upload, _)| upload.clone()).collect();
    let (encoded, row_counts) = match (encoded, row_counts) {
        (Ok(encoded), Ok(row_counts)) => (encoded, row_counts),
        (Err(error), _) => {
            abort_uploads(&all_uploads).await;
            return Err(encode_error_to_backup_error(error));
        }
        (_, Err(error)) => {
            abort_uploads(&all_uploads).await;
            return Err(error.into());
        }
    };

    request.progress.stage(Stage::Committing);
    let mut stored_uploads = Vec::new();
    let mut dropped_uploads = Vec::new();
    for (upload, outcome) in outcomes {
        match outcome {
            UploadOutcome::Stored(parts) => stored_uploads.push((upload, parts)),
            UploadOutcome::Dropped(reason) => {
                failures.push((upload.region.name().clone(), reason));
                dropped_uploads.push(upload);
            }
        }
    }
    // Dropped regions may be dead: don't let their abort hold the commit up for long.
    let abort_dropped = tokio::spawn(abort_uploads_with_timeout(
        dropped_uploads,
        Duration::from_secs(15),
    ));

    let completed = join_all(
        stored_uploads
            .into_iter()
            .map(|(upload, parts)| async move {
                let completion = upload
                    .region
                    .complete_multipart_upload(&upload.key, &upload.upload_id, &parts)
                    .await;
                let checked = match completion {
                    Err(error) => Err(error.to_string()),
                    Ok(()) => match upload.region.object_size(&upload.key).await {
                        Ok(Some(size)) if size == encoded.stored_bytes => Ok(()),
                        Ok(Some(size)) => Err(format!(
                            "stored object has {size} bytes, expected {}",
                            encoded.stored_bytes
                        )),
                        Ok(None) => Err("stored object is missing after completion".to_owned()),
                        Err(error) => Err(error.to_string()),
                    },
                };
                (upload, checked)
            }),
    )
    .await;
    let mut holding_regions = Vec::new();
    for (upload, checked) in completed {
        match checked {
            Ok(()) => holding_regions.push(upload),
            Err(reason) => {
                failures.push((upload.region.name().clone(), reason));
                let _ = upload.region.delete_object(&upload.key).await;
            }
        }
    }

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
            .map(|upload| upload.region.name().clone())
            .collect(),
        row_counts,
    };
    if holding_regions.len() < config.min_regions {
        delete_objects(&holding_regions, &[object_key.as_str()]).await;
        let _ = abort_dropped.await;
        return Err(BackupError::TooFewRegions {
            min_regions: config.min_regions,
            available: holding_regions.len(),
            reasons: describe_failures(&failures),
        });
    }

    // The commit point: the manifest, in every region holding the whole object.
    let manifest_key = ObjectKey::Manifest(&tenant.name, backup_id).to_key();
    let manifest_bytes = Bytes::from(manifest.to_json());
    let written = join_all(holding_regions.iter().map(|upload| {
        let manifest_bytes = manifest_bytes.clone();
        let manifest_key = manifest_key.clone();
        async move {
            upload
                .region
                .put_object(&manifest_key, manifest_bytes)
                .await
        }
    }))
    .await;
    let mut committed = Vec::new();
    let mut uncommitted = Vec::new();
    for (upload, result) in holding_regions.into_iter().zip(written) {
        match result {
            Ok(()) => committed.push(upload),
            Err(error) => {
                failures.push((upload.region.name().clone(), error.to_string()));
                uncommitted.push(upload);
            }
        }
    }
    delete_objects(&uncommitted, &[object_key.as_str(), manifest_key.as_str()]).await;
    if committed.len() < config.min_regions {
        delete_objects(&committed, &[manifest_key.as_str(), object_key.as_str()]).await;
        let _ = abort_dropped.await;
        return Err(BackupError::TooFewRegions {
            min_regions: config.min_regions,
            available: committed.len(),
            reasons: describe_failures(&failures),
        });
    }
    let _ = abort_dropped.await;
    // The manifests list the regions that held the object when they were written; a
    // region that then failed to take its manifest is reported below and left to repair.
    manifest.regions.retain(|region| {
        committed
            .iter()
            .any(|upload| upload.region.name() == region)
    });

    let mut regions: Vec<RegionResult> = committed
        .iter()
        .map(|upload| RegionResult {
            region: upload.region.name().clone(),
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

async fn abort_uploads(uploads: &[OpenUpload]) {
    join_all(uploads.iter().map(|upload| async move {
        if let Err(error) = upload
            .region
            .abort_multipart_upload(&upload.key, &upload.upload_id)
            .await
        {
            tracing::warn!(region = %upload.region.name(), %error, "could not abort upload; scrub will");
        }
    }))
    .await;
}

async fn abort_uploads_with_timeout(uploads: Vec<OpenUpload>, limit: Duration) {
    if uploads.is_empty() {
        return;
    }
    if tokio::time::timeout(limit, abort_uploads(&uploads))
        .await
        .is_err()
    {
        tracing::warn!("aborting uploads in dropped regions timed out; scrub will clean them up");
    }
}

async fn delete_objects(uploads: &[OpenUpload], keys: &[&str]) {
    join_all(uploads.iter().flat_map(|upload| {
        keys.iter().map(move |key| async move {
            if let Err(error) = upload.region.delete_object(key).await {
                tracing::warn!(region = %upload.region.name(), %error, "could not delete uncommitted object");
            }
        })
    }))
    .await;
}
