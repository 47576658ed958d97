//! Back up one tenant to every configured region.

use std::sync::Arc;

use lifeboat_core::backup::{self, BackupError, BackupReport, BackupRequest};
use lifeboat_core::config::{Config, TenantConfig};
use lifeboat_core::ids::BackupId;
use lifeboat_core::manifest::BackupKind;
use lifeboat_core::progress::Progress;
use lifeboat_core::region::Region;
use tokio_util::sync::CancellationToken;

/// Connect to every configured region and take one backup of `tenant`.
pub async fn backup_tenant(
    config: &Config,
    tenant: &TenantConfig,
    kind: BackupKind,
    backup_id: Option<BackupId>,
    progress: Arc<dyn Progress>,
    cancel: CancellationToken,
) -> Result<BackupReport, BackupError> {
    let regions = config.regions.iter().map(Region::new).collect();
    backup::run_backup(BackupRequest {
        config,
        tenant,
        kind,
        backup_id,
        regions,
        progress,
        cancel,
    })
    .await
}
