//! `lifeboat drill --tenant NAME (--backup ID | --latest)`: prove a backup restores, and
//! `lifeboat drills list`: the drills recorded in the catalog.

use std::path::Path;
use std::process::ExitCode;

use lifeboat_agent::playbook_job::{self, RunContext};
use lifeboat_controller::drills::{self, DrillOutcome, DrillRecord};
use lifeboat_core::ids::TenantName;
use lifeboat_core::region::Regions;
use lifeboat_core::restore;

use super::{
    backup_selector, cancel_on_signal, load_config, parse_flag, parse_optional_flag, resolve_tenant,
};
use crate::output::{StepPrinter, human_duration};

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
    let regions = Regions::from_config(&config);
    let resolved = restore::resolve_backup(&regions, config.min_regions, &tenant, selector).await?;
    for (region, reason) in &resolved.unlisted {
        eprintln!(
            "warning: region {region} could not be listed ({reason}): a newer backup held only there is not drilled"
        );
    }
    let backup_id = resolved.backup_id;
    let catalog = match &config.catalog {
        None => None,
        Some(_) => Some(super::catalog::open_catalog(&config).await?),
    };
    let catalog_sha256 = super::catalog_sha256(catalog.as_ref(), &tenant, backup_id).await?;
    let tenant_keys = super::catalog_tenant_keys(catalog.as_ref(), &tenant).await?;
    let run_tag = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let cancel = cancel_on_signal();
    let observer = StepPrinter { quiet: json };
    let run = match playbook_job::drill(
        &config,
        &regions,
        &tenant,
        &tenant_config.cluster,
        backup_id,
        catalog_sha256.as_deref(),
        RunContext {
            run_tag: &run_tag,
            resume: false,
            observer: &observer,
            cancel: &cancel,
            tenant_keys: tenant_keys.as_ref(),
        },
    )
    .await
    {
        Ok(run) => run,
        Err(not_run) => {
            // This machine, the cluster or a region failed, not the backup: nothing to record.
            eprintln!("error: {not_run} (nothing recorded)");
            return Ok(ExitCode::FAILURE);
        }
    };

    // A drill that cannot be recorded did not mark its backup verified: say so, and fail.
    let record = DrillRecord::new(run.tenant.clone(), &run.result);
    let recorded = match &catalog {
        None => None,
        Some(catalog) => Some(match super::catalog::operator(catalog).await {
            Ok(operator) => drills::record_drill(catalog, &record, &operator)
                .await
                .map_err(anyhow::Error::from),
            Err(error) => Err(error),
        }),
    };
    if let Some(Err(error)) = &recorded {
        eprintln!("error: the drill is not recorded in the catalog: {error}");
    }
    let result = &run.result;
    let duration = (result.finished_at - result.started_at)
        .to_std()
        .unwrap_or_default();
    let verified = matches!(result.outcome, DrillOutcome::Verified { .. });
    if json {
        let mut summary = serde_json::json!({
            "tenant": run.tenant,
            "verified": verified,
            "duration_seconds": duration.as_secs_f64(),
            "recorded_drill": recorded.as_ref().and_then(|recorded| recorded.as_ref().ok()),
        });
        // The record's fields, flat: backup_id, region, scratch_database, the times, and
        // outcome with tables_verified and rows_verified, or error.
        if let (Some(fields), serde_json::Value::Object(record)) =
            (summary.as_object_mut(), serde_json::to_value(&record)?)
        {
            fields.extend(record);
        }
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        match &result.outcome {
            DrillOutcome::Verified {
                tables_verified,
                rows_verified,
            } => println!(
                "drill of backup {} of tenant {}: verified {tables_verified} tables, {rows_verified} rows, restored from region {} in {}",
                result.backup_id,
                tenant,
                result
                    .region
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), ToString::to_string),
                human_duration(duration)
            ),
            DrillOutcome::Failed { error } => println!(
                "drill of backup {} of tenant {}: FAILED after {}: {error}",
                result.backup_id,
                tenant,
                human_duration(duration)
            ),
        }
    }
    let recorded_ok = !matches!(recorded, Some(Err(_)));
    Ok(if verified && recorded_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
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
    let health = drills::recovery_health(&**connection, tenant.as_ref()).await?;
    println!(
        "{:<24}  {:<20}  {:>9}  {:>14}  trend",
        "tenant", "last restorable", "recovery", "median (of 7)"
    );
    for tenant in &health {
        println!(
            "{:<24}  {:<20}  {:>8.1}s  {:>13.1}s  {}",
            tenant.tenant,
            tenant.last_verified_at.format("%Y-%m-%d %H:%M:%S"),
            tenant.recovery_seconds,
            tenant.median_seconds,
            match (tenant.slow, tenant.earlier_median_seconds) {
                (true, Some(earlier)) => format!(
                    "SLOW: {:.1}× the median of the drills before it ({earlier:.1}s)",
                    tenant.recovery_seconds / earlier
                ),
                (false, Some(_)) => "steady".to_owned(),
                (_, None) => "first drill".to_owned(),
            }
        );
    }
    println!();
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
