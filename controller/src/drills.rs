//! Drills in the catalog: a backup restored into a scratch database, verified against its
//! manifest's row counts, and dropped. A verified drill marks its backup verified, and
//! retention never trashes a tenant's newest verified backup. Each drill keeps the steps of
//! its playbook with their durations: the measured recovery time, step by step, from which
//! a restore's duration is estimated ([`crate::restores`]).

use chrono::{DateTime, Utc};
use lifeboat_core::api::{DrillResult, JobWork, StepReport};
use lifeboat_core::ids::{BackupId, ClusterName, RegionName, TenantName};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;

use crate::audit::{self, Actor};
use crate::catalog::{Catalog, CatalogError, query_error};

/// One drill, as it ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    pub tenant: TenantName,
    pub backup_id: BackupId,
    /// The region the object was read from, if any could serve it.
    pub region: Option<RegionName>,
    pub scratch_database: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(flatten)]
    pub outcome: DrillOutcome,
    /// The `drill-tenant` playbook's steps with their durations, if the agent ran one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
}

pub use lifeboat_core::api::DrillOutcome;

impl DrillRecord {
    /// The record of `tenant`'s drill that ended with `result`.
    pub fn new(tenant: TenantName, result: &DrillResult) -> DrillRecord {
        DrillRecord {
            tenant,
            backup_id: result.backup_id,
            region: result.region.clone(),
            scratch_database: result.scratch_database.clone(),
            started_at: result.started_at,
            finished_at: result.finished_at,
            outcome: result.outcome.clone(),
            steps: result.steps.clone(),
        }
    }
}

/// A recorded drill, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct Drill {
    pub id: i64,
    #[serde(flatten)]
    pub record: DrillRecord,
}

/// Record a drill; a verified one sets its backup's `verified_at`. One transaction, audited.
///
/// Fails with [`CatalogError::Inconsistent`] when the catalog does not know the backup.
pub async fn record_drill(
    catalog: &Catalog,
    drill: &DrillRecord,
    actor: &Actor,
) -> Result<i64, CatalogError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let id = record_drill_in(&*transaction, drill, actor).await?;
    transaction
        .commit()
        .await
        .map_err(query_error("commit drill"))?;
    Ok(id)
}

/// [`record_drill`] inside the caller's transaction (a drill job's report).
pub async fn record_drill_in<C: GenericClient>(
    transaction: &C,
    drill: &DrillRecord,
    actor: &Actor,
) -> Result<i64, CatalogError> {
    let known = transaction
        .query_opt(
            "SELECT 1 FROM backups WHERE id = $1 AND tenant = $2",
            &[&drill.backup_id.as_uuid(), &drill.tenant.as_str()],
        )
        .await
        .map_err(query_error("find the drilled backup"))?;
    if known.is_none() {
        return Err(CatalogError::Inconsistent(format!(
            "backup {} of tenant {} is not in the catalog (run `lifeboat catalog rebuild --region R`)",
            drill.backup_id, drill.tenant
        )));
    }
    let (outcome, tables, rows, error) = match &drill.outcome {
        DrillOutcome::Verified {
            tables_verified,
            rows_verified,
        } => (
            "verified",
            Some(i32::try_from(*tables_verified).unwrap_or(i32::MAX)),
            Some(i64::try_from(*rows_verified).unwrap_or(i64::MAX)),
            None,
        ),
        DrillOutcome::Failed { error } => ("failed", None, None, Some(error.as_str())),
    };
    let region = drill.region.as_ref().map(RegionName::as_str);
    let steps = serde_json::to_value(&drill.steps).unwrap_or_default();
    let requested_by = actor.to_string();
    let id: i64 = transaction
        .query_one(
            "INSERT INTO drills (tenant, backup_id, region, scratch_database, started_at,
                                 finished_at, outcome, tables_verified, rows_verified, error,
                                 requested_by, steps)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             RETURNING id",
            &[
                &drill.tenant.as_str(),
                &drill.backup_id.as_uuid(),
                &region,
                &drill.scratch_database,
                &drill.started_at,
                &drill.finished_at,
                &outcome,
                &tables,
                &rows,
                &error,
                &requested_by,
                &steps,
            ],
        )
        .await
        .map_err(query_error("record drill"))?
        .get(0);
    if outcome == "verified" {
        transaction
            .execute(
                "UPDATE backups SET verified_at = GREATEST(verified_at, $2) WHERE id = $1",
                &[&drill.backup_id.as_uuid(), &drill.finished_at],
            )
            .await
            .map_err(query_error("mark backup verified"))?;
    }
    audit::record(
        transaction,
        actor,
        "drill",
        Some(drill.tenant.as_str()),
        None,
        serde_json::json!({
            "drill": id,
            "backup": drill.backup_id,
            "outcome": outcome,
        }),
    )
    .await?;
    Ok(id)
}

/// A drill of the newest live backup of each catalog tenant due one: no drill has verified
/// that backup yet, and the tenant's last verified drill is `every_days` days old or it has
/// none (a large fleet's sampling; 1: daily). Six hours of slack keep a daily pass that
/// runs a little earlier than yesterday's from skipping a day. On `drill_cluster` if given,
/// else on the tenant's own cluster.
pub async fn plan_drills_of_newest(
    catalog: &Catalog,
    drill_cluster: Option<&ClusterName>,
    every_days: u32,
) -> Result<Vec<JobWork>, CatalogError> {
    let every_days = i32::try_from(every_days.max(1)).unwrap_or(i32::MAX);
    let rows = catalog
        .connection()
        .await?
        .query(
            "SELECT tenant, cluster, id, sha256 FROM (
                 SELECT DISTINCT ON (b.tenant) b.tenant, t.cluster, b.id, b.sha256, b.verified_at
                 FROM backups b JOIN tenants t ON t.name = b.tenant
                 WHERE b.trashed_at IS NULL
                 ORDER BY b.tenant, b.started_at DESC
             ) newest
             WHERE verified_at IS NULL
               AND NOT EXISTS (
                   SELECT 1 FROM drills d
                   WHERE d.tenant = newest.tenant AND d.error IS NULL
                     AND d.finished_at > now() - make_interval(days => $1) + interval '6 hours')
             ORDER BY tenant",
            &[&every_days],
        )
        .await
        .map_err(query_error("find the newest backups to drill"))?;
    rows.iter()
        .map(|row| {
            let name: &str = row.get(0);
            let invalid = || {
                CatalogError::Inconsistent(format!("tenant {name:?} or its cluster is not a slug"))
            };
            Ok(JobWork::Drill {
                tenant: TenantName::parse(name).map_err(|_| invalid())?,
                cluster: match drill_cluster {
                    Some(cluster) => cluster.clone(),
                    None => ClusterName::parse(row.get(1)).map_err(|_| invalid())?,
                },
                backup_id: BackupId::from_uuid(row.get(2)).ok_or_else(invalid)?,
                sha256: Some(row.get(3)),
            })
        })
        .collect()
}

/// A tenant's measured recovery: when it was last proven restorable, how long its newest
/// verified drill took, and the trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecoveryHealth {
    pub tenant: String,
    /// When its newest verified drill finished.
    pub last_verified_at: DateTime<Utc>,
    /// How long that drill took (the measured recovery time), in seconds.
    pub recovery_seconds: f64,
    /// The median of its last 7 verified drills, the newest included.
    pub median_seconds: f64,
    /// The median of the (up to 7) verified drills before the newest; `None` for a first.
    pub earlier_median_seconds: Option<f64>,
    /// The newest drill took over 1.5× the median of the ones before it.
    pub slow: bool,
}

/// A drill slower than this many times the median of the earlier ones is flagged.
pub const SLOW_DRILL_FACTOR: f64 = 1.5;

/// Each tenant's [`RecoveryHealth`], from its last 8 verified drills; of one tenant if given.
pub async fn recovery_health<C: GenericClient>(
    client: &C,
    tenant: Option<&TenantName>,
) -> Result<Vec<RecoveryHealth>, CatalogError> {
    let rows = client
        .query(
            "WITH verified AS (
                 SELECT tenant, finished_at,
                        extract(epoch FROM finished_at - started_at)::float8 AS seconds,
                        row_number() OVER (PARTITION BY tenant ORDER BY finished_at DESC, id DESC) AS n
                 FROM drills
                 WHERE error IS NULL AND ($1::text IS NULL OR tenant = $1))
             SELECT tenant,
                    max(finished_at) FILTER (WHERE n = 1),
                    max(seconds) FILTER (WHERE n = 1),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE n <= 7),
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) FILTER (WHERE n BETWEEN 2 AND 8)
             FROM verified WHERE n <= 8
             GROUP BY tenant ORDER BY tenant",
            &[&tenant.map(TenantName::as_str)],
        )
        .await
        .map_err(query_error("read the drills' recovery times"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let recovery_seconds: f64 = row.get(2);
            let earlier_median_seconds: Option<f64> = row.get(4);
            RecoveryHealth {
                tenant: row.get(0),
                last_verified_at: row.get(1),
                recovery_seconds,
                median_seconds: row.get(3),
                earlier_median_seconds,
                slow: earlier_median_seconds
                    .is_some_and(|median| recovery_seconds > SLOW_DRILL_FACTOR * median),
            }
        })
        .collect())
}

/// The newest drills, newest first; of one tenant if given.
pub async fn list_drills<C: GenericClient>(
    client: &C,
    tenant: Option<&TenantName>,
    limit: i64,
) -> Result<Vec<Drill>, CatalogError> {
    let rows = client
        .query(
            "SELECT id, tenant, backup_id, region, scratch_database, started_at, finished_at,
                    tables_verified, rows_verified, error, steps
             FROM drills
             WHERE $1::text IS NULL OR tenant = $1
             ORDER BY finished_at DESC, id DESC
             LIMIT $2",
            &[&tenant.map(TenantName::as_str), &limit],
        )
        .await
        .map_err(query_error("list drills"))?;
    rows.iter()
        .map(|row| {
            let tenant: String = row.get(1);
            let region: Option<String> = row.get(3);
            let error: Option<String> = row.get(9);
            let outcome = match error {
                Some(error) => DrillOutcome::Failed { error },
                None => DrillOutcome::Verified {
                    tables_verified: u64::try_from(row.get::<_, Option<i32>>(7).unwrap_or(0))
                        .unwrap_or(0),
                    rows_verified: u64::try_from(row.get::<_, Option<i64>>(8).unwrap_or(0))
                        .unwrap_or(0),
                },
            };
            Ok(Drill {
                id: row.get(0),
                record: DrillRecord {
                    tenant: TenantName::parse(&tenant)
                        .map_err(|error| CatalogError::Inconsistent(error.to_string()))?,
                    backup_id: BackupId::from_uuid(row.get(2)).ok_or_else(|| {
                        CatalogError::Inconsistent("a drill names a malformed backup id".to_owned())
                    })?,
                    region: region
                        .map(|region| RegionName::parse(&region))
                        .transpose()
                        .map_err(|error| CatalogError::Inconsistent(error.to_string()))?,
                    scratch_database: row.get(4),
                    started_at: row.get(5),
                    finished_at: row.get(6),
                    outcome,
                    // Written by this type; a list that does not read back is left out.
                    steps: serde_json::from_value(row.get(10)).unwrap_or_default(),
                },
            })
        })
        .collect()
}
