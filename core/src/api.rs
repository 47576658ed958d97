//! The controller's HTTP API as agents use it: the jobs they claim and the reports they send.
//!
//! Both sides (`controller` serves it, `agent` calls it) use these types, so the wire format
//! has one definition. Every body is JSON; every error is [`ErrorBody`] with a 4xx or 5xx
//! status. Agents authenticate with `Authorization: Bearer <token>`.
//!
//! ```text
//! POST /api/v1/agent/claim           ClaimRequest   -> 200 ClaimedJob | 204 nothing to do
//! POST /api/v1/jobs/{id}/heartbeat   Heartbeat      -> 200 LeaseRenewed | 409 lease lost
//! POST /api/v1/jobs/{id}/report      JobReport      -> 200 | 409 lease lost | 422 malformed
//! ```

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::backup::RegionResult;
use crate::ids::{BackupId, ClusterName, RegionName, TenantName};
use crate::manifest::{BackupKind, Manifest};

/// The path every API route starts with.
pub const API_PREFIX: &str = "/api/v1";

/// The longest an agent may ask the controller to hold a claim open.
pub const MAX_CLAIM_WAIT_SECONDS: u64 = 30;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    Backup,
    Restore,
    Drill,
    Replicate,
    Delete,
    Scrub,
    /// Drop a database lifeboat made and kept for a while: the previous database of a
    /// live restore after its grace period, or an expired copy.
    DropDatabase,
}

impl JobKind {
    pub const ALL: [JobKind; 7] = [
        JobKind::Backup,
        JobKind::Restore,
        JobKind::Drill,
        JobKind::Replicate,
        JobKind::Delete,
        JobKind::Scrub,
        JobKind::DropDatabase,
    ];

    /// The name stored in the catalog's `jobs.kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Restore => "restore",
            JobKind::Drill => "drill",
            JobKind::Replicate => "replicate",
            JobKind::Delete => "delete",
            JobKind::Scrub => "scrub",
            JobKind::DropDatabase => "drop-database",
        }
    }

    pub fn parse(text: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The work of one job, with everything the agent needs to do it (the agent has no catalog).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum JobWork {
    /// Back up one tenant's database to every region the agent knows.
    Backup {
        tenant: TenantName,
        cluster: ClusterName,
        database: String,
        backup_kind: BackupKind,
    },
    /// Copy a backup's stored object and manifest, as they are (still encrypted), from the
    /// first healthy source region to `to`.
    Replicate {
        tenant: TenantName,
        backup_id: BackupId,
        sources: Vec<RegionName>,
        to: RegionName,
        stored_bytes: u64,
        sha256: String,
    },
    /// Check copies in one region: present with the right size; those marked `full` are
    /// also read whole and hashed against the manifest's SHA-256.
    Scrub {
        region: RegionName,
        copies: Vec<ScrubTarget>,
        /// Every backup the catalog has, whatever its state (trashed, held, copies
        /// missing): never deleted as an orphan object, even without a manifest.
        keep: Vec<BackupId>,
    },
    /// Remove a backup's object and manifest from the given regions.
    Delete {
        tenant: TenantName,
        backup_id: BackupId,
        regions: Vec<RegionName>,
    },
    /// Restore a backup into a new scratch database on the tenant's cluster, verify its row
    /// counts against the manifest, and drop the database. Needs the age identity, so only
    /// agents that say they can decrypt ([`ClaimRequest::can_decrypt`]) are given one.
    Drill {
        tenant: TenantName,
        cluster: ClusterName,
        backup_id: BackupId,
        /// The SHA-256 the catalog recorded for the stored object: a manifest in a region
        /// that says otherwise was rewritten since, and is not believed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
    },
    /// The helpdesk path, through the `restore-live` playbook: a safety backup of the live
    /// database, `backup_id` restored into a shadow database and verified, then swapped in;
    /// the previous database is kept under `previous_database` for the grace period.
    RestoreLive {
        tenant: TenantName,
        cluster: ClusterName,
        database: String,
        backup_id: BackupId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// The name the live database is kept under (chosen by the controller, so that
        /// every attempt of the job and a later rollback agree on it).
        previous_database: String,
    },
    /// Swap the kept previous database of a live restore back in (`restore-rollback`); the
    /// database it replaces is kept under `previous_database` in turn.
    Rollback {
        tenant: TenantName,
        cluster: ClusterName,
        database: String,
        /// The kept database that becomes live again.
        restore_database: String,
        previous_database: String,
    },
    /// Restore `backup_id` into a new database `into_database` with its own role, through
    /// the `restore-copy` playbook (neutralising steps included).
    RestoreCopy {
        tenant: TenantName,
        cluster: ClusterName,
        backup_id: BackupId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        into_database: String,
        /// The copy's own role, and its password as a SCRAM-SHA-256 verifier: the plain
        /// password was shown once to whoever asked for the copy and is stored nowhere.
        role: String,
        role_password_verifier: String,
    },
    /// Drop a database lifeboat kept (a previous database after its grace period, an
    /// expired copy) and, if given, the copy's role.
    DropDatabase {
        tenant: TenantName,
        cluster: ClusterName,
        database: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role: Option<String>,
    },
}

impl JobWork {
    pub fn kind(&self) -> JobKind {
        match self {
            JobWork::Backup { .. } => JobKind::Backup,
            JobWork::Replicate { .. } => JobKind::Replicate,
            JobWork::Scrub { .. } => JobKind::Scrub,
            JobWork::Delete { .. } => JobKind::Delete,
            JobWork::Drill { .. } => JobKind::Drill,
            JobWork::RestoreLive { .. }
            | JobWork::Rollback { .. }
            | JobWork::RestoreCopy { .. } => JobKind::Restore,
            JobWork::DropDatabase { .. } => JobKind::DropDatabase,
        }
    }
}

/// One copy for scrub to check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubTarget {
    pub tenant: TenantName,
    pub backup_id: BackupId,
    pub stored_bytes: u64,
    pub sha256: String,
    /// Read the whole object and hash it, not only its size.
    pub full: bool,
}

/// An agent asks for work.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// The clusters this agent can reach; jobs on other clusters are left for other agents.
    /// Empty: none (an agent for maintenance jobs only).
    pub clusters: Vec<ClusterName>,
    /// Hold the request open this long when nothing is ready (long poll), at most
    /// [`MAX_CLAIM_WAIT_SECONDS`].
    pub wait_seconds: u64,
    /// Whether this agent holds the age identity: only then is it given drills. Agents
    /// that only take backups hold public keys and leave this false. Sent only when true,
    /// so that a controller older than this field still accepts other agents' claims.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub can_decrypt: bool,
}

/// A job handed to an agent, with its lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedJob {
    pub id: i64,
    /// Carried by every heartbeat and report of this attempt; a report with an older token
    /// (from an attempt whose lease expired) is refused.
    pub lease_token: Uuid,
    /// Heartbeat well within this.
    pub lease_seconds: u64,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub work: JobWork,
    /// For a backup job: the id this attempt's backup must have; for a live restore: the id
    /// its safety backup must have (the controller records no other).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<BackupId>,
    /// For a backup job: the ids handed to earlier attempts. If one of them was committed
    /// (its manifest exists) but never reported, the agent reports it instead of taking
    /// the backup again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub earlier_backup_ids: Vec<BackupId>,
    /// The tenant's own keys (per-tenant keys), from a controller that has them; `None`
    /// from older controllers: back up to the configured recipients, restore with the
    /// identity file alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_keys: Option<TenantKeyGrant>,
}

/// A tenant's keys as a job carries them: never a plaintext identity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantKeyGrant {
    /// For a backup, and a live restore's safety backup: the tenant's current recipient
    /// (`age1…`, public). The backup is encrypted to it alone, and the controller refuses
    /// a report whose manifest names another key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// For drills, live restores and copies: the tenant's identities not shredded, as one
    /// age file encrypted to the organisation's recipients (hex). The agent unwraps them in
    /// memory with its identity file (`lifeboat_core::tenant_keys`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped_identities_hex: Option<String>,
}

impl TenantKeyGrant {
    /// A grant of `wrapped` identities only (a restore's).
    pub fn wrapping(wrapped: &[u8]) -> TenantKeyGrant {
        TenantKeyGrant {
            recipient: None,
            wrapped_identities_hex: Some(hex::encode(wrapped)),
        }
    }

    /// The wrapped identities' bytes, if the grant carries them; `Err` when not hex.
    pub fn wrapped_identities(&self) -> Result<Option<Vec<u8>>, hex::FromHexError> {
        self.wrapped_identities_hex
            .as_deref()
            .map(hex::decode)
            .transpose()
    }
}

/// Renew the lease of a running job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    pub lease_token: Uuid,
    /// For playbook jobs: every step so far, as the agent sees it (the controller keeps
    /// the latest list as the job's progress).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
}

/// One step of a playbook run, as reported in heartbeats and results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepReport {
    /// Position in the playbook, from 1.
    pub number: u32,
    /// The step's vocabulary name, e.g. `swap_databases`.
    pub step: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// What the step did or why it failed, in one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    Running,
    Done,
    /// Found already done (a retried job completing an earlier attempt's work).
    AlreadyDone,
    Failed,
    Undone,
}

/// The lease was renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRenewed {
    pub lease_seconds: u64,
}

/// How a job attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobReport {
    pub lease_token: Uuid,
    pub outcome: JobOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case", deny_unknown_fields)]
pub enum JobOutcome {
    Succeeded {
        result: JobResult,
    },
    /// `retryable: false` fails the job now (bad input, missing database); otherwise it is
    /// retried with backoff until its attempts run out.
    Failed {
        error: String,
        retryable: bool,
    },
}

/// What a successful job produced; its kind must match the job's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum JobResult {
    Backup {
        manifest: Box<Manifest>,
        regions: Vec<RegionResult>,
        duration_ms: u64,
    },
    Replicate {
        region: RegionName,
    },
    Scrub {
        region: RegionName,
        copies: Vec<CopyCheck>,
    },
    Delete {
        regions: Vec<RegionName>,
    },
    /// A drill that ran to its end, verified or not: a backup that does not restore is a
    /// drill result, not a job failure.
    Drill(DrillResult),
    /// A live restore, rollback or copy that completed.
    Restore(RestoreResult),
    DropDatabase {
        database: String,
    },
}

/// A completed playbook job of kind `restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreResult {
    /// The backup restored (none for a rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<BackupId>,
    /// The database that now holds the restored data (the live name, or the copy's).
    pub database: String,
    /// The database kept for the grace period (live restore and rollback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_database: Option<String>,
    /// The safety backup of the live database taken first (live restore only); recorded
    /// like an agent's backup report, after the same checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_backup: Option<SafetyBackup>,
    /// How long the tenant could not connect (the swap), if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_ms: Option<u64>,
    pub steps: Vec<StepReport>,
    pub duration_ms: u64,
}

/// A backup taken inside a playbook run (kind `pre-restore`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SafetyBackup {
    pub manifest: Box<Manifest>,
    pub regions: Vec<RegionResult>,
    pub duration_ms: u64,
}

/// A drill that ran to its end: what `lifeboat drill` records and a drill job reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrillResult {
    pub backup_id: BackupId,
    /// The region the object was read from, if any could serve it.
    pub region: Option<RegionName>,
    pub scratch_database: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub finished_at: chrono::DateTime<chrono::Utc>,
    pub outcome: DrillOutcome,
    /// The `drill-tenant` playbook's steps with their durations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepReport>,
}

/// How a drill ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case", deny_unknown_fields)]
pub enum DrillOutcome {
    Verified {
        tables_verified: u64,
        rows_verified: u64,
    },
    Failed {
        error: String,
    },
}

impl JobResult {
    pub fn kind(&self) -> JobKind {
        match self {
            JobResult::Backup { .. } => JobKind::Backup,
            JobResult::Replicate { .. } => JobKind::Replicate,
            JobResult::Scrub { .. } => JobKind::Scrub,
            JobResult::Delete { .. } => JobKind::Delete,
            JobResult::Drill(_) => JobKind::Drill,
            JobResult::Restore(_) => JobKind::Restore,
            JobResult::DropDatabase { .. } => JobKind::DropDatabase,
        }
    }
}

/// What scrub found for one copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyCheck {
    pub backup_id: BackupId,
    pub state: CopyState,
    /// Whether the whole object was read and hashed.
    pub hashed: bool,
    /// What was wrong, for a copy that is not `present`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The state of one copy of a backup in one region (`backup_copies.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyState {
    Present,
    Missing,
    Corrupt,
}

impl CopyState {
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Present => "present",
            CopyState::Missing => "missing",
            CopyState::Corrupt => "corrupt",
        }
    }
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code (`not_found`, `rate_limited`, `csrf`, …); clients
    /// branch on it, never on the message.
    #[serde(default)]
    pub code: String,
    /// One clear message for people.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_work_round_trips_and_refuses_unknown_fields() {
        let work = JobWork::Backup {
            tenant: TenantName::parse("acme").expect("tenant"),
            cluster: ClusterName::parse("main").expect("cluster"),
            database: "acme \"db\"".to_owned(),
            backup_kind: BackupKind::Scheduled,
        };
        let json = serde_json::to_string(&work).expect("serialise");
        assert!(json.contains(r#""kind":"backup""#), "{json}");
        assert_eq!(serde_json::from_str::<JobWork>(&json).expect("parse"), work);
        let extra = json.replace(r#""kind":"backup""#, r#""kind":"backup","rm":"-rf""#);
        assert!(serde_json::from_str::<JobWork>(&extra).is_err());
        for kind in JobKind::ALL {
            assert_eq!(JobKind::parse(kind.as_str()), Some(kind));
        }
    }
}
