//! What each step does on a PostgreSQL cluster, what it checks first, and how it is undone.
//!
//! Everything a run makes carries the run's tag (`COMMENT ... IS 'lifeboat run job-42'`):
//! that is how an undo, or the next attempt of the same job, tells its own leftovers from a
//! database or role that was there before, which it never touches. Taking and restoring
//! backups needs regions and keys, which the provisioner does not know: the agent supplies
//! them as [`BackupHooks`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use lifeboat_core::api::SafetyBackup;
use lifeboat_core::config::ClusterConfig;
use lifeboat_core::database_facts::DatabaseFacts;
use lifeboat_core::ids::{BackupId, RegionName};
use lifeboat_core::manifest::{BackupKind, Manifest};
use lifeboat_core::postgres;
use lifeboat_core::restore::RestoreMethod;
use secrecy::SecretString;

use super::run::{Executor, StepFailure};
use super::steps::{Action, Step};
use crate::databases;
use crate::roles::{self, Made};
use crate::swap::{self, SwapRequest, SwapState};
use crate::{ProvisionError, VerifiedCounts};

/// What the agent does for the steps that need regions and keys.
pub trait BackupHooks: Send + Sync {
    /// Back `database` up to every region, as a backup of the run's tenant.
    fn take_backup(
        &self,
        database: &str,
        kind: BackupKind,
    ) -> impl Future<Output = Result<SafetyBackup, StepFailure>> + Send;

    /// The manifest of the backup the run restores (for the checks made before anything).
    fn backup_manifest(&self) -> impl Future<Output = Result<Manifest, StepFailure>> + Send;

    /// Restore the run's backup into the existing, empty `database`, every object owned
    /// by `owner`.
    fn restore_backup(
        &self,
        database: &str,
        owner: &str,
    ) -> impl Future<Output = Result<RestoredBackup, StepFailure>> + Send;
}

/// A backup restored by a `restore_backup` step.
#[derive(Debug, Clone)]
pub struct RestoredBackup {
    pub backup_id: BackupId,
    pub region: RegionName,
    pub manifest: Manifest,
    pub stored_bytes: u64,
    pub dump_bytes: u64,
    /// Streamed, or staged for `pg_restore --jobs`.
    pub method: RestoreMethod,
}

/// What a run produced, for its caller to report.
#[derive(Debug, Default)]
pub struct RunOutputs {
    /// Passwords generated for `create_role … login = true`, to show once.
    pub passwords: Vec<(String, SecretString)>,
    pub safety_backup: Option<SafetyBackup>,
    pub restored: Option<RestoredBackup>,
    pub verified: Option<VerifiedCounts>,
    /// How long the swap kept the tenant offline.
    pub offline: Option<Duration>,
    pub previous_database: Option<String>,
}

/// Carries out steps on one cluster for one run.
#[derive(Debug)]
pub struct ClusterExecutor<'a, H> {
    cluster: &'a ClusterConfig,
    run_tag: String,
    hooks: &'a H,
    rename_patience: Duration,
    /// Roles whose password arrives as a SCRAM verifier (a copy's role: the plain password
    /// was shown to whoever asked); other `login` roles get a generated one.
    password_verifiers: BTreeMap<String, String>,
    outputs: Mutex<RunOutputs>,
}

/// How long a swap keeps trying to rename past sessions that slip in, by default.
pub const DEFAULT_RENAME_PATIENCE: Duration = Duration::from_secs(10);

impl<'a, H: BackupHooks> ClusterExecutor<'a, H> {
    pub fn new(cluster: &'a ClusterConfig, run_tag: &str, hooks: &'a H) -> Self {
        ClusterExecutor {
            cluster,
            run_tag: run_tag.to_owned(),
            hooks,
            rename_patience: DEFAULT_RENAME_PATIENCE,
            password_verifiers: BTreeMap::new(),
            outputs: Mutex::new(RunOutputs::default()),
        }
    }

    pub fn with_password_verifier(mut self, role: &str, verifier: &str) -> Self {
        self.password_verifiers
            .insert(role.to_owned(), verifier.to_owned());
        self
    }

    pub fn with_rename_patience(mut self, patience: Duration) -> Self {
        self.rename_patience = patience;
        self
    }

    /// What the run produced so far.
    pub fn into_outputs(self) -> RunOutputs {
        self.outputs
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn outputs(&self) -> std::sync::MutexGuard<'_, RunOutputs> {
        self.outputs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn made_by_this_run(&self, comment: Option<&str>) -> bool {
        comment == Some(roles::run_comment(&self.run_tag).as_str())
    }

    async fn execute_step(&self, action: &Action) -> Result<Option<String>, ProvisionError> {
        let cluster = self.cluster;
        let tag = &self.run_tag;
        match action {
            Step::CreateRole { role, login } => {
                let verifier = self.password_verifiers.get(role);
                let made = match (login, verifier) {
                    (true, Some(verifier)) => {
                        let made = roles::create_role(cluster, role, None, tag).await?;
                        roles::set_role_password_verifier(cluster, role, verifier).await?;
                        made
                    }
                    (true, None) => {
                        // Generated afresh by every attempt (an adopted role gets it too):
                        // an earlier attempt's was never shown.
                        let password = roles::generate_password();
                        let made = roles::create_role(cluster, role, Some(&password), tag).await?;
                        self.outputs().passwords.push((role.clone(), password));
                        made
                    }
                    (false, _) => roles::create_role(cluster, role, None, tag).await?,
                };
                Ok(Some(match made {
                    Made::Now => format!("role {role:?} created"),
                    Made::EarlierByThisRun => format!("role {role:?} made by an earlier attempt"),
                }))
            }
            Step::EnsureRole { role } => {
                if roles::role_exists(cluster, role).await? {
                    return Ok(Some(format!("role {role:?} exists")));
                }
                roles::create_role(cluster, role, None, tag).await?;
                Ok(Some(format!("role {role:?} created (NOLOGIN)")))
            }
            Step::CreateDatabase { database, owner } => {
                let made = databases::create_database_owned(cluster, database, owner, tag).await?;
                Ok(Some(match made {
                    Made::Now => format!("database {database:?} created"),
                    Made::EarlierByThisRun => {
                        format!("database {database:?} made by an earlier attempt")
                    }
                }))
            }
            Step::IsolateDatabase { database, role } => {
                databases::isolate_database(cluster, database, role).await?;
                Ok(Some(format!("only {role:?} may connect to {database:?}")))
            }
            Step::RunSql {
                database,
                file,
                sql,
            } => {
                let client = postgres::connect(cluster, database).await?;
                client
                    .batch_execute(sql)
                    .await
                    .map_err(|source| ProvisionError::Statement {
                        cluster: cluster.name.to_string(),
                        action: format!("run {} in {database:?}", file.display()),
                        source,
                    })?;
                Ok(Some(format!("ran {}", file.display())))
            }
            Step::BlockConnections { database } => {
                databases::set_allow_connections(cluster, database, false).await?;
                let terminated = swap::end_sessions(cluster, database).await?;
                Ok(Some(format!(
                    "connections to {database:?} blocked, {terminated} session(s) ended"
                )))
            }
            Step::SwapDatabases {
                live,
                incoming,
                previous,
            } => {
                let report = swap::swap_databases(
                    cluster,
                    SwapRequest {
                        live,
                        shadow: incoming,
                        kept: previous,
                        rename_patience: self.rename_patience,
                    },
                )
                .await?;
                self.outputs().offline = Some(report.offline);
                Ok(Some(format!(
                    "{incoming:?} is now {live:?}; offline {} ms, {} session(s) ended",
                    report.offline.as_millis(),
                    report.sessions_terminated
                )))
            }
            Step::KeepPrevious { database } => {
                if !crate::database_exists(cluster, database).await? {
                    return Err(ProvisionError::Missing {
                        cluster: cluster.name.to_string(),
                        what: format!("the previous database {database:?}"),
                    });
                }
                databases::set_allow_connections(cluster, database, false).await?;
                self.outputs().previous_database = Some(database.clone());
                Ok(Some(format!("{database:?} kept, connections blocked")))
            }
            Step::DropDatabase { database } => {
                crate::drop_database(cluster, database).await?;
                Ok(Some(format!("database {database:?} dropped")))
            }
            Step::DropRole {
                role,
                only_if_made_by_this_run,
            } => {
                if *role == cluster.user {
                    return Ok(Some(format!(
                        "role {role:?} is lifeboat's own login on this cluster; kept"
                    )));
                }
                if *only_if_made_by_this_run {
                    let comment = roles::comment_of_role(cluster, role).await?;
                    if !self.made_by_this_run(comment.as_deref()) {
                        return Ok(Some(format!("role {role:?} kept (not made by this run)")));
                    }
                }
                roles::drop_role(cluster, role).await?;
                Ok(Some(format!("role {role:?} dropped")))
            }
            Step::TakeBackup { .. } | Step::RestoreBackup { .. } | Step::Verify { .. } => {
                unreachable_step(action)
            }
        }
    }

    async fn verify(&self, database: &str, owner: &str) -> Result<Option<String>, StepFailure> {
        let manifest = self
            .outputs()
            .restored
            .as_ref()
            .map(|restored| restored.manifest.clone())
            .ok_or_else(|| {
                StepFailure::permanent("verify needs a restore_backup step before it")
            })?;
        let counts = crate::verify_row_counts(self.cluster, database, &manifest.row_counts)
            .await
            .map_err(|error| match error {
                ProvisionError::RowCountMismatch(_) => StepFailure::backup(error.to_string()),
                other => StepFailure::from(&other),
            })?;
        let mut checked = format!("{} tables, {} rows", counts.tables, counts.rows);
        if let Some(expected) = &manifest.database_facts {
            let client = postgres::connect(self.cluster, database)
                .await
                .map_err(|error| StepFailure::transient(error.to_string()))?;
            let restored = DatabaseFacts::capture(&client).await.map_err(|error| {
                StepFailure::transient(format!("read owners and grants of {database:?}: {error}"))
            })?;
            let differences = expected.differences_after_restore(&restored, owner);
            if !differences.is_empty() {
                return Err(StepFailure::backup(format!(
                    "{} difference(s) from the manifest: {}",
                    differences.len(),
                    differences.join("; ")
                )));
            }
            checked.push_str(&format!(
                "; owners, grants, {} extension(s) and {} large object(s) as recorded",
                expected.extensions.len(),
                expected.large_object_owners.values().sum::<u64>()
            ));
        }
        self.outputs().verified = Some(counts);
        Ok(Some(checked))
    }

    async fn undo_step(&self, action: &Action) -> Result<Option<String>, ProvisionError> {
        let cluster = self.cluster;
        match action {
            Step::CreateRole { role, .. } | Step::EnsureRole { role } => {
                let comment = roles::comment_of_role(cluster, role).await?;
                if !self.made_by_this_run(comment.as_deref()) {
                    return Ok(None);
                }
                roles::drop_role(cluster, role).await?;
                Ok(Some(format!("role {role:?} dropped")))
            }
            Step::CreateDatabase { database, .. } => {
                let comment = databases::database_comment(cluster, database).await?;
                if !self.made_by_this_run(comment.as_deref()) {
                    return Ok(None);
                }
                crate::drop_database(cluster, database).await?;
                Ok(Some(format!("database {database:?} dropped")))
            }
            Step::BlockConnections { database } => {
                if !crate::database_exists(cluster, database).await? {
                    return Ok(None);
                }
                databases::set_allow_connections(cluster, database, true).await?;
                Ok(Some(format!("connections to {database:?} allowed again")))
            }
            Step::SwapDatabases {
                live,
                incoming,
                previous,
            } => match swap::swap_state(cluster, live, incoming, previous).await? {
                SwapState::Swapped => {
                    swap::swap_databases(
                        cluster,
                        SwapRequest {
                            live,
                            shadow: previous,
                            kept: incoming,
                            rename_patience: self.rename_patience,
                        },
                    )
                    .await?;
                    // The database swapped back out is this run's again, for the undo of
                    // the step that made it.
                    databases::set_database_comment(
                        cluster,
                        incoming,
                        &roles::run_comment(&self.run_tag),
                    )
                    .await?;
                    Ok(Some(format!(
                        "swapped back: {live:?} is the previous database again"
                    )))
                }
                SwapState::NotSwapped | SwapState::Unexpected(_) => {
                    if crate::database_exists(cluster, live).await? {
                        databases::set_allow_connections(cluster, live, true).await?;
                    }
                    Ok(None)
                }
            },
            Step::IsolateDatabase { .. }
            | Step::TakeBackup { .. }
            | Step::RestoreBackup { .. }
            | Step::Verify { .. }
            | Step::RunSql { .. }
            | Step::KeepPrevious { .. }
            | Step::DropDatabase { .. }
            | Step::DropRole { .. } => Ok(None),
        }
    }
}

fn unreachable_step(action: &Action) -> Result<Option<String>, ProvisionError> {
    Err(ProvisionError::Missing {
        cluster: String::new(),
        what: format!("an executor for step {}", action.name().as_str()),
    })
}

impl From<&ProvisionError> for StepFailure {
    /// Permanent or transient as [`ProvisionError::is_permanent`] says.
    fn from(error: &ProvisionError) -> StepFailure {
        if error.is_permanent() {
            StepFailure::permanent(error.to_string())
        } else {
            StepFailure::transient(error.to_string())
        }
    }
}

impl<H: BackupHooks> Executor for ClusterExecutor<'_, H> {
    async fn preflight(&self, actions: &[Action]) -> Result<(), StepFailure> {
        if !actions
            .iter()
            .any(|action| matches!(action, Step::RestoreBackup { .. }))
        {
            return Ok(());
        }
        let manifest = self.hooks.backup_manifest().await?;
        let cluster_version = databases::server_version_num(self.cluster)
            .await
            .map_err(|error| StepFailure::from(&error))?;
        let cluster_major = cluster_version / 10000;
        let Some(dump_major) = databases::major_of_version_text(&manifest.source.server_version)
        else {
            return Ok(());
        };
        if dump_major > cluster_major {
            return Err(StepFailure::permanent(format!(
                "backup {} was dumped from PostgreSQL {dump_major} ({}); cluster {} runs PostgreSQL {cluster_major} ({cluster_version}), which cannot restore it: restore onto PostgreSQL {dump_major} or newer",
                manifest.backup_id, manifest.source.server_version, self.cluster.name
            )));
        }
        Ok(())
    }

    async fn execute(&self, action: &Action) -> Result<Option<String>, StepFailure> {
        match action {
            Step::TakeBackup { database, kind } => {
                let backup = self.hooks.take_backup(database, *kind).await?;
                let detail = format!(
                    "{} backup {} in {} region(s)",
                    kind.as_str(),
                    backup.manifest.backup_id,
                    backup.regions.iter().filter(|region| region.stored).count()
                );
                self.outputs().safety_backup = Some(backup);
                Ok(Some(detail))
            }
            Step::RestoreBackup { database, owner } => {
                let restored = self.hooks.restore_backup(database, owner).await?;
                let detail = format!(
                    "backup {} from region {}, {} bytes, {}",
                    restored.backup_id, restored.region, restored.dump_bytes, restored.method
                );
                self.outputs().restored = Some(restored);
                Ok(Some(detail))
            }
            Step::Verify { database, owner } => self.verify(database, owner).await,
            other => self
                .execute_step(other)
                .await
                .map_err(|error| StepFailure::from(&error)),
        }
    }

    async fn undo(&self, action: &Action) -> Result<Option<String>, StepFailure> {
        self.undo_step(action)
            .await
            .map_err(|error| StepFailure::transient(error.to_string()))
    }

    async fn committed(&self, action: &Action) -> Result<bool, StepFailure> {
        match action {
            Step::SwapDatabases {
                live,
                incoming,
                previous,
            } => swap::swap_state(self.cluster, live, incoming, previous)
                .await
                .map(|state| state == SwapState::Swapped)
                .map_err(|error| StepFailure::transient(error.to_string())),
            _ => Ok(false),
        }
    }
}
