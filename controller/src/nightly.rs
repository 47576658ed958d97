//! The nightly run, as `lifeboat nightly` and the demo drive it: enqueue a backup of every
//! tenant, wait for the queue to finish them, drill them (optionally), run a maintenance
//! pass ([`crate::maintenance`]), summarise. [`run_nightly`] is the one home of that order;
//! the binary only starts the controller API and an agent around it and prints the summary.
//!
//! A run is named ([`RunName`], by default its UTC date); each tenant's backup job has the
//! dedup key [`DedupKey::NightlyBackup`]. So running the nightly again the same day (after a
//! crash, or by a second cron host) waits for the same jobs instead of doing them twice;
//! only jobs that failed for good are queued again, with fresh attempts.
//!
//! A controller's scheduler may serve the same catalog. A tenant is backed up once a day
//! either way: the nightly adopts the job of the tenant's scheduled slot of the run's date
//! (unless it failed for good) instead of queueing its own, and the scheduler skips a slot
//! whose date already has the tenant's nightly backup ([`nightly_backups_of`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime, Utc};
use lifeboat_core::api::{DrillOutcome, JobWork};
use lifeboat_core::ids::{BackupId, ClusterName, TenantName};
use lifeboat_core::manifest::BackupKind;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_postgres::GenericClient;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, CatalogError, query_error};
use crate::dedup_key::{DedupKey, RunName};
use crate::maintenance::{self, MaintenanceOptions, MaintenanceReport, WaitForJobs};
use crate::queue::{self, JobState, JobStatus, NewJob};

/// Enqueue run `run`'s backups: one per tenant in the catalog, except that a tenant whose
/// scheduled slot of the run's date (when `run` is a date) has a job that did not fail for
/// good keeps that job. Returns each tenant's job id.
pub async fn enqueue_backups(
    catalog: &Catalog,
    run: &RunName,
    max_attempts: i32,
) -> Result<BTreeMap<String, i64>, CatalogError> {
    let rows = catalog
        .connection()
        .await?
        .query(
            "SELECT name, cluster, database_name FROM tenants ORDER BY name",
            &[],
        )
        .await
        .map_err(query_error("read tenants"))?;
    let mut jobs = Vec::new();
    for row in &rows {
        let (tenant, cluster) = tenant_and_cluster(row)?;
        jobs.push(NewJob {
            dedup_key: Some(DedupKey::NightlyBackup {
                run: run.clone(),
                tenant: tenant.clone(),
            }),
            work: JobWork::Backup {
                tenant,
                cluster,
                database: row.get(2),
                backup_kind: BackupKind::Scheduled,
            },
        });
    }
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin enqueue"))?;
    // Against a scheduler tick deciding at the same moment that the nightly covers a slot.
    lock_daily_backups(&*transaction).await?;
    // A tenant removed since the read above is not backed up (removal takes this lock).
    let listed: Vec<&str> = jobs.iter().map(job_tenant).collect();
    let still_there = existing_tenants(&*transaction, &listed).await?;
    jobs.retain(|job| still_there.contains(job_tenant(job)));
    let mut by_tenant = match run.date() {
        Some(date) => scheduled_backups_to_adopt(&*transaction, date, &jobs).await?,
        None => BTreeMap::new(),
    };
    jobs.retain(|job| !by_tenant.contains_key(job_tenant(job)));
    let ids = enqueue_run_jobs_in(&*transaction, &jobs, max_attempts).await?;
    transaction
        .commit()
        .await
        .map_err(query_error("commit enqueue"))?;
    for (job, id) in jobs.iter().zip(ids) {
        by_tenant.insert(job_tenant(job).to_owned(), id);
    }
    Ok(by_tenant)
}

/// A `tenants` row's name and cluster (columns 0 and 1), both checked.
fn tenant_and_cluster(
    row: &tokio_postgres::Row,
) -> Result<(TenantName, ClusterName), CatalogError> {
    match (
        TenantName::parse(row.get(0)),
        ClusterName::parse(row.get(1)),
    ) {
        (Ok(tenant), Ok(cluster)) => Ok((tenant, cluster)),
        _ => Err(CatalogError::Inconsistent(format!(
            "tenant {:?} has an invalid name or cluster",
            row.get::<_, &str>(0)
        ))),
    }
}

/// Which of `names` are tenants now. Read under [`lock_daily_backups`], it excludes a
/// tenant that `tenant remove` took away since the caller first read them.
pub(crate) async fn existing_tenants(
    client: &impl GenericClient,
    names: &[&str],
) -> Result<std::collections::BTreeSet<String>, CatalogError> {
    Ok(client
        .query("SELECT name FROM tenants WHERE name = ANY($1)", &[&names])
        .await
        .map_err(query_error("read tenants again under the lock"))?
        .iter()
        .map(|row| row.get(0))
        .collect())
}

/// Serialises the two ways a day's backups are enqueued (a nightly's, a scheduler tick's),
/// so that each sees what the other enqueued before deciding. Held to the end of the
/// caller's transaction.
pub(crate) async fn lock_daily_backups(client: &impl GenericClient) -> Result<(), CatalogError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended('lifeboat:daily-backups', 0))",
            &[],
        )
        .await
        .map_err(query_error("lock the day's backups"))?;
    Ok(())
}

fn job_tenant(job: &NewJob) -> &str {
    match &job.work {
        JobWork::Backup { tenant, .. } => tenant.as_str(),
        _ => "",
    }
}

/// The scheduler's jobs for `date`'s slots of the tenants of `jobs` that the run can adopt:
/// not failed for good, and the tenant has no job of this run that did not fail (a run
/// started again keeps waiting for what it queued before). The earliest slot's job of the
/// date, if several (sub-daily schedules).
async fn scheduled_backups_to_adopt(
    client: &impl GenericClient,
    date: NaiveDate,
    jobs: &[NewJob],
) -> Result<BTreeMap<String, i64>, CatalogError> {
    let tenants: Vec<&str> = jobs.iter().map(job_tenant).collect();
    let run_keys: Vec<String> = jobs
        .iter()
        .filter_map(|job| job.dedup_key.as_ref().map(ToString::to_string))
        .collect();
    // The slot's date is in the key, read through its type. `created_at` (the catalog's
    // clock, not the scheduler's) only narrows the index scan, with a day to spare for
    // clock skew.
    let since = date.and_time(NaiveTime::MIN).and_utc() - chrono::Duration::days(1);
    let rows = client
        .query(
            "SELECT tenant, id, dedup_key FROM jobs
             WHERE tenant = ANY($1) AND kind = 'backup' AND created_at >= $2
               AND state <> 'failed' AND dedup_key IS NOT NULL
               AND tenant NOT IN (SELECT tenant FROM jobs
                                  WHERE dedup_key = ANY($3) AND state <> 'failed'
                                    AND tenant IS NOT NULL)
             ORDER BY id DESC",
            &[&tenants, &since, &run_keys],
        )
        .await
        .map_err(query_error(
            "find the scheduler's backups of the run's date",
        ))?;
    Ok(rows
        .iter()
        .filter(|row| {
            matches!(
                row.get::<_, &str>(2).parse::<DedupKey>(),
                Ok(DedupKey::ScheduledBackup { slot, .. }) if slot.date_naive() == date
            )
        })
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect())
}

/// Whether the nightly run of a due slot's date backs the tenant up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NightlyCover {
    /// Its job succeeded: the slot is done.
    Done,
    /// Its job is queued or running: ask again at the next tick.
    Pending,
}

/// Of `due` tenants and their slot dates, those whose nightly run of that date has a backup
/// job that did not fail for good: the scheduler does not enqueue their slots.
pub async fn nightly_backups_of(
    client: &impl GenericClient,
    due: &[(String, NaiveDate)],
) -> Result<BTreeMap<String, NightlyCover>, CatalogError> {
    let keys: Vec<String> = due
        .iter()
        .filter_map(|(tenant, date)| {
            let key = DedupKey::NightlyBackup {
                run: RunName::for_date(*date),
                tenant: TenantName::parse(tenant).ok()?,
            };
            Some(key.to_string())
        })
        .collect();
    let rows = client
        .query(
            "SELECT tenant, state FROM jobs WHERE dedup_key = ANY($1) AND state <> 'failed'",
            &[&keys],
        )
        .await
        .map_err(query_error("find the nightly's backups of due slots"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let cover = if row.get::<_, &str>(1) == "succeeded" {
                NightlyCover::Done
            } else {
                NightlyCover::Pending
            };
            (row.get::<_, String>(0), cover)
        })
        .collect())
}

/// Enqueue jobs that all carry dedup keys, requeue those of them that failed for good, and
/// return the job id of each, in order. Running it again with the same keys changes
/// nothing for jobs that succeeded or are under way.
pub async fn enqueue_run_jobs(
    catalog: &Catalog,
    jobs: &[NewJob],
    max_attempts: i32,
) -> Result<Vec<i64>, CatalogError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin enqueue"))?;
    let ids = enqueue_run_jobs_in(&*transaction, jobs, max_attempts).await?;
    transaction
        .commit()
        .await
        .map_err(query_error("commit enqueue"))?;
    Ok(ids)
}

/// [`enqueue_run_jobs`] inside the caller's transaction.
async fn enqueue_run_jobs_in(
    client: &impl GenericClient,
    jobs: &[NewJob],
    max_attempts: i32,
) -> Result<Vec<i64>, CatalogError> {
    let keys: Vec<String> = jobs
        .iter()
        .filter_map(|job| job.dedup_key.as_ref().map(ToString::to_string))
        .collect();
    if keys.len() != jobs.len() {
        return Err(CatalogError::Inconsistent(
            "a run's jobs must all have dedup keys".to_owned(),
        ));
    }
    queue::enqueue(client, jobs, max_attempts).await?;
    client
        .execute(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_after = now(), finished_at = NULL
             WHERE dedup_key = ANY($1) AND state = 'failed'",
            &[&keys],
        )
        .await
        .map_err(query_error("requeue failed jobs of the run"))?;
    let rows = client
        .query(
            "SELECT dedup_key, id FROM jobs WHERE dedup_key = ANY($1)",
            &[&keys],
        )
        .await
        .map_err(query_error("read the run's jobs"))?;
    let by_key: BTreeMap<String, i64> = rows
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect();
    keys.iter()
        .map(|key| {
            by_key.get(key).copied().ok_or_else(|| {
                CatalogError::Inconsistent(format!("job {key} vanished after enqueue"))
            })
        })
        .collect()
}

/// Wait until every job in `ids` has succeeded or failed for good, polling every `poll`.
pub async fn wait_for_jobs(
    catalog: &Catalog,
    ids: &[i64],
    poll: Duration,
    cancel: &CancellationToken,
) -> Result<Vec<JobStatus>, CatalogError> {
    loop {
        let statuses = queue::job_statuses(catalog, ids).await?;
        let finished = statuses.iter().all(|status| status.state.is_finished());
        if finished || cancel.is_cancelled() {
            return Ok(statuses);
        }
        tokio::select! {
            () = cancel.cancelled() => {}
            () = tokio::time::sleep(poll) => {}
        }
    }
}

/// One tenant's line in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct TenantOutcome {
    pub tenant: String,
    pub job: i64,
    pub state: String,
    pub attempts: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    pub degraded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The drill of this run's backup (`nightly --drill`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillLine>,
}

/// How the drill of a tenant's new backup went.
#[derive(Debug, Clone, Serialize)]
pub struct DrillLine {
    /// None when no drill job was queued for the backup.
    pub job: Option<i64>,
    /// The job's state: a finished drill job "succeeded" whether the backup verified or not.
    pub state: String,
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables_verified: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows_verified: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl DrillLine {
    pub fn from_status(status: &JobStatus) -> DrillLine {
        let drilled = status.drill_summary();
        let outcome = drilled.as_ref().map(|summary| &summary.record.outcome);
        let verified = status.state == JobState::Succeeded
            && matches!(outcome, Some(DrillOutcome::Verified { .. }));
        let (tables_verified, rows_verified) = match outcome {
            Some(DrillOutcome::Verified {
                tables_verified,
                rows_verified,
            }) => (Some(*tables_verified), Some(*rows_verified)),
            _ => (None, None),
        };
        let error = match outcome {
            _ if verified => None,
            Some(DrillOutcome::Failed { error }) => Some(error.clone()),
            _ => Some(status.last_error.clone().unwrap_or_else(|| {
                format!(
                    "not finished when the nightly stopped waiting (still {})",
                    status.state
                )
            })),
        };
        DrillLine {
            job: Some(status.id),
            state: status.state.to_string(),
            verified,
            tables_verified,
            rows_verified,
            duration_ms: drilled.as_ref().map(|summary| summary.duration_ms),
            error,
        }
    }
}

impl DrillLine {
    /// A backup this run took but did not drill, and why: it does not count as verified.
    pub fn not_drilled(reason: impl Into<String>) -> DrillLine {
        DrillLine {
            job: None,
            state: "not drilled".to_owned(),
            verified: false,
            tables_verified: None,
            rows_verified: None,
            duration_ms: None,
            error: Some(reason.into()),
        }
    }
}

/// Enqueue run `run`'s drills: one per tenant of `backups` (tenant → the backup this run
/// took), on `drill_cluster` or else the tenant's cluster. Returns each tenant's drill job
/// id.
pub async fn enqueue_drills(
    catalog: &Catalog,
    run: &RunName,
    backups: &BTreeMap<String, BackupId>,
    drill_cluster: Option<&ClusterName>,
    max_attempts: i32,
) -> Result<BTreeMap<String, i64>, CatalogError> {
    let names: Vec<&str> = backups.keys().map(String::as_str).collect();
    let backup_uuids: Vec<uuid::Uuid> = backups.values().map(|id| id.as_uuid()).collect();
    let rows = catalog
        .connection()
        .await?
        .query(
            "SELECT t.name, t.cluster, b.id, b.sha256
             FROM tenants t JOIN backups b ON b.tenant = t.name AND b.id = ANY($2)
             WHERE t.name = ANY($1) ORDER BY t.name",
            &[&names, &backup_uuids],
        )
        .await
        .map_err(query_error("read the drilled tenants"))?;
    let mut jobs = Vec::new();
    for row in &rows {
        let (tenant, cluster) = tenant_and_cluster(row)?;
        let Some(backup_id) = backups.get(tenant.as_str()) else {
            continue;
        };
        if backup_id.as_uuid() != row.get::<_, uuid::Uuid>(2) {
            continue;
        }
        jobs.push(NewJob {
            dedup_key: Some(DedupKey::NightlyDrill {
                run: run.clone(),
                tenant: tenant.clone(),
            }),
            work: JobWork::Drill {
                tenant,
                cluster: drill_cluster.cloned().unwrap_or(cluster),
                backup_id: *backup_id,
                sha256: Some(row.get(3)),
            },
        });
    }
    let ids = enqueue_run_jobs(catalog, &jobs, max_attempts).await?;
    Ok(jobs
        .iter()
        .zip(ids)
        .filter_map(|(job, id)| match &job.work {
            JobWork::Drill { tenant, .. } => Some((tenant.to_string(), id)),
            _ => None,
        })
        .collect())
}

impl TenantOutcome {
    pub fn from_status(tenant: &str, status: &JobStatus) -> TenantOutcome {
        let backup = status.backup_summary();
        TenantOutcome {
            tenant: tenant.to_owned(),
            job: status.id,
            state: status.state.to_string(),
            attempts: status.attempts,
            backup_id: backup.as_ref().map(|summary| summary.backup_id.to_string()),
            stored_bytes: backup.as_ref().map(|summary| summary.stored_bytes),
            duration_ms: backup.as_ref().map(|summary| summary.duration_ms),
            degraded: backup.as_ref().is_some_and(|summary| summary.degraded),
            error: match status.state.as_str() {
                "succeeded" => None,
                "failed" => status.last_error.clone(),
                unfinished => Some(format!(
                    "not finished when the nightly stopped waiting (still {unfinished}){}",
                    status
                        .last_error
                        .as_deref()
                        .map(|error| format!("; last error: {error}"))
                        .unwrap_or_default()
                )),
            },
            drill: None,
        }
    }

    /// A good backup from this run: taken, and verified by its drill if it was drilled.
    pub fn succeeded(&self) -> bool {
        self.state == "succeeded" && self.drill.as_ref().is_none_or(|drill| drill.verified)
    }
}

/// How a nightly runs.
#[derive(Debug, Clone)]
pub struct NightlyOptions {
    pub run: RunName,
    /// Drill each tenant's new backup; a tenant whose drill does not verify has no good
    /// backup from this run.
    pub drill: bool,
    /// The maintenance pass after the backups; `None`: backups only.
    pub maintenance: Option<MaintenanceOptions>,
    pub max_attempts: i32,
    /// Where drills restore (`[controller] drill_cluster`); `None`: each tenant's cluster.
    pub drill_cluster: Option<ClusterName>,
}

/// Milestones of a run, for whoever drives it to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NightlyEvent {
    BackupsQueued(usize),
    DrillsQueued(usize),
}

/// The summary of one run.
#[derive(Debug, Serialize)]
pub struct NightlySummary {
    pub run: String,
    pub seconds: f64,
    pub tenants: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub degraded: usize,
    pub outcomes: Vec<TenantOutcome>,
    /// Retention, scrub and repair; absent with backups only, or when waiting ended first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<MaintenanceReport>,
}

/// Run nightly `options.run` on `catalog`, whose queue agents serve (the caller starts
/// them, and the API they reach through `work_ready`): back up every tenant, drill the new
/// backups with `options.drill`, then a maintenance pass. Waiting ends with `until` (the
/// deadline, Ctrl-C): the summary then counts what is done, and maintenance is skipped.
pub async fn run_nightly(
    catalog: &Catalog,
    options: &NightlyOptions,
    work_ready: &Notify,
    until: &CancellationToken,
    on_event: &(dyn Fn(NightlyEvent) + Send + Sync),
) -> Result<NightlySummary, CatalogError> {
    let started = Instant::now();
    let run = &options.run;
    let jobs = enqueue_backups(catalog, run, options.max_attempts).await?;
    work_ready.notify_waiters();
    on_event(NightlyEvent::BackupsQueued(jobs.len()));
    let ids: Vec<i64> = jobs.values().copied().collect();
    let statuses = wait_for_jobs(catalog, &ids, Duration::from_millis(200), until).await?;
    let mut outcomes: Vec<TenantOutcome> = jobs
        .iter()
        .filter_map(|(tenant, id)| {
            statuses
                .iter()
                .find(|status| status.id == *id)
                .map(|status| TenantOutcome::from_status(tenant, status))
        })
        .collect();
    if options.drill {
        if !until.is_cancelled() {
            drill_new_backups(catalog, options, &mut outcomes, work_ready, until, on_event).await?;
        }
        // With drills, a backup is good only once drilled.
        for outcome in &mut outcomes {
            if outcome.state == "succeeded" && outcome.drill.is_none() {
                outcome.drill = Some(DrillLine::not_drilled(
                    "not drilled: the nightly stopped waiting before its drill was queued",
                ));
            }
        }
    }
    let maintenance = match &options.maintenance {
        Some(maintenance) if !until.is_cancelled() => Some(
            maintenance::run_maintenance(
                catalog,
                maintenance,
                run,
                Utc::now(),
                options.max_attempts,
                Some(WaitForJobs { until, work_ready }),
            )
            .await,
        ),
        _ => None,
    };
    Ok(NightlySummary {
        maintenance,
        run: run.to_string(),
        seconds: started.elapsed().as_secs_f64(),
        tenants: outcomes.len(),
        succeeded: outcomes
            .iter()
            .filter(|outcome| outcome.succeeded())
            .count(),
        failed: outcomes
            .iter()
            .filter(|outcome| !outcome.succeeded())
            .count(),
        degraded: outcomes.iter().filter(|outcome| outcome.degraded).count(),
        outcomes,
    })
}

/// Drill every backup this run took (one drill job per tenant, for agents that can
/// decrypt), wait for them, and attach each drill to its tenant's outcome.
async fn drill_new_backups(
    catalog: &Catalog,
    options: &NightlyOptions,
    outcomes: &mut [TenantOutcome],
    work_ready: &Notify,
    until: &CancellationToken,
    on_event: &(dyn Fn(NightlyEvent) + Send + Sync),
) -> Result<(), CatalogError> {
    let backups: BTreeMap<String, BackupId> = outcomes
        .iter()
        .filter(|outcome| outcome.state == "succeeded")
        .filter_map(|outcome| {
            let backup_id = BackupId::parse(outcome.backup_id.as_deref()?).ok()?;
            Some((outcome.tenant.clone(), backup_id))
        })
        .collect();
    if backups.is_empty() {
        return Ok(());
    }
    let jobs = enqueue_drills(
        catalog,
        &options.run,
        &backups,
        options.drill_cluster.as_ref(),
        options.max_attempts,
    )
    .await?;
    work_ready.notify_waiters();
    on_event(NightlyEvent::DrillsQueued(jobs.len()));
    let ids: Vec<i64> = jobs.values().copied().collect();
    let statuses = wait_for_jobs(catalog, &ids, Duration::from_millis(200), until).await?;
    for outcome in outcomes {
        if outcome.state != "succeeded" {
            continue;
        }
        let Some(id) = jobs.get(&outcome.tenant) else {
            outcome.drill = Some(DrillLine::not_drilled(
                "not drilled: no drill could be queued (tenant removed, or no backup id)",
            ));
            continue;
        };
        let Some(status) = statuses.iter().find(|status| status.id == *id) else {
            continue;
        };
        let drilled = status
            .drill_summary()
            .map(|summary| summary.record.backup_id.to_string());
        outcome.drill = Some(match drilled {
            // A run started again after its backup was taken again keeps its earlier drill.
            Some(drilled) if Some(drilled.as_str()) != outcome.backup_id.as_deref() => {
                DrillLine::not_drilled(format!(
                    "not drilled: this run's drill job {id} drilled backup {drilled}, an earlier one; run the nightly under a new --run name"
                ))
            }
            _ => DrillLine::from_status(status),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drills::DrillRecord;
    use crate::job_summary::{self, DrillSummary};

    fn status(state: &str, result: serde_json::Value) -> JobStatus {
        JobStatus {
            id: 7,
            kind: lifeboat_core::api::JobKind::Drill,
            tenant: Some("acme".to_owned()),
            state: JobState::parse(state).expect("a job state"),
            attempts: 1,
            last_error: None,
            result: Some(result),
        }
    }

    fn drilled(outcome: DrillOutcome) -> serde_json::Value {
        let now = Utc::now();
        job_summary::to_stored(&DrillSummary {
            record: DrillRecord {
                tenant: TenantName::parse("acme").expect("tenant"),
                backup_id: BackupId::new(),
                region: None,
                scratch_database: "scratch".to_owned(),
                started_at: now,
                finished_at: now,
                outcome,
                steps: Vec::new(),
            },
            drill: 1,
            duration_ms: 5,
        })
    }

    #[test]
    fn a_backup_whose_drill_did_not_verify_is_not_a_good_backup() {
        let backup = status(
            "succeeded",
            serde_json::json!({
                "backup_id": BackupId::new(), "stored_bytes": 1, "duration_ms": 1,
                "regions": [], "degraded": false
            }),
        );
        let mut outcome = TenantOutcome::from_status("acme", &backup);
        assert!(outcome.backup_id.is_some(), "the summary reads back");
        assert!(outcome.succeeded(), "not drilled: the backup counts");

        let verified = DrillLine::from_status(&status(
            "succeeded",
            drilled(DrillOutcome::Verified {
                tables_verified: 3,
                rows_verified: 9,
            }),
        ));
        assert_eq!(verified.rows_verified, Some(9));
        outcome.drill = Some(verified);
        assert!(outcome.succeeded());

        let failed = DrillLine::from_status(&status(
            "succeeded",
            drilled(DrillOutcome::Failed {
                error: "row counts differ".to_owned(),
            }),
        ));
        assert_eq!(failed.error.as_deref(), Some("row counts differ"));
        outcome.drill = Some(failed);
        assert!(!outcome.succeeded(), "a drill that failed fails the tenant");

        outcome.drill = Some(DrillLine::from_status(&status(
            "queued",
            serde_json::Value::Null,
        )));
        assert!(!outcome.succeeded(), "an unfinished drill proves nothing");
    }
}
