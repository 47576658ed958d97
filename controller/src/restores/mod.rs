//! Helpdesk restores: the one home of a restore onto the live database, its rollback, a
//! restore into a copy, and of what they leave behind.
//!
//! - [`request`]: `request_live_restore`, `request_rollback`, `request_copy` check what is
//!   asked (the tenant, the backup, no other restore of the tenant queued or running, the
//!   copy's name free), then enqueue one `restore` job with its `restores` row and an audit
//!   entry in one transaction. Nothing is enqueued when a check fails.
//! - [`estimate`]: how long the tenant will be offline and the whole restore will take,
//!   from the tenant's measured recovery times (drills) and earlier live restores.
//! - [`record`]: an agent's `restore` and `drop-database` results, applied inside the
//!   report's transaction (`reports::apply_report`): the safety backup (checked in the
//!   regions like any backup report), the databases kept for a while (`kept_databases`).
//! - [`kept`]: daily maintenance drops kept databases past their time.
//! - [`status`]: what `lifeboat restore status` shows.
//!
//! The previous live database is kept as `lifeboat_prev_<YYYYMMDDHHMMSS>_<database>` (63
//! bytes at most; the next free second when the cluster already keeps that name, as after a
//! rollback in the same second as its restore), chosen here when the job is enqueued, so
//! every attempt of the job and a later rollback agree on it.

pub mod asks;
pub mod estimate;
pub mod kept;
pub mod record;
pub mod request;
pub mod status;

use chrono::{DateTime, Utc};
use lifeboat_core::ids::{BackupId, TenantName};
use serde::Serialize;

use crate::catalog::CatalogError;
use crate::tenants::TenantError;

pub use estimate::RestoreEstimate;
pub use kept::{DueDrop, plan_kept_database_drops};
pub use request::{
    CopyRequest, CopyRequested, LiveRestorePlan, RestoreRequested, check_reason, plan_live_restore,
    request_copy, request_live_restore, request_rollback,
};
pub use status::{RestoreStatus, restore_job_status, restore_status};

/// What a restore job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RestoreMode {
    /// A backup swapped in for the live database.
    Live,
    /// The kept previous database swapped back in.
    Rollback,
    /// A backup restored into a new database with its own role.
    Copy,
}

impl RestoreMode {
    /// The name stored in `restores.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            RestoreMode::Live => "live",
            RestoreMode::Rollback => "rollback",
            RestoreMode::Copy => "copy",
        }
    }

    pub fn parse(text: &str) -> Option<RestoreMode> {
        [RestoreMode::Live, RestoreMode::Rollback, RestoreMode::Copy]
            .into_iter()
            .find(|mode| mode.as_str() == text)
    }
}

impl std::fmt::Display for RestoreMode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The backup a restore uses, as the catalog knows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChosenBackup {
    #[schema(value_type = String)]
    pub id: BackupId,
    pub kind: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub stored_bytes: u64,
    pub sha256: String,
}

/// Why a restore is not requested. Nothing was enqueued or changed.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Tenant(#[from] TenantError),
    #[error("--reason: say why (it goes into the audit log); an empty reason is refused")]
    EmptyReason,
    #[error("backup {0} is not in the catalog (lifeboat backups list --tenant T)")]
    UnknownBackup(BackupId),
    #[error("backup {backup} belongs to tenant {owner}, not to {tenant}")]
    OtherTenantsBackup {
        backup: BackupId,
        owner: String,
        tenant: TenantName,
    },
    #[error(
        "backup {0} is in the trash; take it out first (lifeboat trash restore {0}) or choose another"
    )]
    Trashed(BackupId),
    #[error(
        "backup {0} has no present copy in a configured region, so there is nothing to restore it from"
    )]
    NoPresentCopy(BackupId),
    #[error(
        "tenant {0} has no backup outside the trash with a present copy in a configured region"
    )]
    NoRestorableBackup(TenantName),
    #[error(
        "a restore of tenant {tenant} is already {state} (job {job}); wait for it to end (lifeboat restore status --tenant {tenant})"
    )]
    AlreadyUnderway {
        tenant: TenantName,
        job: i64,
        state: String,
    },
    #[error(
        "a restore of tenant {0} was already requested this second, and the kept database's name has the second in it; try again"
    )]
    SameMinute(TenantName),
    #[error(
        "tenant {0} has nothing to roll back: no previous database kept by a live restore is left (dropped, expired or never made; lifeboat restore status --tenant {0})"
    )]
    NothingToRollBack(TenantName),
    #[error(
        "the previous database would be kept as {name:?}, which cluster {cluster} already keeps, as it keeps every name of the minute after it; try again in a minute"
    )]
    KeptNameTaken { name: String, cluster: String },
    #[error("--into {into:?}: {why}")]
    CopyTarget { into: String, why: String },
    #[error("--expires-days: must be at least 1 (leave it out to keep the copy until dropped)")]
    InvalidExpiry,
    #[error("note: say what happened and what to restore, in 1 to 2000 characters")]
    AskNote,
    #[error("target: ask for a restore onto live (live) or into a copy (copy)")]
    AskTarget,
    #[error(
        "tenant {tenant} already has an open restore ask ({ask}); withdraw it or wait for staff"
    )]
    AlreadyAsked { tenant: TenantName, ask: i64 },
    #[error("tenant {tenant} has no open restore ask {ask}")]
    NoOpenAsk { tenant: TenantName, ask: i64 },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// Name a failed catalog query by what it was doing.
fn query_error(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> RestoreError {
    move |source| {
        RestoreError::Catalog(CatalogError::Query {
            action: action.to_owned(),
            source,
        })
    }
}

/// The longest PostgreSQL identifier, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// `text` cut to at most `max_bytes` bytes, on a character boundary.
fn truncate_to_bytes(text: &str, max_bytes: usize) -> &str {
    if text.len() <= max_bytes {
        return text;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The name `database` is kept under when a restore or rollback requested at `at` swaps it
/// out: `lifeboat_prev_<YYYYMMDDHHMMSS>_<database>`, cut to 63 bytes on a character
/// boundary. To the second, so that a rollback right after its restore gets a name of its
/// own.
pub fn kept_database_name(at: DateTime<Utc>, database: &str) -> String {
    let name = format!("lifeboat_prev_{}_{database}", at.format("%Y%m%d%H%M%S"));
    truncate_to_bytes(&name, MAX_IDENTIFIER_BYTES).to_owned()
}

/// The role a copy named `into` is owned by: `<into>_owner`, 63 bytes at most.
pub fn copy_role_name(into: &str) -> String {
    const SUFFIX: &str = "_owner";
    format!(
        "{}{SUFFIX}",
        truncate_to_bytes(into, MAX_IDENTIFIER_BYTES - SUFFIX.len())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute() -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 28)
            .and_then(|date| date.and_hms_opt(9, 5, 0))
            .expect("minute")
            .and_utc()
    }

    #[test]
    fn kept_names_fit_in_an_identifier_and_keep_whole_characters() {
        assert_eq!(
            kept_database_name(minute(), "acme"),
            "lifeboat_prev_20261128090500_acme"
        );
        let odd = "Ünïcode \"quoted\" name with spaces and more ßßßßßßßßßßßß";
        let kept = kept_database_name(minute(), odd);
        assert!(kept.len() <= MAX_IDENTIFIER_BYTES, "{kept}");
        assert!(kept.starts_with("lifeboat_prev_20261128090500_Ünïcode \"quoted\""));
        // A two-byte character straddling byte 63 is left out whole.
        let straddling = format!("{}ß", "a".repeat(MAX_IDENTIFIER_BYTES - 29 - 1));
        let kept = kept_database_name(minute(), &straddling);
        assert_eq!(kept.len(), MAX_IDENTIFIER_BYTES - 1, "{kept}");
        assert!(!kept.ends_with('ß'));
    }

    #[test]
    fn copy_roles_fit_in_an_identifier() {
        assert_eq!(copy_role_name("staging"), "staging_owner");
        let long = "é".repeat(40);
        let role = copy_role_name(&long);
        assert!(
            role.len() <= MAX_IDENTIFIER_BYTES && role.ends_with("_owner"),
            "{role}"
        );
    }
}
