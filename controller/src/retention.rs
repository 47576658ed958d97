//! Retention in the catalog: plan each tenant's backups, move the unneeded ones to the trash,
//! bring them back, hold them, and purge the trash from every region.
//!
//! What to keep is decided by [`plan::plan`], a pure function. Deleting is in two steps so a
//! mistake can be undone: [`apply`] only marks backups trashed (`trashed_at`,
//! `purge_after = now + trash period`); their objects stay in the buckets and
//! [`restore_from_trash`] brings one back. [`purge_due`] then deletes, from every configured
//! region, the objects and manifests of trashed backups whose `purge_after` has passed, and
//! only once every region has confirmed does it drop the catalog row: a row is never dropped
//! while a region may still hold the object, so a purge that fails is retried next time.
//!
//! Legal hold (a backup's own or its tenant's) stops both steps. Backups of tenants no longer
//! in the catalog are left alone: without a tenant row there is no policy to apply.
//! Every change is written to the audit log in the same transaction.

mod plan;

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use lifeboat_core::ids::{BackupId, RegionName, TenantName};
use lifeboat_core::manifest::{BackupKind, ObjectKey};
use lifeboat_core::region::{Region, RegionErrorKind};
use serde::Serialize;
use tokio_postgres::GenericClient;

pub use self::plan::{
    Candidate, KeepReason, Kept, MANUAL_MIN_AGE_DAYS, PRE_RESTORE_MIN_AGE_DAYS, Period, Plan,
    TenantPolicy, ToTrash, plan,
};
use crate::audit::{self, Actor};
use crate::catalog::{Catalog, CatalogError};
use crate::tenants::{self, Retention, TenantError};

/// How long a trashed backup waits before it is purged, unless configured otherwise.
pub const DEFAULT_TRASH_PERIOD: Duration = Duration::from_secs(14 * 24 * 60 * 60);

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("backup {0} is not in the catalog")]
    BackupNotFound(BackupId),
    #[error("backup {0} is not in the trash")]
    NotInTrash(BackupId),
    #[error("the trash period of {0:?} is too long")]
    TrashPeriodTooLong(Duration),
    #[error("the catalog holds an invalid value: {0}")]
    InvalidStoredRow(String),
    #[error("catalog query failed: {action}: {source}")]
    Query {
        action: &'static str,
        source: tokio_postgres::Error,
    },
}

fn query_error(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> RetentionError {
    move |source| RetentionError::Query { action, source }
}

fn backup_id_from(uuid: uuid::Uuid) -> Result<BackupId, RetentionError> {
    BackupId::parse(&uuid.to_string())
        .map_err(|_| RetentionError::InvalidStoredRow(format!("backup id {uuid}")))
}

fn kind_from(name: &str) -> Result<BackupKind, RetentionError> {
    match name {
        "scheduled" => Ok(BackupKind::Scheduled),
        "manual" => Ok(BackupKind::Manual),
        "pre-restore" => Ok(BackupKind::PreRestore),
        other => Err(RetentionError::InvalidStoredRow(format!(
            "backup kind {other:?}"
        ))),
    }
}

fn tenant_from(name: &str) -> Result<TenantName, RetentionError> {
    TenantName::parse(name)
        .map_err(|_| RetentionError::InvalidStoredRow(format!("tenant name {name:?}")))
}

/// The plan of one tenant, as `retention run` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantPlan {
    pub tenant: TenantName,
    pub policy: TenantPolicy,
    pub keep: Vec<Kept>,
    pub trash: Vec<ToTrash>,
}

/// What [`apply`] did (or, dry, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub dry_run: bool,
    pub now: DateTime<Utc>,
    pub purge_after: DateTime<Utc>,
    pub tenants: Vec<TenantPlan>,
}

/// The tenant's policy, read with `lock` (`FOR UPDATE`) inside a transaction so that a
/// legal hold set meanwhile waits for the plan, or the plan for it.
async fn load_policy<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
    lock: bool,
) -> Result<Option<TenantPolicy>, RetentionError> {
    let statement = format!(
        "SELECT keep_daily, keep_weekly, keep_monthly, keep_yearly, legal_hold FROM tenants WHERE name = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = client
        .query_opt(&statement, &[&tenant.as_str()])
        .await
        .map_err(query_error("read tenant policy"))?;
    Ok(row.map(|row| {
        let count = |index: usize| u32::try_from(row.get::<_, i32>(index)).unwrap_or(0);
        TenantPolicy {
            retention: Retention {
                keep_daily: count(0),
                keep_weekly: count(1),
                keep_monthly: count(2),
                keep_yearly: count(3),
            },
            legal_hold: row.get(4),
        }
    }))
}

/// The tenant's backups that are not in the trash.
async fn load_candidates<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<Vec<Candidate>, RetentionError> {
    let rows = client
        .query(
            "SELECT b.id, b.kind, b.started_at, b.verified_at, b.legal_hold,
                    EXISTS (SELECT 1 FROM backup_copies c
                            WHERE c.backup_id = b.id AND c.state = 'present')
             FROM backups b
             WHERE b.tenant = $1 AND b.trashed_at IS NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("read backups"))?;
    rows.iter()
        .map(|row| {
            Ok(Candidate {
                backup_id: backup_id_from(row.get(0))?,
                kind: kind_from(row.get(1))?,
                started_at: row.get(2),
                verified_at: row.get(3),
                legal_hold: row.get(4),
                has_present_copy: row.get(5),
            })
        })
        .collect()
}

/// The plan of one tenant now, without changing anything.
pub async fn plan_tenant(
    catalog: &Catalog,
    tenant: &TenantName,
    now: DateTime<Utc>,
) -> Result<TenantPlan, RetentionError> {
    let connection = catalog.connection().await?;
    let policy = load_policy(&**connection, tenant, false)
        .await?
        .ok_or_else(|| TenantError::NotFound(tenant.clone()))?;
    let candidates = load_candidates(&**connection, tenant).await?;
    let plan = plan(&candidates, &policy, now);
    Ok(TenantPlan {
        tenant: tenant.clone(),
        policy,
        keep: plan.keep,
        trash: plan.trash,
    })
}

/// Plan every tenant (or the one in `tenant_filter`) and, unless `dry_run`, move what the
/// plan does not keep to the trash, to be purged after `trash_period`.
pub async fn apply(
    catalog: &Catalog,
    tenant_filter: Option<&TenantName>,
    now: DateTime<Utc>,
    dry_run: bool,
    trash_period: Duration,
    actor: &Actor,
) -> Result<RetentionReport, RetentionError> {
    let purge_after = TimeDelta::from_std(trash_period)
        .ok()
        .and_then(|period| now.checked_add_signed(period))
        .ok_or(RetentionError::TrashPeriodTooLong(trash_period))?;
    let names: Vec<TenantName> = match tenant_filter {
        Some(tenant) => vec![tenants::show_tenant(catalog, tenant).await?.name],
        None => tenants::list_tenants(catalog)
            .await?
            .into_iter()
            .map(|tenant| tenant.name)
            .collect(),
    };
    let mut report = RetentionReport {
        dry_run,
        now,
        purge_after,
        tenants: Vec::new(),
    };
    for tenant in names {
        let mut connection = catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        // Removed since the list was read: nothing to apply.
        let Some(policy) = load_policy(&*transaction, &tenant, true).await? else {
            continue;
        };
        let candidates = load_candidates(&*transaction, &tenant).await?;
        let mut plan = plan(&candidates, &policy, now);
        if !dry_run && !plan.trash.is_empty() {
            let mut trashed = Vec::new();
            for backup in &plan.trash {
                // The guard re-checks the hold: one set after the plan was read wins.
                let changed = transaction
                    .execute(
                        "UPDATE backups SET trashed_at = $2, trash_reason = $3, purge_after = $4
                         WHERE id = $1 AND trashed_at IS NULL AND NOT legal_hold",
                        &[
                            &backup.backup_id.as_uuid(),
                            &now,
                            &backup.reason,
                            &purge_after,
                        ],
                    )
                    .await
                    .map_err(query_error("trash backup"))?;
                if changed == 1 {
                    trashed.push(backup.backup_id);
                }
            }
            plan.trash
                .retain(|backup| trashed.contains(&backup.backup_id));
            let ids: Vec<String> = trashed.iter().map(ToString::to_string).collect();
            audit::record(
                &*transaction,
                actor,
                "retention.trash",
                Some(tenant.as_str()),
                None,
                serde_json::json!({ "backups": ids, "purge_after": purge_after }),
            )
            .await?;
        }
        transaction.commit().await.map_err(query_error("commit"))?;
        report.tenants.push(TenantPlan {
            tenant,
            policy,
            keep: plan.keep,
            trash: plan.trash,
        });
    }
    Ok(report)
}

/// A backup in the trash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TrashedBackup {
    #[schema(value_type = String)]
    pub backup_id: BackupId,
    #[schema(value_type = String)]
    pub tenant: TenantName,
    #[schema(value_type = String)]
    pub kind: BackupKind,
    pub started_at: DateTime<Utc>,
    pub stored_bytes: u64,
    pub trashed_at: DateTime<Utc>,
    pub trash_reason: Option<String>,
    pub purge_after: DateTime<Utc>,
    /// Held backups (or backups of held tenants) are not purged.
    pub legal_hold: bool,
}

/// Every backup in the trash, soonest purge first.
pub async fn list_trash(catalog: &Catalog) -> Result<Vec<TrashedBackup>, RetentionError> {
    let connection = catalog.connection().await?;
    let rows = connection
        .query(
            "SELECT b.id, b.tenant, b.kind, b.started_at, b.stored_bytes, b.trashed_at,
                    b.trash_reason, b.purge_after,
                    b.legal_hold OR coalesce(t.legal_hold, false)
             FROM backups b LEFT JOIN tenants t ON t.name = b.tenant
             WHERE b.trashed_at IS NOT NULL
             ORDER BY b.purge_after, b.id",
            &[],
        )
        .await
        .map_err(query_error("list trash"))?;
    rows.iter()
        .map(|row| {
            Ok(TrashedBackup {
                backup_id: backup_id_from(row.get(0))?,
                tenant: tenant_from(row.get(1))?,
                kind: kind_from(row.get(2))?,
                started_at: row.get(3),
                stored_bytes: u64::try_from(row.get::<_, i64>(4)).unwrap_or(0),
                trashed_at: row.get(5),
                trash_reason: row.get(6),
                purge_after: row.get(7),
                legal_hold: row.get(8),
            })
        })
        .collect()
}

/// Take a backup out of the trash. Retention trashes it again at its next run if the policy
/// still does not keep it; hold it ([`set_backup_legal_hold`]) to keep it for good.
pub async fn restore_from_trash(
    catalog: &Catalog,
    backup_id: BackupId,
    actor: &Actor,
) -> Result<TenantName, RetentionError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    // Waits for a purge working on this backup; finds nothing if the purge finished.
    let row = transaction
        .query_opt(
            "SELECT tenant, trashed_at IS NOT NULL FROM backups WHERE id = $1 FOR UPDATE",
            &[&backup_id.as_uuid()],
        )
        .await
        .map_err(query_error("read backup"))?
        .ok_or(RetentionError::BackupNotFound(backup_id))?;
    let tenant = tenant_from(row.get(0))?;
    if !row.get::<_, bool>(1) {
        return Err(RetentionError::NotInTrash(backup_id));
    }
    transaction
        .execute(
            "UPDATE backups SET trashed_at = NULL, trash_reason = NULL, purge_after = NULL
             WHERE id = $1",
            &[&backup_id.as_uuid()],
        )
        .await
        .map_err(query_error("restore from trash"))?;
    audit::record(
        &*transaction,
        actor,
        "trash.restore",
        Some(tenant.as_str()),
        None,
        serde_json::json!({ "backup": backup_id }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(tenant)
}

/// Set or clear one backup's legal hold; returns its tenant.
pub async fn set_backup_legal_hold(
    catalog: &Catalog,
    backup_id: BackupId,
    hold: bool,
    actor: &Actor,
) -> Result<TenantName, RetentionError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let row = transaction
        .query_opt(
            "UPDATE backups SET legal_hold = $2 WHERE id = $1 RETURNING tenant",
            &[&backup_id.as_uuid(), &hold],
        )
        .await
        .map_err(query_error("set backup legal hold"))?
        .ok_or(RetentionError::BackupNotFound(backup_id))?;
    let tenant = tenant_from(row.get(0))?;
    audit::record(
        &*transaction,
        actor,
        if hold { "backup.hold" } else { "backup.unhold" },
        Some(tenant.as_str()),
        None,
        serde_json::json!({ "backup": backup_id }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(tenant)
}

/// Set or clear a tenant-wide legal hold.
pub async fn set_tenant_legal_hold(
    catalog: &Catalog,
    tenant: &TenantName,
    hold: bool,
    actor: &Actor,
) -> Result<(), RetentionError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let changed = transaction
        .execute(
            "UPDATE tenants SET legal_hold = $2 WHERE name = $1",
            &[&tenant.as_str(), &hold],
        )
        .await
        .map_err(query_error("set tenant legal hold"))?;
    if changed == 0 {
        return Err(TenantError::NotFound(tenant.clone()).into());
    }
    audit::record(
        &*transaction,
        actor,
        if hold { "tenant.hold" } else { "tenant.unhold" },
        Some(tenant.as_str()),
        None,
        serde_json::json!({}),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(())
}

/// A trashed backup gone from every region and from the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct PurgedBackup {
    pub backup_id: BackupId,
    pub tenant: TenantName,
}

/// A trashed backup that stays in the catalog because some region did not confirm.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeFailure {
    pub backup_id: BackupId,
    pub tenant: TenantName,
    pub errors: Vec<String>,
}

/// A trashed backup left in the trash, untouched, because purging it would leave its tenant
/// with no restorable backup.
#[derive(Debug, Clone, Serialize)]
pub struct PurgeSkipped {
    pub backup_id: BackupId,
    pub tenant: TenantName,
    pub reason: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PurgeReport {
    pub purged: Vec<PurgedBackup>,
    pub failed: Vec<PurgeFailure>,
    pub skipped: Vec<PurgeSkipped>,
}

/// The held-or-not conditions a backup must meet to be purged at `$1`.
const PURGEABLE: &str = "b.trashed_at IS NOT NULL AND b.purge_after <= $1 AND NOT b.legal_hold
     AND NOT EXISTS (SELECT 1 FROM tenants t WHERE t.name = b.tenant AND t.legal_hold)";

/// Delete, from every region in `regions` (all configured ones), the objects and manifests
/// of trashed backups whose `purge_after` is at or before `now`, then their catalog rows.
///
/// In each region the dump goes first, then the manifest: interrupted in between, a region
/// holds a manifest without its object, which listings and a rebuild still see (and report
/// as a missing copy), never an object no manifest points to. A backup stays in the catalog
/// until every region has confirmed; one still marked `present` in a region that is no longer
/// configured is not purged.
pub async fn purge_due(
    catalog: &Catalog,
    regions: &[Region],
    now: DateTime<Utc>,
    actor: &Actor,
) -> Result<PurgeReport, RetentionError> {
    let due: Vec<uuid::Uuid> = {
        let connection = catalog.connection().await?;
        connection
            .query(
                &format!(
                    "SELECT b.id FROM backups b WHERE {PURGEABLE} ORDER BY b.purge_after, b.id"
                ),
                &[&now],
            )
            .await
            .map_err(query_error("list backups due for purge"))?
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    let mut report = PurgeReport::default();
    // A region that did not answer is not asked again in this purge: one black-holed region
    // would otherwise cost every backup the SDK's full timeouts.
    let mut unreachable: Vec<RegionName> = Vec::new();
    for id in due {
        let mut connection = catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        // Locked while the regions are emptied, so a trash restore waits for the outcome;
        // another purge skips it.
        let Some(row) = transaction
            .query_opt(
                &format!(
                    "SELECT b.tenant, b.object_key FROM backups b
                     WHERE b.id = $2 AND {PURGEABLE} FOR UPDATE OF b SKIP LOCKED"
                ),
                &[&now, &id],
            )
            .await
            .map_err(query_error("lock backup for purge"))?
        else {
            continue;
        };
        let backup_id = backup_id_from(id)?;
        let tenant = tenant_from(row.get(0))?;
        let object_key: String = row.get(1);
        let manifest_key = ObjectKey::Manifest(&tenant, backup_id).to_key();
        if let Some(reason) = last_restorable_reason(&*transaction, &tenant).await? {
            tracing::warn!(backup = %backup_id, tenant = %tenant, %reason, "not purged");
            report.skipped.push(PurgeSkipped {
                backup_id,
                tenant,
                reason,
            });
            continue;
        }

        let mut errors = Vec::new();
        let copies = transaction
            .query(
                "SELECT region FROM backup_copies WHERE backup_id = $1 AND state <> 'missing'",
                &[&id],
            )
            .await
            .map_err(query_error("read copies"))?;
        for copy in &copies {
            let region: String = copy.get(0);
            if !regions.iter().any(|known| known.name().as_str() == region) {
                errors.push(format!(
                    "region {region} holds a copy but is not configured; configure it or mark the copy missing"
                ));
            }
        }
        for region in regions {
            if unreachable.contains(region.name()) {
                errors.push(format!(
                    "region {}: skipped, it did not answer earlier in this purge",
                    region.name()
                ));
                continue;
            }
            match delete_backup_objects(region, &object_key, &manifest_key, now).await {
                Ok(()) => {
                    mark_copy_purged(&*transaction, id, region.name()).await?;
                }
                Err((error, dead)) => {
                    if dead {
                        unreachable.push(region.name().clone());
                    }
                    errors.push(error);
                }
            }
        }
        if errors.is_empty() {
            transaction
                .execute("DELETE FROM backups WHERE id = $1", &[&id])
                .await
                .map_err(query_error("delete purged backup"))?;
            audit::record(
                &*transaction,
                actor,
                "trash.purge",
                Some(tenant.as_str()),
                None,
                serde_json::json!({ "backup": backup_id }),
            )
            .await?;
            report.purged.push(PurgedBackup { backup_id, tenant });
        } else {
            tracing::warn!(backup = %backup_id, tenant = %tenant, errors = ?errors, "purge incomplete; retried next time");
            report.failed.push(PurgeFailure {
                backup_id,
                tenant,
                errors,
            });
        }
        transaction.commit().await.map_err(query_error("commit"))?;
    }
    Ok(report)
}

/// Why a trashed backup of `tenant` must not be purged now, if it must not: the tenant
/// still exists and has no backup outside the trash with a `present` copy, so this one may
/// be all that is left to restore it from (the trash was emptied by mistake, or every live
/// copy was lost since it was trashed). Checked at purge time, in the purge's transaction,
/// whatever retention decided earlier. A removed tenant's backups are purged as asked.
async fn last_restorable_reason<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<Option<String>, RetentionError> {
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM tenants WHERE name = $1),
                    EXISTS (SELECT 1 FROM backups b
                            WHERE b.tenant = $1 AND b.trashed_at IS NULL
                              AND EXISTS (SELECT 1 FROM backup_copies c
                                          WHERE c.backup_id = b.id AND c.state = 'present'))",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("check the tenant keeps a restorable backup"))?;
    let (tenant_exists, has_restorable): (bool, bool) = (row.get(0), row.get(1));
    Ok((tenant_exists && !has_restorable).then(|| {
        format!(
            "tenant {tenant} has no other restorable backup (none outside the trash with a present copy); restore one from the trash or take a backup first"
        )
    }))
}

/// Delete the dump, then the manifest. Deleting what is already gone succeeds. An error
/// says whether the region did not answer at all.
///
/// In a region with object lock, a plain delete would only add a delete marker: every
/// version (and marker) of both keys is deleted instead, and only once no version's
/// retention lasts beyond `now`. Until then nothing is deleted there and the error says
/// until when (the next purge tries again; the store would refuse anyway).
async fn delete_backup_objects(
    region: &Region,
    object_key: &str,
    manifest_key: &str,
    now: DateTime<Utc>,
) -> Result<(), (String, bool)> {
    let failed = |error: lifeboat_core::region::RegionError| {
        let dead = error.kind == RegionErrorKind::Unreachable;
        (error.to_string(), dead)
    };
    if region.lock_mode().is_some() {
        let mut versions = Vec::new();
        for key in [object_key, manifest_key] {
            let listed = region.list_versions(key).await.map_err(failed)?;
            versions.extend(listed.into_iter().filter(|version| version.key == key));
        }
        let mut locked_until: Option<DateTime<Utc>> = None;
        for version in versions.iter().filter(|version| !version.delete_marker) {
            let retention = region
                .object_retention(&version.key, Some(&version.version_id))
                .await
                .map_err(failed)?;
            if let Some(retention) = retention.filter(|retention| retention.retain_until > now) {
                locked_until = locked_until.max(Some(retention.retain_until));
            }
        }
        if let Some(until) = locked_until {
            return Err((
                format!(
                    "region {}: locked until {} (object lock); purged after that",
                    region.name(),
                    until.format("%Y-%m-%d %H:%M UTC")
                ),
                false,
            ));
        }
        // The dump's versions first, then the manifest's: interrupted, a region is left
        // with a manifest without its object, never an orphan object.
        for version in &versions {
            match region
                .delete_version(&version.key, &version.version_id)
                .await
            {
                Ok(()) => {}
                Err(error) if error.kind == RegionErrorKind::NotFound => {}
                Err(error) => return Err(failed(error)),
            }
        }
        return Ok(());
    }
    for key in [object_key, manifest_key] {
        match region.delete_object(key).await {
            Ok(()) => {}
            Err(error) if error.kind == RegionErrorKind::NotFound => {}
            Err(error) => return Err(failed(error)),
        }
    }
    Ok(())
}

async fn mark_copy_purged<C: GenericClient>(
    client: &C,
    id: uuid::Uuid,
    region: &RegionName,
) -> Result<(), RetentionError> {
    client
        .execute(
            "UPDATE backup_copies SET state = 'missing', detail = 'purged', checked_at = now()
             WHERE backup_id = $1 AND region = $2",
            &[&id, &region.as_str()],
        )
        .await
        .map_err(query_error("mark copy purged"))?;
    Ok(())
}

/// What [`extend_locks`] did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LockExtension {
    /// Copies whose lock was extended (or found long enough and recorded).
    pub extended: usize,
    /// Copies whose lock could not be read or extended, and why.
    pub problems: Vec<String>,
}

/// In regions with object lock, keep every live (kept) backup locked: a present copy
/// whose lock would end before the trash period plus
/// [`policy::LOCK_RENEW_MARGIN_DAYS`] from `now` is extended to the trash period plus
/// [`policy::LOCK_EXTENSION_DAYS`] (weekly, monthly, legal hold: whatever the policy keeps
/// stays locked). Trashed backups are not extended: their locks run out, then purge
/// deletes them. `regions` sign with the manager's keys.
pub async fn extend_locks(
    catalog: &Catalog,
    regions: &[Region],
    now: DateTime<Utc>,
    trash_period: Duration,
) -> Result<LockExtension, RetentionError> {
    use lifeboat_core::policy;
    let mut report = LockExtension::default();
    let locked: Vec<&str> = regions
        .iter()
        .filter(|region| region.lock_mode().is_some())
        .map(|region| region.name().as_str())
        .collect();
    if locked.is_empty() {
        return Ok(report);
    }
    let trash = TimeDelta::from_std(trash_period).unwrap_or(TimeDelta::MAX);
    let renew_before = now + trash + TimeDelta::days(policy::LOCK_RENEW_MARGIN_DAYS);
    let extend_to = now + trash + TimeDelta::days(policy::LOCK_EXTENSION_DAYS);
    let connection = catalog.connection().await?;
    let rows = connection
        .query(
            "SELECT b.id, b.tenant, c.region
             FROM backup_copies c JOIN backups b ON b.id = c.backup_id
             WHERE b.trashed_at IS NULL AND c.state = 'present' AND c.region = ANY($1)
               AND (c.locked_until IS NULL OR c.locked_until < $2)",
            &[&locked, &renew_before],
        )
        .await
        .map_err(query_error("find copies whose lock ends soon"))?;
    for row in rows {
        let Some((backup_id, tenant, region)) = crate::backups::copy_of_row(&row, regions) else {
            continue;
        };
        let mut locked_until = extend_to;
        let mut failure = None;
        for key in [
            ObjectKey::Dump(&tenant, backup_id).to_key(),
            ObjectKey::Manifest(&tenant, backup_id).to_key(),
        ] {
            let current = match region.object_retention(&key, None).await {
                Ok(current) => current,
                Err(error) => {
                    failure = Some(error.to_string());
                    break;
                }
            };
            match current {
                // Long enough already (a compliance lock cannot be shortened anyway).
                Some(current) if current.retain_until >= renew_before => {
                    locked_until = locked_until.min(current.retain_until);
                }
                _ => {
                    if let Err(error) = region.extend_retention(&key, None, extend_to).await {
                        failure = Some(error.to_string());
                        break;
                    }
                }
            }
        }
        if let Some(failure) = failure {
            report.problems.push(format!(
                "lock of backup {backup_id} in region {}: {failure}",
                region.name()
            ));
            continue;
        }
        connection
            .execute(
                "UPDATE backup_copies SET locked_until = $3 WHERE backup_id = $1 AND region = $2",
                &[&backup_id.as_uuid(), &region.name().as_str(), &locked_until],
            )
            .await
            .map_err(query_error("record a copy's lock"))?;
        report.extended += 1;
    }
    Ok(report)
}
