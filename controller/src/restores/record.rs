//! An agent's `restore` and `drop-database` results, applied in the report's transaction
//! (`reports::apply_report` locks the job and calls these), so the catalog changes with the
//! job's state or not at all.
//!
//! A live restore's result must carry its safety backup: it is recorded like an agent's
//! backup report (same checks: its copies were confirmed in the regions before the
//! transaction, the manifest is the tenant's, of kind `pre-restore`, under an id handed to an
//! attempt of this job). The database the swap left behind is kept until now +
//! `keep_for` (from the request); a rollback's revived database leaves `kept_databases`
//! and the one it replaced is kept in turn; a copy is kept until it expires, or for good.

use lifeboat_core::api::{CopyState, JobWork, RestoreResult, SafetyBackup};
use lifeboat_core::ids::RegionName;
use lifeboat_core::manifest::BackupKind;
use serde_json::json;
use tokio_postgres::GenericClient;

use super::RestoreMode;
use crate::audit::{self, Actor};
use crate::backups;
use crate::catalog::query_error;
use crate::job_summary::{self, DropDatabaseSummary, RestoreSummary};
use crate::queue::{QueueError, RunningJob};

fn invalid(id: i64, message: impl Into<String>) -> QueueError {
    QueueError::InvalidReport {
        id,
        message: message.into(),
    }
}

/// What the job asked for, by mode.
struct Asked<'a> {
    mode: RestoreMode,
    tenant: &'a lifeboat_core::ids::TenantName,
    cluster: &'a lifeboat_core::ids::ClusterName,
    database: &'a str,
    backup_id: Option<lifeboat_core::ids::BackupId>,
    previous_database: Option<&'a str>,
    /// Rollback: the kept database made live again.
    revived: Option<&'a str>,
    /// Copy: its role.
    role: Option<&'a str>,
}

fn asked(work: &JobWork) -> Option<Asked<'_>> {
    Some(match work {
        JobWork::RestoreLive {
            tenant,
            cluster,
            database,
            backup_id,
            previous_database,
            ..
        } => Asked {
            mode: RestoreMode::Live,
            tenant,
            cluster,
            database,
            backup_id: Some(*backup_id),
            previous_database: Some(previous_database),
            revived: None,
            role: None,
        },
        JobWork::Rollback {
            tenant,
            cluster,
            database,
            restore_database,
            previous_database,
        } => Asked {
            mode: RestoreMode::Rollback,
            tenant,
            cluster,
            database,
            backup_id: None,
            previous_database: Some(previous_database),
            revived: Some(restore_database),
            role: None,
        },
        JobWork::RestoreCopy {
            tenant,
            cluster,
            backup_id,
            into_database,
            role,
            ..
        } => Asked {
            mode: RestoreMode::Copy,
            tenant,
            cluster,
            database: into_database,
            backup_id: Some(*backup_id),
            previous_database: None,
            revived: None,
            role: Some(role),
        },
        _ => return None,
    })
}

/// The result says what the job asked for: same backup, database and kept name, and a
/// safety backup exactly when it is a live restore, of this tenant, cluster and database,
/// of kind `pre-restore`, under an id handed to one of the job's attempts.
fn check_result(
    id: i64,
    running: &RunningJob,
    asked: &Asked<'_>,
    result: &RestoreResult,
) -> Result<(), QueueError> {
    if result.backup_id != asked.backup_id
        || result.database != asked.database
        || result.previous_database.as_deref() != asked.previous_database
    {
        return Err(invalid(
            id,
            format!(
                "the job ({} restore) asked for backup {:?} into {:?} keeping {:?}; the result reports backup {:?} into {:?} keeping {:?}",
                asked.mode,
                asked.backup_id,
                asked.database,
                asked.previous_database,
                result.backup_id,
                result.database,
                result.previous_database
            ),
        ));
    }
    match (&result.safety_backup, asked.mode) {
        (None, RestoreMode::Live) => Err(invalid(
            id,
            "a live restore's result must carry the safety backup it took first",
        )),
        (Some(_), RestoreMode::Rollback | RestoreMode::Copy) => Err(invalid(
            id,
            format!("a {} takes no safety backup", asked.mode),
        )),
        (None, _) => Ok(()),
        (Some(SafetyBackup { manifest, .. }), RestoreMode::Live) => {
            if &manifest.tenant != asked.tenant
                || &manifest.source.cluster != asked.cluster
                || manifest.source.database != asked.database
                || manifest.kind != BackupKind::PreRestore
            {
                return Err(invalid(
                    id,
                    format!(
                        "the safety backup is a {} backup of {} on {} ({:?}), not a pre-restore backup of this job's {} on {} ({:?})",
                        manifest.kind.as_str(),
                        manifest.tenant,
                        manifest.source.cluster,
                        manifest.source.database,
                        asked.tenant,
                        asked.cluster,
                        asked.database
                    ),
                ));
            }
            if !running.attempt_backup_ids.contains(&manifest.backup_id) {
                return Err(invalid(
                    id,
                    format!(
                        "safety backup {} was not handed to any attempt of this job",
                        manifest.backup_id
                    ),
                ));
            }
            Ok(())
        }
    }
}

/// Apply a `restore` job's result; returns what `jobs.result` keeps. `safety_copies` are
/// the safety backup's copies, confirmed in the regions before the transaction.
pub(crate) async fn apply_restore_result<C: GenericClient>(
    client: &C,
    agent: &Actor,
    id: i64,
    running: &RunningJob,
    result: &RestoreResult,
    safety_copies: Option<Vec<(RegionName, CopyState)>>,
) -> Result<serde_json::Value, QueueError> {
    let asked = asked(&running.work)
        .ok_or_else(|| invalid(id, "the job is not a restore, rollback or copy"))?;
    check_result(id, running, &asked, result)?;
    if let Some(safety) = &result.safety_backup {
        let copies = safety_copies.ok_or_else(|| {
            invalid(
                id,
                "the safety backup's copies were not checked before recording",
            )
        })?;
        backups::record_backup(client, &safety.manifest, &copies).await?;
    }
    let tenant = asked.tenant.as_str();
    let cluster = asked.cluster.as_str();
    // What the job left behind, kept for the request's `keep_for` (NULL: a copy kept for good).
    let (kept_name, why) = match asked.mode {
        RestoreMode::Live | RestoreMode::Rollback => (asked.previous_database, "previous"),
        RestoreMode::Copy => (Some(asked.database), "copy"),
    };
    if let Some(revived) = asked.revived {
        client
            .execute(
                "UPDATE kept_databases SET revived_at = now(), revived_by_job = $3
                 WHERE cluster = $1 AND database_name = $2
                   AND dropped_at IS NULL AND revived_at IS NULL",
                &[&cluster, &revived, &id],
            )
            .await
            .map_err(query_error("mark the revived database no longer kept"))?;
    }
    let keep_until: Option<chrono::DateTime<chrono::Utc>> = match kept_name {
        None => None,
        Some(name) => client
            .query_one(
                "INSERT INTO kept_databases (tenant, cluster, database_name, why, role_name,
                                             from_job, keep_until)
                 SELECT $1, $2, $3, $4, $5, $6, now() + r.keep_for
                 FROM restores r WHERE r.job_id = $6
                 RETURNING keep_until",
                &[&tenant, &cluster, &name, &why, &asked.role, &id],
            )
            .await
            .map_err(query_error("keep the database the restore left"))?
            .get(0),
    };
    let offline_ms = result
        .offline_ms
        .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX));
    let safety_backup_id = result
        .safety_backup
        .as_ref()
        .map(|safety| safety.manifest.backup_id);
    client
        .execute(
            "UPDATE restores SET safety_backup_id = $2, offline_ms = $3 WHERE job_id = $1",
            &[&id, &safety_backup_id.map(|id| id.as_uuid()), &offline_ms],
        )
        .await
        .map_err(query_error("record the restore's outcome"))?;
    audit::record(
        client,
        agent,
        &format!("restore.{}", asked.mode),
        Some(tenant),
        None,
        json!({
            "job": id,
            "backup": result.backup_id,
            "database": result.database,
            "previous_database": result.previous_database,
            "revived_database": asked.revived,
            "safety_backup": safety_backup_id,
            "offline_ms": result.offline_ms,
            "kept_until": keep_until,
        }),
    )
    .await?;
    Ok(job_summary::to_stored(&RestoreSummary {
        mode: asked.mode,
        backup_id: result.backup_id,
        database: result.database.clone(),
        previous_database: result.previous_database.clone(),
        safety_backup_id,
        offline_ms: result.offline_ms,
        kept_until: keep_until,
        steps: result.steps.clone(),
        duration_ms: result.duration_ms,
    }))
}

/// Apply a `drop-database` job's result: the kept database is gone.
pub(crate) async fn apply_drop_result<C: GenericClient>(
    client: &C,
    agent: &Actor,
    id: i64,
    work: &JobWork,
    dropped: &str,
) -> Result<serde_json::Value, QueueError> {
    let JobWork::DropDatabase {
        tenant,
        cluster,
        database,
        role,
    } = work
    else {
        return Err(invalid(id, "the job is not a drop-database job"));
    };
    if dropped != database {
        return Err(invalid(
            id,
            format!("the job drops {database:?}, the result says {dropped:?}"),
        ));
    }
    client
        .execute(
            "UPDATE kept_databases SET dropped_at = now()
             WHERE cluster = $1 AND database_name = $2 AND dropped_at IS NULL AND revived_at IS NULL",
            &[&cluster.as_str(), &database],
        )
        .await
        .map_err(query_error("mark the kept database dropped"))?;
    audit::record(
        client,
        agent,
        "kept-database.drop",
        Some(tenant.as_str()),
        None,
        json!({ "job": id, "cluster": cluster, "database": database, "role": role }),
    )
    .await?;
    Ok(job_summary::to_stored(&DropDatabaseSummary {
        database: database.clone(),
        role: role.clone(),
    }))
}
