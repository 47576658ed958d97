//! One module per command.

pub mod audit;
pub mod backup;
pub mod backups_list;
pub mod catalog;
pub mod config_check;
pub mod controller;
pub mod demo;
pub mod drill;
pub mod keygen;
pub mod keys;
pub mod nightly;
pub mod playbook;
pub mod provision;
pub mod rebuild;
pub mod regions;
pub mod restore;
pub mod restores;
pub mod retention;
pub mod tenant_keys;
pub mod user;

use std::path::Path;

use anyhow::Context;
use lifeboat_core::config::{Config, TenantConfig};
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::restore::BackupSelector;
use tokio_util::sync::CancellationToken;

/// Load and validate the configuration, or fail with every problem listed.
pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// Where `tenant`'s database is (`lifeboat_controller::tenants::resolve_tenant`).
pub async fn resolve_tenant(config: &Config, tenant: &TenantName) -> anyhow::Result<TenantConfig> {
    Ok(lifeboat_controller::tenants::resolve_tenant(config, tenant).await?)
}

/// The SHA-256 `catalog` recorded for `backup_id` of `tenant`, for a restore to compare
/// with the manifest it reads; `None` without a catalog or when it does not know the backup.
pub async fn catalog_sha256(
    catalog: Option<&lifeboat_controller::catalog::Catalog>,
    tenant: &TenantName,
    backup_id: BackupId,
) -> anyhow::Result<Option<String>> {
    let Some(catalog) = catalog else {
        return Ok(None);
    };
    let connection = catalog.connection().await?;
    Ok(lifeboat_controller::backups::recorded_sha256(&**connection, tenant, backup_id).await?)
}

/// The tenant's wrapped identities from the catalog, if there is one and it holds them: a
/// restore unwraps them with the identity file instead of trusting the regions'
/// `identity.age`, which a writer key can overwrite (it is not locked).
pub async fn catalog_tenant_keys(
    catalog: Option<&lifeboat_controller::catalog::Catalog>,
    tenant: &TenantName,
) -> anyhow::Result<Option<lifeboat_core::api::TenantKeyGrant>> {
    let Some(catalog) = catalog else {
        return Ok(None);
    };
    let connection = catalog.connection().await?;
    let wrapped =
        lifeboat_controller::tenant_keys::wrapped_identities(&**connection, tenant).await?;
    Ok(wrapped.map(|wrapped| lifeboat_core::api::TenantKeyGrant::wrapping(&wrapped)))
}

/// A token cancelled by the first Ctrl-C (SIGINT) or SIGTERM.
pub fn cancel_on_signal() -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut stream) => {
                    stream.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminate => {}
        }
        eprintln!("stopping…");
        token.cancel();
    });
    cancel
}

/// Ask for the tenant's name on stdin; true only when typed exactly. Every command that
/// changes a tenant's live database asks this unless `--yes`.
pub async fn confirmed_by_typing(tenant: &TenantName) -> anyhow::Result<bool> {
    use tokio::io::AsyncBufReadExt;
    eprint!("type the tenant's name ({tenant}) to go on: ");
    let mut line = String::new();
    tokio::io::BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await?;
    Ok(line.trim() == tenant.as_str())
}

/// `--backup ID` or, without it, `--latest`.
pub fn backup_selector(backup: Option<&str>) -> anyhow::Result<BackupSelector> {
    Ok(match backup {
        Some(backup) => BackupSelector::Id(parse_flag("backup", backup, BackupId::parse)?),
        None => BackupSelector::Latest,
    })
}

/// Parse a name from the command line, naming the flag on failure.
pub fn parse_flag<T, E>(
    flag: &str,
    value: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    parse(value).with_context(|| format!("--{flag}"))
}

/// [`parse_flag`] for a flag that may be left out.
pub fn parse_optional_flag<T, E>(
    flag: &str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> anyhow::Result<Option<T>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    value
        .map(|value| parse_flag(flag, value, parse))
        .transpose()
}
