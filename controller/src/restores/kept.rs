//! Kept databases past their time: what daily maintenance drops. A previous database after
//! its grace period, an expired copy (with its role). One drop job per kept database and
//! maintenance pass (`DedupKey::DropKeptDatabase`), and none while one is already queued or
//! running for the same database, so a day without agents does not pile them up.

use lifeboat_core::api::JobWork;
use lifeboat_core::ids::{ClusterName, TenantName};

use crate::catalog::{Catalog, CatalogError, query_error};

/// A kept database due to be dropped: its `kept_databases` id and the job that drops it.
#[derive(Debug, Clone)]
pub struct DueDrop {
    pub kept: i64,
    pub work: JobWork,
}

/// Every kept database past `keep_until`, not dropped, not revived, and without a drop job
/// queued or running.
pub async fn plan_kept_database_drops(catalog: &Catalog) -> Result<Vec<DueDrop>, CatalogError> {
    let rows = catalog
        .connection()
        .await?
        .query(
            "SELECT k.id, k.tenant, k.cluster, k.database_name, k.role_name
             FROM kept_databases k
             WHERE k.keep_until < now() AND k.dropped_at IS NULL AND k.revived_at IS NULL
               AND NOT EXISTS (
                   SELECT 1 FROM jobs j
                   WHERE j.kind = 'drop-database' AND j.state IN ('queued', 'running')
                     AND j.cluster = k.cluster AND j.params->>'database' = k.database_name)
             ORDER BY k.keep_until, k.id",
            &[],
        )
        .await
        .map_err(query_error("find kept databases past their time"))?;
    rows.iter()
        .map(|row| {
            let tenant: &str = row.get(1);
            let cluster: &str = row.get(2);
            let invalid = || {
                CatalogError::Inconsistent(format!(
                    "kept database of tenant {tenant:?} on cluster {cluster:?}: not slugs"
                ))
            };
            Ok(DueDrop {
                kept: row.get(0),
                work: JobWork::DropDatabase {
                    tenant: TenantName::parse(tenant).map_err(|_| invalid())?,
                    cluster: ClusterName::parse(cluster).map_err(|_| invalid())?,
                    database: row.get(3),
                    role: row.get(4),
                },
            })
        })
        .collect()
}
