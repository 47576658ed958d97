//! `lifeboat drill --tenant NAME (--backup ID | --latest)`: prove a backup restores, and
//! `lifeboat drills list`: the drills recorded in the catalog.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use lifeboat_agent::restore_job::{self, DrillRun};
use lifeboat_controller::drills::{self, DrillOutcome, DrillRecord};
use lifeboat_core::ids::TenantName;
use lifeboat_core::progress::Progress;
use lifeboat_core::region::Region;
use lifeboat_core::restore;

use super::{
    backup_selector, cancel_on_signal, load_config, parse_flag, parse_optional_flag, resolve_tenant,
};
use crate::output::{human_duration, progress_for};

/// Record a drill in the catalog; its verified outcome marks the backup verified.
pub async fn record(
    catalog: &lifeboat_controller::catalog::Catalog,
    run: &DrillRun,
    actor: &str,
) -> anyhow::Result<i64> {
    let record = DrillRecord {
        tenant: run.tenant.clone(),
        backup_id: run.backup_id,
        region: run
            .outcome
            .as_ref()
            .ok()
            .map(|report| report.region.clone()),
        scratch_database: run.scratch_database.clone(),
        started_at: run.started_at,
        finished_at: run.finished_at,
        outcome: match &run.outcome {
            Ok(report) => DrillOutcome::Verified {
                tables_verified: report.tables_verified as u64,
                rows_verified: report.rows_verified,
            },
            Err(error) => DrillOutcome::Failed {
                error: error.clone(),
            },
        },
    };
    Ok(drills::record_drill(catalog, &record, actor).await?)
}

pub async fn run(
    config_path: Option<&Path>,
    tenant: &str,
    backup: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("tenant", tenant, TenantName::parse)?;
    let selector = backup_selector(backup)?;
    let tenant_config = resolve_tenant(&config, &tenant).await?;
    let regions: Vec<Region> = config.regions.iter().map(Region::new).collect();
    let resolved = restore::resolve_backup(&regions, config.min_regions, &tenant, selector).await?;
    for (region, reason) in &resolved.unlisted {
        eprintln!(
            "warning: region {region} could not be listed ({reason}): a newer backup held only there is not drilled"
        );
    }
    let backup_id = resolved.backup_id;
    let progress: Arc<dyn Progress> = progress_for(json, &format!("drill {tenant}"));
    let cancel = cancel_on_signal();
    let run =
        restore_job::drill(&config, &tenant_config, backup_id, progress, cancel.clone()).await;
    if cancel.is_cancelled() {
        // Not a verdict on the backup: nothing to record.
        eprintln!("drill cancelled; its scratch database was dropped");
        return Ok(ExitCode::FAILURE);
    }
    if let (false, Err(error)) = (run.is_verdict, &run.outcome) {
        // This machine, the cluster or a region failed, not the backup: nothing to record.
        eprintln!("error: the drill could not run (nothing recorded): {error}");
        return Ok(ExitCode::FAILURE);
    }

    // A drill that cannot be recorded did not mark its backup verified: say so, and fail.
    let recorded = match &config.catalog {
        None => None,
        Some(_) => Some(match super::catalog::open_catalog(&config).await {
            Ok(catalog) => record(&catalog, &run, "cli").await,
            Err(error) => Err(error),
        }),
    };
    if let Some(Err(error)) = &recorded {
        eprintln!("error: the drill is not recorded in the catalog: {error:#}");
    }
    if let Some(error) = &run.cleanup_error {
        eprintln!("error: {error}");
    }
    let duration = (run.finished_at - run.started_at)
        .to_std()
        .unwrap_or_default();
    if json {
        let summary = serde_json::json!({
            "tenant": run.tenant,
            "backup_id": run.backup_id,
            "scratch_database": run.scratch_database,
            "verified": run.outcome.is_ok(),
            "region": run.outcome.as_ref().ok().map(|report| &report.region),
            "tables_verified": run.outcome.as_ref().ok().map(|report| report.tables_verified),
            "rows_verified": run.outcome.as_ref().ok().map(|report| report.rows_verified),
            "error": run.outcome.as_ref().err(),
            "duration_seconds": duration.as_secs_f64(),
            "recorded_drill": recorded.as_ref().and_then(|recorded| recorded.as_ref().ok()),
        });
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        match &run.outcome {
            Ok(report) => println!(
                "drill of backup {} of tenant {}: verified {} tables, {} rows, restored from region {} in {}",
                run.backup_id,
                tenant,
                report.tables_verified,
                report.rows_verified,
                report.region,
                human_duration(duration)
            ),
            Err(error) => println!(
                "drill of backup {} of tenant {}: FAILED after {}: {error}",
                run.backup_id,
                tenant,
                human_duration(duration)
            ),
        }
    }
    let recorded_ok = !matches!(recorded, Some(Err(_)));
    Ok(
        if run.outcome.is_ok() && run.cleanup_error.is_none() && recorded_ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

pub async fn list(
    config_path: Option<&Path>,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_optional_flag("tenant", tenant, TenantName::parse)?;
    let catalog = super::catalog::open_catalog(&config).await?;
    let connection = catalog.connection().await?;
    let found = drills::list_drills(&**connection, tenant.as_ref(), 100).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("no drills recorded");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:<20}  {:<24}  {:<36}  {:>8}  result",
        "finished", "tenant", "backup", "seconds"
    );
    for drill in found {
        let record = drill.record;
        let seconds = (record.finished_at - record.started_at).num_milliseconds() as f64 / 1000.0;
        let result = match &record.outcome {
            DrillOutcome::Verified {
                tables_verified,
                rows_verified,
            } => format!("verified ({tables_verified} tables, {rows_verified} rows)"),
            DrillOutcome::Failed { error } => format!("FAILED: {error}"),
        };
        println!(
            "{:<20}  {:<24}  {:<36}  {:>8.1}  {result}",
            record.finished_at.format("%Y-%m-%d %H:%M:%S"),
            record.tenant,
            record.backup_id,
            seconds
        );
    }
    Ok(ExitCode::SUCCESS)
}
