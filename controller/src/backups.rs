//! Backups and their copies in the catalog: a cache of the manifests in the buckets.
//!
//! A backup row is written when an agent reports a committed backup (or when the catalog is
//! rebuilt from a region's manifests); its `backup_copies` say which regions hold it. A
//! backup is *degraded* while fewer copies are `present` than regions are configured.
//!
//! Whoever reports a backup (an agent over the API, `lifeboat backup` in-process) is not
//! believed on its word: [`check_reported_copies`] and [`verify_copies_exist`] are the one
//! place a reported backup is checked, for every door, before [`record_backup`] writes it.
//! A fake success would otherwise fill retention's periods and let it trash real backups.

use chrono::{DateTime, Utc};
use lifeboat_core::api::CopyState;
use lifeboat_core::backup::RegionResult;
use lifeboat_core::ids::{BackupId, RegionName, TenantName};
use lifeboat_core::manifest::{Manifest, ObjectKey};
use lifeboat_core::region::{Region, RegionError};
use tokio_postgres::GenericClient;

use crate::catalog::{CatalogError, query_error};

/// Why a reported backup is not recorded.
#[derive(Debug, thiserror::Error)]
pub enum ReportedBackupError {
    /// The report contradicts itself, the configuration or the regions: refused for good.
    #[error("{0}")]
    Invalid(String),
    /// No region could be asked whether it holds the backup: worth reporting again.
    #[error("no region could confirm the backup: {0}")]
    Unconfirmed(String),
}

/// The report's own consistency: every region the manifest lists as holding the object is
/// reported stored, every region named is configured (`configured`), at least one holds
/// it, and the manifest names its own object. Returns the copy state reported per region.
pub fn check_reported_copies(
    manifest: &Manifest,
    results: &[RegionResult],
    configured: &[RegionName],
) -> Result<Vec<(RegionName, CopyState)>, ReportedBackupError> {
    let invalid = |message: String| Err(ReportedBackupError::Invalid(message));
    let own_key = ObjectKey::Dump(&manifest.tenant, manifest.backup_id).to_key();
    if manifest.object.key != own_key {
        return invalid(format!(
            "the manifest names object {:?}, not {own_key:?}",
            manifest.object.key
        ));
    }
    if let Some(region) = manifest.regions.iter().find(|region| {
        !results
            .iter()
            .any(|result| result.stored && &result.region == *region)
    }) {
        return invalid(format!(
            "the manifest lists region {region}, which the report does not say was stored"
        ));
    }
    if let Some(unknown) = results
        .iter()
        .find(|result| !configured.contains(&result.region))
    {
        return invalid(format!(
            "the report names unknown region {}",
            unknown.region
        ));
    }
    let copies: Vec<(RegionName, CopyState)> = results
        .iter()
        .map(|result| {
            let state = if result.stored {
                CopyState::Present
            } else {
                CopyState::Missing
            };
            (result.region.clone(), state)
        })
        .collect();
    if !copies.iter().any(|(_, state)| *state == CopyState::Present) {
        return invalid("a successful backup must be stored in a region".to_owned());
    }
    Ok(copies)
}

/// What a region said of a copy a report claims it holds.
enum CopyVerdict {
    /// With the end of the copy's lock (the earlier of the dump's and the manifest's), if
    /// the region locks it.
    Confirmed(Option<DateTime<Utc>>),
    /// It does not hold it, or not as reported.
    False(String),
    Unanswered(RegionError),
}

/// Ask each region reported `present` in `copies` whether it holds the object, with the
/// manifest's size, and the manifest (HEAD only: cheap, and scrub hashes later). A region
/// that answers "no" or with another size makes the whole report false: refused. A region
/// that does not answer is recorded `missing` (scrub and repair will settle it), as long
/// as one region confirms; otherwise the report is to be sent again. Returns the locks the
/// same HEADs showed: until when each locked region keeps the copy.
pub async fn verify_copies_exist(
    regions: &[Region],
    manifest: &Manifest,
    copies: &mut [(RegionName, CopyState)],
) -> Result<Vec<(RegionName, DateTime<Utc>)>, ReportedBackupError> {
    let object_key = ObjectKey::Dump(&manifest.tenant, manifest.backup_id).to_key();
    let manifest_key = ObjectKey::Manifest(&manifest.tenant, manifest.backup_id).to_key();
    let checks = copies
        .iter()
        .filter(|(_, state)| *state == CopyState::Present)
        .map(|(name, _)| {
            let region = regions.iter().find(|region| region.name() == name);
            let (object_key, manifest_key) = (&object_key, &manifest_key);
            async move {
                let Some(region) = region else {
                    let falsehood = format!("region {name} is not configured");
                    return (name.clone(), CopyVerdict::False(falsehood));
                };
                let heads = futures::future::try_join(
                    region.object_head(object_key),
                    region.object_head(manifest_key),
                )
                .await;
                let verdict = match heads {
                    Err(error) => CopyVerdict::Unanswered(error),
                    Ok((Some(dump), Some(manifest_head)))
                        if dump.size == manifest.object.stored_bytes =>
                    {
                        let locked = dump.retain_until.zip(manifest_head.retain_until);
                        CopyVerdict::Confirmed(locked.map(|(dump, manifest)| dump.min(manifest)))
                    }
                    Ok((Some(dump), Some(_))) => CopyVerdict::False(format!(
                        "region {name} holds {object_key} with {} bytes, not the reported {}",
                        dump.size, manifest.object.stored_bytes
                    )),
                    Ok((None, _)) => {
                        CopyVerdict::False(format!("region {name} does not hold {object_key}"))
                    }
                    Ok((_, None)) => {
                        CopyVerdict::False(format!("region {name} does not hold {manifest_key}"))
                    }
                };
                (name.clone(), verdict)
            }
        });
    let verdicts = futures::future::join_all(checks).await;
    let mut unanswered = Vec::new();
    let mut locks = Vec::new();
    for (name, verdict) in verdicts {
        match verdict {
            CopyVerdict::Confirmed(locked) => {
                if let Some(until) = locked {
                    locks.push((name, until));
                }
            }
            CopyVerdict::False(falsehood) => return Err(ReportedBackupError::Invalid(falsehood)),
            CopyVerdict::Unanswered(error) => {
                tracing::warn!(region = %name, %error, "cannot confirm a reported copy; recorded as missing until scrub finds it");
                unanswered.push(error.to_string());
                if let Some(copy) = copies.iter_mut().find(|(region, _)| *region == name) {
                    copy.1 = CopyState::Missing;
                }
            }
        }
    }
    if !copies.iter().any(|(_, state)| *state == CopyState::Present) {
        return Err(ReportedBackupError::Unconfirmed(unanswered.join("; ")));
    }
    Ok(locks)
}

/// The copies a report was confirmed with, and the locks their HEADs showed.
#[derive(Debug)]
pub struct ConfirmedCopies {
    pub copies: Vec<(RegionName, CopyState)>,
    pub locks: Vec<(RegionName, DateTime<Utc>)>,
}

/// Record until when the regions lock a just recorded backup's copies (`locked_until`),
/// so that maintenance's [`crate::retention::extend_locks`] does not HEAD them again.
/// Best effort, after the backup's own transaction: a copy left without is asked later.
pub async fn record_copy_locks<C: GenericClient>(
    client: &C,
    backup_id: BackupId,
    locks: &[(RegionName, DateTime<Utc>)],
) {
    for (region, until) in locks {
        if let Err(error) = client
            .execute(
                "UPDATE backup_copies SET locked_until = $3 WHERE backup_id = $1 AND region = $2",
                &[&backup_id.as_uuid(), &region.as_str(), until],
            )
            .await
        {
            tracing::warn!(backup = %backup_id, region = %region, %error, "a copy's lock was not recorded; maintenance will ask the region");
        }
    }
}

/// The copy a catalog row names in its first three columns (backup id, tenant, region),
/// with the configured region's handle; `None` for a region not configured here, or an id
/// or name that does not parse.
pub(crate) fn copy_of_row<'a>(
    row: &tokio_postgres::Row,
    regions: &'a [Region],
) -> Option<(BackupId, TenantName, &'a Region)> {
    let backup_id = BackupId::from_uuid(row.get(0))?;
    let tenant = TenantName::parse(row.get::<_, &str>(1)).ok()?;
    let region_name: &str = row.get(2);
    let region = regions
        .iter()
        .find(|region| region.name().as_str() == region_name)?;
    Some((backup_id, tenant, region))
}

/// Why a backup taken outside the queue (`lifeboat backup`) is not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Reported(#[from] ReportedBackupError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The copies a backup report may be recorded with: the report's own consistency
/// ([`check_reported_copies`] against the configured `regions`), then the regions asked
/// ([`verify_copies_exist`]). Every door that records a backup goes through here.
pub async fn confirm_reported_copies(
    regions: &[Region],
    manifest: &Manifest,
    results: &[RegionResult],
) -> Result<ConfirmedCopies, ReportedBackupError> {
    let configured: Vec<RegionName> = regions.iter().map(|region| region.name().clone()).collect();
    let mut copies = check_reported_copies(manifest, results, &configured)?;
    let locks = verify_copies_exist(regions, manifest, &mut copies).await?;
    Ok(ConfirmedCopies { copies, locks })
}

/// Record a backup that was taken outside the queue, through the same checks as an agent's
/// report ([`confirm_reported_copies`]), then [`record_backup`].
pub async fn record_checked_backup(
    catalog: &crate::catalog::Catalog,
    regions: &[Region],
    manifest: &Manifest,
    results: &[RegionResult],
) -> Result<(), RecordError> {
    let confirmed = confirm_reported_copies(regions, manifest, results).await?;
    let connection = catalog.connection().await?;
    record_backup(&**connection, manifest, &confirmed.copies).await?;
    record_copy_locks(&**connection, manifest.backup_id, &confirmed.locks).await;
    Ok(())
}

/// Record a committed backup and the state of its copy in each of `copies`.
///
/// Idempotent: recording the same backup again (a retried report, a rebuild over a live
/// catalog) updates the copies and leaves the backup row as it was, so a verification or a
/// legal hold set since is kept.
pub async fn record_backup<C: GenericClient>(
    client: &C,
    manifest: &Manifest,
    copies: &[(RegionName, CopyState)],
) -> Result<(), CatalogError> {
    // Purge deletes `object_key` in every region: it must be this backup's own key, never
    // one a manifest merely claims.
    let own_key = ObjectKey::Dump(&manifest.tenant, manifest.backup_id).to_key();
    if manifest.object.key != own_key {
        return Err(CatalogError::Inconsistent(format!(
            "backup {} of {} names object {:?}, not its own {own_key:?}",
            manifest.backup_id, manifest.tenant, manifest.object.key
        )));
    }
    let manifest_json = serde_json::to_value(manifest).unwrap_or_default();
    let dump_bytes = i64::try_from(manifest.object.dump_bytes).unwrap_or(i64::MAX);
    let stored_bytes = i64::try_from(manifest.object.stored_bytes).unwrap_or(i64::MAX);
    client
        .execute(
            "INSERT INTO backups (id, tenant, kind, started_at, finished_at, cluster, database_name,
                                  object_key, dump_bytes, stored_bytes, sha256, manifest)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (id) DO NOTHING",
            &[
                &manifest.backup_id.as_uuid(),
                &manifest.tenant.as_str(),
                &manifest.kind.as_str(),
                &manifest.started_at,
                &manifest.finished_at,
                &manifest.source.cluster.as_str(),
                &manifest.source.database,
                &manifest.object.key,
                &dump_bytes,
                &stored_bytes,
                &manifest.object.sha256,
                &manifest_json,
            ],
        )
        .await
        .map_err(query_error("record backup"))?;
    for (region, state) in copies {
        client
            .execute(
                "INSERT INTO backup_copies (backup_id, region, state, checked_at)
                 VALUES ($1, $2, $3, now())
                 ON CONFLICT (backup_id, region)
                 DO UPDATE SET
                     -- A size check cannot clear what a hash found: corrupt stays corrupt
                     -- until scrub hashes it again or repair replaces it.
                     state = CASE WHEN backup_copies.state = 'corrupt' AND EXCLUDED.state = 'present'
                                  THEN 'corrupt' ELSE EXCLUDED.state END,
                     checked_at = EXCLUDED.checked_at",
                &[
                    &manifest.backup_id.as_uuid(),
                    &region.as_str(),
                    &state.as_str(),
                ],
            )
            .await
            .map_err(query_error("record backup copy"))?;
    }
    Ok(())
}

/// The SHA-256 the catalog recorded for `backup_id` of `tenant`, if it knows the backup.
/// A restore compares it with the manifest it reads from a region: whoever can write a
/// bucket can rewrite a manifest, not the catalog.
pub async fn recorded_sha256<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
    backup_id: BackupId,
) -> Result<Option<String>, CatalogError> {
    let row = client
        .query_opt(
            "SELECT sha256 FROM backups WHERE id = $1 AND tenant = $2",
            &[&backup_id.as_uuid(), &tenant.as_str()],
        )
        .await
        .map_err(query_error("read a backup's SHA-256"))?;
    Ok(row.map(|row| row.get(0)))
}
