//! The nightly run, as `lifeboat nightly` drives it from cron: enqueue a backup of every
//! tenant, wait for the queue to finish them, summarise.
//!
//! A run is named by its UTC date; each tenant's backup job has the dedup key
//! `nightly:<date>:backup:<tenant>`. So running the nightly again the same day (after a
//! crash, or by a second cron host) waits for the same jobs instead of doing them twice;
//! only jobs that failed for good are queued again, with fresh attempts.
//!
//! A controller's scheduler may serve the same catalog. A tenant is backed up once a day
//! either way: the nightly adopts the job of the tenant's scheduled slot of the run's date
//! (unless it failed for good) instead of queueing its own, and the scheduler skips a slot
//! whose date already has the tenant's nightly backup ([`nightly_backups_of`]).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime};
use lifeboat_core::api::JobWork;
use lifeboat_core::ids::{BackupId, ClusterName, TenantName};
use lifeboat_core::manifest::BackupKind;
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::catalog::{Catalog, CatalogError, query_error};
use crate::queue::{self, JobStatus, NewJob};

/// The dedup key of a tenant's backup in nightly run `run`.
pub fn backup_key(run: &str, tenant: &str) -> String {
    format!("nightly:{run}:backup:{tenant}")
}

/// Enqueue run `run`'s backups: one per tenant in the catalog, except that a tenant whose
/// scheduled slot of the run's date (when `run` is a date) has a job that did not fail for
/// good keeps that job. Returns each tenant's job id.
pub async fn enqueue_backups(
    catalog: &Catalog,
    run: &str,
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
            dedup_key: Some(backup_key(run, tenant.as_str())),
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
    let mut by_tenant = match NaiveDate::parse_from_str(run, RUN_DATE_FORMAT) {
        Ok(date) => scheduled_backups_to_adopt(&*transaction, run, date, &jobs).await?,
        Err(_) => BTreeMap::new(),
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

/// How a run named by its date spells it (the nightly's default run name).
pub const RUN_DATE_FORMAT: &str = "%Y-%m-%d";

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
    run: &str,
    date: NaiveDate,
    jobs: &[NewJob],
) -> Result<BTreeMap<String, i64>, CatalogError> {
    let tenants: Vec<&str> = jobs.iter().map(job_tenant).collect();
    let run_keys: Vec<String> = tenants
        .iter()
        .map(|tenant| backup_key(run, tenant))
        .collect();
    // The slot's date is in the key. `created_at` (the catalog's clock, not the
    // scheduler's) only narrows the index scan, with a day to spare for clock skew.
    let since = date.and_time(NaiveTime::MIN).and_utc() - chrono::Duration::days(1);
    let slot_date = date.format(RUN_DATE_FORMAT).to_string();
    let rows = client
        .query(
            "SELECT tenant, id FROM jobs
             WHERE tenant = ANY($1) AND kind = 'backup' AND created_at >= $2
               AND state <> 'failed'
               AND dedup_key LIKE 'backup:' || tenant || ':' || $3 || 'T%'
               AND tenant NOT IN (SELECT tenant FROM jobs
                                  WHERE dedup_key = ANY($4) AND state <> 'failed'
                                    AND tenant IS NOT NULL)
             ORDER BY id DESC",
            &[&tenants, &since, &slot_date, &run_keys],
        )
        .await
        .map_err(query_error(
            "find the scheduler's backups of the run's date",
        ))?;
    Ok(rows
        .iter()
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
        .map(|(tenant, date)| backup_key(&date.format(RUN_DATE_FORMAT).to_string(), tenant))
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

/// The dedup key of a maintenance job of run `run`.
pub fn maintenance_key(run: &str, work: &JobWork) -> String {
    match work {
        JobWork::Scrub { region, .. } => format!("nightly:{run}:scrub:{region}"),
        JobWork::Replicate { backup_id, to, .. } => {
            format!("nightly:{run}:replicate:{backup_id}:{to}")
        }
        JobWork::Delete { backup_id, .. } => format!("nightly:{run}:delete:{backup_id}"),
        JobWork::Backup { tenant, .. } => backup_key(run, tenant.as_str()),
        JobWork::Drill { tenant, .. } => drill_key(run, tenant.as_str()),
    }
}

/// The dedup key of a tenant's drill in nightly run `run`.
pub fn drill_key(run: &str, tenant: &str) -> String {
    format!("nightly:{run}:drill:{tenant}")
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
        .map(|job| job.dedup_key.clone().unwrap_or_default())
        .collect();
    if keys.iter().any(String::is_empty) {
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
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Vec<JobStatus>, CatalogError> {
    loop {
        let statuses = queue::job_statuses(catalog, ids).await?;
        let finished = statuses
            .iter()
            .all(|status| status.state == "succeeded" || status.state == "failed");
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
        let result = status.result.as_ref();
        let outcome = result.and_then(|result| result.get("outcome"));
        let verified = status.state == "succeeded"
            && outcome.and_then(|outcome| outcome.as_str()) == Some("verified");
        let number = |name: &str| {
            result
                .and_then(|result| result.get(name))
                .and_then(serde_json::Value::as_u64)
        };
        DrillLine {
            job: Some(status.id),
            state: status.state.clone(),
            verified,
            tables_verified: number("tables_verified"),
            rows_verified: number("rows_verified"),
            duration_ms: number("duration_ms"),
            error: if verified {
                None
            } else {
                Some(
                    result
                        .and_then(|result| result.get("error"))
                        .and_then(serde_json::Value::as_str)
                        .map(str::to_owned)
                        .or_else(|| status.last_error.clone())
                        .unwrap_or_else(|| {
                            format!(
                                "not finished when the nightly stopped waiting (still {})",
                                status.state
                            )
                        }),
                )
            },
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
/// took), on the tenant's cluster. Returns each tenant's drill job id.
pub async fn enqueue_drills(
    catalog: &Catalog,
    run: &str,
    backups: &BTreeMap<String, BackupId>,
    max_attempts: i32,
) -> Result<BTreeMap<String, i64>, CatalogError> {
    let names: Vec<&str> = backups.keys().map(String::as_str).collect();
    let rows = catalog
        .connection()
        .await?
        .query(
            "SELECT name, cluster FROM tenants WHERE name = ANY($1) ORDER BY name",
            &[&names],
        )
        .await
        .map_err(query_error("read the drilled tenants"))?;
    let mut jobs = Vec::new();
    for row in &rows {
        let (tenant, cluster) = tenant_and_cluster(row)?;
        let Some(backup_id) = backups.get(tenant.as_str()) else {
            continue;
        };
        jobs.push(NewJob {
            dedup_key: Some(drill_key(run, tenant.as_str())),
            work: JobWork::Drill {
                tenant,
                cluster,
                backup_id: *backup_id,
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
        let field = |name: &str| status.result.as_ref().and_then(|result| result.get(name));
        TenantOutcome {
            tenant: tenant.to_owned(),
            job: status.id,
            state: status.state.clone(),
            attempts: status.attempts,
            backup_id: field("backup_id")
                .and_then(|value| value.as_str())
                .map(str::to_owned),
            stored_bytes: field("stored_bytes").and_then(serde_json::Value::as_u64),
            duration_ms: field("duration_ms").and_then(serde_json::Value::as_u64),
            degraded: field("degraded")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn status(state: &str, result: serde_json::Value) -> JobStatus {
        JobStatus {
            id: 7,
            kind: "drill".to_owned(),
            tenant: Some("acme".to_owned()),
            state: state.to_owned(),
            attempts: 1,
            last_error: None,
            result: Some(result),
        }
    }

    #[test]
    fn a_backup_whose_drill_did_not_verify_is_not_a_good_backup() {
        let backup = status(
            "succeeded",
            serde_json::json!({ "backup_id": "x", "degraded": false }),
        );
        let mut outcome = TenantOutcome::from_status("acme", &backup);
        assert!(outcome.succeeded(), "not drilled: the backup counts");

        outcome.drill = Some(DrillLine::from_status(&status(
            "succeeded",
            serde_json::json!({ "outcome": "verified", "tables_verified": 3, "rows_verified": 9 }),
        )));
        assert!(outcome.succeeded());

        let failed = DrillLine::from_status(&status(
            "succeeded",
            serde_json::json!({ "outcome": "failed", "error": "row counts differ" }),
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
