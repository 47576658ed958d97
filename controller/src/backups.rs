//! Backups and their copies in the catalog: a cache of the manifests in the buckets.
//!
//! A backup row is written when an agent reports a committed backup (or when the catalog is
//! rebuilt from a region's manifests); its `backup_copies` say which regions hold it. A
//! backup is *degraded* while fewer copies are `present` than regions are configured.

use lifeboat_core::api::CopyState;
use lifeboat_core::ids::RegionName;
use lifeboat_core::manifest::{BackupKind, Manifest, ObjectKey};
use tokio_postgres::GenericClient;

use crate::catalog::{CatalogError, query_error};

fn kind_name(kind: BackupKind) -> &'static str {
    match kind {
        BackupKind::Scheduled => "scheduled",
        BackupKind::Manual => "manual",
        BackupKind::PreRestore => "pre-restore",
    }
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
                &kind_name(manifest.kind),
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
