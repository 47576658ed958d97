//! What a tenant's people are shown of its backups: each backup with where it is stored and
//! the evidence that it restores (its newest drill: when, how long, how many tables and rows
//! were checked). The one home of that view, for the API and the panel.

use chrono::{DateTime, Utc};
use lifeboat_core::ids::TenantName;
use serde::Serialize;

use crate::catalog::{CatalogError, query_error};

/// The most backups one listing returns.
pub const MAX_LISTED_BACKUPS: i64 = 500;

/// One backup, as its tenant sees it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupView {
    /// The backup's id (a UUID).
    pub id: String,
    /// `scheduled`, `manual`, `pre-restore` or `pre-destroy`.
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// Bytes of the dump (`pg_dump` custom format), before compression and encryption.
    pub dump_bytes: i64,
    /// Bytes stored in each region.
    pub stored_bytes: i64,
    /// Regions holding a whole, checked copy.
    pub regions: Vec<String>,
    /// Kept past the retention policy.
    pub legal_hold: bool,
    /// The newest drill of this backup, if any.
    pub evidence: Option<RestoreEvidence>,
}

/// A drill: the backup restored into a scratch database and verified against its manifest.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestoreEvidence {
    pub finished_at: DateTime<Utc>,
    /// Whether the restore completed and every table's row count matched.
    pub verified: bool,
    /// How long the restore and the checks took, in milliseconds.
    pub duration_ms: i64,
    pub tables_verified: Option<i32>,
    pub rows_verified: Option<i64>,
    /// Why a failed drill failed.
    pub error: Option<String>,
    /// One line for people: "restored and verified in 1 m 12 s: 38 tables, row counts match".
    pub summary: String,
}

/// The listing of [`tenant_backups`]: `$1` the tenant, `$2` the limit.
const TENANT_BACKUPS: &str =
    "SELECT b.id::text, b.kind, b.started_at, b.finished_at, b.dump_bytes, b.stored_bytes,
                    b.legal_hold,
                    ARRAY(SELECT c.region FROM backup_copies c
                          WHERE c.backup_id = b.id AND c.state = 'present' ORDER BY c.region),
                    d.finished_at, d.outcome, d.started_at, d.tables_verified, d.rows_verified,
                    d.error
             FROM backups b
             -- The newest drill of each backup, from the tenant's drills alone (a drill
             -- is recorded under its backup's tenant): read once through drills_by_tenant,
             -- not searched for among every tenant's drills once per backup.
             LEFT JOIN (
                 SELECT DISTINCT ON (d.backup_id) d.backup_id, d.finished_at, d.outcome,
                        d.started_at, d.tables_verified, d.rows_verified, d.error
                 FROM drills d WHERE d.tenant = $1
                 ORDER BY d.backup_id, d.finished_at DESC, d.id DESC
             ) d ON d.backup_id = b.id
             WHERE b.tenant = $1 AND b.trashed_at IS NULL
             ORDER BY b.started_at DESC
             LIMIT $2";

/// `tenant`'s backups out of the trash, newest first, at most [`MAX_LISTED_BACKUPS`].
///
/// The API's busiest read: the statement is prepared once per pooled connection
/// (`prepare_cached`), not parsed and planned again by PostgreSQL for every request.
pub async fn tenant_backups<C: deadpool_postgres::GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<Vec<BackupView>, CatalogError> {
    let statement = client
        .prepare_cached(TENANT_BACKUPS)
        .await
        .map_err(query_error("prepare the listing of the tenant's backups"))?;
    let rows = client
        .query(&statement, &[&tenant.as_str(), &MAX_LISTED_BACKUPS])
        .await
        .map_err(query_error("list the tenant's backups"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let drill_finished: Option<DateTime<Utc>> = row.get(8);
            let evidence = drill_finished.map(|finished_at| {
                let outcome: String = row.get(9);
                let started_at: DateTime<Utc> = row.get(10);
                let duration_ms = (finished_at - started_at).num_milliseconds().max(0);
                let tables_verified: Option<i32> = row.get(11);
                let rows_verified: Option<i64> = row.get(12);
                let error: Option<String> = row.get(13);
                let verified = outcome == "verified";
                let summary = if verified {
                    format!(
                        "restored and verified in {}: {} tables, row counts match",
                        human_duration(duration_ms),
                        tables_verified.unwrap_or(0)
                    )
                } else {
                    format!(
                        "the restore test failed after {}",
                        human_duration(duration_ms)
                    )
                };
                RestoreEvidence {
                    finished_at,
                    verified,
                    duration_ms,
                    tables_verified,
                    rows_verified,
                    error,
                    summary,
                }
            });
            BackupView {
                id: row.get(0),
                kind: row.get(1),
                started_at: row.get(2),
                finished_at: row.get(3),
                dump_bytes: row.get(4),
                stored_bytes: row.get(5),
                legal_hold: row.get(6),
                regions: row.get(7),
                evidence,
            }
        })
        .collect())
}

/// "850 ms", "14 s", "1 m 12 s", "2 h 5 m".
pub fn human_duration(milliseconds: i64) -> String {
    let seconds = milliseconds / 1000;
    match seconds {
        0 => format!("{milliseconds} ms"),
        1..60 => format!("{seconds} s"),
        60..3600 => format!("{} m {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} m", seconds / 3600, seconds % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(850), "850 ms");
        assert_eq!(human_duration(14_200), "14 s");
        assert_eq!(human_duration(72_000), "1 m 12 s");
        assert_eq!(human_duration(7_500_000), "2 h 5 m");
    }
}
