//! What `lifeboat restore status` shows: each restore with its job's state and steps (the
//! latest the agent sent with a heartbeat, or the final list from its result), how long the
//! tenant was offline, and until when the database it left behind is kept.

use chrono::{DateTime, Utc};
use lifeboat_core::api::StepReport;
use lifeboat_core::ids::{BackupId, TenantName};
use serde::Serialize;

use super::{RestoreError, RestoreMode, query_error};
use crate::catalog::{Catalog, CatalogError};
use crate::queue::JobState;

/// One restore, as it stands.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestoreStatus {
    pub job_id: i64,
    pub mode: RestoreMode,
    pub tenant: String,
    pub cluster: String,
    #[schema(value_type = Option<String>)]
    pub backup_id: Option<BackupId>,
    /// The database restored into (the live name, or the copy's).
    pub database: String,
    pub reason: Option<String>,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    #[schema(value_type = String)]
    pub state: JobState,
    pub attempts: i32,
    #[schema(value_type = Vec<Object>)]
    pub steps: Vec<StepReport>,
    pub offline_ms: Option<u64>,
    #[schema(value_type = Option<String>)]
    pub safety_backup_id: Option<BackupId>,
    pub previous_database: Option<String>,
    pub copy_role: Option<String>,
    /// Until when what it left behind is kept (once it succeeded).
    pub keep_until: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

const SELECT_RESTORES: &str = "
    SELECT r.job_id, r.mode, r.tenant, r.cluster, r.backup_id, r.database_name, r.reason,
           r.requested_by, r.requested_at, j.state, j.attempts,
           coalesce(j.result->'steps', j.progress), r.offline_ms, r.safety_backup_id,
           r.previous_database, r.copy_role,
           (SELECT k.keep_until FROM kept_databases k WHERE k.from_job = r.job_id
            ORDER BY k.id LIMIT 1),
           j.last_error, j.finished_at
    FROM restores r JOIN jobs j ON j.id = r.job_id
    WHERE ($1::text IS NULL OR r.tenant = $1) AND ($2::bigint IS NULL OR r.job_id = $2)
    ORDER BY r.requested_at DESC, r.job_id DESC
    LIMIT $3";

fn from_row(row: &tokio_postgres::Row) -> Result<RestoreStatus, RestoreError> {
    let job_id: i64 = row.get(0);
    let unreadable = |what: &str| {
        RestoreError::Catalog(CatalogError::Inconsistent(format!(
            "restore job {job_id} has an unreadable {what}"
        )))
    };
    let mode: &str = row.get(1);
    let state: &str = row.get(9);
    let backup = |index: usize| {
        row.get::<_, Option<uuid::Uuid>>(index)
            .map(|uuid| BackupId::from_uuid(uuid).ok_or_else(|| unreadable("backup id")))
            .transpose()
    };
    let steps: Option<serde_json::Value> = row.get(11);
    Ok(RestoreStatus {
        job_id,
        mode: RestoreMode::parse(mode).ok_or_else(|| unreadable("mode"))?,
        tenant: row.get(2),
        cluster: row.get(3),
        backup_id: backup(4)?,
        database: row.get(5),
        reason: row.get(6),
        requested_by: row.get(7),
        requested_at: row.get(8),
        state: JobState::parse(state).ok_or_else(|| unreadable("state"))?,
        attempts: row.get(10),
        // Written by the controller from typed step reports.
        steps: steps
            .and_then(|steps| serde_json::from_value(steps).ok())
            .unwrap_or_default(),
        offline_ms: row
            .get::<_, Option<i64>>(12)
            .map(|ms| u64::try_from(ms).unwrap_or(0)),
        safety_backup_id: backup(13)?,
        previous_database: row.get(14),
        copy_role: row.get(15),
        keep_until: row.get(16),
        error: row.get(17),
        finished_at: row.get(18),
    })
}

/// The newest `limit` restores, newest first; of one tenant if given.
pub async fn restore_status(
    catalog: &Catalog,
    tenant: Option<&TenantName>,
    limit: i64,
) -> Result<Vec<RestoreStatus>, RestoreError> {
    let rows = catalog
        .connection()
        .await?
        .query(
            SELECT_RESTORES,
            &[&tenant.map(TenantName::as_str), &None::<i64>, &limit],
        )
        .await
        .map_err(query_error("list restores"))?;
    rows.iter().map(from_row).collect()
}

/// The restore of job `job_id`, if it is one.
pub async fn restore_job_status(
    catalog: &Catalog,
    job_id: i64,
) -> Result<Option<RestoreStatus>, RestoreError> {
    let row = catalog
        .connection()
        .await?
        .query_opt(SELECT_RESTORES, &[&None::<&str>, &Some(job_id), &1_i64])
        .await
        .map_err(query_error("read a restore"))?;
    row.as_ref().map(from_row).transpose()
}
