//! Tenants in the catalog: add, list, show, remove, each change audited in the same
//! transaction.
//!
//! Removing a tenant removes its catalog row only; its backups stay in the buckets (and in
//! the catalog), and retention leaves them alone, since it has no policy for them.

use chrono::{DateTime, Utc};
use lifeboat_core::config::{Config, TenantConfig};
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::keys::Recipient;
use lifeboat_core::region::Region;
use lifeboat_core::restore;
use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::audit::{self, Actor};
use crate::catalog::{Catalog, CatalogError};
use crate::schedule::{self, BackupWindow, InvalidSchedule};
use crate::tenant_keys;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("tenant {0} already exists")]
    Exists(TenantName),
    #[error("tenant {0} does not exist")]
    NotFound(TenantName),
    #[error(transparent)]
    NotConfigured(#[from] lifeboat_core::config::UnknownName),
    #[error(
        "unknown tenant {0}: not in the configuration's [tenants] nor in the catalog (lifeboat tenant list)"
    )]
    Unknown(TenantName),
    #[error(
        "tenant {0} is under legal hold, so it is not removed; lift the hold first (lifeboat tenant unhold {0})"
    )]
    UnderLegalHold(TenantName),
    #[error(
        "tenant {tenant} has a backup or drill running (job {job}), so it is not removed; try again once the job has finished"
    )]
    BackupRunning { tenant: TenantName, job: i64 },
    #[error("unknown cluster {cluster:?} (configured: {known})")]
    UnknownCluster { cluster: String, known: String },
    #[error("--database: a database name must be 1 to 63 bytes without NUL characters")]
    InvalidDatabase,
    #[error("tenant {tenant} was not added: {reason}")]
    ProvisionFailed { tenant: TenantName, reason: String },
    #[error("tenant {tenant} was not deprovisioned: {reason}")]
    DeprovisionFailed { tenant: TenantName, reason: String },
    #[error(
        "tenant {tenant}'s database was dropped, but its final backup {backup} could not be recorded ({reason}); it is in the regions: run `lifeboat catalog rebuild`, then `lifeboat tenant remove {tenant}`"
    )]
    FinalBackupNotRecorded {
        tenant: TenantName,
        backup: String,
        reason: String,
    },
    #[error(
        "the name {tenant} still has backups of an earlier tenant ({found}); a new tenant must not inherit them: choose another name, or purge them first"
    )]
    NameHasBackups { tenant: TenantName, found: String },
    #[error(
        "cannot check that the name {tenant} has no backups left by an earlier tenant: {reasons}; try again once every region answers"
    )]
    RegionsNotChecked { tenant: TenantName, reasons: String },
    #[error(transparent)]
    Schedule(#[from] InvalidSchedule),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("the catalog holds a tenant named {0:?}, which is not a slug")]
    InvalidStoredName(String),
    /// The tenant's key could not be made (per-tenant keys).
    #[error(transparent)]
    Keys(Box<tenant_keys::TenantKeysError>),
    #[error("catalog query failed: {action}: {source}")]
    Query {
        action: &'static str,
        source: tokio_postgres::Error,
    },
}

fn query_error(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> TenantError {
    move |source| TenantError::Query { action, source }
}

/// Grandfather-father-son retention: how many of each to keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    pub keep_yearly: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
            keep_yearly: 0,
        }
    }
}

/// A tenant to add.
#[derive(Debug, Clone)]
pub struct NewTenant {
    pub name: TenantName,
    pub cluster: ClusterName,
    /// Default: the tenant's name.
    pub database: Option<String>,
    /// Default: daily, spread over the backup window.
    pub schedule: Option<String>,
    pub retention: Retention,
}

/// A tenant as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Tenant {
    pub name: TenantName,
    pub cluster: String,
    pub database: String,
    /// As given; `None` for the default (see [`Tenant::effective_schedule`]).
    pub schedule: Option<String>,
    pub retention: Retention,
    pub legal_hold: bool,
    pub created_at: DateTime<Utc>,
    /// Its users' sessions and tokens are refused (`tenant freeze`).
    pub frozen: bool,
}

const SELECT_TENANTS: &str = "SELECT name, cluster, database_name, schedule, keep_daily, keep_weekly, keep_monthly, keep_yearly, legal_hold, created_at, frozen_at IS NOT NULL FROM tenants";

fn tenant_from_row(row: &tokio_postgres::Row) -> Result<Tenant, TenantError> {
    let name_text: String = row.get(0);
    let name =
        TenantName::parse(&name_text).map_err(|_| TenantError::InvalidStoredName(name_text))?;
    let schedule: Option<String> = row.get(3);
    let count = |index: usize| u32::try_from(row.get::<_, i32>(index)).unwrap_or(0);
    Ok(Tenant {
        name,
        cluster: row.get(1),
        database: row.get(2),
        schedule,
        retention: Retention {
            keep_daily: count(4),
            keep_weekly: count(5),
            keep_monthly: count(6),
            keep_yearly: count(7),
        },
        legal_hold: row.get(8),
        created_at: row.get(9),
        frozen: row.get(10),
    })
}

impl Tenant {
    /// The cron expression the scheduler uses: the tenant's own, or its default minute of
    /// `window` (the configured `[schedule] backup_window`).
    pub fn effective_schedule(&self, window: BackupWindow) -> String {
        self.schedule
            .clone()
            .unwrap_or_else(|| schedule::default_schedule(&self.name, window))
    }
}

/// Where `tenant`'s database is: the configuration's `[tenants.NAME]` if present (it wins,
/// so a deployment without a catalog works and an operator can override one tenant), else
/// the catalog's tenant row, when `[catalog]` is configured. The one place this rule lives.
pub async fn resolve_tenant(
    config: &Config,
    tenant: &TenantName,
) -> Result<TenantConfig, TenantError> {
    if let Ok(found) = config.tenant(tenant) {
        return Ok(found.clone());
    }
    if config.catalog.is_none() {
        // The configuration's own error lists the configured tenants.
        return Ok(config.tenant(tenant)?.clone());
    }
    let catalog = Catalog::open(config).await?;
    let stored = match show_tenant(&catalog, tenant).await {
        Ok(stored) => stored,
        Err(TenantError::NotFound(_)) => return Err(TenantError::Unknown(tenant.clone())),
        Err(error) => return Err(error),
    };
    let cluster = ClusterName::parse(&stored.cluster)
        .map_err(|_| TenantError::InvalidStoredName(stored.cluster.clone()))?;
    Ok(TenantConfig {
        name: stored.name,
        cluster,
        database: stored.database,
    })
}

/// Refuse a name under which backups of an earlier tenant remain, in the catalog (trashed
/// ones included) or in any region: a new tenant with that name would see them as its own,
/// restore them, and let its users download them. A region that cannot be listed refuses
/// too, since it may hold some.
async fn check_name_is_unused(
    catalog: &Catalog,
    regions: &[Region],
    tenant: &TenantName,
) -> Result<(), TenantError> {
    let in_catalog: Vec<uuid::Uuid> = catalog
        .connection()
        .await?
        .query(
            "SELECT id FROM backups WHERE tenant = $1 ORDER BY started_at LIMIT 3",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("find backups left under the name"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let mut found: Vec<String> = in_catalog
        .iter()
        .map(|id| format!("backup {id} in the catalog"))
        .collect();
    let listings = futures::future::join_all(
        regions
            .iter()
            .map(|region| restore::list_backup_ids(region, Some(tenant))),
    )
    .await;
    let mut unreachable = Vec::new();
    for (region, listing) in regions.iter().zip(listings) {
        match listing {
            Ok(ids) => {
                if let Some((_, backup_id)) = ids.first() {
                    found.push(format!(
                        "{} backup(s) in region {}, e.g. {backup_id}",
                        ids.len(),
                        region.name()
                    ));
                }
            }
            Err(error) => unreachable.push(error.to_string()),
        }
    }
    if !found.is_empty() {
        return Err(TenantError::NameHasBackups {
            tenant: tenant.clone(),
            found: found.join("; "),
        });
    }
    if !unreachable.is_empty() {
        return Err(TenantError::RegionsNotChecked {
            tenant: tenant.clone(),
            reasons: unreachable.join("; "),
        });
    }
    Ok(())
}

/// Add a tenant; `known_clusters` are the configured ones, `regions` every configured
/// region (searched for backups an earlier tenant of the same name left behind).
pub async fn add_tenant(
    catalog: &Catalog,
    new: NewTenant,
    known_clusters: &[ClusterName],
    regions: &[Region],
    org_recipients: &[Recipient],
    actor: &Actor,
) -> Result<Tenant, TenantError> {
    let (tenant, ()) = add_tenant_with(
        catalog,
        new,
        known_clusters,
        regions,
        org_recipients,
        actor,
        |_| async { Ok(()) },
    )
    .await?;
    Ok(tenant)
}

/// Add a tenant and, before the catalog commits it, run `provision` (the
/// `provision-tenant` playbook): a tenant is registered only once its database exists, and
/// a provisioning that fails (and undoes itself) registers nothing. Every check of
/// [`add_tenant`] comes first, so a refused name provisions nothing either.
pub async fn add_tenant_with<T, F, Fut>(
    catalog: &Catalog,
    new: NewTenant,
    known_clusters: &[ClusterName],
    regions: &[Region],
    org_recipients: &[Recipient],
    actor: &Actor,
    provision: F,
) -> Result<(Tenant, T), TenantError>
where
    F: FnOnce(Tenant) -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    if !known_clusters.contains(&new.cluster) {
        return Err(TenantError::UnknownCluster {
            cluster: new.cluster.to_string(),
            known: known_clusters
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let database = new.database.unwrap_or_else(|| new.name.to_string());
    if database.is_empty() || database.len() > 63 || database.contains('\0') {
        return Err(TenantError::InvalidDatabase);
    }
    if let Some(expression) = &new.schedule {
        schedule::parse_cron(expression)?;
    }
    check_name_is_unused(catalog, regions, &new.name).await?;
    let to_int = |value: u32| i32::try_from(value).unwrap_or(i32::MAX);
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let inserted = transaction
        .query_one(
            &format!(
                "INSERT INTO tenants (name, cluster, database_name, schedule, keep_daily, keep_weekly, keep_monthly, keep_yearly)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 RETURNING {}",
                SELECT_TENANTS
                    .trim_start_matches("SELECT ")
                    .trim_end_matches(" FROM tenants")
            ),
            &[
                &new.name.as_str(),
                &new.cluster.as_str(),
                &database,
                &new.schedule,
                &to_int(new.retention.keep_daily),
                &to_int(new.retention.keep_weekly),
                &to_int(new.retention.keep_monthly),
                &to_int(new.retention.keep_yearly),
            ],
        )
        .await;
    let row = match inserted {
        Ok(row) => row,
        Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
            return Err(TenantError::Exists(new.name));
        }
        Err(error) => return Err(query_error("insert tenant")(error)),
    };
    let tenant = tenant_from_row(&row)?;
    audit::record(
        &*transaction,
        actor,
        "tenant.add",
        Some(new.name.as_str()),
        None,
        serde_json::json!({ "cluster": new.cluster, "database": tenant.database }),
    )
    .await?;
    // The tenant's own age key, wrapped to the organisation's recipients, committed with
    // the tenant; its identity file goes to the regions once committed.
    let (key, key_generated) =
        tenant_keys::ensure_current_key_in(&*transaction, &new.name, org_recipients)
            .await
            .map_err(|error| TenantError::Keys(Box::new(error)))?;
    // The row stays locked (uncommitted) while the database is made: a second `tenant
    // add` of the same name waits, then fails on the unique name.
    let provisioned =
        provision(tenant.clone())
            .await
            .map_err(|reason| TenantError::ProvisionFailed {
                tenant: new.name.clone(),
                reason,
            })?;
    transaction.commit().await.map_err(query_error("commit"))?;
    if key_generated {
        // A region that does not take it now is written at the tenant's next backup.
        tenant_keys::publish(catalog, regions, &new.name).await?;
    }
    tracing::info!(tenant = %new.name, fingerprint = key.fingerprint, "tenant added with its own key");
    Ok((tenant, provisioned))
}

/// Whether `tenant` is in the catalog, its row held (`FOR SHARE`) until the caller's
/// transaction ends, so that it is not removed under what the caller writes for it.
pub async fn tenant_held<C: tokio_postgres::GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<bool, CatalogError> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM tenants WHERE name = $1 FOR SHARE",
            &[&tenant.as_str()],
        )
        .await
        .map_err(crate::catalog::query_error("find the tenant"))?
        .is_some())
}

pub async fn list_tenants(catalog: &Catalog) -> Result<Vec<Tenant>, TenantError> {
    let connection = catalog.connection().await?;
    let rows = connection
        .query(&format!("{SELECT_TENANTS} ORDER BY name"), &[])
        .await
        .map_err(query_error("list tenants"))?;
    rows.iter().map(tenant_from_row).collect()
}

pub async fn show_tenant(catalog: &Catalog, name: &TenantName) -> Result<Tenant, TenantError> {
    let connection = catalog.connection().await?;
    // Every API request naming a tenant runs this: prepared once per pooled connection.
    let statement = connection
        .prepare_cached(&format!("{SELECT_TENANTS} WHERE name = $1"))
        .await
        .map_err(query_error("prepare: show tenant"))?;
    let row = connection
        .query_opt(&statement, &[&name.as_str()])
        .await
        .map_err(query_error("show tenant"))?
        .ok_or_else(|| TenantError::NotFound(name.clone()))?;
    tenant_from_row(&row)
}

pub async fn remove_tenant(
    catalog: &Catalog,
    name: &TenantName,
    trash: Option<TrashBackups>,
    actor: &Actor,
) -> Result<RemovedTenant, TenantError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    // Against a scheduler tick or a nightly enqueueing this tenant's backup meanwhile: they
    // read the tenants again under the same lock.
    crate::nightly::lock_daily_backups(&*transaction).await?;
    let Some(row) = transaction
        .query_opt(
            "SELECT legal_hold FROM tenants WHERE name = $1 FOR UPDATE",
            &[&name.as_str()],
        )
        .await
        .map_err(query_error("lock tenant"))?
    else {
        return Err(TenantError::NotFound(name.clone()));
    };
    // The hold is a property of the tenant's row: removing the row would lift it.
    if row.get::<_, bool>(0) {
        return Err(TenantError::UnderLegalHold(name.clone()));
    }
    // Its queued backups would otherwise still run and add backups no retention sees, and
    // its queued drills would still decrypt its data. Claims skip rows this locks; a backup
    // or drill already running makes the removal wait.
    let backup_jobs_cancelled = transaction
        .execute(
            "UPDATE jobs SET state = 'failed', last_error = 'tenant removed', finished_at = now()
             WHERE tenant = $1 AND kind IN ('backup', 'drill') AND state = 'queued'",
            &[&name.as_str()],
        )
        .await
        .map_err(query_error("cancel the tenant's queued backups"))?;
    if let Some(running) = transaction
        .query_opt(
            "SELECT id FROM jobs WHERE tenant = $1 AND kind IN ('backup', 'drill') AND state = 'running' LIMIT 1",
            &[&name.as_str()],
        )
        .await
        .map_err(query_error("find the tenant's running backups"))?
    {
        return Err(TenantError::BackupRunning {
            tenant: name.clone(),
            job: running.get(0),
        });
    }
    let backups_trashed = match trash {
        Some(trash) => transaction
            .execute(
                "UPDATE backups SET trashed_at = $2, trash_reason = 'tenant removed', purge_after = $3
                 WHERE tenant = $1 AND trashed_at IS NULL AND NOT legal_hold",
                &[&name.as_str(), &trash.now, &trash.purge_after],
            )
            .await
            .map_err(query_error("trash the tenant's backups"))?,
        None => 0,
    };
    let backups_left: i64 = transaction
        .query_one(
            "SELECT count(*) FROM backups WHERE tenant = $1 AND trashed_at IS NULL",
            &[&name.as_str()],
        )
        .await
        .map_err(query_error("count the tenant's backups"))?
        .get(0);
    transaction
        .execute("DELETE FROM tenants WHERE name = $1", &[&name.as_str()])
        .await
        .map_err(query_error("remove tenant"))?;
    let removed = RemovedTenant {
        backup_jobs_cancelled,
        backups_trashed,
        backups_left: u64::try_from(backups_left).unwrap_or(0),
        purge_after: trash.map(|trash| trash.purge_after),
    };
    audit::record(
        &*transaction,
        actor,
        "tenant.remove",
        Some(name.as_str()),
        None,
        serde_json::json!({
            "backup_jobs_cancelled": removed.backup_jobs_cancelled,
            "backups_trashed": removed.backups_trashed,
            "backups_left": removed.backups_left,
            "purge_after": removed.purge_after,
        }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(removed)
}

/// What `tenant deprovision` did.
#[derive(Debug, Clone, Serialize)]
pub struct DeprovisionedTenant<T> {
    /// The final backup (kind `pre-destroy`), recorded like any other.
    pub final_backup: Option<lifeboat_core::ids::BackupId>,
    pub removed: RemovedTenant,
    /// What the playbook run reported.
    pub run: T,
}

/// Deprovision a tenant: refuse one under legal hold or with a backup, drill or restore
/// running (before anything is done), run `deprovision` (the `deprovision-tenant` playbook:
/// final backup, drop database and role), record its final backup after the same checks as
/// an agent's report (also when a later step failed: it is never lost), then remove the
/// tenant as [`remove_tenant`] does (its backups follow retention, or the trash with
/// `trash`).
pub async fn deprovision_tenant<T, F, Fut>(
    catalog: &Catalog,
    regions: &[Region],
    name: &TenantName,
    trash: Option<TrashBackups>,
    actor: &Actor,
    deprovision: F,
) -> Result<DeprovisionedTenant<T>, TenantError>
where
    F: FnOnce(Tenant) -> Fut,
    Fut: Future<Output = (Option<lifeboat_core::api::SafetyBackup>, Result<T, String>)>,
{
    let tenant = show_tenant(catalog, name).await?;
    if tenant.legal_hold {
        return Err(TenantError::UnderLegalHold(name.clone()));
    }
    {
        let connection = catalog.connection().await?;
        if let Some(running) = connection
            .query_opt(
                "SELECT id FROM jobs WHERE tenant = $1 AND kind IN ('backup', 'drill', 'restore') AND state = 'running' LIMIT 1",
                &[&name.as_str()],
            )
            .await
            .map_err(query_error("find the tenant's running jobs"))?
        {
            return Err(TenantError::BackupRunning {
                tenant: name.clone(),
                job: running.get(0),
            });
        }
    }
    let (final_backup, run) = deprovision(tenant).await;
    if let Some(backup) = &final_backup {
        crate::backups::record_checked_backup(catalog, regions, &backup.manifest, &backup.regions)
            .await
            .map_err(|error| TenantError::FinalBackupNotRecorded {
                tenant: name.clone(),
                backup: backup.manifest.backup_id.to_string(),
                reason: error.to_string(),
            })?;
    }
    let run = run.map_err(|reason| TenantError::DeprovisionFailed {
        tenant: name.clone(),
        reason: match &final_backup {
            Some(backup) => format!(
                "{reason} (its final backup {} is recorded)",
                backup.manifest.backup_id
            ),
            None => reason,
        },
    })?;
    let removed = remove_tenant(catalog, name, trash, actor).await?;
    Ok(DeprovisionedTenant {
        final_backup: final_backup.map(|backup| backup.manifest.backup_id),
        removed,
        run,
    })
}

/// `tenant remove --trash-backups`: the removed tenant's backups go to the trash at `now`,
/// to be purged after `purge_after` unless brought back.
#[derive(Debug, Clone, Copy)]
pub struct TrashBackups {
    pub now: DateTime<Utc>,
    pub purge_after: DateTime<Utc>,
}

impl TrashBackups {
    /// Trashed now, purged after `trash_period` (`[retention] trash_days`); `None` when
    /// the period is too long to add to today's date.
    pub fn starting_now(trash_period: std::time::Duration) -> Option<TrashBackups> {
        let now = Utc::now();
        let purge_after = chrono::TimeDelta::from_std(trash_period)
            .ok()
            .and_then(|period| now.checked_add_signed(period))?;
        Some(TrashBackups { now, purge_after })
    }
}

/// What removing a tenant did to its backups.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedTenant {
    /// Queued backup and drill jobs of the tenant, marked failed ("tenant removed").
    pub backup_jobs_cancelled: u64,
    /// Moved to the trash now.
    pub backups_trashed: u64,
    /// Left alone: not trashed (no `--trash-backups`) or under their own legal hold. No
    /// retention applies to them any more; they stay until deleted by hand.
    pub backups_left: u64,
    pub purge_after: Option<DateTime<Utc>>,
}
