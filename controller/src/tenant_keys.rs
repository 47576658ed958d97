//! Per-tenant age keys in the catalog (migration V15): generation, the wrapped identity
//! file in every region, what jobs carry, the report check, rotation and shredding.
//!
//! Stored, and why:
//! - `tenant_keys`: one row per identity a tenant ever had: its recipient (public), its
//!   fingerprint, the identity *wrapped* (an age file encrypted to the organisation's
//!   recipients; never the identity in the clear), when it was created, retired by a
//!   rotation, or shredded (the wrapped identity gone).
//! - `tenant_identity_files`: the tenant's identities not shredded as one wrapped identity
//!   file, newest first. It is the `tenants/<tenant>/identity.age` object written to every
//!   region (break-glass: `age -d -i ORG_KEY identity.age > tenant.key`), and what restore
//!   jobs carry so agents unwrap it in memory with the organisation's identity.
//! - `tenant_identity_objects`: per region, whether the current file is written there, or
//!   every version of it deleted (a shred), so a region that did not answer is finished by
//!   the next write or shred.
//!
//! A tenant gets its key when it is added, and a tenant without one (older catalogs, or
//! configured tenants) at the claim of its next backup. Generating needs only the
//! organisation's recipients; rotating needs its identity too, to rewrap the old
//! identities beside the new one. Shredding deletes the wrapped identities from the
//! catalog and every version of the object from every region: the tenant's backups that
//! remain (object-locked ones until their lock ends) open with no key lifeboat holds.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use lifeboat_core::api::{ClaimedJob, JobWork, TenantKeyGrant};
use lifeboat_core::ids::{RegionName, TenantName};
use lifeboat_core::keys::{Identities, Recipient};
use lifeboat_core::manifest::Manifest;
use lifeboat_core::region::{Region, RegionError, RegionErrorKind};
use lifeboat_core::tenant_keys::{
    self as core_keys, TenantIdentity, TenantKeyError, identity_object_key,
};
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::audit::{self, Actor};
use crate::catalog::{Catalog, CatalogError, query_error};

/// Why a tenant-key operation was refused or failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TenantKeysError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Keys(#[from] TenantKeyError),
    #[error(
        "tenant {0} still exists: only a removed tenant is shredded (lifeboat tenant remove or deprovision first); nothing was changed"
    )]
    TenantExists(TenantName),
    #[error(
        "tenant {tenant} has {held} backup(s) under legal hold, so its keys are not shredded; lift the holds first; nothing was changed"
    )]
    UnderLegalHold { tenant: TenantName, held: i64 },
    #[error(
        "the confirmation does not match: give --confirm {tenant} to shred tenant {tenant}; nothing was changed"
    )]
    NotConfirmed { tenant: TenantName },
    #[error("tenant {0} is not in the catalog")]
    UnknownTenant(TenantName),
    #[error(
        "rotating a tenant's key rewraps its old identities, which needs the organisation's identity: set identity_file"
    )]
    NoOrgIdentity,
    #[error("tenant {tenant}'s keys are inconsistent: {detail}")]
    Inconsistent { tenant: TenantName, detail: String },
}

/// A tenant's current key: what its new backups are encrypted to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentKey {
    pub recipient: String,
    pub fingerprint: String,
    pub created_at: DateTime<Utc>,
}

/// One of a tenant's keys, as `lifeboat tenant show`/`keys status` see it.
#[derive(Debug, Clone, Serialize)]
pub struct TenantKey {
    pub tenant: String,
    pub recipient: String,
    pub fingerprint: String,
    /// The organisation's recipients (fingerprints) its identity is wrapped to.
    pub wrapped_to: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    pub shredded_at: Option<DateTime<Utc>>,
}

/// Where writing the identity file went.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublishReport {
    pub written: Vec<RegionName>,
    /// Regions that did not take it, with why; the next write tries them again.
    pub failed: Vec<(RegionName, String)>,
}

/// Serialise key changes of one tenant (generation, rotation, shred) until the caller's
/// transaction ends.
async fn lock_tenant_keys<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<(), CatalogError> {
    client
        .execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            &[&format!("lifeboat.tenant_keys.{tenant}")],
        )
        .await
        .map_err(query_error("lock the tenant's keys"))?;
    Ok(())
}

/// The tenant's current key, if it has one.
pub async fn current_key<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<Option<CurrentKey>, CatalogError> {
    let row = client
        .query_opt(
            "SELECT recipient, fingerprint, created_at FROM tenant_keys
             WHERE tenant = $1 AND retired_at IS NULL AND shredded_at IS NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("read the tenant's current key"))?;
    Ok(row.map(|row| CurrentKey {
        recipient: row.get(0),
        fingerprint: row.get(1),
        created_at: row.get(2),
    }))
}

/// Every key of `tenant` (or of every tenant), newest first.
pub async fn list_keys<C: GenericClient>(
    client: &C,
    tenant: Option<&TenantName>,
) -> Result<Vec<TenantKey>, CatalogError> {
    let rows = client
        .query(
            "SELECT tenant, recipient, fingerprint, wrapped_to, created_at, retired_at, shredded_at
             FROM tenant_keys WHERE $1::text IS NULL OR tenant = $1
             ORDER BY tenant, created_at DESC, id DESC",
            &[&tenant.map(TenantName::as_str)],
        )
        .await
        .map_err(query_error("list tenant keys"))?;
    Ok(rows
        .iter()
        .map(|row| TenantKey {
            tenant: row.get(0),
            recipient: row.get(1),
            fingerprint: row.get(2),
            wrapped_to: row.get(3),
            created_at: row.get(4),
            retired_at: row.get(5),
            shredded_at: row.get(6),
        })
        .collect())
}

/// The tenant's wrapped identity file (all identities not shredded), if it has one.
pub async fn wrapped_identities<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<Option<Vec<u8>>, CatalogError> {
    Ok(client
        .query_opt(
            "SELECT contents FROM tenant_identity_files WHERE tenant = $1 AND contents IS NOT NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("read the tenant's wrapped identities"))?
        .map(|row| row.get(0)))
}

/// Store `new` as the tenant's current key (the previous current one retired) and
/// `identity_file` as its wrapped identity file; every region's copy becomes stale.
async fn store_new_key<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
    new: &TenantIdentity,
    org_recipients: &[Recipient],
    identity_file: &[u8],
) -> Result<CurrentKey, TenantKeysError> {
    let recipient = new.recipient();
    let wrapped = new.wrap(org_recipients)?;
    let wrapped_to: Vec<String> = org_recipients.iter().map(Recipient::fingerprint).collect();
    client
        .execute(
            "UPDATE tenant_keys SET retired_at = now()
             WHERE tenant = $1 AND retired_at IS NULL AND shredded_at IS NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("retire the tenant's current key"))?;
    client
        .execute(
            "INSERT INTO tenant_keys (tenant, recipient, fingerprint, wrapped_identity, wrapped_to, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &tenant.as_str(),
                &recipient.to_string(),
                &recipient.fingerprint(),
                &wrapped,
                &wrapped_to,
                &new.created_at(),
            ],
        )
        .await
        .map_err(query_error("store the tenant's new key"))?;
    client
        .execute(
            "INSERT INTO tenant_identity_files (tenant, contents, updated_at, shredded_at)
             VALUES ($1, $2, clock_timestamp(), NULL)
             ON CONFLICT (tenant) DO UPDATE
                SET contents = EXCLUDED.contents, updated_at = EXCLUDED.updated_at, shredded_at = NULL",
            &[&tenant.as_str(), &identity_file],
        )
        .await
        .map_err(query_error("store the tenant's wrapped identity file"))?;
    client
        .execute(
            "UPDATE tenant_identity_objects SET written_at = NULL, shredded_at = NULL WHERE tenant = $1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("mark the tenant's identity objects stale"))?;
    Ok(CurrentKey {
        recipient: recipient.to_string(),
        fingerprint: recipient.fingerprint(),
        created_at: new.created_at(),
    })
}

/// In the caller's transaction: the tenant's current key, generated (and its identity
/// file stored) if it has none. `true` with a key generated now: write the identity file
/// to the regions ([`publish`]) once the transaction commits. A tenant whose earlier keys
/// were all shredded gets a new one; one that has unshredded keys but no current one
/// cannot (the old ones could not be rewrapped without the organisation's identity).
pub async fn ensure_current_key_in<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
    org_recipients: &[Recipient],
) -> Result<(CurrentKey, bool), TenantKeysError> {
    lock_tenant_keys(client, tenant).await?;
    if let Some(current) = current_key(client, tenant).await? {
        return Ok((current, false));
    }
    let unshredded: i64 = client
        .query_one(
            "SELECT count(*) FROM tenant_keys WHERE tenant = $1 AND shredded_at IS NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("count the tenant's keys"))?
        .get(0);
    if unshredded > 0 {
        return Err(TenantKeysError::Inconsistent {
            tenant: tenant.clone(),
            detail: format!(
                "{unshredded} key(s) not shredded but none current; run lifeboat tenant rotate-key {tenant}"
            ),
        });
    }
    let new = TenantIdentity::generate();
    let identity_file = core_keys::wrap_identities(std::slice::from_ref(&new), org_recipients)?;
    let current = store_new_key(client, tenant, &new, org_recipients, &identity_file).await?;
    tracing::info!(tenant = %tenant, fingerprint = current.fingerprint, "tenant key generated");
    Ok((current, true))
}

/// The tenant's current key, generated and written to the regions if it has none.
pub async fn ensure_current_key(
    catalog: &Catalog,
    regions: &[Region],
    tenant: &TenantName,
    org_recipients: &[Recipient],
) -> Result<CurrentKey, TenantKeysError> {
    let mut connection = catalog.connection().await?;
    // Every backup's claim asks: a tenant that has its key is answered by one read,
    // without a transaction or the tenant's lock.
    if let Some(current) = current_key(&**connection, tenant).await? {
        return Ok(current);
    }
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let (current, generated) = ensure_current_key_in(&*transaction, tenant, org_recipients).await?;
    transaction
        .commit()
        .await
        .map_err(query_error("commit the tenant's key"))?;
    if generated {
        publish(catalog, regions, tenant).await?;
    }
    Ok(current)
}

/// Write the tenant's identity file to every region that does not hold its current
/// contents yet. A region that fails is reported and kept stale for the next write.
pub async fn publish(
    catalog: &Catalog,
    regions: &[Region],
    tenant: &TenantName,
) -> Result<PublishReport, CatalogError> {
    let connection = catalog.connection().await?;
    let Some(file) = connection
        .query_opt(
            "SELECT contents, updated_at FROM tenant_identity_files
             WHERE tenant = $1 AND contents IS NOT NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("read the tenant's wrapped identity file"))?
    else {
        return Ok(PublishReport::default());
    };
    let contents: Vec<u8> = file.get(0);
    let updated_at: DateTime<Utc> = file.get(1);
    let written: Vec<String> = connection
        .query(
            "SELECT region FROM tenant_identity_objects WHERE tenant = $1 AND written_at IS NOT NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("read where the identity file is written"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let key = identity_object_key(tenant);
    let pending: Vec<&Region> = regions
        .iter()
        .filter(|region| !written.iter().any(|name| name == region.name().as_str()))
        .collect();
    let results = futures::future::join_all(
        pending
            .iter()
            .map(|region| region.put_object(&key, bytes::Bytes::from(contents.clone()))),
    )
    .await;
    let mut report = PublishReport::default();
    for (region, result) in pending.into_iter().zip(results) {
        let error = result.err().map(|error| error.to_string());
        // Written only if the contents did not change meanwhile (a rotation marks the
        // rows stale again and writes the new file itself).
        connection
            .execute(
                "INSERT INTO tenant_identity_objects (tenant, region, written_at, checked_at, last_error)
                 SELECT $1, $2, CASE WHEN $3::text IS NULL THEN now() END,
                        CASE WHEN $3::text IS NULL THEN now() END, $3
                 WHERE EXISTS (SELECT 1 FROM tenant_identity_files WHERE tenant = $1 AND updated_at = $4)
                 ON CONFLICT (tenant, region) DO UPDATE
                    SET written_at = EXCLUDED.written_at, checked_at = EXCLUDED.checked_at,
                        last_error = EXCLUDED.last_error, shredded_at = NULL",
                &[&tenant.as_str(), &region.name().as_str(), &error, &updated_at],
            )
            .await
            .map_err(query_error("record where the identity file is written"))?;
        match error {
            None => report.written.push(region.name().clone()),
            Some(error) => {
                tracing::warn!(tenant = %tenant, region = %region.name(), %error, "the tenant's identity file was not written");
                report.failed.push((region.name().clone(), error));
            }
        }
    }
    Ok(report)
}

/// The identities a restore or download of `tenant`'s backups decrypts with on this host:
/// the organisation's (`org_identities`) and, unwrapped with them in memory, the tenant's
/// own from the catalog. Without tenant keys, the organisation's alone (older backups).
pub async fn identities_for_tenant(
    catalog: &Catalog,
    org_identities: std::sync::Arc<Identities>,
    tenant: &TenantName,
) -> Result<std::sync::Arc<Identities>, TenantKeysError> {
    let connection = catalog.connection().await?;
    match wrapped_identities(&**connection, tenant).await? {
        Some(wrapped) => Ok(std::sync::Arc::new(
            org_identities.with_tenant_identities(tenant, &wrapped)?,
        )),
        None => Ok(org_identities),
    }
}

/// How often a backup's claim reads a region's `identity.age` back: a region whose copy was
/// written or found right within this time is not read again. The catalog holds the
/// wrapped identities; the regions' copies are for a lost catalog, so a week is soon
/// enough, and spares three requests per backup (a nightly's tenants are checked a
/// seventh at a time).
pub const IDENTITY_CHECK_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Check, in the background, that every region not checked within
/// [`IDENTITY_CHECK_INTERVAL`] holds the tenant's current identity file, and write it where
/// it is missing or different: a region that did not answer before, or an object that
/// someone with a writer key deleted or overwrote (it is not locked). The claim does not
/// wait on a region that may be down.
fn refresh_in_background(catalog: &Catalog, regions: &[Region], tenant: &TenantName) {
    let (catalog, regions, tenant) = (catalog.clone(), regions.to_vec(), tenant.clone());
    tokio::spawn(async move {
        let checked_since = Utc::now() - IDENTITY_CHECK_INTERVAL;
        if let Err(error) = refresh_regions(&catalog, &regions, &tenant, Some(checked_since)).await
        {
            tracing::warn!(tenant = %tenant, %error, "the tenant's identity file was not checked in the regions");
        }
    });
}

/// What [`refresh_in_background`] does, in every region now: read each region's object,
/// mark the regions whose copy is not the catalog's stale, and write those again
/// ([`publish`]).
pub async fn refresh(
    catalog: &Catalog,
    regions: &[Region],
    tenant: &TenantName,
) -> Result<PublishReport, CatalogError> {
    refresh_regions(catalog, regions, tenant, None).await
}

/// [`refresh`] in the regions whose copy was not written or found right since
/// `checked_since` (every region with `None`).
async fn refresh_regions(
    catalog: &Catalog,
    regions: &[Region],
    tenant: &TenantName,
    checked_since: Option<DateTime<Utc>>,
) -> Result<PublishReport, CatalogError> {
    let connection = catalog.connection().await?;
    let Some(contents) = wrapped_identities(&**connection, tenant).await? else {
        return Ok(PublishReport::default());
    };
    let recent: Vec<String> = match checked_since {
        None => Vec::new(),
        Some(since) => connection
            .query(
                "SELECT region FROM tenant_identity_objects
                 WHERE tenant = $1 AND written_at IS NOT NULL AND checked_at >= $2",
                &[&tenant.as_str(), &since],
            )
            .await
            .map_err(query_error("read when the identity objects were checked"))?
            .iter()
            .map(|row| row.get(0))
            .collect(),
    };
    let due: Vec<&Region> = regions
        .iter()
        .filter(|region| !recent.iter().any(|name| name == region.name().as_str()))
        .collect();
    if due.is_empty() {
        return Ok(PublishReport::default());
    }
    let key = identity_object_key(tenant);
    let copies = futures::future::join_all(
        due.iter()
            .map(|region| region.get_small_object(&key, core_keys::MAX_WRAPPED_BYTES as u64)),
    )
    .await;
    let mut stale = Vec::new();
    let mut found_right = Vec::new();
    for (region, copy) in due.iter().zip(copies) {
        match copy {
            Ok(bytes) if bytes.as_ref() == contents.as_slice() => {
                found_right.push(region.name().to_string());
            }
            Ok(_) => {
                tracing::warn!(tenant = %tenant, region = %region.name(), "the tenant's identity file in this region is not the catalog's; writing it again");
                stale.push(region.name().to_string());
            }
            Err(error) if error.kind == RegionErrorKind::NotFound => {
                stale.push(region.name().to_string());
            }
            // Not answering: left as recorded; tried again at the next backup.
            Err(_) => {}
        }
    }
    if !found_right.is_empty() {
        connection
            .execute(
                "UPDATE tenant_identity_objects SET checked_at = now()
                 WHERE tenant = $1 AND region = ANY($2::text[]) AND written_at IS NOT NULL",
                &[&tenant.as_str(), &found_right],
            )
            .await
            .map_err(query_error("record the identity objects found right"))?;
    }
    if stale.is_empty() {
        // Every region that answered holds the catalog's file: nothing to write.
        return Ok(PublishReport::default());
    }
    connection
        .execute(
            "UPDATE tenant_identity_objects SET written_at = NULL
             WHERE tenant = $1 AND region = ANY($2::text[])",
            &[&tenant.as_str(), &stale],
        )
        .await
        .map_err(query_error("mark the tenant's identity objects stale"))?;
    drop(connection);
    publish(catalog, regions, tenant).await
}

/// The tenant's keys a claimed job carries, from the catalog: a backup (and a live
/// restore's safety backup) the tenant's current recipient, generated now if it has none
/// and recorded with the job for the report check (and the regions' identity files are
/// checked in the background); a drill, live restore or copy the wrapped identity file.
/// `None` for other jobs.
pub async fn grant_for_claim(
    catalog: &Catalog,
    regions: &[Region],
    org_recipients: &[Recipient],
    job: &ClaimedJob,
) -> Result<Option<TenantKeyGrant>, TenantKeysError> {
    let (tenant, backs_up, restores) = match &job.work {
        JobWork::Backup { tenant, .. } => (tenant, true, false),
        JobWork::RestoreLive { tenant, .. } => (tenant, true, true),
        JobWork::Drill { tenant, .. } | JobWork::RestoreCopy { tenant, .. } => {
            (tenant, false, true)
        }
        _ => return Ok(None),
    };
    let mut grant = TenantKeyGrant::default();
    if backs_up {
        let current = ensure_current_key(catalog, regions, tenant, org_recipients).await?;
        refresh_in_background(catalog, regions, tenant);
        catalog
            .connection()
            .await?
            .execute(
                "UPDATE jobs SET tenant_recipient = $3 WHERE id = $1 AND lease_token = $2",
                &[&job.id, &job.lease_token, &current.recipient],
            )
            .await
            .map_err(query_error("record the job's tenant recipient"))?;
        grant.recipient = Some(current.recipient);
    }
    if restores {
        let connection = catalog.connection().await?;
        grant.wrapped_identities_hex = wrapped_identities(&**connection, tenant)
            .await?
            .map(|wrapped| hex::encode(&wrapped));
    }
    Ok(Some(grant))
}

/// For a reported backup (or safety backup) of job `job_id`: its manifest must name
/// exactly the tenant recipient the job was handed, if it was handed one. An agent holding
/// a stolen token must not record backups only its own key opens. `Err` says why not.
pub async fn check_reported_recipient<C: GenericClient>(
    client: &C,
    job_id: i64,
    manifest: &Manifest,
) -> Result<Result<(), String>, CatalogError> {
    let handed: Option<String> = client
        .query_opt(
            "SELECT tenant_recipient FROM jobs WHERE id = $1",
            &[&job_id],
        )
        .await
        .map_err(query_error("read the job's tenant recipient"))?
        .and_then(|row| row.get(0));
    let Some(handed) = handed else {
        return Ok(Ok(()));
    };
    let Ok(recipient) = Recipient::from_str(&handed) else {
        return Ok(Err(
            "the job's tenant recipient is not a recipient".to_owned()
        ));
    };
    let expected = [recipient.fingerprint()];
    if manifest.pipeline.recipient_fingerprints == expected {
        return Ok(Ok(()));
    }
    Ok(Err(format!(
        "backup {} is encrypted to key fingerprints [{}], not to the tenant key {} this job was handed",
        manifest.backup_id,
        manifest.pipeline.recipient_fingerprints.join(", "),
        expected[0]
    )))
}

/// What a rotation did.
#[derive(Debug, Clone, Serialize)]
pub struct RotatedKey {
    pub tenant: TenantName,
    pub current: CurrentKey,
    /// Fingerprints of the identities kept (retired) beside it, still opening old backups.
    pub retired: Vec<String>,
    pub publish: PublishReport,
}

/// Give `tenant` a new current identity (new backups use it); its other identities not
/// shredded are kept, retired, and still open the old backups. The identity file is
/// rewritten with all of them, which needs `org_identities` to unwrap the old ones: a
/// wrong organisation identity changes nothing. Audited `tenant.key.rotate`.
pub async fn rotate_key(
    catalog: &Catalog,
    regions: &[Region],
    org_recipients: &[Recipient],
    org_identities: &Identities,
    tenant: &TenantName,
    actor: &Actor,
) -> Result<RotatedKey, TenantKeysError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    if !crate::tenants::tenant_held(&*transaction, tenant).await? {
        return Err(TenantKeysError::UnknownTenant(tenant.clone()));
    }
    lock_tenant_keys(&*transaction, tenant).await?;
    let rows = transaction
        .query(
            "SELECT fingerprint, wrapped_identity FROM tenant_keys
             WHERE tenant = $1 AND shredded_at IS NULL ORDER BY created_at DESC, id DESC",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("read the tenant's keys"))?;
    let mut kept = Vec::new();
    let mut retired = Vec::new();
    for row in &rows {
        let wrapped: Vec<u8> = row.get(1);
        kept.extend(core_keys::unwrap_identities(
            tenant,
            &wrapped,
            org_identities,
        )?);
        retired.push(row.get::<_, String>(0));
    }
    let new = TenantIdentity::generate();
    let new_fingerprint = new.recipient().fingerprint();
    let mut all = vec![new];
    all.extend(kept);
    let identity_file = core_keys::wrap_identities(&all, org_recipients)?;
    let current = store_new_key(
        &*transaction,
        tenant,
        &all[0],
        org_recipients,
        &identity_file,
    )
    .await?;
    audit::record(
        &*transaction,
        actor,
        "tenant.key.rotate",
        Some(tenant.as_str()),
        None,
        serde_json::json!({ "fingerprint": new_fingerprint, "retired": retired }),
    )
    .await?;
    transaction
        .commit()
        .await
        .map_err(query_error("commit the rotation"))?;
    let publish = publish(catalog, regions, tenant).await?;
    Ok(RotatedKey {
        tenant: tenant.clone(),
        current,
        retired,
        publish,
    })
}

/// How one region fared in a shred.
#[derive(Debug, Clone, Serialize)]
pub struct RegionShred {
    pub region: RegionName,
    /// Versions and delete markers of the identity object deleted now.
    pub versions_deleted: usize,
    /// Why the region is not done; a rerun of the shred finishes it.
    pub error: Option<String>,
}

/// What a shred did.
#[derive(Debug, Clone, Serialize)]
pub struct ShredReport {
    pub tenant: TenantName,
    /// Keys whose wrapped identity was deleted from the catalog now (0 on a rerun).
    pub keys_shredded: u64,
    pub fingerprints: Vec<String>,
    pub regions: Vec<RegionShred>,
    /// The catalog and every region hold no wrapped identity of the tenant any more.
    pub complete: bool,
}

/// Crypto-shred a removed tenant: delete its wrapped identities from the catalog, then
/// every version of `tenants/<tenant>/identity.age` in every region. `confirmation` must
/// be the tenant's name. Refused for a tenant still in the catalog and for one with a
/// backup under legal hold (nothing changed). Audited `tenant.shred` (the catalog part)
/// and `tenant.shred.regions` (how the regions fared). A region that does not answer is
/// reported and left unfinished; running the shred again finishes it.
pub async fn shred_tenant(
    catalog: &Catalog,
    regions: &[Region],
    tenant: &TenantName,
    confirmation: &str,
    actor: &Actor,
) -> Result<ShredReport, TenantKeysError> {
    if confirmation != tenant.as_str() {
        return Err(TenantKeysError::NotConfirmed {
            tenant: tenant.clone(),
        });
    }
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    lock_tenant_keys(&*transaction, tenant).await?;
    if crate::tenants::tenant_held(&*transaction, tenant).await? {
        return Err(TenantKeysError::TenantExists(tenant.clone()));
    }
    let held: i64 = transaction
        .query_one(
            "SELECT count(*) FROM backups WHERE tenant = $1 AND legal_hold",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("count the tenant's held backups"))?
        .get(0);
    if held > 0 {
        return Err(TenantKeysError::UnderLegalHold {
            tenant: tenant.clone(),
            held,
        });
    }
    let fingerprints: Vec<String> = transaction
        .query(
            "UPDATE tenant_keys SET wrapped_identity = NULL, shredded_at = now()
             WHERE tenant = $1 AND shredded_at IS NULL RETURNING fingerprint",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("shred the tenant's keys"))?
        .iter()
        .map(|row| row.get(0))
        .collect();
    transaction
        .execute(
            "UPDATE tenant_identity_files SET contents = NULL, shredded_at = now()
             WHERE tenant = $1 AND shredded_at IS NULL",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("shred the tenant's identity file"))?;
    if !fingerprints.is_empty() {
        audit::record(
            &*transaction,
            actor,
            "tenant.shred",
            Some(tenant.as_str()),
            None,
            serde_json::json!({ "fingerprints": fingerprints }),
        )
        .await?;
    }
    transaction
        .commit()
        .await
        .map_err(query_error("commit the shred"))?;

    let key = identity_object_key(tenant);
    let outcomes = futures::future::join_all(
        regions
            .iter()
            .map(|region| delete_every_version(region, &key)),
    )
    .await;
    let mut region_reports = Vec::new();
    let connection = catalog.connection().await?;
    for (region, outcome) in regions.iter().zip(outcomes) {
        let (versions_deleted, error) = match outcome {
            Ok(deleted) => (deleted, None),
            Err((deleted, error)) => (deleted, Some(error)),
        };
        connection
            .execute(
                "INSERT INTO tenant_identity_objects (tenant, region, written_at, shredded_at, last_error)
                 VALUES ($1, $2, NULL, CASE WHEN $3::text IS NULL THEN now() END, $3)
                 ON CONFLICT (tenant, region) DO UPDATE
                    SET written_at = NULL,
                        shredded_at = CASE WHEN $3::text IS NULL THEN now() ELSE tenant_identity_objects.shredded_at END,
                        last_error = $3",
                &[&tenant.as_str(), &region.name().as_str(), &error],
            )
            .await
            .map_err(query_error("record the region's shred"))?;
        if let Some(error) = &error {
            tracing::warn!(tenant = %tenant, region = %region.name(), %error, "the tenant's identity object is not shredded in this region yet");
        }
        region_reports.push(RegionShred {
            region: region.name().clone(),
            versions_deleted,
            error,
        });
    }
    let complete = region_reports.iter().all(|region| region.error.is_none());
    audit::record(
        &**connection,
        actor,
        "tenant.shred.regions",
        Some(tenant.as_str()),
        None,
        serde_json::json!({ "complete": complete, "regions": region_reports }),
    )
    .await?;
    Ok(ShredReport {
        tenant: tenant.clone(),
        keys_shredded: u64::try_from(fingerprints.len()).unwrap_or(u64::MAX),
        fingerprints,
        regions: region_reports,
        complete,
    })
}

/// Delete every version and delete marker of `key` in `region`
/// (`Region::list_versions`, `Region::delete_version`), then check none is left. A store
/// without versions (it does not implement ListObjectVersions, as the embedded s3s-fs)
/// gets a plain delete, checked by a HEAD. Returns how many were deleted, or, with an
/// error, how many were before it.
async fn delete_every_version(region: &Region, key: &str) -> Result<usize, (usize, String)> {
    let mut deleted = 0;
    // Twice at most: a write racing the first pass (it cannot be ours: the catalog holds
    // nothing to write any more) is caught by the second.
    for _ in 0..2 {
        let versions = match region.list_versions(key).await {
            Ok(versions) => versions,
            Err(error) if does_not_list_versions(&error) => {
                return delete_unversioned(region, key).await;
            }
            Err(error) => return Err((deleted, error.to_string())),
        };
        let exact: Vec<_> = versions
            .into_iter()
            .filter(|version| version.key == key)
            .collect();
        if exact.is_empty() {
            return Ok(deleted);
        }
        for version in exact {
            region
                .delete_version(key, &version.version_id)
                .await
                .map_err(|error| (deleted, error.to_string()))?;
            deleted += 1;
        }
    }
    let left = region
        .list_versions(key)
        .await
        .map_err(|error| (deleted, error.to_string()))?
        .into_iter()
        .filter(|version| version.key == key)
        .count();
    if left == 0 {
        Ok(deleted)
    } else {
        Err((
            deleted,
            format!("{left} version(s) of {key} still listed after deleting"),
        ))
    }
}

/// The store answered that it does not implement ListObjectVersions (HTTP 501).
fn does_not_list_versions(error: &RegionError) -> bool {
    error.message.starts_with("NotImplemented") || error.message.contains("HTTP status 501")
}

/// `key` deleted from a store without versions, and checked gone.
async fn delete_unversioned(region: &Region, key: &str) -> Result<usize, (usize, String)> {
    let existed = region
        .object_size(key)
        .await
        .map_err(|error| (0, error.to_string()))?
        .is_some();
    region
        .delete_object(key)
        .await
        .map_err(|error| (0, error.to_string()))?;
    match region.object_size(key).await {
        Ok(None) => Ok(usize::from(existed)),
        Ok(Some(_)) => Err((0, format!("{key} is still there after deleting it"))),
        Err(error) => Err((0, error.to_string())),
    }
}
