//! A backup taken now, on a customer's or staff member's request: the one home of "take a
//! manual backup", for the API and the panel.
//!
//! Requests are rate-limited per tenant ([`DEFAULT_DAILY_LIMIT`] in any 24 hours): a
//! manual backup costs the tenant's database a full `pg_dump` and the regions a full copy,
//! so a customer (or a stolen session) must not be able to ask for one in a loop. Every
//! request counts, whether its job succeeded or not; the count and the enqueue happen under
//! the tenant's row lock, so two requests at the same moment cannot both take the last one.

use chrono::{DateTime, Duration, Utc};
use lifeboat_core::api::JobWork;
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::manifest::BackupKind;
use serde::Serialize;

use crate::audit::{self, Actor};
use crate::catalog::{Catalog, CatalogError, query_error};
use crate::queue::{self, NewJob};

/// Manual backups a tenant may ask for in any 24 hours.
pub const DEFAULT_DAILY_LIMIT: i64 = 5;

/// A manual backup enqueued.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ManualBackupRequested {
    /// The backup job; its progress is the job's.
    pub job_id: i64,
    /// How many more the tenant may ask for before `limit_resets_at`.
    pub remaining_today: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ManualBackupError {
    #[error("tenant {0} does not exist")]
    UnknownTenant(TenantName),
    #[error(
        "tenant {tenant} already asked for {limit} manual backups in the last 24 hours; the next one can be asked for at {next_at}"
    )]
    RateLimited {
        tenant: TenantName,
        limit: i64,
        next_at: DateTime<Utc>,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Enqueue a manual backup of `tenant` (its job tried up to `max_attempts` times), unless it
/// asked for `daily_limit` in the 24 hours before `now`. Audited as `backup.manual` in the same transaction.
pub async fn request_manual_backup(
    catalog: &Catalog,
    tenant: &TenantName,
    daily_limit: i64,
    max_attempts: i32,
    actor: &Actor,
    now: DateTime<Utc>,
) -> Result<ManualBackupRequested, ManualBackupError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let row = transaction
        .query_opt(
            "SELECT cluster, database_name FROM tenants WHERE name = $1 FOR UPDATE",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("lock the tenant"))?
        .ok_or_else(|| ManualBackupError::UnknownTenant(tenant.clone()))?;
    let cluster: String = row.get(0);
    let cluster = ClusterName::parse(&cluster)
        .map_err(|error| CatalogError::Inconsistent(error.to_string()))?;
    let since = now - Duration::hours(24);
    let recent: Vec<DateTime<Utc>> = transaction
        .query(
            "SELECT created_at FROM jobs
             WHERE tenant = $1 AND kind = 'backup' AND params->>'backup_kind' = 'manual'
               AND created_at > $2
             ORDER BY created_at",
            &[&tenant.as_str(), &since],
        )
        .await
        .map_err(query_error("count the tenant's manual backups"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let used = i64::try_from(recent.len()).unwrap_or(i64::MAX);
    if used >= daily_limit {
        // The oldest request in the window leaves it first.
        let next_at = recent
            .first()
            .map_or(now, |oldest| *oldest + Duration::hours(24));
        return Err(ManualBackupError::RateLimited {
            tenant: tenant.clone(),
            limit: daily_limit,
            next_at,
        });
    }
    let job = NewJob {
        dedup_key: None,
        work: JobWork::Backup {
            tenant: tenant.clone(),
            cluster,
            database: row.get(1),
            backup_kind: BackupKind::Manual,
        },
    };
    let ids = queue::enqueue(&*transaction, &[job], max_attempts).await?;
    let job_id = *ids.first().ok_or_else(|| {
        CatalogError::Inconsistent("a job without a dedup key was skipped".into())
    })?;
    audit::record(
        &*transaction,
        actor,
        "backup.manual",
        Some(tenant.as_str()),
        None,
        serde_json::json!({ "job_id": job_id }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(ManualBackupRequested {
        job_id,
        remaining_today: daily_limit - used - 1,
    })
}
