//! Requesting a restore: check, then enqueue the job, its `restores` row and the audit entry
//! in one transaction. Requests for one tenant are ordered by a transaction-scoped advisory
//! lock, so two helpdesk staff asking at once get one restore and one clear refusal.

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use lifeboat_core::api::JobWork;
use lifeboat_core::config::{Config, TenantConfig};
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::restore::BackupSelector;
use secrecy::SecretString;
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::estimate::{self, RestoreEstimate};
use super::{
    ChosenBackup, MAX_IDENTIFIER_BYTES, RestoreError, RestoreMode, copy_role_name,
    kept_database_name, query_error,
};
use crate::audit::{self, Actor};
use crate::catalog::Catalog;
use crate::dedup_key::DedupKey;
use crate::queue::{self, NewJob};
use crate::tenants;

/// What a live restore will do, before it is asked for (the CLI shows it and asks to
/// confirm).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LiveRestorePlan {
    #[schema(value_type = String)]
    pub tenant: TenantName,
    pub cluster: String,
    pub database: String,
    pub backup: ChosenBackup,
    /// None: the tenant has no verified drill yet, so there is nothing to estimate from.
    pub estimate: Option<RestoreEstimate>,
}

/// A restore enqueued.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestoreRequested {
    pub job_id: i64,
    pub mode: RestoreMode,
    #[schema(value_type = String)]
    pub tenant: TenantName,
    /// None for a rollback.
    pub backup: Option<ChosenBackup>,
    /// The database the job makes live (the tenant's) or creates (a copy).
    pub database: String,
    /// Live and rollback: the name the swapped-out database is kept under.
    pub previous_database: Option<String>,
    /// Rollback: the kept database that becomes live again.
    pub restore_database: Option<String>,
    pub estimate: Option<RestoreEstimate>,
}

/// A copy asked for: its role's password exists only here, to be shown once.
#[derive(Debug)]
pub struct CopyRequested {
    pub requested: RestoreRequested,
    pub role: String,
    pub password: SecretString,
}

/// `lifeboat restore copy`.
#[derive(Debug, Clone)]
pub struct CopyRequest<'a> {
    pub tenant: &'a TenantName,
    pub selector: BackupSelector,
    pub into: &'a str,
    /// None: kept until dropped by hand.
    pub expires_days: Option<u32>,
    pub actor: &'a Actor,
}

/// The backup `selector` names for `tenant`: in the catalog, the tenant's, out of the trash,
/// with a present copy in a configured region; `Latest` is the newest such backup.
async fn choose_backup<C: GenericClient>(
    client: &C,
    config: &Config,
    tenant: &TenantName,
    selector: BackupSelector,
) -> Result<ChosenBackup, RestoreError> {
    let regions: Vec<&str> = config
        .regions
        .iter()
        .map(|region| region.name.as_str())
        .collect();
    const COLUMNS: &str = "b.id, b.tenant, b.kind, b.started_at, b.finished_at, b.stored_bytes,
        b.sha256, b.trashed_at IS NOT NULL,
        EXISTS (SELECT 1 FROM backup_copies c WHERE c.backup_id = b.id AND c.state = 'present'
                AND c.region = ANY($2::text[]))";
    let row = match selector {
        BackupSelector::Id(id) => client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM backups b WHERE b.id = $1"),
                &[&id.as_uuid(), &regions],
            )
            .await
            .map_err(query_error("find the backup to restore"))?
            .ok_or(RestoreError::UnknownBackup(id))?,
        BackupSelector::Latest => client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM backups b
                     WHERE b.tenant = $1 AND b.trashed_at IS NULL
                       AND EXISTS (SELECT 1 FROM backup_copies c WHERE c.backup_id = b.id
                                   AND c.state = 'present' AND c.region = ANY($2::text[]))
                     ORDER BY b.started_at DESC LIMIT 1"
                ),
                &[&tenant.as_str(), &regions],
            )
            .await
            .map_err(query_error("find the newest backup to restore"))?
            .ok_or_else(|| RestoreError::NoRestorableBackup(tenant.clone()))?,
    };
    let id = BackupId::from_uuid(row.get(0)).ok_or_else(|| {
        RestoreError::Catalog(crate::catalog::CatalogError::Inconsistent(
            "a backup id in the catalog is not a UUIDv7".to_owned(),
        ))
    })?;
    let owner: String = row.get(1);
    if owner != tenant.as_str() {
        return Err(RestoreError::OtherTenantsBackup {
            backup: id,
            owner,
            tenant: tenant.clone(),
        });
    }
    if row.get::<_, bool>(7) {
        return Err(RestoreError::Trashed(id));
    }
    if !row.get::<_, bool>(8) {
        return Err(RestoreError::NoPresentCopy(id));
    }
    Ok(ChosenBackup {
        id,
        kind: row.get(2),
        started_at: row.get(3),
        finished_at: row.get(4),
        stored_bytes: u64::try_from(row.get::<_, i64>(5)).unwrap_or(0),
        sha256: row.get(6),
    })
}

/// Refuse when a restore of `tenant` is queued or running.
async fn refuse_if_underway<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<(), RestoreError> {
    let underway = client
        .query_opt(
            "SELECT id, state FROM jobs
             WHERE tenant = $1 AND kind = 'restore' AND state IN ('queued', 'running')
             ORDER BY id LIMIT 1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("find the tenant's restores underway"))?;
    match underway {
        Some(row) => Err(RestoreError::AlreadyUnderway {
            tenant: tenant.clone(),
            job: row.get(0),
            state: row.get(1),
        }),
        None => Ok(()),
    }
}

/// Order this request after any other of `tenant`'s, until the transaction ends.
pub(super) async fn lock_tenant_restores<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<(), RestoreError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("lifeboat.restore.{tenant}")],
        )
        .await
        .map_err(query_error("lock the tenant's restores"))?;
    Ok(())
}

/// Seconds tried past the request's own for a kept name nobody holds.
const KEPT_NAME_ATTEMPTS: i64 = 60;

/// The name the database swapped out at `at` is kept under, and its second: the request's
/// second, or the next free one when the cluster already keeps that name (a rollback in
/// the same second as its restore, or two databases whose names share their first 33
/// bytes). The request's dedup key takes the same second, so both are new together.
async fn free_kept_name<C: GenericClient>(
    client: &C,
    cluster: &str,
    at: DateTime<Utc>,
    database: &str,
) -> Result<(String, DateTime<Utc>), RestoreError> {
    for offset in 0..KEPT_NAME_ATTEMPTS {
        let second = at + TimeDelta::seconds(offset);
        let name = kept_database_name(second, database);
        let held = client
            .query_opt(
                "SELECT 1 FROM kept_databases WHERE cluster = $1 AND database_name = $2
                   AND dropped_at IS NULL AND revived_at IS NULL",
                &[&cluster, &name],
            )
            .await
            .map_err(query_error("check the kept name"))?;
        if held.is_none() {
            return Ok((name, second));
        }
    }
    Err(RestoreError::KeptNameTaken {
        name: kept_database_name(at, database),
        cluster: cluster.to_owned(),
    })
}

/// The second a request is made in (its dedup key and kept name).
fn this_minute() -> DateTime<Utc> {
    let now = Utc::now();
    now.duration_trunc(TimeDelta::seconds(1)).unwrap_or(now)
}

/// What a request writes besides its job.
struct RestoreRow<'a> {
    mode: RestoreMode,
    tenant: &'a TenantConfig,
    backup: Option<BackupId>,
    database: &'a str,
    previous_database: Option<&'a str>,
    copy_role: Option<&'a str>,
    reason: Option<&'a str>,
    actor: &'a Actor,
    /// Seconds the database left behind is kept; None: until dropped by hand.
    keep_for_seconds: Option<i64>,
}

/// Enqueue `work` under the tenant's key of `minute`, with its `restores` row and audit
/// entry, in `transaction`. Returns the job's id.
async fn enqueue_restore<C: GenericClient>(
    transaction: &C,
    config: &Config,
    minute: DateTime<Utc>,
    work: JobWork,
    row: &RestoreRow<'_>,
) -> Result<i64, RestoreError> {
    let tenant = &row.tenant.name;
    let job = NewJob {
        work,
        dedup_key: Some(DedupKey::Restore {
            tenant: tenant.clone(),
            minute,
        }),
    };
    let ids = queue::enqueue(transaction, &[job], config.queue.max_attempts).await?;
    let Some(&job_id) = ids.first() else {
        return Err(RestoreError::SameMinute(tenant.clone()));
    };
    transaction
        .execute(
            "INSERT INTO restores (job_id, tenant, cluster, mode, backup_id, database_name,
                                   previous_database, copy_role, reason, requested_by, keep_for)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10,
                     make_interval(secs => $11::bigint))",
            &[
                &job_id,
                &tenant.as_str(),
                &row.tenant.cluster.as_str(),
                &row.mode.as_str(),
                &row.backup.map(|backup| backup.as_uuid()),
                &row.database,
                &row.previous_database,
                &row.copy_role,
                &row.reason,
                &row.actor.to_string(),
                &row.keep_for_seconds,
            ],
        )
        .await
        .map_err(query_error("record the restore"))?;
    audit::record(
        transaction,
        row.actor,
        &format!("restore.{}.request", row.mode),
        Some(tenant.as_str()),
        row.reason,
        serde_json::json!({
            "job": job_id,
            "backup": row.backup,
            "database": row.database,
            "previous_database": row.previous_database,
            "copy_role": row.copy_role,
        }),
    )
    .await?;
    super::asks::serve_open_ask(transaction, tenant, row.mode, row.backup, job_id, row.actor)
        .await?;
    Ok(job_id)
}

fn keep_previous_seconds(config: &Config) -> i64 {
    i64::try_from(config.restore.keep_previous().as_secs()).unwrap_or(i64::MAX)
}

/// The reason a restore, rollback or closed ask needs for the audit log, trimmed; an
/// empty one is refused.
pub fn check_reason(reason: &str) -> Result<&str, RestoreError> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(RestoreError::EmptyReason);
    }
    Ok(reason)
}

/// What a live restore of `tenant` from `selector` would do, checked as
/// [`request_live_restore`] checks it (but for its reason: [`check_reason`]); nothing is
/// written.
pub async fn plan_live_restore(
    catalog: &Catalog,
    config: &Config,
    tenant: &TenantName,
    selector: BackupSelector,
) -> Result<LiveRestorePlan, RestoreError> {
    let resolved = tenants::resolve_tenant(config, tenant).await?;
    let connection = catalog.connection().await?;
    refuse_if_underway(&**connection, tenant).await?;
    let backup = choose_backup(&**connection, config, tenant, selector).await?;
    let estimate = estimate::estimate(&**connection, tenant, RestoreMode::Live).await?;
    Ok(LiveRestorePlan {
        tenant: tenant.clone(),
        cluster: resolved.cluster.to_string(),
        database: resolved.database,
        backup,
        estimate,
    })
}

/// Enqueue a live restore of `tenant` from `selector`: a safety backup, the backup restored
/// beside the live database and verified, then swapped in; the live database is kept for
/// `[restore] keep_previous_days`.
pub async fn request_live_restore(
    catalog: &Catalog,
    config: &Config,
    tenant: &TenantName,
    selector: BackupSelector,
    reason: &str,
    actor: &Actor,
) -> Result<RestoreRequested, RestoreError> {
    check_reason(reason)?;
    let resolved = tenants::resolve_tenant(config, tenant).await?;
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    lock_tenant_restores(&*transaction, tenant).await?;
    refuse_if_underway(&*transaction, tenant).await?;
    let backup = choose_backup(&*transaction, config, tenant, selector).await?;
    let (previous_database, minute) = free_kept_name(
        &*transaction,
        resolved.cluster.as_str(),
        this_minute(),
        &resolved.database,
    )
    .await?;
    let work = JobWork::RestoreLive {
        tenant: tenant.clone(),
        cluster: resolved.cluster.clone(),
        database: resolved.database.clone(),
        backup_id: backup.id,
        sha256: Some(backup.sha256.clone()),
        previous_database: previous_database.clone(),
    };
    let row = RestoreRow {
        mode: RestoreMode::Live,
        tenant: &resolved,
        backup: Some(backup.id),
        database: &resolved.database,
        previous_database: Some(&previous_database),
        copy_role: None,
        reason: Some(reason.trim()),
        actor,
        keep_for_seconds: Some(keep_previous_seconds(config)),
    };
    let job_id = enqueue_restore(&*transaction, config, minute, work, &row).await?;
    let estimate = estimate::estimate(&*transaction, tenant, RestoreMode::Live).await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(RestoreRequested {
        job_id,
        mode: RestoreMode::Live,
        tenant: tenant.clone(),
        backup: Some(backup),
        database: resolved.database,
        previous_database: Some(previous_database),
        restore_database: None,
        estimate,
    })
}

/// Enqueue a rollback of `tenant`'s newest live restore: the previous database it kept (not
/// dropped, not past its time) is swapped back in, and the database it replaces is kept in
/// turn for `[restore] keep_previous_days`.
pub async fn request_rollback(
    catalog: &Catalog,
    config: &Config,
    tenant: &TenantName,
    reason: Option<&str>,
    actor: &Actor,
) -> Result<RestoreRequested, RestoreError> {
    let resolved = tenants::resolve_tenant(config, tenant).await?;
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    lock_tenant_restores(&*transaction, tenant).await?;
    refuse_if_underway(&*transaction, tenant).await?;
    let kept = transaction
        .query_opt(
            "SELECT database_name FROM kept_databases
             WHERE tenant = $1 AND cluster = $2 AND why = 'previous'
               AND dropped_at IS NULL AND revived_at IS NULL AND keep_until > now()
             ORDER BY kept_at DESC, id DESC LIMIT 1",
            &[&tenant.as_str(), &resolved.cluster.as_str()],
        )
        .await
        .map_err(query_error("find the kept previous database"))?
        .ok_or_else(|| RestoreError::NothingToRollBack(tenant.clone()))?;
    let restore_database: String = kept.get(0);
    let (previous_database, minute) = free_kept_name(
        &*transaction,
        resolved.cluster.as_str(),
        this_minute(),
        &resolved.database,
    )
    .await?;
    let work = JobWork::Rollback {
        tenant: tenant.clone(),
        cluster: resolved.cluster.clone(),
        database: resolved.database.clone(),
        restore_database: restore_database.clone(),
        previous_database: previous_database.clone(),
    };
    let reason = reason.map(str::trim).filter(|reason| !reason.is_empty());
    let row = RestoreRow {
        mode: RestoreMode::Rollback,
        tenant: &resolved,
        backup: None,
        database: &resolved.database,
        previous_database: Some(&previous_database),
        copy_role: None,
        reason,
        actor,
        keep_for_seconds: Some(keep_previous_seconds(config)),
    };
    let job_id = enqueue_restore(&*transaction, config, minute, work, &row).await?;
    let estimate = estimate::estimate(&*transaction, tenant, RestoreMode::Rollback).await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(RestoreRequested {
        job_id,
        mode: RestoreMode::Rollback,
        tenant: tenant.clone(),
        backup: None,
        database: resolved.database,
        previous_database: Some(previous_database),
        restore_database: Some(restore_database),
        estimate,
    })
}

/// Refuse a copy's name that is not a database name, or names a database lifeboat knows on
/// the cluster: a tenant's, one kept, or another copy underway. (The agent also refuses a
/// database that exists on the cluster.)
async fn refuse_copy_target<C: GenericClient>(
    client: &C,
    config: &Config,
    cluster: &str,
    into: &str,
) -> Result<(), RestoreError> {
    let refuse = |why: String| {
        Err(RestoreError::CopyTarget {
            into: into.to_owned(),
            why,
        })
    };
    if into.is_empty() || into.len() > MAX_IDENTIFIER_BYTES || into.contains('\0') {
        return refuse("a database name must be 1 to 63 bytes without NUL characters".to_owned());
    }
    if let Some(tenant) = config
        .tenants
        .values()
        .find(|tenant| tenant.cluster.as_str() == cluster && tenant.database == into)
    {
        return refuse(format!("it is tenant {}'s database", tenant.name));
    }
    let known = client
        .query_opt(
            "SELECT 'it is tenant ' || name || '''s database' FROM tenants
             WHERE cluster = $1 AND database_name = $2
             UNION ALL
             SELECT 'lifeboat keeps a database of that name (' || why || ' of tenant ' || tenant || ')'
             FROM kept_databases WHERE cluster = $1 AND database_name = $2
               AND dropped_at IS NULL AND revived_at IS NULL
             UNION ALL
             SELECT 'a copy of that name is underway (job ' || r.job_id || ')'
             FROM restores r JOIN jobs j ON j.id = r.job_id
             WHERE r.cluster = $1 AND r.mode = 'copy' AND r.database_name = $2
               AND j.state IN ('queued', 'running')
             LIMIT 1",
            &[&cluster, &into],
        )
        .await
        .map_err(query_error("check the copy's name"))?;
    match known {
        Some(row) => refuse(row.get(0)),
        None => Ok(()),
    }
}

/// A password for a copy's role: two random UUIDs, 244 random bits, in hex.
fn generate_password() -> SecretString {
    SecretString::from(format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    ))
}

/// Enqueue a restore of a backup of `tenant` into a new database with its own role. Only
/// the role password's SCRAM-SHA-256 verifier goes into the job; the password is returned
/// once, to be shown to whoever asked.
pub async fn request_copy(
    catalog: &Catalog,
    config: &Config,
    request: CopyRequest<'_>,
) -> Result<CopyRequested, RestoreError> {
    use secrecy::ExposeSecret;

    let tenant = request.tenant;
    if request.expires_days == Some(0) {
        return Err(RestoreError::InvalidExpiry);
    }
    let resolved = tenants::resolve_tenant(config, tenant).await?;
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    lock_tenant_restores(&*transaction, tenant).await?;
    refuse_if_underway(&*transaction, tenant).await?;
    refuse_copy_target(
        &*transaction,
        config,
        resolved.cluster.as_str(),
        request.into,
    )
    .await?;
    let backup = choose_backup(&*transaction, config, tenant, request.selector).await?;
    let role = copy_role_name(request.into);
    let password = generate_password();
    let verifier = postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
    let work = JobWork::RestoreCopy {
        tenant: tenant.clone(),
        cluster: resolved.cluster.clone(),
        backup_id: backup.id,
        sha256: Some(backup.sha256.clone()),
        into_database: request.into.to_owned(),
        role: role.clone(),
        role_password_verifier: verifier,
    };
    let row = RestoreRow {
        mode: RestoreMode::Copy,
        tenant: &resolved,
        backup: Some(backup.id),
        database: request.into,
        previous_database: None,
        copy_role: Some(&role),
        reason: None,
        actor: request.actor,
        keep_for_seconds: request.expires_days.map(|days| i64::from(days) * 24 * 3600),
    };
    let minute = this_minute();
    let job_id = enqueue_restore(&*transaction, config, minute, work, &row).await?;
    let estimate = estimate::estimate(&*transaction, tenant, RestoreMode::Copy).await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(CopyRequested {
        requested: RestoreRequested {
            job_id,
            mode: RestoreMode::Copy,
            tenant: tenant.clone(),
            backup: Some(backup),
            database: request.into.to_owned(),
            previous_database: None,
            restore_database: None,
            estimate,
        },
        role,
        password,
    })
}
