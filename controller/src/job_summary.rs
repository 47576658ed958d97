//! What a finished job leaves in `jobs.result`: one typed summary per kind.
//!
//! A report's effect is applied to the catalog ([`crate::reports`]); what the job's row
//! keeps is a short summary, for the nightly's table, `/metrics` and whoever follows a job.
//! Each kind's summary is a struct here, written by the report and read back by the same
//! type, so no reader looks fields up by name in loose JSON.

use chrono::{DateTime, Utc};
use lifeboat_core::api::StepReport;
use lifeboat_core::backup::RegionResult;
use lifeboat_core::ids::{BackupId, RegionName};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::drills::DrillRecord;
use crate::queue::JobStatus;

/// A committed backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupSummary {
    pub backup_id: BackupId,
    pub stored_bytes: u64,
    pub duration_ms: u64,
    pub regions: Vec<RegionResult>,
    /// Fewer regions than configured hold it.
    pub degraded: bool,
}

/// One region's copies checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubSummary {
    pub region: RegionName,
    pub checked: u64,
    pub hashed: u64,
    /// Copies found missing or corrupt.
    pub bad: u64,
}

/// A copy made again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicateSummary {
    pub backup_id: BackupId,
    pub region: RegionName,
}

/// A drill, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillSummary {
    #[serde(flatten)]
    pub record: DrillRecord,
    /// The `drills` row.
    pub drill: i64,
    pub duration_ms: u64,
}

/// A live restore, rollback or copy that completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreSummary {
    pub mode: crate::restores::RestoreMode,
    pub backup_id: Option<BackupId>,
    pub database: String,
    pub previous_database: Option<String>,
    pub safety_backup_id: Option<BackupId>,
    pub offline_ms: Option<u64>,
    /// Until when the database it left behind (previous, or the copy) is kept; None: a
    /// copy kept until dropped by hand.
    pub kept_until: Option<DateTime<Utc>>,
    pub steps: Vec<StepReport>,
    pub duration_ms: u64,
}

/// A kept database dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropDatabaseSummary {
    pub database: String,
    pub role: Option<String>,
}

impl JobStatus {
    fn summary<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_value(self.result.clone()?).ok()
    }

    pub fn backup_summary(&self) -> Option<BackupSummary> {
        self.summary()
    }

    pub fn scrub_summary(&self) -> Option<ScrubSummary> {
        self.summary()
    }

    pub fn replicate_summary(&self) -> Option<ReplicateSummary> {
        self.summary()
    }

    pub fn drill_summary(&self) -> Option<DrillSummary> {
        self.summary()
    }

    pub fn restore_summary(&self) -> Option<RestoreSummary> {
        self.summary()
    }
}

/// A summary as stored (a struct of plain fields always serialises).
pub fn to_stored<T: Serialize>(summary: &T) -> serde_json::Value {
    serde_json::to_value(summary).unwrap_or_default()
}
