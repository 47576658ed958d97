//! How long a restore should take, from what was measured: the tenant's last verified drills
//! (the recovery time: a restore into a fresh database and its verification), its recent
//! backups (a live restore takes a safety backup first), and the swaps of its earlier live
//! restores (the time the tenant was offline). Medians of the last [`SAMPLES`], so one slow
//! night does not move the estimate.

use lifeboat_core::ids::TenantName;
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{RestoreError, RestoreMode, query_error};

/// How many of the newest measurements an estimate is the median of.
pub const SAMPLES: i64 = 7;

/// The expected durations of a restore, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RestoreEstimate {
    /// Verified drills the estimate is drawn from (at most [`SAMPLES`]).
    pub drills_measured: usize,
    /// Restoring the backup beside the live database and verifying it (the drills' median).
    pub restore_ms: u64,
    /// The safety backup a live restore takes first (the median of recent backups); None
    /// for a copy, or a tenant without a backup.
    pub safety_backup_ms: Option<u64>,
    /// The whole job.
    pub total_ms: u64,
    /// How long the tenant cannot connect: the median of its earlier swaps; None when none
    /// was measured yet (a swap is a rename: expect under a second). Not for a copy.
    pub offline_ms: Option<u64>,
    pub swaps_measured: usize,
}

/// The median of `values` (the lower middle one of an even count); None for none.
pub fn median(values: &[u64]) -> Option<u64> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let count = sorted.len();
    if count == 0 {
        return None;
    }
    sorted.get((count - 1) / 2).copied()
}

async fn newest_durations<C: GenericClient>(
    client: &C,
    sql: &str,
    tenant: &TenantName,
    action: &'static str,
) -> Result<Vec<u64>, RestoreError> {
    let rows = client
        .query(sql, &[&tenant.as_str(), &SAMPLES])
        .await
        .map_err(query_error(action))?;
    Ok(rows
        .iter()
        .filter_map(|row| row.get::<_, Option<i64>>(0))
        .map(|ms| u64::try_from(ms).unwrap_or(0))
        .collect())
}

/// The estimate of a `mode` restore of `tenant`; None when no drill of it has verified yet
/// (nothing measured to estimate from), except for a rollback, which restores nothing.
pub async fn estimate<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
    mode: RestoreMode,
) -> Result<Option<RestoreEstimate>, RestoreError> {
    let drills = newest_durations(
        client,
        "SELECT (extract(epoch FROM finished_at - started_at) * 1000)::bigint FROM drills
         WHERE tenant = $1 AND outcome = 'verified' ORDER BY finished_at DESC LIMIT $2",
        tenant,
        "read the tenant's drill times",
    )
    .await?;
    let swaps = newest_durations(
        client,
        "SELECT offline_ms FROM restores
         WHERE tenant = $1 AND mode IN ('live', 'rollback') AND offline_ms IS NOT NULL
         ORDER BY requested_at DESC LIMIT $2",
        tenant,
        "read the tenant's earlier swaps",
    )
    .await?;
    let safety_backup_ms = match mode {
        RestoreMode::Live => median(
            &newest_durations(
                client,
                "SELECT (extract(epoch FROM finished_at - started_at) * 1000)::bigint
                 FROM backups WHERE tenant = $1 ORDER BY started_at DESC LIMIT $2",
                tenant,
                "read the tenant's backup times",
            )
            .await?,
        ),
        RestoreMode::Rollback | RestoreMode::Copy => None,
    };
    let offline_ms = match mode {
        RestoreMode::Copy => None,
        RestoreMode::Live | RestoreMode::Rollback => median(&swaps),
    };
    let restore_ms = match mode {
        // A rollback restores nothing: it is one swap.
        RestoreMode::Rollback => Some(0),
        RestoreMode::Live | RestoreMode::Copy => median(&drills),
    };
    let Some(restore_ms) = restore_ms else {
        return Ok(None);
    };
    Ok(Some(RestoreEstimate {
        drills_measured: drills.len(),
        restore_ms,
        safety_backup_ms,
        total_ms: restore_ms
            .saturating_add(safety_backup_ms.unwrap_or(0))
            .saturating_add(offline_ms.unwrap_or(0)),
        offline_ms,
        swaps_measured: swaps.len(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_middle_measurement() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5]), Some(5));
        assert_eq!(median(&[9, 1, 5]), Some(5));
        assert_eq!(median(&[40, 10, 30, 20]), Some(20));
        assert_eq!(median(&[1, 1, 1, 1_000_000, 2, 2, 2]), Some(2));
    }
}
