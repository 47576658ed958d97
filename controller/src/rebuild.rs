//! Rebuild the catalog's backups from the manifests in one region.
//!
//! The catalog is a cache of the buckets as far as backups go: every manifest in the chosen
//! region becomes a backup row (through [`backups::record_backup`], so rebuilding over a live
//! catalog keeps holds, verifications and the trash as they are). Every other configured
//! region is listed once; then each region, the chosen one too, is asked for the size of each
//! object: `present` when the region holds the manifest and an object of the manifest's size,
//! `missing` otherwise (a manifest whose object is gone, as a purge cut short leaves it, is a
//! missing copy, not a present one). A region that cannot be listed, or does not
//! answer for one object, gets no copy row there: scrub fills it in later, and the report
//! says so.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use lifeboat_core::api::CopyState;
use lifeboat_core::ids::{BackupId, RegionName, TenantName};
use lifeboat_core::manifest::Manifest;
use lifeboat_core::region::{Region, RegionError};
use lifeboat_core::restore::{list_backup_ids, read_manifest};
use serde::Serialize;
use tokio::task::JoinSet;

use crate::audit::{self, Actor};
use crate::backups;
use crate::catalog::{Catalog, CatalogError};

/// Manifests read (and objects looked at) at once.
const BACKUPS_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("unknown region {region:?} (configured: {known})")]
    UnknownRegion { region: String, known: String },
    #[error("cannot list the manifests of region {region}: {source}")]
    SourceUnreachable {
        region: RegionName,
        source: RegionError,
    },
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("catalog query failed: {action}: {source}")]
    Query {
        action: &'static str,
        source: tokio_postgres::Error,
    },
    #[error("a rebuild worker failed: {0}")]
    Worker(String),
}

fn query_error(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> RebuildError {
    move |source| RebuildError::Query { action, source }
}

/// What one region holds, as far as the rebuild could tell.
#[derive(Debug, Clone, Serialize)]
pub struct RegionSummary {
    pub region: RegionName,
    pub present: usize,
    pub missing: usize,
    /// Backups for which the region did not answer: no copy row was written.
    pub unchecked: usize,
    /// Why the region could not be listed at all; then it has no copy rows.
    pub unreachable: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RebuildReport {
    pub source_region: RegionName,
    /// Manifests found in the source region.
    pub backups_found: usize,
    /// Backups written to the catalog (all but the unreadable ones).
    pub backups_recorded: usize,
    /// In configured order, the source region first.
    pub regions: Vec<RegionSummary>,
    /// Manifests that could not be read or do not match their key.
    pub unreadable: Vec<String>,
}

/// Each readable manifest and the copies found for it.
type RecordedBackups = BTreeMap<BackupId, (Manifest, Vec<(RegionName, CopyState)>)>;

/// The other regions, each with the manifests it lists or why it could not be listed.
type Listings = Vec<(Region, Result<HashSet<(TenantName, BackupId)>, String>)>;

/// Rebuild every backup of the catalog from the manifests in `source`; `regions` are all
/// configured regions (the source among them).
pub async fn rebuild_from_region(
    catalog: &Catalog,
    regions: &[Region],
    source: &RegionName,
    actor: &Actor,
) -> Result<RebuildReport, RebuildError> {
    let source_region = regions
        .iter()
        .find(|region| region.name() == source)
        .cloned()
        .ok_or_else(|| RebuildError::UnknownRegion {
            region: source.to_string(),
            known: regions
                .iter()
                .map(|region| region.name().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })?;
    let found = list_backup_ids(&source_region, None)
        .await
        .map_err(|error| RebuildError::SourceUnreachable {
            region: source.clone(),
            source: error,
        })?;

    let mut listings: Listings = Vec::new();
    for region in regions.iter().filter(|region| region.name() != source) {
        let listing = list_backup_ids(region, None)
            .await
            .map(|ids| ids.into_iter().collect())
            .map_err(|error| error.to_string());
        if let Err(error) = &listing {
            tracing::warn!(region = %region.name(), %error, "region not listed; its copies are left to scrub");
        }
        listings.push((region.clone(), listing));
    }
    let listings = Arc::new(listings);

    let mut manifests: RecordedBackups = BTreeMap::new();
    let mut unreadable = Vec::new();
    let mut unchecked: BTreeMap<RegionName, usize> = BTreeMap::new();
    let mut tasks = JoinSet::new();
    let mut pending = found.iter().cloned();
    loop {
        while tasks.len() < BACKUPS_IN_FLIGHT
            && let Some((tenant, backup_id)) = pending.next()
        {
            let source_region = source_region.clone();
            let listings = Arc::clone(&listings);
            tasks.spawn(async move {
                examine_backup(&source_region, &listings, &tenant, backup_id).await
            });
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined.map_err(|error| RebuildError::Worker(error.to_string()))? {
            Ok(examined) => {
                for region in examined.unchecked {
                    *unchecked.entry(region).or_default() += 1;
                }
                manifests.insert(
                    examined.manifest.backup_id,
                    (examined.manifest, examined.copies),
                );
            }
            Err(error) => {
                tracing::warn!(%error, "manifest skipped");
                unreadable.push(error);
            }
        }
    }
    unreadable.sort();

    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    for (manifest, copies) in manifests.values() {
        backups::record_backup(&*transaction, manifest, copies).await?;
    }
    let report = summarise(
        source,
        found.len(),
        &manifests,
        &listings,
        &unchecked,
        unreadable,
    );
    let details = serde_json::to_value(&report).unwrap_or_default();
    audit::record(&*transaction, actor, "catalog.rebuild", None, None, details).await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(report)
}

struct Examined {
    manifest: Manifest,
    copies: Vec<(RegionName, CopyState)>,
    /// Regions that did not answer for this backup.
    unchecked: Vec<RegionName>,
}

/// Read one manifest from the source and find its copies elsewhere.
async fn examine_backup(
    source: &Region,
    listings: &Listings,
    tenant: &TenantName,
    backup_id: BackupId,
) -> Result<Examined, String> {
    let manifest = read_manifest(source, tenant, backup_id)
        .await
        .map_err(|error| format!("{tenant}/{backup_id}: {error}"))?;
    if &manifest.tenant != tenant || manifest.backup_id != backup_id {
        return Err(format!(
            "{tenant}/{backup_id}: the manifest describes {}/{} instead",
            manifest.tenant, manifest.backup_id
        ));
    }
    let mut copies = Vec::new();
    let mut unchecked = Vec::new();
    let source_listing: &HashSet<(TenantName, BackupId)> = &HashSet::new();
    let regions = std::iter::once((source, source_listing, true)).chain(
        listings
            .iter()
            .filter_map(|(region, listing)| Some((region, listing.as_ref().ok()?, false))),
    );
    for (region, listed, is_source) in regions {
        if !is_source && !listed.contains(&(tenant.clone(), backup_id)) {
            copies.push((region.name().clone(), CopyState::Missing));
            continue;
        }
        match region.object_size(&manifest.object.key).await {
            Ok(Some(size)) if size == manifest.object.stored_bytes => {
                copies.push((region.name().clone(), CopyState::Present));
            }
            Ok(_) => copies.push((region.name().clone(), CopyState::Missing)),
            Err(error) => {
                tracing::warn!(region = %region.name(), backup = %backup_id, %error, "copy not checked");
                unchecked.push(region.name().clone());
            }
        }
    }
    Ok(Examined {
        manifest,
        copies,
        unchecked,
    })
}

fn summarise(
    source: &RegionName,
    found: usize,
    manifests: &RecordedBackups,
    listings: &Listings,
    unchecked: &BTreeMap<RegionName, usize>,
    unreadable: Vec<String>,
) -> RebuildReport {
    let mut regions = vec![RegionSummary::default_for(source)];
    for (region, listing) in listings {
        regions.push(RegionSummary {
            unreachable: listing.as_ref().err().cloned(),
            unchecked: unchecked.get(region.name()).copied().unwrap_or(0),
            ..RegionSummary::default_for(region.name())
        });
    }
    for (_, copies) in manifests.values() {
        for (region, state) in copies {
            if let Some(summary) = regions.iter_mut().find(|summary| &summary.region == region) {
                match state {
                    CopyState::Present => summary.present += 1,
                    CopyState::Missing | CopyState::Corrupt => summary.missing += 1,
                }
            }
        }
    }
    RebuildReport {
        source_region: source.clone(),
        backups_found: found,
        backups_recorded: manifests.len(),
        regions,
        unreadable,
    }
}

impl RegionSummary {
    fn default_for(region: &RegionName) -> RegionSummary {
        RegionSummary {
            region: region.clone(),
            present: 0,
            missing: 0,
            unchecked: 0,
            unreachable: None,
        }
    }
}
