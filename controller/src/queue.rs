//! The job queue, in the catalog.
//!
//! - **Enqueue** with an optional dedup key: a key is used at most once, ever, so a scheduled
//!   slot becomes one job even when two controllers enqueue it.
//! - **Claim** with `FOR UPDATE SKIP LOCKED`: claimers never wait on each other's candidate
//!   rows. Concurrency limits (per database cluster, per region, one job per tenant at a
//!   time) are checked under transaction-scoped advisory locks taken with *try*, so two
//!   claimers cannot both take the last place under a limit, and no claimer ever blocks.
//! - **Lease**: a claimed job carries a fresh lease token, its owner (the agent that claimed
//!   it) and an expiry that heartbeats push back. Reports and heartbeats must come from the
//!   owner and carry the token of the current attempt; a stale one (its lease expired and
//!   the job moved on) is refused, so an attempt that lost its lease can never complete the
//!   job twice, and another agent holding the lease token cannot act on it.
//! - **Retry**: a failed attempt, or an expired lease, requeues the job after an exponential
//!   backoff until `max_attempts`; then it stays `failed` with its last error.

use std::time::Duration;

use lifeboat_core::api::{ClaimedJob, JobKind, JobWork, StepReport};
use lifeboat_core::ids::{BackupId, ClusterName};
use lifeboat_core::service_config::{JobDeadlineSettings, QueueSettings, RETRY_MAX};
use tokio_postgres::GenericClient;
use uuid::Uuid;

use crate::catalog::{Catalog, CatalogError, query_error};
use crate::dedup_key::DedupKey;

/// How the queue hands out and retries work.
#[derive(Debug, Clone)]
pub struct QueuePolicy {
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// Jobs running at once against one database cluster.
    pub max_per_cluster: i64,
    /// Jobs running at once against one region (replicate, scrub).
    pub max_per_region: i64,
    /// First retry delay; doubled at each further attempt, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Attempts before a job is left `failed`.
    pub max_attempts: i32,
    /// How long one attempt of a job may run, by kind, however faithfully its agent sends
    /// heartbeats: a hung pg_dump or a wedged region must not hold a job (and its tenant's
    /// place under the limits) forever.
    pub deadlines: JobDeadlineSettings,
}

/// The deadline of one attempt of a `kind` job.
fn deadline_of(deadlines: &JobDeadlineSettings, kind: JobKind) -> Duration {
    match kind {
        JobKind::Backup => deadlines.backup,
        JobKind::Restore => deadlines.restore,
        JobKind::Drill => deadlines.drill,
        JobKind::Replicate => deadlines.replicate,
        JobKind::Scrub => deadlines.scrub,
        JobKind::Delete | JobKind::DropDatabase => deadlines.delete,
    }
}

impl Default for QueuePolicy {
    fn default() -> Self {
        QueuePolicy::from_settings(&QueueSettings::default())
    }
}

impl QueuePolicy {
    /// The policy the configuration's `[queue]` describes.
    pub fn from_settings(settings: &QueueSettings) -> QueuePolicy {
        QueuePolicy {
            lease: settings.lease,
            max_per_cluster: settings.max_jobs_per_cluster,
            max_per_region: settings.max_jobs_per_region,
            retry_base: settings.retry_base,
            retry_max: RETRY_MAX.max(settings.retry_base),
            max_attempts: settings.max_attempts,
            deadlines: settings.deadlines,
        }
    }

    /// The delay before attempt `attempts + 1`, after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exponent = attempts.saturating_sub(1).min(20);
        self.retry_base
            .saturating_mul(1u32 << exponent)
            .min(self.retry_max)
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub work: JobWork,
    /// Used once, ever: a second enqueue with the same key is a no-op.
    pub dedup_key: Option<DedupKey>,
}

impl NewJob {
    /// The tenant, cluster and region the limits apply to.
    fn scope(&self) -> (Option<String>, Option<String>, Option<String>) {
        match &self.work {
            JobWork::Backup {
                tenant, cluster, ..
            } => (Some(tenant.to_string()), Some(cluster.to_string()), None),
            JobWork::Replicate { tenant, to, .. } => {
                (Some(tenant.to_string()), None, Some(to.to_string()))
            }
            JobWork::Scrub { region, .. } => (None, None, Some(region.to_string())),
            JobWork::Delete { tenant, .. } => (Some(tenant.to_string()), None, None),
            JobWork::Drill {
                tenant, cluster, ..
            }
            | JobWork::RestoreLive {
                tenant, cluster, ..
            }
            | JobWork::Rollback {
                tenant, cluster, ..
            }
            | JobWork::RestoreCopy {
                tenant, cluster, ..
            }
            | JobWork::DropDatabase {
                tenant, cluster, ..
            } => (Some(tenant.to_string()), Some(cluster.to_string()), None),
        }
    }
}

/// Where a job is in its life; `jobs.state` (a CHECK names the same four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    /// Out of attempts, or failed for good.
    Failed,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
    ];

    /// The name stored in `jobs.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    /// Succeeded or failed: it will not run again unless requeued.
    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed)
    }
}

impl std::fmt::Display for JobState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A job that has finished, or not, as the catalog holds it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JobStatus {
    pub id: i64,
    pub kind: JobKind,
    pub tenant: Option<String>,
    pub state: JobState,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub result: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("job {0} does not exist")]
    NoSuchJob(i64),
    #[error(
        "job {0} is no longer held by this lease (it expired and the job was retried or finished); stop working on it"
    )]
    LeaseLost(i64),
    #[error("job {id} is leased to another agent, not {agent}")]
    NotLeaseOwner { id: i64, agent: String },
    #[error("the token of agent {0} was revoked")]
    TokenRevoked(String),
    #[error("job {id}: {message}")]
    InvalidReport { id: i64, message: String },
    /// No region could be asked whether it holds what a report claims: send it again.
    #[error("{0}; report again")]
    Unconfirmed(String),
}

/// Enqueue `jobs`; those whose dedup key was used before are skipped. Returns the ids of the
/// jobs inserted now. One statement, however many jobs.
pub async fn enqueue<C: GenericClient>(
    client: &C,
    jobs: &[NewJob],
    max_attempts: i32,
) -> Result<Vec<i64>, CatalogError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut kinds = Vec::with_capacity(jobs.len());
    let mut tenants = Vec::with_capacity(jobs.len());
    let mut clusters = Vec::with_capacity(jobs.len());
    let mut regions = Vec::with_capacity(jobs.len());
    let mut keys = Vec::with_capacity(jobs.len());
    let mut params = Vec::with_capacity(jobs.len());
    for job in jobs {
        let (tenant, cluster, region) = job.scope();
        kinds.push(job.work.kind().as_str().to_owned());
        tenants.push(tenant);
        clusters.push(cluster);
        regions.push(region);
        keys.push(job.dedup_key.as_ref().map(ToString::to_string));
        params.push(serde_json::to_value(&job.work).unwrap_or_default());
    }
    let rows = client
        .query(
            "INSERT INTO jobs (kind, tenant, cluster, region, dedup_key, params, max_attempts)
             SELECT kind, tenant, cluster, region, dedup_key, params, $7
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
                  AS new (kind, tenant, cluster, region, dedup_key, params)
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
            &[
                &kinds,
                &tenants,
                &clusters,
                &regions,
                &keys,
                &params,
                &max_attempts,
            ],
        )
        .await
        .map_err(query_error("enqueue jobs"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// A stable 64-bit advisory-lock key for a limit's scope.
fn lock_key(scope: &str, name: &str) -> String {
    format!("lifeboat.limit.{scope}.{name}")
}

/// Who claims, and what they may be given.
#[derive(Debug, Clone)]
pub struct Claimer<'a> {
    /// Becomes the job's `lease_owner`: only this agent may heartbeat and report it.
    pub agent: &'a str,
    /// Jobs on a database cluster are offered only to agents that name it here; jobs on
    /// none (scrub, replicate) to every agent.
    pub clusters: &'a [ClusterName],
    /// The agent holds the age identity; drills go only to such agents.
    pub can_decrypt: bool,
    /// The catalog token the agent authenticated with, checked unrevoked inside the claim's
    /// transaction; `None` for callers without one (an embedded agent, tests).
    pub token_id: Option<i64>,
}

/// Claim the oldest ready job this agent can run, or `None`, for a caller holding no
/// revocable token (see [`claim_for`]).
pub async fn claim(
    catalog: &Catalog,
    agent: &str,
    clusters: &[ClusterName],
    can_decrypt: bool,
    policy: &QueuePolicy,
) -> Result<Option<ClaimedJob>, QueueError> {
    let claimer = Claimer {
        agent,
        clusters,
        can_decrypt,
        token_id: None,
    };
    claim_for(catalog, &claimer, policy).await
}

/// Claim the oldest ready job `claimer` can run, or `None`. With a token, the token is
/// checked in the same transaction: a revoked one gets [`QueueError::TokenRevoked`].
pub async fn claim_for(
    catalog: &Catalog,
    claimer: &Claimer<'_>,
    policy: &QueuePolicy,
) -> Result<Option<ClaimedJob>, QueueError> {
    let agent = claimer.agent;
    let can_decrypt = claimer.can_decrypt;
    let clusters: Vec<&str> = claimer.clusters.iter().map(ClusterName::as_str).collect();
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin claim"))?;
    if let Some(token_id) = claimer.token_id
        && !crate::agents::lock_active_token(&*transaction, token_id).await?
    {
        return Err(QueueError::TokenRevoked(agent.to_owned()));
    }
    // Candidates: ready, on a cluster this agent serves (or none), and not in a scope that
    // is already at its limit, so that one busy cluster never holds back the jobs of
    // another queued behind it. The limits are checked again below under locks; this
    // filter only keeps the head of the queue claimable.
    let candidates = transaction
        .query(
            "WITH running AS (
                 SELECT tenant, cluster, region FROM jobs WHERE state = 'running'
             ), busy_clusters AS (
                 SELECT cluster FROM running WHERE cluster IS NOT NULL
                 GROUP BY cluster HAVING count(*) >= $2
             ), busy_regions AS (
                 SELECT region FROM running WHERE region IS NOT NULL
                 GROUP BY region HAVING count(*) >= $3
             )
             SELECT j.id, j.tenant, j.cluster, j.region FROM jobs j
             WHERE j.state = 'queued' AND j.run_after <= now()
               AND (j.cluster IS NULL OR j.cluster = ANY($1::text[]))
               AND (j.cluster IS NULL OR j.cluster NOT IN (SELECT cluster FROM busy_clusters))
               AND (j.region IS NULL OR j.region NOT IN (SELECT region FROM busy_regions))
               AND (j.tenant IS NULL OR j.tenant NOT IN
                    (SELECT tenant FROM running WHERE tenant IS NOT NULL))
               AND ($4 OR j.kind NOT IN ('drill', 'restore'))
             ORDER BY j.run_after, j.id
             LIMIT 4
             FOR UPDATE OF j SKIP LOCKED",
            &[
                &clusters,
                &policy.max_per_cluster,
                &policy.max_per_region,
                &can_decrypt,
            ],
        )
        .await
        .map_err(query_error("find a job to claim"))?;
    for candidate in candidates {
        let id: i64 = candidate.get(0);
        let tenant: Option<String> = candidate.get(1);
        let cluster: Option<String> = candidate.get(2);
        let region: Option<String> = candidate.get(3);
        if !within_limits(
            &*transaction,
            tenant.as_deref(),
            cluster.as_deref(),
            region.as_deref(),
            policy,
        )
        .await?
        {
            continue;
        }
        let lease_token = Uuid::new_v4();
        let lease_ms = i64::try_from(policy.lease.as_millis()).unwrap_or(i64::MAX);
        // Every attempt of a backup, and of a live restore (its safety backup), gets its own
        // backup id, remembered with the job: a report may commit only one of those.
        let backup_id = BackupId::new();
        let row = transaction
            .query_one(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $2,
                        lease_token = $3, lease_expires_at = now() + make_interval(secs => $4::bigint / 1000.0),
                        started_at = now(),
                        attempt_backup_ids = CASE WHEN kind = 'backup' OR params->>'kind' = 'restore-live'
                            THEN attempt_backup_ids || $5::uuid ELSE attempt_backup_ids END
                 WHERE id = $1
                 RETURNING params, attempts, kind, attempt_backup_ids",
                &[&id, &agent, &lease_token, &lease_ms, &backup_id.as_uuid()],
            )
            .await
            .map_err(query_error("claim job"))?;
        transaction
            .commit()
            .await
            .map_err(query_error("commit claim"))?;
        let params: serde_json::Value = row.get(0);
        let attempts: i32 = row.get(1);
        let attempt_ids: Vec<Uuid> = row.get(3);
        let takes_a_backup = attempt_ids.contains(&backup_id.as_uuid());
        let earlier_backup_ids = attempt_ids
            .iter()
            .filter(|uuid| **uuid != backup_id.as_uuid())
            .filter_map(|uuid| BackupId::from_uuid(*uuid))
            .collect();
        let work: JobWork = serde_json::from_value(params).map_err(|error| {
            CatalogError::Inconsistent(format!("job {id} has unreadable parameters: {error}"))
        })?;
        return Ok(Some(ClaimedJob {
            id,
            lease_token,
            lease_seconds: policy.lease.as_secs().max(1),
            attempt: u32::try_from(attempts).unwrap_or(0),
            work,
            backup_id: takes_a_backup.then_some(backup_id),
            earlier_backup_ids,
            tenant_keys: None,
        }));
    }
    transaction
        .commit()
        .await
        .map_err(query_error("commit claim"))?;
    Ok(None)
}

/// Whether a job with this scope may start now. Each scope is locked with a
/// transaction-scoped *try* lock: if another claimer is deciding for the same scope right
/// now, this candidate is skipped rather than waited for, so claims never block or deadlock.
async fn within_limits<C: GenericClient>(
    client: &C,
    tenant: Option<&str>,
    cluster: Option<&str>,
    region: Option<&str>,
    policy: &QueuePolicy,
) -> Result<bool, CatalogError> {
    let checks: [(&str, Option<&str>, &str, i64); 3] = [
        ("tenant", tenant, "tenant", 1),
        ("cluster", cluster, "cluster", policy.max_per_cluster),
        ("region", region, "region", policy.max_per_region),
    ];
    for (scope, name, column, limit) in checks {
        let Some(name) = name else { continue };
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                &[&lock_key(scope, name)],
            )
            .await
            .map_err(query_error("lock a concurrency limit"))?
            .get(0);
        if !locked {
            return Ok(false);
        }
        // The column name comes from the fixed list above, never from input.
        let running: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM jobs WHERE state = 'running' AND {column} = $1"),
                &[&name],
            )
            .await
            .map_err(query_error("count running jobs"))?
            .get(0);
        if running >= limit {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The most steps of a heartbeat kept as a job's progress, and the longest detail of one.
const PROGRESS_MAX_STEPS: usize = 100;
const PROGRESS_MAX_DETAIL_CHARS: usize = 500;

/// `steps` as kept in `jobs.progress`: bounded, whatever the agent sent. `None` for none,
/// which leaves the progress already kept as it is.
fn progress_of(steps: &[StepReport]) -> Option<serde_json::Value> {
    if steps.is_empty() {
        return None;
    }
    let bounded: Vec<StepReport> = steps
        .iter()
        .take(PROGRESS_MAX_STEPS)
        .map(|step| StepReport {
            step: step.step.chars().take(100).collect(),
            detail: step
                .detail
                .as_ref()
                .map(|detail| detail.chars().take(PROGRESS_MAX_DETAIL_CHARS).collect()),
            ..step.clone()
        })
        .collect();
    serde_json::to_value(bounded).ok()
}

/// Push back the lease of a running job held by `lease_token` of `agent`, and keep its
/// `steps` so far (a playbook job's progress), if it sent any.
pub async fn heartbeat(
    catalog: &Catalog,
    id: i64,
    lease_token: Uuid,
    agent: &str,
    steps: &[StepReport],
    policy: &QueuePolicy,
) -> Result<(), QueueError> {
    let connection = catalog.connection().await?;
    let lease_ms = i64::try_from(policy.lease.as_millis()).unwrap_or(i64::MAX);
    let progress = progress_of(steps);
    let renewed = connection
        .execute(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3::bigint / 1000.0),
                    progress = coalesce($5::jsonb, progress)
             WHERE id = $1 AND lease_token = $2 AND state = 'running' AND lease_owner = $4",
            &[&id, &lease_token, &lease_ms, &agent, &progress],
        )
        .await
        .map_err(query_error("renew lease"))?;
    if renewed == 1 {
        Ok(())
    } else {
        Err(why_not_held(&**connection, id, lease_token, agent).await)
    }
}

/// Why job `id` is not running under `agent`'s `lease_token`: it does not exist, the token
/// is the current one but another agent's, or the lease moved on (a stale attempt, told
/// with 409 so its agent stops at once).
async fn why_not_held<C: GenericClient>(
    client: &C,
    id: i64,
    lease_token: Uuid,
    agent: &str,
) -> QueueError {
    match client
        .query_opt(
            "SELECT state = 'running' AND lease_token = $2 AND lease_owner IS DISTINCT FROM $3
             FROM jobs WHERE id = $1",
            &[&id, &lease_token, &agent],
        )
        .await
    {
        Ok(Some(row)) if row.get::<_, bool>(0) => QueueError::NotLeaseOwner {
            id,
            agent: agent.to_owned(),
        },
        Ok(Some(_)) => QueueError::LeaseLost(id),
        Ok(None) => QueueError::NoSuchJob(id),
        Err(error) => QueueError::Catalog(query_error("look up job")(error)),
    }
}

/// The running job `id` held by `lease_token` of `agent`, locked for the rest of the
/// transaction.
pub async fn lock_running<C: GenericClient>(
    client: &C,
    id: i64,
    lease_token: Uuid,
    agent: &str,
) -> Result<RunningJob, QueueError> {
    let row = client
        .query_opt(
            "SELECT kind, params, attempt_backup_ids FROM jobs
             WHERE id = $1 AND lease_token = $2 AND state = 'running' AND lease_owner = $3
             FOR UPDATE",
            &[&id, &lease_token, &agent],
        )
        .await
        .map_err(query_error("look up running job"))?;
    let Some(row) = row else {
        return Err(why_not_held(client, id, lease_token, agent).await);
    };
    let kind: String = row.get(0);
    let params: serde_json::Value = row.get(1);
    let kind = JobKind::parse(&kind).ok_or_else(|| QueueError::InvalidReport {
        id,
        message: format!("the catalog holds an unknown job kind {kind:?}"),
    })?;
    let work = serde_json::from_value(params).map_err(|error| QueueError::InvalidReport {
        id,
        message: format!("the catalog holds unreadable job parameters: {error}"),
    })?;
    let attempt_ids: Vec<Uuid> = row.get(2);
    Ok(RunningJob {
        kind,
        work,
        attempt_backup_ids: attempt_ids
            .into_iter()
            .filter_map(BackupId::from_uuid)
            .collect(),
    })
}

/// A running job, locked for a report.
#[derive(Debug, Clone)]
pub struct RunningJob {
    pub kind: JobKind,
    pub work: JobWork,
    /// The backup ids handed to this job's attempts so far.
    pub attempt_backup_ids: Vec<BackupId>,
}

/// Mark a job locked by [`lock_running`] as succeeded.
pub async fn mark_succeeded<C: GenericClient>(
    client: &C,
    id: i64,
    result: &serde_json::Value,
) -> Result<(), CatalogError> {
    client
        .execute(
            "UPDATE jobs SET state = 'succeeded', result = $2, finished_at = now(),
                    lease_token = NULL, lease_expires_at = NULL, last_error = NULL
             WHERE id = $1",
            &[&id, result],
        )
        .await
        .map_err(query_error("mark job succeeded"))?;
    Ok(())
}

/// Record a failed attempt of a job locked by [`lock_running`]: retried after a backoff
/// while attempts remain and the failure is retryable, else failed for good.
pub async fn mark_failed<C: GenericClient>(
    client: &C,
    id: i64,
    error: &str,
    retryable: bool,
    policy: &QueuePolicy,
) -> Result<(), CatalogError> {
    client
        .execute(
            &format!(
                "UPDATE jobs SET
                    state = CASE WHEN $3 AND attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                    run_after = now() + {backoff},
                    finished_at = CASE WHEN $3 AND attempts < max_attempts THEN NULL ELSE now() END,
                    last_error = $2, lease_token = NULL, lease_expires_at = NULL
                 WHERE id = $1",
                backoff = backoff_sql(4)
            ),
            &[&id, &error, &retryable, &backoff_millis(policy)],
        )
        .await
        .map_err(query_error("mark job failed"))?;
    Ok(())
}

/// `min(base * 2^(attempts-1), max)` as an SQL interval, with parameter `$n` bound to
/// [`backoff_millis`].
fn backoff_sql(n: usize) -> String {
    format!(
        "make_interval(secs => least((${n}::bigint[])[1] * power(2, greatest(attempts - 1, 0)), (${n}::bigint[])[2]) / 1000.0)"
    )
}

fn backoff_millis(policy: &QueuePolicy) -> Vec<i64> {
    [policy.retry_base, policy.retry_max]
        .iter()
        .map(|duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
        .collect()
}

/// Requeue (or fail, when out of attempts) every running job whose lease has expired (its
/// agent died or lost touch), or that has run past its kind's deadline (it hung). The
/// agent's next heartbeat is refused, so it cancels the attempt. Returns how many.
pub async fn reap_expired_leases(
    catalog: &Catalog,
    policy: &QueuePolicy,
) -> Result<u64, CatalogError> {
    let connection = catalog.connection().await?;
    let kinds: Vec<&str> = JobKind::ALL.iter().map(|kind| kind.as_str()).collect();
    let deadline_ms: Vec<i64> = JobKind::ALL
        .iter()
        .map(|kind| {
            i64::try_from(deadline_of(&policy.deadlines, *kind).as_millis()).unwrap_or(i64::MAX)
        })
        .collect();
    let reaped = connection
        .execute(
            &format!(
                "UPDATE jobs SET
                    state = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
                    run_after = now() + {backoff},
                    finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE now() END,
                    last_error = CASE
                        WHEN jobs.lease_expires_at < now()
                        THEN 'lease expired: agent ' || coalesce(lease_owner, '?')
                             || ' stopped sending heartbeats'
                        ELSE 'deadline passed: the attempt ran longer than '
                             || (deadline.ms / 1000)::bigint || ' s (agent '
                             || coalesce(lease_owner, '?') || ')'
                    END,
                    lease_token = NULL, lease_expires_at = NULL
                 FROM unnest($2::text[], $3::bigint[]) AS deadline (kind, ms)
                 WHERE jobs.state = 'running' AND jobs.kind = deadline.kind
                   AND (jobs.lease_expires_at < now()
                        OR jobs.started_at < now() - make_interval(secs => deadline.ms / 1000.0))",
                backoff = backoff_sql(1)
            ),
            &[&backoff_millis(policy), &kinds, &deadline_ms],
        )
        .await
        .map_err(query_error(
            "reap expired leases and jobs past their deadline",
        ))?;
    Ok(reaped)
}

/// The state of the given jobs.
pub async fn job_statuses(catalog: &Catalog, ids: &[i64]) -> Result<Vec<JobStatus>, CatalogError> {
    let connection = catalog.connection().await?;
    let rows = connection
        .query(
            "SELECT id, kind, tenant, state, attempts, last_error, result FROM jobs WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await
        .map_err(query_error("read job states"))?;
    rows.iter()
        .map(|row| {
            let kind: &str = row.get(1);
            let state: &str = row.get(3);
            let unreadable = || {
                CatalogError::Inconsistent(format!(
                    "job {} has kind {kind:?} and state {state:?}, which this lifeboat does not know",
                    row.get::<_, i64>(0)
                ))
            };
            Ok(JobStatus {
                id: row.get(0),
                kind: JobKind::parse(kind).ok_or_else(unreadable)?,
                tenant: row.get(2),
                state: JobState::parse(state).ok_or_else(unreadable)?,
                attempts: row.get(4),
                last_error: row.get(5),
                result: row.get(6),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let policy = QueuePolicy {
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(10),
            ..QueuePolicy::default()
        };
        let delays: Vec<u64> = (1..=5).map(|n| policy.backoff(n).as_secs()).collect();
        assert_eq!(delays, vec![2, 4, 8, 10, 10]);
    }
}
