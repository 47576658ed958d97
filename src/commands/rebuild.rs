//! `lifeboat catalog rebuild --region R`: the catalog's backups, rebuilt from one region's
//! manifests.

use std::path::Path;
use std::process::ExitCode;

use clap::Subcommand;
use comfy_table::Table;
use lifeboat_controller::rebuild;
use lifeboat_core::ids::RegionName;
use lifeboat_core::region::Regions;

use super::catalog::{open_catalog, operator};
use super::{load_config, parse_flag};

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Record every backup whose manifest is in REGION, and where its copies are
    /// (safe to repeat; holds, verifications and the trash are kept).
    Rebuild {
        /// The region whose manifests to read.
        #[arg(long)]
        region: String,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config_path: Option<&Path>, command: CatalogCommand) -> anyhow::Result<ExitCode> {
    let CatalogCommand::Rebuild { region, json } = command;
    let config = load_config(config_path)?;
    let source = parse_flag("region", &region, RegionName::parse)?;
    // Refused before the catalog is opened: the error names the configured regions.
    config.region(&source)?;
    let catalog = open_catalog(&config).await?;
    let regions = Regions::from_config(&config);
    let report =
        rebuild::rebuild_from_region(&catalog, &regions, &source, &operator(&catalog).await?)
            .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "rebuilt the catalog from region {}: {} backups found, {} recorded",
            report.source_region, report.backups_found, report.backups_recorded
        );
        let mut table = Table::new();
        table.load_preset(comfy_table::presets::NOTHING);
        table.set_header(["region", "present", "missing", "not checked", "note"]);
        for summary in &report.regions {
            table.add_row([
                summary.region.to_string(),
                summary.present.to_string(),
                summary.missing.to_string(),
                summary.unchecked.to_string(),
                summary
                    .unreachable
                    .as_ref()
                    .map_or_else(String::new, |error| {
                        format!("unreachable, left to scrub: {error}")
                    }),
            ]);
        }
        println!("{table}");
        for manifest in &report.unreadable {
            println!("unreadable manifest: {manifest}");
        }
    }
    Ok(if report.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
