//! Applying an agent's report: the job's effect on the catalog and its new state, in one
//! transaction, so a report is applied entirely or not at all.

use lifeboat_core::api::{CopyState, JobOutcome, JobReport, JobResult, JobWork};
use lifeboat_core::ids::RegionName;
use lifeboat_core::manifest::ObjectKey;

use crate::backups;
use crate::catalog::{Catalog, CatalogError};
use crate::drills;
use crate::queue::{self, QueueError, QueuePolicy};
use crate::scrub;

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

/// Apply `report` to job `id`. `regions` are the configured regions: a report naming any
/// other is malformed. Nothing changes when an error is returned.
pub async fn apply_report(
    catalog: &Catalog,
    id: i64,
    report: &JobReport,
    regions: &[RegionName],
    policy: &QueuePolicy,
) -> Result<(), QueueError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection.transaction().await.map_err(begin_error)?;
    let running = queue::lock_running(&*transaction, id, report.lease_token).await?;
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
            let summary = apply_result(&transaction, id, &running, result, regions).await?;
            queue::mark_succeeded(&*transaction, id, &summary).await?;
        }
    }
    transaction.commit().await.map_err(begin_error)?;
    Ok(())
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
    id: i64,
    running: &queue::RunningJob,
    result: &JobResult,
    regions: &[RegionName],
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
            let own_key = ObjectKey::Dump(&manifest.tenant, manifest.backup_id).to_key();
            if manifest.object.key != own_key {
                return Err(invalid(
                    id,
                    format!(
                        "the manifest names object {:?}, not {own_key:?}",
                        manifest.object.key
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
            if !manifest.regions.iter().all(|region| {
                region_results
                    .iter()
                    .any(|result| result.stored && &result.region == region)
            }) {
                return Err(invalid(
                    id,
                    "the manifest lists a region the report does not say was stored",
                ));
            }
            let mut copies = Vec::new();
            for result in region_results {
                known_region(id, &result.region, regions)?;
                let state = if result.stored {
                    CopyState::Present
                } else {
                    CopyState::Missing
                };
                copies.push((result.region.clone(), state));
            }
            if !copies.iter().any(|(_, state)| *state == CopyState::Present) {
                return Err(invalid(
                    id,
                    "a successful backup must be stored in a region",
                ));
            }
            backups::record_backup(client, manifest, &copies).await?;
            let present = copies
                .iter()
                .filter(|(_, state)| *state == CopyState::Present)
                .count();
            Ok(serde_json::json!({
                "backup_id": manifest.backup_id,
                "stored_bytes": manifest.object.stored_bytes,
                "duration_ms": duration_ms,
                "regions": region_results,
                "degraded": present < regions.len(),
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
            if let Some(stranger) = copies.iter().find(|copy| {
                !targets
                    .iter()
                    .any(|target| target.backup_id == copy.backup_id)
            }) {
                return Err(invalid(
                    id,
                    format!(
                        "the report checks backup {}, which the job did not ask for",
                        stranger.backup_id
                    ),
                ));
            }
            scrub::apply_scrub_result(client, region, copies).await?;
            let bad = copies
                .iter()
                .filter(|copy| copy.state != CopyState::Present)
                .count();
            Ok(serde_json::json!({
                "region": region,
                "checked": copies.len(),
                "hashed": copies.iter().filter(|copy| copy.hashed).count(),
                "bad": bad,
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
            Ok(serde_json::json!({ "backup_id": backup_id, "region": to }))
        }
        (
            JobWork::Drill {
                tenant,
                backup_id: asked,
                ..
            },
            JobResult::Drill {
                backup_id,
                region,
                scratch_database,
                started_at,
                finished_at,
                outcome,
            },
        ) => {
            if backup_id != asked {
                return Err(invalid(
                    id,
                    format!("the job drills backup {asked}, the report says {backup_id}"),
                ));
            }
            if let Some(region) = region {
                known_region(id, region, regions)?;
            }
            if finished_at < started_at {
                return Err(invalid(
                    id,
                    format!("the drill finished ({finished_at}) before it started ({started_at})"),
                ));
            }
            let record = drills::DrillRecord {
                tenant: tenant.clone(),
                backup_id: *backup_id,
                region: region.clone(),
                scratch_database: scratch_database.clone(),
                started_at: *started_at,
                finished_at: *finished_at,
                outcome: outcome.clone(),
            };
            let drill = drills::record_drill_in(client, &record, &format!("job:{id}"))
                .await
                .map_err(|error| match error {
                    // The backup left the catalog (purged) while it was drilled.
                    CatalogError::Inconsistent(message) => invalid(id, message),
                    other => other.into(),
                })?;
            let mut summary = serde_json::to_value(&record).unwrap_or_default();
            if let Some(fields) = summary.as_object_mut() {
                fields.insert("drill".to_owned(), drill.into());
                fields.insert(
                    "duration_ms".to_owned(),
                    (*finished_at - *started_at)
                        .num_milliseconds()
                        .max(0)
                        .into(),
                );
            }
            Ok(summary)
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
