//! Restore a backup into a new database, verified, trying each region in turn.
//!
//! Steps: resolve the backup, refuse an existing target, then for each region in
//! configured order: read the manifest, create the database, stream the object into
//! pg_restore, verify row counts against the manifest. A failure that another region
//! might not have (missing, corrupt or truncated object, dead region) drops the database
//! and moves on; any other failure drops it and stops. A database that existed before
//! is never touched.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use lifeboat_core::api::TenantKeyGrant;
use lifeboat_core::config::{Config, TenantConfig};
use lifeboat_core::ids::{BackupId, RegionName, TenantName};
use lifeboat_core::keys::{Identities, KeyError};
use lifeboat_core::manifest::Manifest;
use lifeboat_core::policy;
use lifeboat_core::postgres::PgTools;
use lifeboat_core::progress::{Progress, Stage};
use lifeboat_core::region::{Region, RegionErrorKind, Regions};
use lifeboat_core::restore::{
    self, BackupSelector, RestoreError, RestoreMethod, RestoreTarget, Staging, StreamedRestore,
};
use lifeboat_core::tenant_keys::{self, TenantKeyError};
use lifeboat_provisioner::{self as provisioner, ProvisionError, VerifiedCounts};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum RestoreJobError {
    #[error(transparent)]
    UnknownName(#[from] lifeboat_core::config::UnknownName),
    #[error("identity_file is not configured: restores need the age identity (private key)")]
    NoIdentity,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    TenantKeys(#[from] TenantKeyError),
    #[error("the job's wrapped tenant identities are not hex")]
    GrantNotHex,
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Provision(Box<ProvisionError>),
    #[error("cancelled; the half-restored database was dropped")]
    Cancelled,
    #[error("backup {backup} of tenant {tenant} could not be restored from any region: {reasons}")]
    AllRegionsFailed {
        tenant: TenantName,
        backup: BackupId,
        reasons: String,
    },
}

impl From<ProvisionError> for RestoreJobError {
    fn from(error: ProvisionError) -> Self {
        RestoreJobError::Provision(Box::new(error))
    }
}

impl RestoreJobError {
    /// Whether this error says something about the backup itself (it could not be found,
    /// read, decrypted or restored, or its rows do not match), rather than about this agent
    /// or the moment: its configuration, the identity file, the target cluster (no CREATEDB,
    /// down), an unreachable region, a cancellation. Only the former is a drill's verdict;
    /// the latter is worth trying again.
    pub fn is_verdict_on_the_backup(&self) -> bool {
        match self {
            RestoreJobError::UnknownName(_)
            | RestoreJobError::NoIdentity
            | RestoreJobError::Key(_)
            | RestoreJobError::TenantKeys(_)
            | RestoreJobError::GrantNotHex
            | RestoreJobError::Provision(_)
            | RestoreJobError::Cancelled
            | RestoreJobError::Restore(RestoreError::Region(_)) => false,
            RestoreJobError::Restore(_) | RestoreJobError::AllRegionsFailed { .. } => true,
        }
    }
}

/// A region that was tried and failed.
#[derive(Debug, Clone, Serialize)]
pub struct FailedAttempt {
    pub region: RegionName,
    pub error: String,
}

/// A verified restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub tenant: TenantName,
    pub backup_id: BackupId,
    pub database: String,
    pub region: RegionName,
    pub failed_attempts: Vec<FailedAttempt>,
    /// With `--latest`, regions that could not be listed: a newer backup only they hold
    /// was not considered.
    pub regions_not_listed: Vec<FailedAttempt>,
    pub stored_bytes: u64,
    pub dump_bytes: u64,
    /// Streamed into pg_restore, or staged on local disk for `pg_restore --jobs`.
    pub method: RestoreMethod,
    pub tables_verified: usize,
    pub rows_verified: u64,
    pub duration: Duration,
}

/// What to restore where.
#[derive(Debug)]
pub struct RestoreRequest<'a> {
    /// The tenant and its cluster (from the catalog or the config).
    pub tenant: &'a TenantConfig,
    pub selector: BackupSelector,
    pub into_database: &'a str,
    /// The object's SHA-256 as the catalog recorded it, when there is a catalog: a
    /// manifest that disagrees is not believed, and the next region is tried.
    pub catalog_sha256: Option<&'a str>,
    /// The tenant's wrapped identities (per-tenant keys) from the catalog, if any;
    /// without them the regions' `identity.age` is tried.
    pub tenant_keys: Option<&'a TenantKeyGrant>,
}

/// Restore `request.selector` of `request.tenant` into the new database `into_database`
/// on the tenant's cluster.
pub async fn restore_into_new_database(
    config: &Config,
    regions: &Regions,
    request: RestoreRequest<'_>,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
) -> Result<RestoreReport, RestoreJobError> {
    let span = tracing::info_span!("restore", tenant = %request.tenant.name, database = request.into_database);
    restore_instrumented(config, regions, request, progress, cancel)
        .instrument(span)
        .await
}

async fn restore_instrumented(
    config: &Config,
    regions: &Regions,
    request: RestoreRequest<'_>,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
) -> Result<RestoreReport, RestoreJobError> {
    let started = Instant::now();
    let tenant = request.tenant;
    let cluster = config.cluster(&tenant.cluster)?;
    let identities =
        load_identities_for(config, regions, &tenant.name, request.tenant_keys).await?;
    progress.stage(Stage::Connecting);

    if provisioner::database_exists(cluster, request.into_database).await? {
        return Err(ProvisionError::DatabaseExists {
            cluster: cluster.name.to_string(),
            database: request.into_database.to_owned(),
        }
        .into());
    }
    let resolved =
        restore::resolve_backup(regions, config.min_regions, &tenant.name, request.selector)
            .await?;
    let regions_not_listed: Vec<FailedAttempt> = resolved
        .unlisted
        .into_iter()
        .map(|(region, error)| FailedAttempt { region, error })
        .collect();
    let target = RestoreTarget {
        tools: PgTools::locate(config.pg_bin_dir.as_deref()).await,
        cluster: cluster.clone(),
        database: request.into_database.to_owned(),
        owner_role: None,
        staging: Staging::configured(&config.restore),
    };
    provisioner::create_database(cluster, request.into_database).await?;
    let restored_and_verified = async {
        let restored = restore_into_existing_database(
            regions,
            &tenant.name,
            resolved.backup_id,
            request.catalog_sha256,
            identities,
            &target,
            progress.clone(),
            cancel,
        )
        .await?;
        progress.stage(Stage::Verifying);
        let verified = provisioner::verify_row_counts(
            cluster,
            request.into_database,
            &restored.manifest.row_counts,
        )
        .await?;
        Ok::<_, RestoreJobError>((restored, verified))
    };
    match restored_and_verified.await {
        Ok((restored, VerifiedCounts { tables, rows })) => {
            progress.stage(Stage::Done);
            tracing::info!(region = %restored.streamed.region, method = %restored.streamed.method, tables, rows, "restore verified");
            Ok(RestoreReport {
                tenant: tenant.name.clone(),
                backup_id: resolved.backup_id,
                database: request.into_database.to_owned(),
                region: restored.streamed.region,
                failed_attempts: restored.failed_attempts,
                regions_not_listed,
                stored_bytes: restored.streamed.stored_bytes,
                dump_bytes: restored.streamed.dump_bytes,
                method: restored.streamed.method,
                tables_verified: tables,
                rows_verified: rows,
                duration: started.elapsed(),
            })
        }
        Err(error) => {
            // Dropping the database (WITH FORCE) also stops a pg_restore still running.
            if let Err(drop_error) =
                provisioner::drop_database(cluster, request.into_database).await
            {
                tracing::error!(%drop_error, "could not drop the half-restored database");
            }
            Err(error)
        }
    }
}

/// The age identity restores need.
pub fn load_identities(config: &Config) -> Result<Arc<Identities>, RestoreJobError> {
    let identity_file = config
        .identity_file
        .as_deref()
        .ok_or(RestoreJobError::NoIdentity)?;
    Ok(Arc::new(Identities::load(identity_file)?))
}

/// The identities a restore of `tenant`'s backups decrypts with: the organisation's
/// identity file and, unwrapped with it in memory, the tenant's own identities (per-tenant
/// keys). Those come from the job (`tenant_keys`, the catalog's, trusted) or, without a
/// job, from the first region holding `tenants/<tenant>/identity.age`. A job's wrapped
/// identities that the identity file does not open are an error; a region's are only
/// warned about, since backups made before per-tenant keys need the identity file alone.
pub async fn load_identities_for(
    config: &Config,
    regions: &Regions,
    tenant: &TenantName,
    tenant_keys: Option<&TenantKeyGrant>,
) -> Result<Arc<Identities>, RestoreJobError> {
    let org_identities = load_identities(config)?;
    let granted = tenant_keys
        .map(TenantKeyGrant::wrapped_identities)
        .transpose()
        .map_err(|_| RestoreJobError::GrantNotHex)?
        .flatten();
    if let Some(wrapped) = granted {
        return Ok(Arc::new(
            org_identities.with_tenant_identities(tenant, &wrapped)?,
        ));
    }
    // Every region at once; the first that holds a copy the identity file opens wins. A
    // region that does not answer is given up after the listing's grace, as a restore's
    // listing does (a tenant without its own key has no copy anywhere).
    let key = tenant_keys::identity_object_key(tenant);
    let mut lookups: FuturesUnordered<_> = regions
        .iter()
        .map(|region| async {
            let copy = region
                .get_small_object(&key, tenant_keys::MAX_WRAPPED_BYTES as u64)
                .await;
            (region.name().clone(), copy)
        })
        .collect();
    let first_usable = async {
        while let Some((region, copy)) = lookups.next().await {
            let wrapped = match copy {
                Ok(wrapped) => wrapped,
                Err(error) if error.kind == RegionErrorKind::NotFound => continue,
                Err(error) => {
                    tracing::warn!(%region, %error, "the tenant's wrapped identities could not be read here");
                    continue;
                }
            };
            match org_identities.with_tenant_identities(tenant, &wrapped) {
                Ok(identities) => return Some(identities),
                Err(error) => {
                    tracing::warn!(%region, %error, "the tenant's wrapped identities in this region cannot be used");
                }
            }
        }
        None
    };
    if let Ok(Some(identities)) = tokio::time::timeout(policy::LISTING_GRACE, first_usable).await {
        return Ok(Arc::new(identities));
    }
    Ok(org_identities)
}

/// A backup streamed into a database, not yet verified.
#[derive(Debug, Clone)]
pub struct RestoredInto {
    pub manifest: Manifest,
    pub streamed: StreamedRestore,
    /// Regions tried first that could not serve it.
    pub failed_attempts: Vec<FailedAttempt>,
}

/// `region`'s manifest of `backup_id`, if it is the one asked for and (with a catalog)
/// the one the catalog recorded.
pub async fn read_believed_manifest(
    region: &Region,
    tenant: &TenantName,
    backup_id: BackupId,
    catalog_sha256: Option<&str>,
) -> Result<Manifest, RestoreError> {
    let manifest = restore::read_manifest(region, tenant, backup_id).await?;
    if let Some(catalog_sha256) = catalog_sha256 {
        restore::check_manifest_against_catalog(region.name(), &manifest, catalog_sha256)?;
    }
    Ok(manifest)
}

/// Restore `backup_id` into `target`'s existing, empty database, trying each region in
/// turn: the one region-fallback path of every restore, drill and playbook. A failure that
/// another region might not have (missing, unbelievable, corrupt or truncated object, dead
/// region) moves on to the next; pg_restore runs in one transaction, so a failed attempt
/// leaves the database empty again. Any other failure stops.
#[expect(
    clippy::too_many_arguments,
    reason = "one restore's inputs, each distinct"
)]
pub async fn restore_into_existing_database(
    regions: &Regions,
    tenant: &TenantName,
    backup_id: BackupId,
    catalog_sha256: Option<&str>,
    identities: Arc<Identities>,
    target: &RestoreTarget,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
) -> Result<RestoredInto, RestoreJobError> {
    let mut failed_attempts = Vec::new();
    for region in regions.iter() {
        let manifest = match read_believed_manifest(region, tenant, backup_id, catalog_sha256).await
        {
            Ok(manifest) => manifest,
            // Missing, unreadable, another backup's, or not the catalog's: another
            // region may hold the right one.
            Err(error) if error.is_region_specific() => {
                tracing::warn!(region = %region.name(), %error, "manifest unavailable or not believed, trying the next region");
                failed_attempts.push(FailedAttempt {
                    region: region.name().clone(),
                    error: error.to_string(),
                });
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        progress.stage(Stage::Downloading);
        let streamed = tokio::select! {
            streamed = restore::stream_restore(region, &manifest, identities.clone(), target, progress.clone()) => streamed,
            () = cancel.cancelled() => return Err(RestoreJobError::Cancelled),
        };
        match streamed {
            Ok(streamed) => {
                return Ok(RestoredInto {
                    manifest,
                    streamed,
                    failed_attempts,
                });
            }
            Err(error) if error.is_region_specific() => {
                tracing::warn!(region = %region.name(), %error, "restore from region failed, trying the next region");
                failed_attempts.push(FailedAttempt {
                    region: region.name().clone(),
                    error: error.to_string(),
                });
            }
            Err(error) => return Err(error.into()),
        }
    }
    Err(RestoreJobError::AllRegionsFailed {
        tenant: tenant.clone(),
        backup: backup_id,
        reasons: failed_attempts
            .iter()
            .map(|attempt| attempt.error.clone())
            .collect::<Vec<_>>()
            .join("; "),
    })
}
