//! Applying an agent's report: the job's effect on the catalog and its new state, in one
//! transaction, so a report is applied entirely or not at all.

use lifeboat_core::api::{CopyState, JobOutcome, JobReport, JobResult, JobWork, RestoreResult};
use lifeboat_core::backup::RegionResult;
use lifeboat_core::ids::RegionName;
use lifeboat_core::manifest::Manifest;
use lifeboat_core::region::Region;

use crate::audit::Actor;
use crate::backups::{self, ReportedBackupError};
use crate::catalog::{Catalog, CatalogError};
use crate::drills;
use crate::job_summary::{self, BackupSummary, DrillSummary, ReplicateSummary, ScrubSummary};
use crate::queue::{self, QueueError, QueuePolicy};
use crate::{restores, scrub, tenant_keys};

fn invalid(id: i64, message: impl Into<String>) -> QueueError {
    QueueError::InvalidReport {
        id,
        message: message.into(),
    }
}

fn begin_error(source: tokio_postgres::Error) -> QueueError {
    QueueError::Catalog(CatalogError::Query {
        action: "apply a job report".to_owned(),
        source,
    })
}

/// Apply `report` from `agent` to job `id`. `regions` are the configured regions: a
/// report naming any other is malformed, and a backup report's copies are asked for in them
/// (HEAD) before anything is written, so no agent's word alone records a backup. Nothing
/// changes when an error is returned.
pub async fn apply_report(
    catalog: &Catalog,
    id: i64,
    agent: &str,
    report: &JobReport,
    regions: &[Region],
    policy: &QueuePolicy,
) -> Result<(), QueueError> {
    let region_names: Vec<RegionName> =
        regions.iter().map(|region| region.name().clone()).collect();
    // Outside the transaction: no row is locked while regions answer.
    let confirmed = match reported_backup(&report.outcome) {
        Some((manifest, region_results)) => Some(
            backups::confirm_reported_copies(regions, manifest, region_results)
                .await
                .map_err(|error| match error {
                    ReportedBackupError::Invalid(message) => invalid(id, message),
                    ReportedBackupError::Unconfirmed(message) => QueueError::Unconfirmed(message),
                })?,
        ),
        None => None,
    };
    let (verified_copies, locks) = match confirmed {
        Some(confirmed) => (Some(confirmed.copies), confirmed.locks),
        None => (None, Vec::new()),
    };
    let mut connection = catalog.connection().await?;
    let transaction = connection.transaction().await.map_err(begin_error)?;
    let running = queue::lock_running(&*transaction, id, report.lease_token, agent).await?;
    let kind = running.kind;
    match &report.outcome {
        JobOutcome::Failed { error, retryable } => {
            if error.trim().is_empty() {
                return Err(invalid(id, "a failure report needs a non-empty error"));
            }
            // Bounded: an error is a message, not a log.
            let error: String = error.chars().take(4000).collect();
            queue::mark_failed(&*transaction, id, &error, *retryable, policy).await?;
        }
        JobOutcome::Succeeded { result } => {
            if result.kind() != kind {
                return Err(invalid(
                    id,
                    format!(
                        "the job is a {kind} job but the report carries a {} result",
                        result.kind()
                    ),
                ));
            }
            let summary = apply_result(
                &transaction,
                &Actor::agent(agent),
                id,
                &running,
                result,
                &region_names,
                verified_copies,
            )
            .await?;
            // Last, after the report's own checks: a backup encrypted to another key than
            // the tenant key the job was handed is refused (nothing recorded: the
            // transaction is dropped).
            if let Some((manifest, _)) = reported_backup(&report.outcome)
                && let Err(message) =
                    tenant_keys::check_reported_recipient(&*transaction, id, manifest).await?
            {
                return Err(invalid(id, message));
            }
            queue::mark_succeeded(&*transaction, id, &summary).await?;
        }
    }
    transaction.commit().await.map_err(begin_error)?;
    if let Some((manifest, _)) = reported_backup(&report.outcome) {
        backups::record_copy_locks(&**connection, manifest.backup_id, &locks).await;
    }
    Ok(())
}

/// The backup a successful report claims to have committed, if any: a backup job's, or the
/// safety backup a live restore took first. Its copies are confirmed in the regions.
fn reported_backup(outcome: &JobOutcome) -> Option<(&Manifest, &[RegionResult])> {
    match outcome {
        JobOutcome::Succeeded {
            result: JobResult::Backup {
                manifest, regions, ..
            },
        } => Some((manifest, regions)),
        JobOutcome::Succeeded {
            result:
                JobResult::Restore(RestoreResult {
                    safety_backup: Some(safety),
                    ..
                }),
        } => Some((&safety.manifest, &safety.regions)),
        _ => None,
    }
}

fn known_region(id: i64, region: &RegionName, regions: &[RegionName]) -> Result<(), QueueError> {
    if regions.contains(region) {
        Ok(())
    } else {
        Err(invalid(
            id,
            format!("the report names unknown region {region}"),
        ))
    }
}

/// The result's effect on the catalog; returns what is kept in `jobs.result`.
async fn apply_result(
    client: &tokio_postgres::Transaction<'_>,
    agent: &Actor,
    id: i64,
    running: &queue::RunningJob,
    result: &JobResult,
    regions: &[RegionName],
    verified_copies: Option<Vec<(RegionName, CopyState)>>,
) -> Result<serde_json::Value, QueueError> {
    match (&running.work, result) {
        (
            JobWork::Backup {
                tenant,
                cluster,
                backup_kind,
                ..
            },
            JobResult::Backup {
                manifest,
                regions: region_results,
                duration_ms,
            },
        ) => {
            if &manifest.tenant != tenant
                || &manifest.source.cluster != cluster
                || manifest.kind != *backup_kind
            {
                return Err(invalid(
                    id,
                    format!(
                        "the manifest is for tenant {} on cluster {} ({:?}), not this job's {tenant} on {cluster}",
                        manifest.tenant, manifest.source.cluster, manifest.kind
                    ),
                ));
            }
            if !running.attempt_backup_ids.contains(&manifest.backup_id) {
                return Err(invalid(
                    id,
                    format!(
                        "backup {} was not handed to any attempt of this job",
                        manifest.backup_id
                    ),
                ));
            }
            // Checked and confirmed in the regions by `apply_report`, before the transaction.
            let copies = verified_copies.ok_or_else(|| {
                invalid(id, "the backup's copies were not checked before recording")
            })?;
            backups::record_backup(client, manifest, &copies).await?;
            let present = copies
                .iter()
                .filter(|(_, state)| *state == CopyState::Present)
                .count();
            Ok(job_summary::to_stored(&BackupSummary {
                backup_id: manifest.backup_id,
                stored_bytes: manifest.object.stored_bytes,
                duration_ms: *duration_ms,
                regions: region_results.clone(),
                degraded: present < regions.len(),
            }))
        }
        (
            JobWork::Scrub {
                region,
                copies: targets,
                ..
            },
            JobResult::Scrub {
                region: reported_region,
                copies,
            },
        ) => {
            if reported_region != region {
                return Err(invalid(
                    id,
                    format!(
                        "the job scrubs region {region}, the report is about {reported_region}"
                    ),
                ));
            }
            // A set: a scrub report may list hundreds of thousands of copies.
            let asked: std::collections::HashSet<_> =
                targets.iter().map(|target| target.backup_id).collect();
            if let Some(stranger) = copies.iter().find(|copy| !asked.contains(&copy.backup_id)) {
                return Err(invalid(
                    id,
                    format!(
                        "the report checks backup {}, which the job did not ask for",
                        stranger.backup_id
                    ),
                ));
            }
            scrub::apply_scrub_result(client, region, copies).await?;
            let count = |counted: usize| u64::try_from(counted).unwrap_or(u64::MAX);
            Ok(job_summary::to_stored(&ScrubSummary {
                region: region.clone(),
                checked: count(copies.len()),
                hashed: count(copies.iter().filter(|copy| copy.hashed).count()),
                bad: count(
                    copies
                        .iter()
                        .filter(|copy| copy.state != CopyState::Present)
                        .count(),
                ),
            }))
        }
        (JobWork::Replicate { backup_id, to, .. }, JobResult::Replicate { region }) => {
            if region != to {
                return Err(invalid(
                    id,
                    format!("the job copies to region {to}, the report says {region}"),
                ));
            }
            scrub::apply_replicate_result(client, *backup_id, to).await?;
            Ok(job_summary::to_stored(&ReplicateSummary {
                backup_id: *backup_id,
                region: to.clone(),
            }))
        }
        (
            JobWork::Drill {
                tenant,
                backup_id: asked,
                ..
            },
            JobResult::Drill(result),
        ) => {
            if result.backup_id != *asked {
                return Err(invalid(
                    id,
                    format!(
                        "the job drills backup {asked}, the report says {}",
                        result.backup_id
                    ),
                ));
            }
            if let Some(region) = &result.region {
                known_region(id, region, regions)?;
            }
            if result.finished_at < result.started_at {
                return Err(invalid(
                    id,
                    format!(
                        "the drill finished ({}) before it started ({})",
                        result.finished_at, result.started_at
                    ),
                ));
            }
            let record = drills::DrillRecord::new(tenant.clone(), result);
            let drill = drills::record_drill_in(client, &record, agent)
                .await
                .map_err(|error| match error {
                    // The backup left the catalog (purged) while it was drilled.
                    CatalogError::Inconsistent(message) => invalid(id, message),
                    other => other.into(),
                })?;
            let duration_ms = (result.finished_at - result.started_at)
                .num_milliseconds()
                .max(0);
            Ok(job_summary::to_stored(&DrillSummary {
                record,
                drill,
                duration_ms: u64::try_from(duration_ms).unwrap_or(0),
            }))
        }
        (_, JobResult::Restore(restored)) => {
            restores::record::apply_restore_result(
                client,
                agent,
                id,
                running,
                restored,
                verified_copies,
            )
            .await
        }
        (work, JobResult::DropDatabase { database }) => {
            restores::record::apply_drop_result(client, agent, id, work, database).await
        }
        _ => Err(invalid(
            id,
            format!(
                "{} results are not accepted by this controller yet",
                result.kind()
            ),
        )),
    }
}
