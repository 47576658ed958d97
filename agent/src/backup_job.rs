//! Back up one tenant to every configured region.

use std::sync::Arc;

use lifeboat_core::backup::{self, BackupError, BackupReport, BackupRequest};
use lifeboat_core::config::{Config, TenantConfig};
use lifeboat_core::ids::BackupId;
use lifeboat_core::manifest::BackupKind;
use lifeboat_core::progress::Progress;
use lifeboat_core::region::Regions;
use tokio_util::sync::CancellationToken;

/// Take one backup of `tenant` to every configured region (`regions`, built once from
/// `config`).
pub async fn backup_tenant(
    config: &Config,
    regions: &Regions,
    tenant: &TenantConfig,
    kind: BackupKind,
    backup_id: Option<BackupId>,
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
    })
    .await
}
