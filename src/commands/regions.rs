//! `lifeboat regions check`: each region's versioning, object lock and writer key, as
//! `lifeboat_core::region::check` finds them. Exit 1 if a region is unfit as configured.

use std::path::Path;
use std::process::ExitCode;

use comfy_table::Table;
use lifeboat_core::region::Regions;
use lifeboat_core::region::check::{RegionCheck, check_region};

use super::load_config;

pub async fn check(config_path: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let writers = Regions::from_config(&config);
    let managers = writers.managers(&config);
    let checks: Vec<RegionCheck> = futures::future::join_all(
        config
            .regions
            .iter()
            .zip(writers.iter().zip(managers.iter()))
            .map(|(region, (writer, manager))| check_region(region, writer, manager)),
    )
    .await;
    let exit = if checks.iter().all(RegionCheck::is_ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&checks)?);
        return Ok(exit);
    }
    let mut table = Table::new();
    table.set_header([
        "region",
        "versioning",
        "object lock",
        "default retention",
        "lifeboat writes",
        "writer may delete",
        "manager key",
    ]);
    for check in &checks {
        table.add_row([
            check.region.clone(),
            check.versioning.clone().unwrap_or_else(|| "off".to_owned()),
            if check.object_lock_enabled {
                "enabled"
            } else {
                "off"
            }
            .to_owned(),
            check
                .default_retention
                .clone()
                .unwrap_or_else(|| "none".to_owned()),
            check.configured_lock.map_or_else(
                || "no retention".to_owned(),
                |mode| format!("{mode} retention"),
            ),
            match check.writer_delete_refused {
                Some(true) => "no (refused)",
                Some(false) => "YES",
                None => "unknown",
            }
            .to_owned(),
            if check.separate_manager_key {
                "separate"
            } else {
                "same as writer"
            }
            .to_owned(),
        ]);
    }
    println!("{table}");
    for check in &checks {
        for problem in &check.problems {
            println!("error: region {}: {problem}", check.region);
        }
        for warning in &check.warnings {
            println!("warning: region {}: {warning}", check.region);
        }
    }
    Ok(exit)
}
