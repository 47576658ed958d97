//! `lifeboat backup --tenant NAME`: one backup, no controller needed.

use std::path::Path;
use std::process::ExitCode;

use lifeboat_controller::backups;
use lifeboat_core::ids::TenantName;
use lifeboat_core::manifest::BackupKind;
use lifeboat_core::region::Regions;

use super::{cancel_on_signal, load_config, parse_flag, resolve_tenant};
use crate::output::{human_bytes, human_duration, progress_for};

pub async fn run(config_path: Option<&Path>, tenant: &str, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("tenant", tenant, TenantName::parse)?;
    let progress = progress_for(json, &format!("backup {tenant}"));
    let regions = Regions::from_config(&config);
    lifeboat_core::region::check::check_required_locks(&config, &regions)
        .await
        .map_err(anyhow::Error::msg)?;
    let report = lifeboat_agent::backup_job::backup_tenant(
        &config,
        &regions,
        &resolve_tenant(&config, &tenant).await?,
        BackupKind::Manual,
        None,
        progress,
        cancel_on_signal(),
    )
    .await?;
    let manifest = &report.manifest;
    // With a catalog, record the backup there too, so retention and scrub see it. The
    // backup is committed either way: a failure here is a warning, mended by a rebuild.
    let catalogued = match &config.catalog {
        None => None,
        Some(_) => Some(
            async {
                let catalog = super::catalog::open_catalog(&config).await?;
                backups::record_checked_backup(
                    &catalog,
                    &regions,
                    &report.manifest,
                    &report.regions,
                )
                .await?;
                anyhow::Ok(())
            }
            .await,
        ),
    };
    if let Some(Err(error)) = &catalogued {
        eprintln!(
            "warning: the backup is committed but not recorded in the catalog ({error:#}); `lifeboat catalog rebuild --region R` will record it"
        );
    }
    if json {
        let summary = serde_json::json!({
            "tenant": tenant,
            "backup_id": manifest.backup_id,
            "regions": manifest.regions,
            "degraded": report.degraded,
            "region_results": report.regions,
            "dump_bytes": manifest.object.dump_bytes,
            "stored_bytes": manifest.object.stored_bytes,
            "sha256": manifest.object.sha256,
            "part_count": manifest.object.part_count,
            "duration_seconds": report.duration.as_secs_f64(),
            "row_count_seconds": report.row_count_duration.as_secs_f64(),
            "catalogued": matches!(catalogued, Some(Ok(()))),
            "manifest": manifest,
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "backup {} of tenant {} committed to {} in {}",
        manifest.backup_id,
        tenant,
        manifest
            .regions
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        human_duration(report.duration)
    );
    println!(
        "  dump {} → stored {} ({} tables, {} rows)",
        human_bytes(manifest.object.dump_bytes),
        human_bytes(manifest.object.stored_bytes),
        manifest.row_counts.len(),
        manifest
            .row_counts
            .iter()
            .map(|count| count.rows)
            .sum::<u64>()
    );
    for region in report.regions.iter().filter(|region| !region.stored) {
        println!(
            "  DEGRADED: region {} does not hold it: {}",
            region.region,
            region.error.as_deref().unwrap_or("unknown")
        );
    }
    Ok(ExitCode::SUCCESS)
}
