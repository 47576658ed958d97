//! `lifeboat backups list`: straight from a region's manifests, so it works with no
//! catalog at all, which is what is left after losing the controller.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use comfy_table::Table;
use futures::StreamExt;
use lifeboat_core::ids::{RegionName, TenantName};
use lifeboat_core::manifest::Manifest;
use lifeboat_core::policy;
use lifeboat_core::region::{Region, Regions};
use lifeboat_core::restore;

use super::{load_config, parse_flag, parse_optional_flag};
use crate::output::human_bytes;

pub async fn run(
    config_path: Option<&Path>,
    tenant: Option<&str>,
    region: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_optional_flag("tenant", tenant, TenantName::parse)?;
    let regions = Regions::from_config(&config);
    let candidates: Vec<Region> = match region {
        Some(region) => {
            let name = parse_flag("region", region, RegionName::parse)?;
            vec![regions.named(&name)?.clone()]
        }
        None => regions.to_vec(),
    };

    let mut errors = Vec::new();
    let mut listed = None;
    for region in &candidates {
        match restore::list_backup_ids(region, tenant.as_ref()).await {
            Ok(ids) => {
                listed = Some((region, ids));
                break;
            }
            Err(error) => errors.push(error.to_string()),
        }
    }
    let Some((region, ids)) = listed else {
        anyhow::bail!("no region could be listed: {}", errors.join("; "));
    };

    let manifests: Vec<anyhow::Result<Manifest>> = futures::stream::iter(ids)
        .map(|(tenant, backup_id)| async move {
            restore::read_manifest(region, &tenant, backup_id)
                .await
                .with_context(|| format!("read manifest of backup {backup_id}"))
        })
        .buffered(policy::MANIFEST_FETCHES_IN_FLIGHT)
        .collect()
        .await;
    let mut unreadable = 0;
    let mut rows = Vec::new();
    for manifest in manifests {
        match manifest {
            Ok(manifest) => rows.push(manifest),
            Err(error) => {
                unreadable += 1;
                eprintln!("warning: {error:#}");
            }
        }
    }

    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        let mut table = Table::new();
        table.load_preset(comfy_table::presets::NOTHING);
        table.set_header([
            "tenant", "backup", "taken", "kind", "stored", "dump", "tables", "regions",
        ]);
        for manifest in &rows {
            table.add_row([
                manifest.tenant.to_string(),
                manifest.backup_id.to_string(),
                manifest.started_at.format("%Y-%m-%d %H:%M:%S").to_string(),
                serde_json::to_value(manifest.kind)
                    .ok()
                    .and_then(|value| value.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                human_bytes(manifest.object.stored_bytes),
                human_bytes(manifest.object.dump_bytes),
                manifest.row_counts.len().to_string(),
                manifest
                    .regions
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ]);
        }
        println!("{table}");
        eprintln!("{} backup(s) in region {}", rows.len(), region.name());
    }
    if unreadable > 0 {
        eprintln!("{unreadable} manifest(s) could not be read");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
