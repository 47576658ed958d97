//! `lifeboat restore --tenant NAME (--backup ID | --latest) --into DBNAME`.

use std::path::Path;
use std::process::ExitCode;

use lifeboat_agent::restore_job::{self, RestoreRequest};
use lifeboat_core::ids::TenantName;
use lifeboat_core::region::Regions;
use lifeboat_core::restore::BackupSelector;

use super::{backup_selector, cancel_on_signal, load_config, parse_flag, resolve_tenant};
use crate::output::{human_bytes, human_duration, progress_for};

pub async fn run(
    config_path: Option<&Path>,
    tenant: &str,
    backup: Option<&str>,
    into: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("tenant", tenant, TenantName::parse)?;
    let selector = backup_selector(backup)?;
    if into.is_empty() || into.len() > 63 || into.contains('\0') {
        anyhow::bail!("--into: a database name must be 1 to 63 bytes without NUL characters");
    }
    let tenant_config = resolve_tenant(&config, &tenant).await?;
    let catalog = match &config.catalog {
        Some(_) => Some(super::catalog::open_catalog(&config).await?),
        None => None,
    };
    let catalog_sha256 = match selector {
        BackupSelector::Id(backup_id) => {
            super::catalog_sha256(catalog.as_ref(), &tenant, backup_id).await?
        }
        BackupSelector::Latest => None,
    };
    let tenant_keys = super::catalog_tenant_keys(catalog.as_ref(), &tenant).await?;
    let progress = progress_for(json, &format!("restore {tenant}"));
    let report = restore_job::restore_into_new_database(
        &config,
        &Regions::from_config(&config),
        RestoreRequest {
            tenant: &tenant_config,
            selector,
            into_database: into,
            catalog_sha256: catalog_sha256.as_deref(),
            tenant_keys: tenant_keys.as_ref(),
        },
        progress,
        cancel_on_signal(),
    )
    .await?;
    if json {
        let summary = serde_json::json!({
            "tenant": report.tenant,
            "backup_id": report.backup_id,
            "database": report.database,
            "region": report.region,
            "failed_attempts": report.failed_attempts,
            "regions_not_listed": report.regions_not_listed,
            "stored_bytes": report.stored_bytes,
            "dump_bytes": report.dump_bytes,
            "method": report.method.to_string(),
            "tables_verified": report.tables_verified,
            "rows_verified": report.rows_verified,
            "duration_seconds": report.duration.as_secs_f64(),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "restored backup {} of tenant {} into database {:?} from region {} in {}",
        report.backup_id,
        tenant,
        report.database,
        report.region,
        human_duration(report.duration)
    );
    println!(
        "  verified {} tables, {} rows; read {} → {} ({})",
        report.tables_verified,
        report.rows_verified,
        human_bytes(report.stored_bytes),
        human_bytes(report.dump_bytes),
        report.method
    );
    for unlisted in &report.regions_not_listed {
        println!(
            "  WARNING: region {} could not be listed ({}): a newer backup held only there was not considered",
            unlisted.region, unlisted.error
        );
    }
    for attempt in &report.failed_attempts {
        println!(
            "  region {} failed first: {}",
            attempt.region, attempt.error
        );
    }
    Ok(ExitCode::SUCCESS)
}
