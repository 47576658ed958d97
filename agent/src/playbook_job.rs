//! Playbook jobs on this agent: a restore onto a live tenant, its rollback, a restored copy,
//! dropping a kept database, and the nightly drill. Each names its playbook, binds the run's
//! names, runs it with the provisioner's cluster executor, and turns the outcome into the
//! job's result. The regions, keys and backups the provisioner does not know are supplied
//! here, as [`AgentHooks`].
//!
//! Names are derived from the job (its run tag is `job-<id>`), so every attempt of a job
//! uses the same shadow or scratch database, and a later attempt finds what an earlier one
//! left ([`run_playbook`]'s resume).

use std::sync::Arc;
use std::time::Instant;

use lifeboat_core::api::{
    ClaimedJob, JobOutcome, JobResult, JobWork, RestoreResult, SafetyBackup, TenantKeyGrant,
};
use lifeboat_core::config::{ClusterConfig, Config, TenantConfig};
use lifeboat_core::ids::{BackupId, ClusterName, TenantName};
use lifeboat_core::manifest::{BackupKind, Manifest};
use lifeboat_core::postgres::PgTools;
use lifeboat_core::progress::Silent;
use lifeboat_core::region::Regions;
use lifeboat_core::restore::{self, RestoreTarget, Staging};
use lifeboat_provisioner::playbook::{
    BackupHooks, Bindings, ClusterExecutor, FailureKind, Playbook, PlaybookSource, RestoredBackup,
    RunFailure, RunOutputs, RunSummary, StepFailure, StepObserver, Variable, names, run_playbook,
};
use lifeboat_provisioner::{self as provisioner, databases, roles};
use tokio_util::sync::CancellationToken;

use crate::backup_job;
use crate::restore_job::{self, RestoreJobError};

/// The regions, keys and backup a run's `take_backup`, `restore_backup` and checks need.
#[derive(Debug)]
pub struct AgentHooks<'a> {
    pub config: &'a Config,
    pub regions: &'a Regions,
    pub tenant: &'a TenantName,
    /// Where the tenant's live database is (what `take_backup` dumps).
    pub tenant_cluster: &'a ClusterName,
    /// Where `restore_backup` restores (a drill cluster may differ from the tenant's).
    pub target_cluster: &'a ClusterConfig,
    /// The backup the run restores, with the SHA-256 the catalog recorded for it.
    pub backup: Option<(BackupId, Option<&'a str>)>,
    /// The id a `take_backup` step gives its backup: the one the controller handed this
    /// job's attempt (it accepts no other); `None` outside a job.
    pub new_backup_id: Option<BackupId>,
    pub cancel: CancellationToken,
    /// The tenant's keys the job carries (per-tenant keys), if any.
    pub tenant_keys: Option<&'a TenantKeyGrant>,
}

impl<'a> AgentHooks<'a> {
    /// Hooks for a run for `tenant` (its live database on `tenant_cluster`) on
    /// `target_cluster`, restoring nothing and taking backups under new ids.
    pub fn new(
        config: &'a Config,
        regions: &'a Regions,
        tenant: &'a TenantName,
        tenant_cluster: &'a ClusterName,
        target_cluster: &'a ClusterConfig,
        cancel: &CancellationToken,
    ) -> Self {
        AgentHooks {
            config,
            regions,
            tenant,
            tenant_cluster,
            target_cluster,
            backup: None,
            new_backup_id: None,
            cancel: cancel.clone(),
            tenant_keys: None,
        }
    }

    /// A `take_backup` step encrypts to the tenant's recipient, and `restore_backup`
    /// unwraps the tenant's identities, as `tenant_keys` (the job's) say.
    pub fn with_tenant_keys(mut self, tenant_keys: Option<&'a TenantKeyGrant>) -> Self {
        self.tenant_keys = tenant_keys;
        self
    }

    /// The run restores `backup_id` (whose SHA-256 the catalog recorded, if known).
    pub fn restoring(mut self, backup_id: BackupId, catalog_sha256: Option<&'a str>) -> Self {
        self.backup = Some((backup_id, catalog_sha256));
        self
    }

    /// A `take_backup` step uses this id (the one the controller handed the attempt).
    pub fn backing_up_as(mut self, backup_id: Option<BackupId>) -> Self {
        self.new_backup_id = backup_id;
        self
    }
}

fn restore_failure(error: &RestoreJobError) -> StepFailure {
    if error.is_verdict_on_the_backup() {
        StepFailure::backup(error.to_string())
    } else {
        StepFailure::transient(error.to_string())
    }
}

impl BackupHooks for AgentHooks<'_> {
    async fn take_backup(
        &self,
        database: &str,
        kind: BackupKind,
    ) -> Result<SafetyBackup, StepFailure> {
        let tenant = TenantConfig {
            name: self.tenant.clone(),
            cluster: self.tenant_cluster.clone(),
            database: database.to_owned(),
        };
        let tenant_recipient = backup_job::granted_recipient(self.tenant_keys)
            .map_err(|error| StepFailure::permanent(error.to_string()))?;
        let report = backup_job::backup_tenant_to(
            self.config,
            self.regions,
            &tenant,
            kind,
            self.new_backup_id,
            tenant_recipient,
            Arc::new(Silent),
            self.cancel.clone(),
        )
        .await
        .map_err(|error| {
            if error.is_permanent() {
                StepFailure::permanent(format!("{error:#}"))
            } else {
                StepFailure::transient(format!("{error:#}"))
            }
        })?;
        Ok(SafetyBackup {
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
            manifest: Box::new(report.manifest),
            regions: report.regions,
        })
    }

    async fn backup_manifest(&self) -> Result<Manifest, StepFailure> {
        let (backup_id, catalog_sha256) = self
            .backup
            .ok_or_else(|| StepFailure::permanent("this run restores no backup"))?;
        let mut reasons = Vec::new();
        for region in self.regions.iter() {
            match restore_job::read_believed_manifest(
                region,
                self.tenant,
                backup_id,
                catalog_sha256,
            )
            .await
            {
                Ok(manifest) => return Ok(manifest),
                Err(error) => reasons.push(error.to_string()),
            }
        }
        Err(StepFailure::backup(format!(
            "backup {backup_id} of tenant {}: no region has its manifest: {}",
            self.tenant,
            reasons.join("; ")
        )))
    }

    async fn restore_backup(
        &self,
        database: &str,
        owner: &str,
    ) -> Result<RestoredBackup, StepFailure> {
        let (backup_id, catalog_sha256) = self
            .backup
            .ok_or_else(|| StepFailure::permanent("this run restores no backup"))?;
        let identities = restore_job::load_identities_for(
            self.config,
            self.regions,
            self.tenant,
            self.tenant_keys,
        )
        .await
        .map_err(|error| restore_failure(&error))?;
        let target = RestoreTarget {
            tools: PgTools::locate(self.config.pg_bin_dir.as_deref()).await,
            cluster: self.target_cluster.clone(),
            database: database.to_owned(),
            owner_role: Some(owner.to_owned()),
            staging: Staging::configured(&self.config.restore),
        };
        let restored = restore_job::restore_into_existing_database(
            self.regions,
            self.tenant,
            backup_id,
            catalog_sha256,
            identities,
            &target,
            Arc::new(Silent),
            self.cancel.clone(),
        )
        .await
        .map_err(|error| restore_failure(&error))?;
        Ok(RestoredBackup {
            backup_id,
            region: restored.streamed.region,
            stored_bytes: restored.streamed.stored_bytes,
            dump_bytes: restored.streamed.dump_bytes,
            method: restored.streamed.method,
            manifest: restored.manifest,
        })
    }
}

/// Who runs a playbook, and how it reports.
#[derive(Clone, Copy)]
pub struct RunContext<'a> {
    /// `job-<id>` for a job (shared by its attempts), `cli-<random>` for a command.
    pub run_tag: &'a str,
    /// A later attempt of the same job: finish or undo what the earlier one left.
    pub resume: bool,
    pub observer: &'a dyn StepObserver,
    pub cancel: &'a CancellationToken,
    /// The tenant's keys the job carries (per-tenant keys): the recipient a safety backup
    /// is encrypted to, the wrapped identities a restore unwraps. `None` outside a job.
    pub tenant_keys: Option<&'a TenantKeyGrant>,
}

impl std::fmt::Debug for RunContext<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RunContext")
            .field("run_tag", &self.run_tag)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

/// A database name of at most 63 bytes: `prefix` and `suffix` kept, the middle cut on a
/// character boundary (database names may be any UTF-8).
pub fn bounded_database_name(prefix: &str, middle: &str) -> String {
    let mut name = prefix.to_owned();
    for character in middle.chars() {
        if name.len() + character.len_utf8() > 63 {
            break;
        }
        name.push(character);
    }
    name
}

/// The shadow database of a live restore run.
pub fn shadow_database_name(run_tag: &str) -> String {
    bounded_database_name("lifeboat_shadow_", run_tag)
}

/// The scratch database of a drill run.
pub fn scratch_database_name(run_tag: &str, tenant: &TenantName) -> String {
    bounded_database_name(&format!("lifeboat_drill_{run_tag}_"), tenant.as_str())
}

/// A playbook run's outcome with what its executor produced.
pub struct PlaybookOutcome {
    pub result: Result<RunSummary, RunFailure>,
    pub outputs: RunOutputs,
    pub duration: std::time::Duration,
}

impl std::fmt::Debug for PlaybookOutcome {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PlaybookOutcome")
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

/// Load `playbook` (the configured directory first, then the built-in) and run it on
/// `cluster` with `bindings`.
pub async fn run_named_playbook(
    config: &Config,
    playbook: &str,
    cluster: &ClusterConfig,
    hooks: &AgentHooks<'_>,
    bindings: &Bindings,
    password_verifier: Option<(&str, &str)>,
    context: RunContext<'_>,
) -> Result<PlaybookOutcome, StepFailure> {
    let source = PlaybookSource {
        dir: config.playbook_dir.as_deref(),
    };
    let playbook = source
        .load(playbook)
        .map_err(|error| StepFailure::permanent(error.to_string()))?;
    Ok(run_loaded_playbook(
        &playbook,
        cluster,
        hooks,
        bindings,
        password_verifier,
        context,
    )
    .await)
}

/// Run a loaded playbook on `cluster`.
pub async fn run_loaded_playbook(
    playbook: &Playbook,
    cluster: &ClusterConfig,
    hooks: &AgentHooks<'_>,
    bindings: &Bindings,
    password_verifier: Option<(&str, &str)>,
    context: RunContext<'_>,
) -> PlaybookOutcome {
    let started = Instant::now();
    let mut executor = ClusterExecutor::new(cluster, context.run_tag, hooks);
    if let Some((role, verifier)) = password_verifier {
        executor = executor.with_password_verifier(role, verifier);
    }
    let result = run_playbook(
        &executor,
        playbook,
        bindings,
        context.resume,
        context.observer,
        context.cancel,
    )
    .await;
    PlaybookOutcome {
        result,
        outputs: executor.into_outputs(),
        duration: started.elapsed(),
    }
}

/// The names a run for `tenant` binds outside a job: the tenant, its database and role (the
/// database's owner, or the tenant's name when it has no database), a scratch and a shadow
/// database for this run.
pub async fn standard_bindings(
    config: &Config,
    tenant: &TenantConfig,
    run_tag: &str,
) -> Result<Bindings, StepFailure> {
    let cluster = config
        .cluster(&tenant.cluster)
        .map_err(|error| StepFailure::permanent(error.to_string()))?;
    let role = databases::database_owner(cluster, &tenant.database)
        .await
        .map_err(|error| StepFailure::transient(error.to_string()))?
        .unwrap_or_else(|| tenant.name.to_string());
    Ok(Bindings::from([
        (Variable::Tenant, tenant.name.to_string()),
        (Variable::Database, tenant.database.clone()),
        (Variable::Role, role),
        (
            Variable::Scratch,
            scratch_database_name(run_tag, &tenant.name),
        ),
        (Variable::Shadow, shadow_database_name(run_tag)),
        (Variable::Run, run_tag.to_owned()),
    ]))
}

/// Run `playbook` for `tenant` on its cluster from the command line; a `restore_backup`
/// step restores the tenant's newest backup.
pub async fn run_for_tenant(
    config: &Config,
    regions: &Regions,
    playbook: &Playbook,
    tenant: &TenantConfig,
    bindings: &Bindings,
    context: RunContext<'_>,
) -> Result<RunSummary, String> {
    let cluster = config
        .cluster(&tenant.cluster)
        .map_err(|error| error.to_string())?;
    let restores = playbook.steps.iter().any(|planned| {
        matches!(
            planned.step,
            lifeboat_provisioner::playbook::Step::RestoreBackup { .. }
        )
    });
    let backup = if restores {
        let resolved = restore::resolve_backup(
            regions,
            config.min_regions,
            &tenant.name,
            restore::BackupSelector::Latest,
        )
        .await
        .map_err(|error| error.to_string())?;
        Some(resolved.backup_id)
    } else {
        None
    };
    let mut hooks = AgentHooks::new(
        config,
        regions,
        &tenant.name,
        &tenant.cluster,
        cluster,
        context.cancel,
    )
    .with_tenant_keys(context.tenant_keys);
    if let Some(backup_id) = backup {
        hooks = hooks.restoring(backup_id, None);
    }
    run_loaded_playbook(playbook, cluster, &hooks, bindings, None, context)
        .await
        .result
        .map_err(|failure| failure.to_string())
}

fn failed(failure: &StepFailure) -> JobOutcome {
    JobOutcome::Failed {
        error: failure.message.clone(),
        retryable: matches!(
            failure.kind,
            FailureKind::Transient | FailureKind::Cancelled
        ),
    }
}

fn run_failed(failure: &RunFailure) -> JobOutcome {
    JobOutcome::Failed {
        error: failure.to_string(),
        // Undo that failed leaves something to clear: the next attempt resumes and does.
        retryable: !failure.undo_errors.is_empty()
            || matches!(
                failure.failure.kind,
                FailureKind::Transient | FailureKind::Cancelled
            ),
    }
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// Run a claimed playbook job (restore-live, rollback, restore-copy, drop-database).
pub async fn run_playbook_job(
    config: &Config,
    regions: &Regions,
    job: &ClaimedJob,
    observer: &dyn StepObserver,
    cancel: &CancellationToken,
) -> JobOutcome {
    let run_tag = format!("job-{}", job.id);
    let context = RunContext {
        run_tag: &run_tag,
        resume: job.attempt > 1,
        observer,
        cancel,
        tenant_keys: job.tenant_keys.as_ref(),
    };
    match run_job_work(config, regions, &job.work, job.backup_id, context).await {
        Ok(outcome) => outcome,
        Err(failure) => failed(&failure),
    }
}

async fn run_job_work(
    config: &Config,
    regions: &Regions,
    work: &JobWork,
    new_backup_id: Option<BackupId>,
    context: RunContext<'_>,
) -> Result<JobOutcome, StepFailure> {
    let permanent = |error: &dyn std::fmt::Display| StepFailure::permanent(error.to_string());
    match work {
        JobWork::RestoreLive {
            tenant,
            cluster,
            database,
            backup_id,
            sha256,
            previous_database,
        } => {
            let swap = LiveSwap {
                playbook: names::RESTORE_LIVE,
                tenant,
                cluster,
                database,
                incoming: &shadow_database_name(context.run_tag),
                previous: previous_database,
                backup: Some((*backup_id, sha256.as_deref())),
            };
            swap_into_live(config, regions, &swap, new_backup_id, context).await
        }
        JobWork::Rollback {
            tenant,
            cluster,
            database,
            restore_database,
            previous_database,
        } => {
            let swap = LiveSwap {
                playbook: names::RESTORE_ROLLBACK,
                tenant,
                cluster,
                database,
                incoming: restore_database,
                previous: previous_database,
                backup: None,
            };
            swap_into_live(config, regions, &swap, new_backup_id, context).await
        }
        JobWork::RestoreCopy {
            tenant,
            cluster,
            backup_id,
            sha256,
            into_database,
            role,
            role_password_verifier,
        } => {
            let cluster_config = config.cluster(cluster).map_err(|error| permanent(&error))?;
            let bindings = Bindings::from([
                (Variable::Tenant, tenant.to_string()),
                (Variable::Copy, into_database.clone()),
                (Variable::CopyRole, role.clone()),
                (Variable::Run, context.run_tag.to_owned()),
            ]);
            let hooks = AgentHooks::new(
                config,
                regions,
                tenant,
                cluster,
                cluster_config,
                context.cancel,
            )
            .with_tenant_keys(context.tenant_keys)
            .restoring(*backup_id, sha256.as_deref())
            .backing_up_as(new_backup_id);
            let outcome = run_named_playbook(
                config,
                names::RESTORE_COPY,
                cluster_config,
                &hooks,
                &bindings,
                Some((role, role_password_verifier)),
                context,
            )
            .await?;
            Ok(restore_outcome(outcome, Some(*backup_id), into_database))
        }
        JobWork::DropDatabase {
            cluster,
            database,
            role,
            ..
        } => {
            let cluster_config = config.cluster(cluster).map_err(|error| permanent(&error))?;
            // A database that is not one lifeboat kept stays refused: no retry.
            drop_kept_database(cluster_config, database, role.as_deref())
                .await
                .map_err(|error| StepFailure::from(&error))?;
            Ok(JobOutcome::Succeeded {
                result: JobResult::DropDatabase {
                    database: database.clone(),
                },
            })
        }
        other => Err(StepFailure::permanent(format!(
            "a {} job is not a playbook job",
            other.kind()
        ))),
    }
}

/// A playbook that swaps a database into the tenant's live name: restore-live (a shadow
/// restored from `backup`) or restore-rollback (the kept previous database).
struct LiveSwap<'a> {
    playbook: &'a str,
    tenant: &'a TenantName,
    cluster: &'a ClusterName,
    database: &'a str,
    incoming: &'a str,
    previous: &'a str,
    backup: Option<(BackupId, Option<&'a str>)>,
}

/// Run `swap`'s playbook on the tenant's cluster; its objects go to the live database's
/// owner.
async fn swap_into_live(
    config: &Config,
    regions: &Regions,
    swap: &LiveSwap<'_>,
    new_backup_id: Option<BackupId>,
    context: RunContext<'_>,
) -> Result<JobOutcome, StepFailure> {
    let cluster_config = config
        .cluster(swap.cluster)
        .map_err(|error| StepFailure::permanent(error.to_string()))?;
    let role = live_database_owner(cluster_config, swap.database).await?;
    let bindings = Bindings::from([
        (Variable::Tenant, swap.tenant.to_string()),
        (Variable::Database, swap.database.to_owned()),
        (Variable::Role, role),
        (Variable::Shadow, swap.incoming.to_owned()),
        (Variable::Previous, swap.previous.to_owned()),
        (Variable::Run, context.run_tag.to_owned()),
    ]);
    let mut hooks = AgentHooks::new(
        config,
        regions,
        swap.tenant,
        swap.cluster,
        cluster_config,
        context.cancel,
    )
    .with_tenant_keys(context.tenant_keys)
    .backing_up_as(new_backup_id);
    if let Some((backup_id, catalog_sha256)) = swap.backup {
        hooks = hooks.restoring(backup_id, catalog_sha256);
    }
    let outcome = run_named_playbook(
        config,
        swap.playbook,
        cluster_config,
        &hooks,
        &bindings,
        None,
        context,
    )
    .await?;
    Ok(restore_outcome(
        outcome,
        swap.backup.map(|(backup_id, _)| backup_id),
        swap.database,
    ))
}

/// The role that owns the tenant's live database: the restored objects go to it.
async fn live_database_owner(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<String, StepFailure> {
    match databases::database_owner(cluster, database).await {
        Ok(Some(owner)) => Ok(owner),
        Ok(None) => Err(StepFailure::permanent(format!(
            "the tenant's database {database:?} does not exist on cluster {}",
            cluster.name
        ))),
        Err(error) => Err(StepFailure::transient(error.to_string())),
    }
}

fn restore_outcome(
    outcome: PlaybookOutcome,
    backup_id: Option<BackupId>,
    database: &str,
) -> JobOutcome {
    match outcome.result {
        Ok(summary) => JobOutcome::Succeeded {
            result: JobResult::Restore(RestoreResult {
                backup_id,
                database: database.to_owned(),
                previous_database: outcome.outputs.previous_database,
                safety_backup: outcome.outputs.safety_backup,
                offline_ms: outcome.outputs.offline.map(millis),
                steps: summary.steps,
                duration_ms: millis(outcome.duration),
            }),
        },
        Err(failure) => run_failed(&failure),
    }
}

/// Drop a database lifeboat kept (a previous database after its grace period, an expired
/// copy), and the copy's role. Refuses a database that does not look like one lifeboat
/// keeps (connections allowed and no run tag): the controller's word alone never drops a
/// live database.
pub async fn drop_kept_database(
    cluster: &ClusterConfig,
    database: &str,
    role: Option<&str>,
) -> Result<(), provisioner::ProvisionError> {
    if provisioner::database_exists(cluster, database).await? {
        let comment = databases::database_comment(cluster, database).await?;
        let tagged = comment
            .as_deref()
            .is_some_and(|comment| comment.starts_with(databases::RUN_COMMENT_PREFIX));
        let blocked = !databases::allows_connections(cluster, database).await?;
        if !tagged && !blocked {
            return Err(provisioner::ProvisionError::NotKept {
                cluster: cluster.name.to_string(),
                database: database.to_owned(),
            });
        }
        provisioner::drop_database(cluster, database).await?;
    }
    if let Some(role) = role {
        let comment = roles::comment_of_role(cluster, role).await?;
        if comment
            .as_deref()
            .is_some_and(|comment| comment.starts_with(databases::RUN_COMMENT_PREFIX))
        {
            roles::drop_role(cluster, role).await?;
        }
    }
    Ok(())
}

/// A drill that ran to its end, verified or not, as it is recorded in the catalog.
#[derive(Debug, Clone)]
pub struct DrillRun {
    pub tenant: TenantName,
    /// What is recorded: the job's report and `lifeboat drill` alike.
    pub result: lifeboat_core::api::DrillResult,
    /// Where it was read from and how much, for printing; `None` when it did not restore.
    pub restored: Option<RestoredBackup>,
}

/// A drill that could not run for reasons that say nothing about the backup (this agent,
/// the cluster, a region, a cancellation): nothing is recorded; the job is tried again
/// unless [`DrillRetry::Never`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("the drill could not run: {0}")]
pub struct DrillNotRun(pub String, pub DrillRetry);

/// Whether a drill that could not run is worth another attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrillRetry {
    /// This agent, the cluster or a region, now.
    Later,
    /// Not on this cluster: a dump from a newer PostgreSQL major, a playbook that does not
    /// check, a configuration without the cluster.
    Never,
}

impl DrillNotRun {
    fn from_failure(failure: &StepFailure, message: String) -> DrillNotRun {
        let retry = match failure.kind {
            FailureKind::Permanent => DrillRetry::Never,
            FailureKind::Transient | FailureKind::Cancelled | FailureKind::Backup => {
                DrillRetry::Later
            }
        };
        DrillNotRun(message, retry)
    }
}

/// The drill's verdict from its run. A backup that does not restore or verify failed; so
/// did a drill that left its scratch database behind (it holds a decrypted copy of the
/// tenant's data), whatever it verified. Anything else says nothing about the backup.
pub fn drill_outcome(
    result: &Result<RunSummary, RunFailure>,
    verified: Option<provisioner::VerifiedCounts>,
) -> Result<lifeboat_core::api::DrillOutcome, DrillNotRun> {
    use lifeboat_core::api::DrillOutcome;
    match result {
        Ok(_) => {
            let counts = verified.ok_or_else(|| {
                DrillNotRun(
                    "the drill playbook has no verify step".to_owned(),
                    DrillRetry::Never,
                )
            })?;
            Ok(DrillOutcome::Verified {
                tables_verified: counts.tables as u64,
                rows_verified: counts.rows,
            })
        }
        Err(failure) if !failure.undo_errors.is_empty() => Ok(DrillOutcome::Failed {
            error: format!("{failure}; drop what is left by hand, it holds the tenant's data"),
        }),
        Err(failure) if failure.failure.kind == FailureKind::Backup => Ok(DrillOutcome::Failed {
            error: failure.failure.message.clone(),
        }),
        Err(failure) => Err(DrillNotRun::from_failure(
            &failure.failure,
            failure.to_string(),
        )),
    }
}

/// Drill `backup_id` of `tenant` through the `drill-tenant` playbook on `cluster` (the
/// tenant's own, or a drill cluster): restore into a scratch database owned by the tenant's
/// role, verify it like a live restore, drop it. The one drill path: drill jobs and
/// `lifeboat drill` both run and judge a drill here.
pub async fn drill(
    config: &Config,
    regions: &Regions,
    tenant: &TenantName,
    cluster: &ClusterName,
    backup_id: BackupId,
    catalog_sha256: Option<&str>,
    context: RunContext<'_>,
) -> Result<DrillRun, DrillNotRun> {
    let started_at = chrono::Utc::now();
    let cluster_config = config
        .cluster(cluster)
        .map_err(|error| DrillNotRun(error.to_string(), DrillRetry::Never))?;
    let scratch_database = scratch_database_name(context.run_tag, tenant);
    let bindings = Bindings::from([
        (Variable::Tenant, tenant.to_string()),
        (Variable::Role, tenant.to_string()),
        (Variable::Scratch, scratch_database.clone()),
        (Variable::Run, context.run_tag.to_owned()),
    ]);
    let hooks = AgentHooks::new(
        config,
        regions,
        tenant,
        cluster,
        cluster_config,
        context.cancel,
    )
    .with_tenant_keys(context.tenant_keys)
    .restoring(backup_id, catalog_sha256);
    let outcome = run_named_playbook(
        config,
        names::DRILL_TENANT,
        cluster_config,
        &hooks,
        &bindings,
        None,
        context,
    )
    .await
    .map_err(|failure| DrillNotRun::from_failure(&failure, failure.message.clone()))?;
    let verdict = drill_outcome(&outcome.result, outcome.outputs.verified)?;
    let steps = match &outcome.result {
        Ok(summary) => summary.steps.clone(),
        Err(failure) => failure.steps.clone(),
    };
    let restored = outcome.outputs.restored;
    Ok(DrillRun {
        tenant: tenant.clone(),
        result: lifeboat_core::api::DrillResult {
            backup_id,
            region: restored.as_ref().map(|restored| restored.region.clone()),
            scratch_database,
            started_at,
            finished_at: chrono::Utc::now(),
            outcome: verdict,
            steps,
        },
        restored,
    })
}

/// A provisioned tenant: its role and the password generated for it, shown once.
pub struct Provisioned {
    pub role: String,
    pub password: secrecy::SecretString,
    pub steps: Vec<lifeboat_core::api::StepReport>,
}

impl std::fmt::Debug for Provisioned {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Provisioned")
            .field("role", &self.role)
            .field("password", &"[redacted]")
            .field("steps", &self.steps)
            .finish()
    }
}

/// Run `provision-tenant` for `tenant`: a role named after the tenant (LOGIN, password
/// generated here and returned once) owning `database`, which only it may connect to.
pub async fn provision_tenant(
    config: &Config,
    regions: &Regions,
    tenant: &TenantName,
    cluster: &ClusterName,
    database: &str,
    context: RunContext<'_>,
) -> Result<Provisioned, String> {
    let cluster_config = config.cluster(cluster).map_err(|error| error.to_string())?;
    let role = tenant.to_string();
    let bindings = Bindings::from([
        (Variable::Tenant, tenant.to_string()),
        (Variable::Database, database.to_owned()),
        (Variable::Role, role.clone()),
        (Variable::Run, context.run_tag.to_owned()),
    ]);
    let hooks = AgentHooks::new(
        config,
        regions,
        tenant,
        cluster,
        cluster_config,
        context.cancel,
    )
    .with_tenant_keys(context.tenant_keys);
    let outcome = run_named_playbook(
        config,
        names::PROVISION_TENANT,
        cluster_config,
        &hooks,
        &bindings,
        None,
        context,
    )
    .await
    .map_err(|failure| failure.message)?;
    let summary = outcome.result.map_err(|failure| failure.to_string())?;
    let password = outcome
        .outputs
        .passwords
        .into_iter()
        .find(|(name, _)| *name == role)
        .map(|(_, password)| password)
        .ok_or_else(|| {
            format!("the provision playbook made no login role {role:?}; it needs a create_role step with login = true")
        })?;
    Ok(Provisioned {
        role,
        password,
        steps: summary.steps,
    })
}

/// Run `deprovision-tenant` for `tenant`: a final backup (kind `pre-destroy`), then its
/// database and role dropped. Returns the final backup for the catalog whenever one was
/// taken, also when a later step failed, with the run's steps or its failure.
pub async fn deprovision_tenant(
    config: &Config,
    regions: &Regions,
    tenant: &TenantName,
    cluster: &ClusterName,
    database: &str,
    context: RunContext<'_>,
) -> (
    Option<SafetyBackup>,
    Result<Vec<lifeboat_core::api::StepReport>, String>,
) {
    match deprovision_run(config, regions, tenant, cluster, database, context).await {
        Ok(outcome) => {
            let steps = outcome
                .result
                .map(|summary| summary.steps)
                .map_err(|failure| failure.to_string());
            (outcome.outputs.safety_backup, steps)
        }
        Err(message) => (None, Err(message)),
    }
}

async fn deprovision_run(
    config: &Config,
    regions: &Regions,
    tenant: &TenantName,
    cluster: &ClusterName,
    database: &str,
    context: RunContext<'_>,
) -> Result<PlaybookOutcome, String> {
    let cluster_config = config.cluster(cluster).map_err(|error| error.to_string())?;
    let role = live_database_owner(cluster_config, database)
        .await
        .map_err(|failure| failure.message)?;
    let bindings = Bindings::from([
        (Variable::Tenant, tenant.to_string()),
        (Variable::Database, database.to_owned()),
        (Variable::Role, role),
        (Variable::Run, context.run_tag.to_owned()),
    ]);
    let hooks = AgentHooks::new(
        config,
        regions,
        tenant,
        cluster,
        cluster_config,
        context.cancel,
    )
    .with_tenant_keys(context.tenant_keys);
    run_named_playbook(
        config,
        names::DEPROVISION_TENANT,
        cluster_config,
        &hooks,
        &bindings,
        None,
        context,
    )
    .await
    .map_err(|failure| failure.message)
}

/// Prefixes of the databases a crashed run may leave behind, holding decrypted data.
pub const LEFTOVER_PREFIXES: [&str; 2] = ["lifeboat_drill_", "lifeboat_shadow_"];

/// A leftover the sweep dropped, or could not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SweptDatabase {
    pub cluster: ClusterName,
    pub database: String,
    /// The run that made it (its comment).
    pub made_by: String,
    pub age: std::time::Duration,
    /// `Err` when it could not be dropped.
    pub dropped: Result<(), String>,
}

/// Remove what crashed runs left: staged dumps in the staging directory, and on `clusters`
/// drill scratch and live-restore shadow databases that carry a lifeboat run tag; both
/// only when older than `older_than` (the longest a drill or restore job may run: no
/// attempt can still be using them). A database without
/// the tag is never touched, whatever its name; one whose age cannot be read (the cluster
/// user may not call `pg_stat_file`) is left and named in the log.
pub async fn sweep_leftovers(
    config: &Config,
    clusters: &[ClusterName],
    older_than: std::time::Duration,
) -> Vec<SweptDatabase> {
    let now = chrono::Utc::now();
    if let Some(staging) = Staging::configured(&config.restore) {
        match restore::remove_staging_leftovers(&staging.dir, older_than) {
            Ok(removed) => {
                for file in removed {
                    tracing::warn!(file = %file.display(), "removed a staged dump left by a crashed restore");
                }
            }
            Err(error) => {
                tracing::warn!(dir = %staging.dir.display(), %error, "cannot look for staged dumps left by crashed restores");
            }
        }
    }
    let mut swept = Vec::new();
    for cluster_name in clusters {
        let Ok(cluster) = config.cluster(cluster_name) else {
            continue;
        };
        for prefix in LEFTOVER_PREFIXES {
            let found = match databases::list_databases_with_prefix(cluster, prefix).await {
                Ok(found) => found,
                Err(error) => {
                    tracing::warn!(cluster = %cluster_name, %error, "cannot look for leftovers of crashed runs");
                    continue;
                }
            };
            for (database, comment) in found {
                let Some(made_by) = comment
                    .as_deref()
                    .filter(|comment| comment.starts_with(databases::RUN_COMMENT_PREFIX))
                else {
                    continue;
                };
                let created = match databases::created_at(cluster, &database).await {
                    Ok(Some(created)) => created,
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(cluster = %cluster_name, database, %error, "a leftover of a crashed run may be here; cannot tell its age, so it is left: drop it by hand if no job uses it");
                        continue;
                    }
                };
                let age = (now - created).to_std().unwrap_or_default();
                if age < older_than {
                    continue;
                }
                let dropped = provisioner::drop_database(cluster, &database)
                    .await
                    .map_err(|error| error.to_string());
                match &dropped {
                    Ok(()) => {
                        tracing::warn!(cluster = %cluster_name, database, made_by, age_hours = age.as_secs() / 3600, "dropped the leftover of a crashed run (it held decrypted tenant data)")
                    }
                    Err(error) => {
                        tracing::error!(cluster = %cluster_name, database, made_by, %error, "cannot drop the leftover of a crashed run; it holds decrypted tenant data")
                    }
                }
                swept.push(SweptDatabase {
                    cluster: cluster_name.clone(),
                    database,
                    made_by: made_by.to_owned(),
                    age,
                    dropped,
                });
            }
        }
    }
    swept
}

#[cfg(test)]
mod tests {
    use lifeboat_core::api::{DrillOutcome, StepReport, StepState};
    use lifeboat_provisioner::playbook::StepName;

    use super::*;

    fn failure(kind: FailureKind, undo_errors: Vec<String>) -> RunFailure {
        RunFailure {
            playbook: "drill-tenant".to_owned(),
            failed_step: Some((5, StepName::DropDatabase)),
            failure: StepFailure {
                message: "could not drop database: connection refused".to_owned(),
                kind,
            },
            steps: vec![StepReport {
                number: 5,
                step: "drop_database".to_owned(),
                state: StepState::Failed,
                duration_ms: Some(3),
                detail: None,
            }],
            undo_errors,
        }
    }

    #[test]
    fn a_scratch_database_left_behind_fails_the_drill() {
        let verified = provisioner::VerifiedCounts {
            tables: 3,
            rows: 42,
        };
        let summary = RunSummary {
            steps: Vec::new(),
            duration: std::time::Duration::from_secs(1),
            resumed_after_commit: false,
        };
        assert_eq!(
            drill_outcome(&Ok(summary), Some(verified)).expect("a verdict"),
            DrillOutcome::Verified {
                tables_verified: 3,
                rows_verified: 42
            }
        );
        // The drop failed and so did its undo: the scratch database stays, with the data.
        let left_behind = drill_outcome(
            &Err(failure(
                FailureKind::Transient,
                vec!["undo of step 2 (create_database): connection refused".to_owned()],
            )),
            Some(verified),
        )
        .expect("a verdict");
        let DrillOutcome::Failed { error } = left_behind else {
            panic!("a drill whose scratch database stayed was recorded as {left_behind:?}");
        };
        assert!(error.contains("by hand"), "{error}");
        // The drop failed but its undo dropped it: the drill did not run to a verdict.
        assert!(
            drill_outcome(
                &Err(failure(FailureKind::Transient, Vec::new())),
                Some(verified)
            )
            .is_err()
        );
        // A backup that does not restore is the drill's verdict.
        assert!(matches!(
            drill_outcome(&Err(failure(FailureKind::Backup, Vec::new())), None),
            Ok(DrillOutcome::Failed { .. })
        ));
    }
}
