//! Maintenance jobs on the stored copies: scrub (check the copies in one region, abort its
//! stale uploads, delete stale dump objects without a manifest) and replicate (copy a backup into a region that lacks it).
//!
//! Both work on encrypted bytes only, so an agent holding public keys can run them. The
//! controller plans the jobs from its catalog and applies their results; the agent only
//! needs the regions in its config.

use std::collections::HashSet;
use std::time::Duration;

use lifeboat_core::api::{CopyCheck, JobResult, ScrubTarget};
use lifeboat_core::config::{Config, UnknownName};
use lifeboat_core::copy::{self, ReplicateError};
use lifeboat_core::ids::{BackupId, RegionName, TenantName};
use lifeboat_core::manifest;
use lifeboat_core::region::{Region, RegionError, RegionErrorKind, Regions};

pub use lifeboat_core::copy::STALE_UPLOAD_AGE;

#[derive(Debug, thiserror::Error)]
pub enum MaintenanceError {
    #[error(transparent)]
    UnknownRegion(#[from] UnknownName),
    /// The region could not be asked; the copies' states are unknown, not missing.
    #[error("scrub of region {region} stopped: {source}")]
    ScrubRegion {
        region: RegionName,
        source: RegionError,
    },
    #[error(transparent)]
    Replicate(#[from] ReplicateError),
}

impl MaintenanceError {
    /// Whether a later attempt cannot do better (the job should fail now).
    pub fn is_permanent(&self) -> bool {
        match self {
            MaintenanceError::UnknownRegion(_) => true,
            MaintenanceError::ScrubRegion { .. } => false,
            MaintenanceError::Replicate(error) => error.is_permanent(),
        }
    }
}

/// Check `targets` in `region_name`, then abort its uploads under `tenants/` older than
/// [`STALE_UPLOAD_AGE`] and delete its dump objects that have no manifest, are that old
/// and are neither among `targets` nor in `keep` (every backup the catalog has).
pub async fn run_scrub(
    regions: &Regions,
    region_name: &RegionName,
    targets: &[ScrubTarget],
    keep: &[BackupId],
) -> Result<JobResult, MaintenanceError> {
    run_scrub_with_upload_age(regions, region_name, targets, keep, STALE_UPLOAD_AGE).await
}

/// [`run_scrub`] with another age after which an open upload counts as stale.
pub async fn run_scrub_with_upload_age(
    regions: &Regions,
    region_name: &RegionName,
    targets: &[ScrubTarget],
    keep: &[BackupId],
    stale_upload_age: Duration,
) -> Result<JobResult, MaintenanceError> {
    let region = regions.named(region_name)?;
    // A missing bucket makes every object look missing: fail the scrub instead, so no copy
    // is marked missing (and then trashed or purged) for a region-wide fault.
    region
        .check_bucket()
        .await
        .map_err(|source| MaintenanceError::ScrubRegion {
            region: region_name.clone(),
            source,
        })?;
    let mut copies: Vec<CopyCheck> = Vec::with_capacity(targets.len());
    for (backup_id, checked) in copy::check_copies(region, targets).await {
        match checked {
            Ok(check) => copies.push(check),
            // The region is down or refuses us: nothing can be said about any copy.
            Err(error)
                if matches!(
                    error.kind,
                    RegionErrorKind::Unreachable
                        | RegionErrorKind::AccessDenied
                        | RegionErrorKind::BucketMissing
                ) =>
            {
                return Err(MaintenanceError::ScrubRegion {
                    region: region_name.clone(),
                    source: error,
                });
            }
            // One odd answer: leave that copy's state as it was and check the rest.
            Err(error) => {
                tracing::warn!(region = %region_name, backup = %backup_id, %error, "copy left unchecked");
            }
        }
    }
    let stale_before = copy::created_before_age(stale_upload_age);
    let prefix = manifest::listing_prefix(None);
    // Every backup the catalog has, and every id handed to a backup job still queued or
    // running, is kept: its objects are never orphans, its uploads never stale.
    let known: HashSet<BackupId> = targets
        .iter()
        .map(|target| target.backup_id)
        .chain(keep.iter().copied())
        .collect();
    match copy::abort_stale_uploads(region, &prefix, stale_before, &known).await {
        Ok(0) => {}
        Ok(aborted) => tracing::info!(region = %region_name, aborted, "stale uploads aborted"),
        Err(error) => {
            tracing::warn!(region = %region_name, %error, "cannot list uploads to abort stale ones");
        }
    }
    match copy::delete_orphan_objects(region, &prefix, stale_before, &known).await {
        Ok(0) => {}
        Ok(deleted) => tracing::info!(region = %region_name, deleted, "orphan objects deleted"),
        Err(error) => {
            tracing::warn!(region = %region_name, %error, "cannot list objects to delete orphans");
        }
    }
    Ok(JobResult::Scrub {
        region: region_name.clone(),
        copies,
    })
}

/// Copy a backup into `to` from the first of `sources` (in the given order) with a good copy.
#[expect(
    clippy::too_many_arguments,
    reason = "the replicate job's fields, the config and the shared regions"
)]
pub async fn run_replicate(
    config: &Config,
    regions: &Regions,
    tenant: &TenantName,
    backup_id: BackupId,
    sources: &[RegionName],
    to: &RegionName,
    stored_bytes: u64,
    sha256: &str,
) -> Result<JobResult, MaintenanceError> {
    let target = regions.named(to)?;
    // A source this agent does not know is skipped: another may still have a good copy.
    let source_regions: Vec<Region> = sources
        .iter()
        .filter(|source| *source != to)
        .filter_map(|source| match regions.named(source) {
            Ok(region) => Some(region.clone()),
            Err(error) => {
                tracing::warn!(%error, "replication source skipped");
                None
            }
        })
        .collect();
    copy::replicate(
        &source_regions,
        target,
        tenant,
        backup_id,
        stored_bytes,
        sha256,
        config.part_size_bytes,
    )
    .await?;
    Ok(JobResult::Replicate { region: to.clone() })
}
