//! Back up one tenant to every configured region.

use std::str::FromStr;
use std::sync::Arc;

use lifeboat_core::api::TenantKeyGrant;
use lifeboat_core::backup::{self, BackupError, BackupReport, BackupRequest};
use lifeboat_core::config::{Config, TenantConfig};
use lifeboat_core::ids::BackupId;
use lifeboat_core::keys::{KeyError, Recipient};
use lifeboat_core::manifest::BackupKind;
use lifeboat_core::progress::Progress;
use lifeboat_core::region::Regions;
use tokio_util::sync::CancellationToken;

/// Take one backup of `tenant` to every configured region (`regions`, built once from
/// `config`), encrypted to the configured recipients.
pub async fn backup_tenant(
    config: &Config,
    regions: &Regions,
    tenant: &TenantConfig,
    kind: BackupKind,
    backup_id: Option<BackupId>,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
) -> Result<BackupReport, BackupError> {
    backup_tenant_to(
        config, regions, tenant, kind, backup_id, None, progress, cancel,
    )
    .await
}

/// Take one backup of `tenant`, encrypted to `tenant_recipient` (the tenant's own key,
/// handed out with the job) or, without one, to the configured recipients.
#[expect(
    clippy::too_many_arguments,
    reason = "one backup's inputs, each distinct"
)]
pub async fn backup_tenant_to(
    config: &Config,
    regions: &Regions,
    tenant: &TenantConfig,
    kind: BackupKind,
    backup_id: Option<BackupId>,
    tenant_recipient: Option<Recipient>,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
) -> Result<BackupReport, BackupError> {
    backup::run_backup(BackupRequest {
        config,
        tenant,
        kind,
        backup_id,
        regions: regions.to_vec(),
        progress,
        cancel,
        tenant_recipient,
    })
    .await
}

/// The recipient a job's tenant keys name, parsed; `None` when the job carries none (an
/// older controller).
pub fn granted_recipient(
    tenant_keys: Option<&TenantKeyGrant>,
) -> Result<Option<Recipient>, KeyError> {
    tenant_keys
        .and_then(|grant| grant.recipient.as_deref())
        .map(Recipient::from_str)
        .transpose()
}
