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

use crate::config::{ClusterConfig, Config, TenantConfig};
use crate::database_facts::DatabaseFacts;
use crate::ids::{BackupId, RegionName};
use crate::keys::Recipient;
use crate::manifest::{
    BackupKind, Manifest, ObjectKey, Pipeline, Source, StoredObject, TableRowCount,
};
use crate::policy;
use crate::postgres::{self, PgTools, PostgresError};
use crate::progress::{Progress, Stage};
use crate::region::{Region, RegionError, RegionErrorKind};

use encode::{EncodeError, EncodeJob, EncodedDump};
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
    #[error("age refused the recipients: {0}")]
    Recipients(String),
    #[error("cancelled")]
    Cancelled,
}

impl BackupError {
    /// Whether trying again cannot help, so a job queue should not: the tenant's
    /// database does not exist, pg_dump refuses the server's version, or age refuses the
    /// recipients. Regions that did not answer, a cancelled attempt, or a cluster this
    /// agent does not know (another agent may) are worth another attempt.
    pub fn is_permanent(&self) -> bool {
        match self {
            BackupError::Postgres(error) => error.is_permanent(),
            BackupError::Recipients(_) => true,
            BackupError::UnknownName(_)
            | BackupError::Encode(_)
            | BackupError::TooFewRegions { .. }
            | BackupError::RegionsUnreachable { .. }
            | BackupError::Cancelled => false,
        }
    }
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
    /// The tenant's own recipient (per-tenant keys, `tenant_keys`), which the controller
    /// hands out with a backup job: encrypted to it alone instead of the configured
    /// `recipients`. `None`: the configured recipients, as before per-tenant keys.
    pub tenant_recipient: Option<Recipient>,
}

impl BackupRequest<'_> {
    /// The recipients this backup is encrypted to.
    fn recipients(&self) -> Vec<Recipient> {
        match &self.tenant_recipient {
            Some(recipient) => vec![recipient.clone()],
            None => self.config.recipients.clone(),
        }
    }
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
        .map(|(region, reason)| {
            // A region error names its region already.
            if reason.starts_with(&format!("region {region}: ")) {
                reason.clone()
            } else {
                format!("region {region}: {reason}")
            }
        })
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

/// The stages of one backup, in order; each is a function below. Only the commit stage
/// makes a backup exist; every stage before it leaves nothing behind when it fails.
async fn run_backup_as(
    request: BackupRequest<'_>,
    backup_id: BackupId,
) -> Result<BackupReport, BackupError> {
    let started = Instant::now();
    let started_at = Utc::now();
    // In regions with object lock, the dump and manifest are written with a retention
    // until the earliest moment any policy could purge them, or the extension horizon.
    let retain_until = policy::lock_at_write(request.kind, started_at, request.config.trash_period);
    let request = BackupRequest {
        regions: request
            .regions
            .iter()
            .map(|region| region.retaining_until(retain_until))
            .collect(),
        ..request
    };
    let preflight = preflight(&request, backup_id).await?;
    let snapshot = take_snapshot(&request, &preflight).await?;
    let mut failures: Vec<(RegionName, String)> = Vec::new();
    let delivered = encode_and_send(&request, &preflight, snapshot.dump, &mut failures).await?;

    request.progress.stage(Stage::Committing);
    let (holding_regions, background_cleanup) = complete_uploads(
        &preflight,
        delivered.sent,
        &delivered.encoded,
        &mut failures,
    )
    .await;
    let manifest = build_manifest(
        &request,
        &preflight,
        backup_id,
        started_at,
        snapshot.source,
        &delivered.encoded,
        &holding_regions,
        delivered.row_counts,
        delivered.database_facts,
    );
    let committed = commit(&preflight, manifest, holding_regions, &mut failures).await;
    background_cleanup.finish().await;
    let (manifest, committed_regions) = committed?;

    let report = BackupReport {
        regions: region_results(&committed_regions, failures),
        degraded: committed_regions.len() < request.regions.len(),
        manifest,
        duration: started.elapsed(),
        row_count_duration: delivered.row_count_duration,
    };
    request.progress.stage(Stage::Done);
    tracing::info!(
        regions = committed_regions.len(),
        degraded = report.degraded,
        stored_bytes = report.manifest.object.stored_bytes,
        "backup committed"
    );
    Ok(report)
}

/// What the preflight settled: where the database is, which tools dump it, where the
/// object goes and how long the regions may lag.
struct Preflight<'a> {
    cluster: &'a ClusterConfig,
    tools: PgTools,
    object_key: String,
    limits: FanOutLimits,
}

/// Stage 1, preflight: find the tenant's cluster and the PostgreSQL tools, and check that
/// enough regions answer ([`check_regions_answer`]) before anything takes a snapshot or a
/// lock on the tenant's database.
async fn preflight<'a>(
    request: &BackupRequest<'a>,
    backup_id: BackupId,
) -> Result<Preflight<'a>, BackupError> {
    let config = request.config;
    let cluster = config.cluster(&request.tenant.cluster)?;
    let tools = PgTools::locate(config.pg_bin_dir.as_deref()).await;
    let object_key = ObjectKey::Dump(&request.tenant.name, backup_id).to_key();
    request.progress.stage(Stage::Connecting);
    let limits = FanOutLimits {
        min_regions: config.min_regions,
        max_region_lag_parts: config.max_region_lag_parts,
        patience: config.region_patience,
    };
    check_regions_answer(&request.regions, &limits, &request.cancel).await?;
    Ok(Preflight {
        cluster,
        tools,
        object_key,
        limits,
    })
}

/// The snapshot the dump and the row counts share.
struct Snapshot {
    dump: SnapshotForDump,
    /// Where the dump comes from, for the manifest.
    source: Source,
}

/// The open transaction that exported the snapshot, and the snapshot's name.
struct SnapshotForDump {
    /// Must stay open (and otherwise unused) until pg_dump has imported the snapshot.
    client: tokio_postgres::Client,
    snapshot_name: String,
}

/// Stage 2, snapshot: connect to the tenant's database, note the server's and pg_dump's
/// versions, and export a REPEATABLE READ snapshot for pg_dump and the row counts.
async fn take_snapshot(
    request: &BackupRequest<'_>,
    preflight: &Preflight<'_>,
) -> Result<Snapshot, BackupError> {
    let cluster = preflight.cluster;
    let database = &request.tenant.database;
    let client = postgres::connect(cluster, database).await?;
    let server_version = postgres::server_version(cluster, &client).await?;
    let pg_dump_version = preflight.tools.version("pg_dump").await?;
    let snapshot_name = postgres::export_snapshot(cluster, &client).await?;
    Ok(Snapshot {
        dump: SnapshotForDump {
            client,
            snapshot_name,
        },
        source: Source {
            cluster: cluster.name.clone(),
            database: database.clone(),
            server_version,
            pg_dump_version,
        },
    })
}

/// The object as it stands in the regions before the commit.
struct Delivered {
    sent: Sent,
    encoded: EncodedDump,
    row_counts: Vec<TableRowCount>,
    database_facts: DatabaseFacts,
    row_count_duration: Duration,
}

/// Stage 3, encode and send: pg_dump in the snapshot → zstd → age → parts, sent to every
/// region (`send`), while the rows are counted in the same snapshot. On failure whatever
/// reached a region is aborted or deleted, and the error that explains most is returned
/// (a failed dump before the regions it starved).
async fn encode_and_send(
    request: &BackupRequest<'_>,
    preflight: &Preflight<'_>,
    snapshot: SnapshotForDump,
    failures: &mut Vec<(RegionName, String)>,
) -> Result<Delivered, BackupError> {
    let config = request.config;
    let cluster = preflight.cluster;
    let object_key = &preflight.object_key;
    request.progress.stage(Stage::Dumping);
    let (pg_dump, pg_dump_stderr) = postgres::spawn_pg_dump(
        &preflight.tools,
        cluster,
        &request.tenant.database,
        &snapshot.snapshot_name,
    )?;
    let (parts_sender, parts_receiver) = mpsc::channel::<Bytes>(1);
    // A cancelled backup must end even while the encoder is blocked reading a pg_dump that
    // hangs: killing pg_dump ends that read.
    let pg_dump_killer = postgres::ToolKiller::for_child(&pg_dump);
    let _kill_pg_dump_on_cancel = pg_dump_killer.kill_on_cancel(&request.cancel);
    let encode_job = EncodeJob {
        pg_dump,
        pg_dump_stderr,
        pg_dump_killer,
        recipients: request.recipients(),
        compression_level: config.compression_level,
        part_size_bytes: config.part_size_bytes,
        parts: parts_sender,
        progress: request.progress.clone(),
    };
    let encoder = tokio::task::spawn_blocking(move || encode::encode_dump(encode_job));
    let send_job = SendJob {
        regions: &request.regions,
        key: object_key,
        parts: parts_receiver,
        encoder,
        limits: preflight.limits,
        cancel: &request.cancel,
    };
    let counting = async {
        let counting_started = Instant::now();
        let counts = count_rows_and_read_facts(cluster, &snapshot.client).await;
        (counts, counting_started.elapsed())
    };
    let ((counted, row_count_duration), (sent, encoded)) =
        tokio::join!(counting, send::send_object(send_job, failures));
    drop(snapshot);

    let sent = match sent {
        Ok(sent) => sent,
        Err(NotSent { error, cleanup }) => {
            cleanup
                .run_with_timeout(object_key.clone(), CLEANUP_TIMEOUT)
                .await;
            return Err(not_sent_to_backup_error(error, encoded, failures));
        }
    };
    match (encoded, counted) {
        (Ok(encoded), Ok((row_counts, database_facts))) => Ok(Delivered {
            sent,
            encoded,
            row_counts,
            database_facts,
            row_count_duration,
        }),
        (Err(error), _) => {
            sent.into_cleanup()
                .run_with_timeout(object_key.clone(), CLEANUP_TIMEOUT)
                .await;
            Err(encode_error_to_backup_error(error))
        }
        (_, Err(error)) => {
            sent.into_cleanup()
                .run_with_timeout(object_key.clone(), CLEANUP_TIMEOUT)
                .await;
            Err(error.into())
        }
    }
}

/// Exact row counts and the database's facts (owners, grants, extensions, large
/// objects), both in the snapshot `client`'s transaction holds.
async fn count_rows_and_read_facts(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
) -> Result<(Vec<TableRowCount>, DatabaseFacts), PostgresError> {
    let row_counts = postgres::count_rows(cluster, client).await?;
    let database_facts =
        DatabaseFacts::capture(client)
            .await
            .map_err(|source| PostgresError::Query {
                cluster: cluster.name.to_string(),
                action: "read owners, grants, extensions and large objects".to_owned(),
                source,
            })?;
    Ok((row_counts, database_facts))
}

/// Why nothing was sent, as a backup error: a failed dump explains more than the regions
/// it starved.
fn not_sent_to_backup_error(
    error: FanOutError,
    encoded: Result<EncodedDump, EncodeError>,
    failures: &mut Vec<(RegionName, String)>,
) -> BackupError {
    match (error, encoded) {
        (FanOutError::Cancelled, _) => BackupError::Cancelled,
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
                reasons: describe_failures(failures),
            }
        }
    }
}

/// Aborts and deletes in regions the backup left behind, running beside the commit so a
/// dead region cannot hold it up; each gives up after [`CLEANUP_TIMEOUT`].
struct BackgroundCleanup(tokio::task::JoinHandle<()>);

impl BackgroundCleanup {
    /// Stage 5, clean up: wait until the dropped regions have been told (or the time to
    /// tell them has run out). What is left there, scrub removes.
    async fn finish(self) {
        let _ = self.0.await;
    }
}

/// Stage 4a, complete: complete each multipart upload and check every region's object by
/// its size. Returns the regions that hold the whole object; the others are added to
/// `failures` and cleaned up in the background. A region that hangs here gets the same
/// bounded allowance as during the upload.
async fn complete_uploads(
    preflight: &Preflight<'_>,
    sent: Sent,
    encoded: &EncodedDump,
    failures: &mut Vec<(RegionName, String)>,
) -> (Vec<Region>, BackgroundCleanup) {
    let object_key = &preflight.object_key;
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

    let stored_bytes = encoded.stored_bytes;
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
            match region.object_size(object_key).await {
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
        preflight.limits.min_regions,
        preflight.limits.straggler_allowance(),
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
    let background_cleanup = tokio::spawn({
        let key = object_key.clone();
        async move {
            let clean_late = late.run_with_timeout(key, CLEANUP_TIMEOUT);
            let _ = tokio::join!(clean_dropped, clean_late);
        }
    });
    (holding_regions, BackgroundCleanup(background_cleanup))
}

/// The manifest of the object the encoder made, listing the regions that hold it.
#[expect(
    clippy::too_many_arguments,
    reason = "each argument is one part of the manifest, named where it is called"
)]
fn build_manifest(
    request: &BackupRequest<'_>,
    preflight: &Preflight<'_>,
    backup_id: BackupId,
    started_at: chrono::DateTime<Utc>,
    source: Source,
    encoded: &EncodedDump,
    holding_regions: &[Region],
    row_counts: Vec<TableRowCount>,
    database_facts: DatabaseFacts,
) -> Manifest {
    let config = request.config;
    Manifest {
        version: crate::manifest::MANIFEST_VERSION,
        tenant: request.tenant.name.clone(),
        backup_id,
        kind: request.kind,
        started_at,
        finished_at: Utc::now(),
        source,
        pipeline: Pipeline {
            format: "pg_dump custom (--compress=0)".to_owned(),
            compression: "zstd".to_owned(),
            compression_level: config.compression_level,
            encryption: "age X25519".to_owned(),
            recipient_fingerprints: request
                .recipients()
                .iter()
                .map(Recipient::fingerprint)
                .collect(),
        },
        object: StoredObject {
            key: preflight.object_key.clone(),
            dump_bytes: encoded.dump_bytes,
            stored_bytes: encoded.stored_bytes,
            sha256: encoded.sha256.clone(),
            part_size_bytes: config.part_size_bytes,
            part_count: encoded.part_count,
        },
        regions: holding_regions
            .iter()
            .map(|region| region.name().clone())
            .collect(),
        row_counts,
        database_facts: Some(database_facts),
    }
}

/// Stage 4b, commit: write the manifest in every region holding the whole object. With
/// fewer than `min_regions` holding it, or taking its manifest, everything is deleted
/// again and the backup fails. Returns the manifest, listing the regions that took it,
/// and those regions.
async fn commit(
    preflight: &Preflight<'_>,
    mut manifest: Manifest,
    holding_regions: Vec<Region>,
    failures: &mut Vec<(RegionName, String)>,
) -> Result<(Manifest, Vec<Region>), BackupError> {
    let min_regions = preflight.limits.min_regions;
    let object_key = &preflight.object_key;
    if holding_regions.len() < min_regions {
        delete_objects(&holding_regions, &[object_key.as_str()]).await;
        return Err(BackupError::TooFewRegions {
            min_regions,
            available: holding_regions.len(),
            reasons: describe_failures(failures),
        });
    }

    let manifest_key = ObjectKey::Manifest(&manifest.tenant, manifest.backup_id).to_key();
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
        min_regions,
        preflight.limits.straggler_allowance(),
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
    if committed.len() < min_regions {
        delete_objects(&committed, &[manifest_key.as_str(), object_key.as_str()]).await;
        return Err(BackupError::TooFewRegions {
            min_regions,
            available: committed.len(),
            reasons: describe_failures(failures),
        });
    }
    // The manifests list the regions that held the object when they were written; a
    // region that then failed to take its manifest is reported and left to repair.
    manifest
        .regions
        .retain(|region| committed.iter().any(|held| held.name() == region));
    Ok((manifest, committed))
}

/// Each region's result: the committed ones, then every failure with its reason.
fn region_results(committed: &[Region], failures: Vec<(RegionName, String)>) -> Vec<RegionResult> {
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
    regions
}

fn encode_error_to_backup_error(error: EncodeError) -> BackupError {
    match error {
        EncodeError::PgDump(error) => BackupError::Postgres(error),
        EncodeError::Recipients(reason) => BackupError::Recipients(reason),
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
            part_number: None,
            kind,
            message: "refused".to_owned(),
        })
    }

    #[test]
    fn only_failures_no_retry_can_mend_are_permanent() {
        let missing_database = BackupError::Postgres(PostgresError::DatabaseMissing {
            cluster: "main".to_owned(),
            database: "ghost".to_owned(),
        });
        assert!(missing_database.is_permanent());
        let version_mismatch =
            encode_error_to_backup_error(EncodeError::PgDump(PostgresError::ToolFailed {
                program: "pg_dump".to_owned(),
                status: "exit status: 1".to_owned(),
                stderr: "pg_dump: error: aborting because of server version mismatch".to_owned(),
            }));
        assert!(version_mismatch.is_permanent(), "{version_mismatch}");
        let recipients =
            encode_error_to_backup_error(EncodeError::Recipients("no recipients".to_owned()));
        assert!(recipients.is_permanent(), "{recipients}");

        let retryable = [
            BackupError::Cancelled,
            BackupError::Encode("the dump produced no output".to_owned()),
            BackupError::TooFewRegions {
                min_regions: 2,
                available: 1,
                reasons: "region us: fell 5 parts behind the other regions".to_owned(),
            },
            BackupError::RegionsUnreachable {
                min_regions: 2,
                answered: 0,
                reasons: "region us: head bucket: connection refused (127.0.0.1:1)".to_owned(),
            },
            BackupError::Postgres(PostgresError::Unreachable {
                cluster: "main".to_owned(),
                host: "127.0.0.1".to_owned(),
                port: 5432,
                database: "acme".to_owned(),
                message: "connection refused".to_owned(),
            }),
            encode_error_to_backup_error(EncodeError::UploadsStopped),
        ];
        for error in retryable {
            assert!(!error.is_permanent(), "{error}");
        }
    }

    #[test]
    fn each_failed_region_is_named_once() {
        let failures = [
            (
                RegionName::parse("us").expect("region"),
                "region us: put object k: connection refused (127.0.0.1:1)".to_owned(),
            ),
            (
                RegionName::parse("ap").expect("region"),
                "fell 5 parts behind the other regions".to_owned(),
            ),
        ];
        assert_eq!(
            describe_failures(&failures),
            "region us: put object k: connection refused (127.0.0.1:1); \
             region ap: fell 5 parts behind the other regions"
        );
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
