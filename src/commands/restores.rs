//! `lifeboat restore live|rollback|copy|status`: helpdesk restores through the job queue
//! (`lifeboat_controller::restores`). Each command asks for confirmation (the tenant's name
//! typed back) unless `--yes`, enqueues one job, then follows it until it ends unless
//! `--no-wait`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::queue::JobState;
use lifeboat_controller::restores::{
    self, CopyRequest, RestoreEstimate, RestoreRequested, RestoreStatus,
};
use lifeboat_core::api::StepState;
use lifeboat_core::ids::TenantName;
use lifeboat_core::restore::BackupSelector;
use secrecy::ExposeSecret;

use super::catalog::{open_catalog, operator};
use super::{backup_selector, load_config, parse_flag, parse_optional_flag};
use crate::output::human_duration;

/// What every restore command shares.
#[derive(Debug, Clone, Copy)]
pub struct Follow {
    /// Skip the typed confirmation.
    pub yes: bool,
    /// Print the job id and return instead of following the job.
    pub no_wait: bool,
    pub json: bool,
}

fn milliseconds(ms: u64) -> String {
    human_duration(Duration::from_millis(ms))
}

fn describe_estimate(estimate: Option<&RestoreEstimate>) -> Vec<String> {
    let Some(estimate) = estimate else {
        return vec![
            "estimate: no drill history for this tenant (no verified drill yet), so no estimate"
                .to_owned(),
        ];
    };
    let offline = match estimate.offline_ms {
        Some(ms) => format!(
            "{} (median of {} earlier swaps)",
            milliseconds(ms),
            estimate.swaps_measured
        ),
        None => "under a second (no live restore measured yet)".to_owned(),
    };
    vec![
        format!("offline: {offline}"),
        format!(
            "whole restore: about {} (median of the last {} verified drills{})",
            milliseconds(estimate.total_ms),
            estimate.drills_measured,
            estimate
                .safety_backup_ms
                .map_or_else(String::new, |ms| format!(
                    ", plus a safety backup of about {}",
                    milliseconds(ms)
                ))
        ),
    ]
}

fn cancelled() -> ExitCode {
    eprintln!("cancelled: the name did not match; nothing was enqueued");
    ExitCode::FAILURE
}

pub async fn live(
    config_path: Option<&Path>,
    tenant: &str,
    backup: Option<&str>,
    reason: &str,
    follow: Follow,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("tenant", tenant, TenantName::parse)?;
    let selector = backup_selector(backup)?;
    let catalog = open_catalog(&config).await?;
    restores::check_reason(reason)?;
    let plan = restores::plan_live_restore(&catalog, &config, &tenant, selector).await?;
    if !follow.json {
        println!(
            "restore backup {} ({} backup of {}) onto tenant {}'s live database {:?} on cluster {}",
            plan.backup.id,
            plan.backup.kind,
            plan.backup.finished_at.format("%Y-%m-%d %H:%M:%S UTC"),
            tenant,
            plan.database,
            plan.cluster
        );
        println!(
            "  first a safety backup of the live database; the live database is kept for {} days (lifeboat restore rollback)",
            config.restore.keep_previous_days
        );
        for line in describe_estimate(plan.estimate.as_ref()) {
            println!("  {line}");
        }
    }
    if !follow.yes && !super::confirmed_by_typing(&tenant).await? {
        return Ok(cancelled());
    }
    // The plan's backup, by id, so what was confirmed is what is restored.
    let requested = restores::request_live_restore(
        &catalog,
        &config,
        &tenant,
        BackupSelector::Id(plan.backup.id),
        reason,
        &operator(&catalog).await?,
    )
    .await?;
    follow_job(&catalog, &requested, follow).await
}

pub async fn rollback(
    config_path: Option<&Path>,
    tenant: &str,
    reason: Option<&str>,
    follow: Follow,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("tenant", tenant, TenantName::parse)?;
    let catalog = open_catalog(&config).await?;
    if !follow.json {
        println!(
            "roll back tenant {tenant}: the database its last restore swapped out becomes live again; the current one is kept for {} days",
            config.restore.keep_previous_days
        );
    }
    if !follow.yes && !super::confirmed_by_typing(&tenant).await? {
        return Ok(cancelled());
    }
    let requested = restores::request_rollback(
        &catalog,
        &config,
        &tenant,
        reason,
        &operator(&catalog).await?,
    )
    .await?;
    follow_job(&catalog, &requested, follow).await
}

pub struct CopyArguments<'a> {
    pub tenant: &'a str,
    pub backup: Option<&'a str>,
    pub into: &'a str,
    pub expires_days: Option<u32>,
}

pub async fn copy(
    config_path: Option<&Path>,
    arguments: CopyArguments<'_>,
    follow: Follow,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("tenant", arguments.tenant, TenantName::parse)?;
    let selector = backup_selector(arguments.backup)?;
    let catalog = open_catalog(&config).await?;
    if !follow.json {
        println!(
            "restore a backup of tenant {tenant} into a new database {:?} with its own role ({})",
            arguments.into,
            arguments.expires_days.map_or_else(
                || "kept until dropped by hand".to_owned(),
                |days| format!("dropped after {days} days")
            )
        );
    }
    if !follow.yes && !super::confirmed_by_typing(&tenant).await? {
        return Ok(cancelled());
    }
    let actor = operator(&catalog).await?;
    let copied = restores::request_copy(
        &catalog,
        &config,
        CopyRequest {
            tenant: &tenant,
            selector,
            into: arguments.into,
            expires_days: arguments.expires_days,
            actor: &actor,
        },
    )
    .await?;
    // Shown once: lifeboat keeps only its SCRAM verifier, in the job.
    if follow.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "role": copied.role,
                "password": copied.password.expose_secret(),
            }))?
        );
    } else {
        println!(
            "the copy's role is {:?}, its password (shown once, stored nowhere): {}",
            copied.role,
            copied.password.expose_secret()
        );
    }
    follow_job(&catalog, &copied.requested, follow).await
}

pub async fn status(
    config_path: Option<&Path>,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_optional_flag("tenant", tenant, TenantName::parse)?;
    let catalog = open_catalog(&config).await?;
    let found = restores::restore_status(&catalog, tenant.as_ref(), 20).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&found)?);
        return Ok(ExitCode::SUCCESS);
    }
    if found.is_empty() {
        println!("no restores");
    }
    for restore in &found {
        print_status(restore);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(restore: &RestoreStatus) {
    println!(
        "job {} {} restore of {} ({}) requested {} by {}: {} (attempt {})",
        restore.job_id,
        restore.mode,
        restore.tenant,
        restore
            .backup_id
            .map_or_else(|| "no backup".to_owned(), |id| format!("backup {id}")),
        restore.requested_at.format("%Y-%m-%d %H:%M:%S"),
        restore.requested_by,
        restore.state,
        restore.attempts
    );
    if let Some(reason) = &restore.reason {
        println!("  reason: {reason}");
    }
    for step in &restore.steps {
        println!("  {}", step_line(step));
    }
    if let Some(ms) = restore.offline_ms {
        println!("  offline for {}", milliseconds(ms));
    }
    if let Some(previous) = &restore.previous_database {
        let until = restore.keep_until.map_or_else(
            || "once it succeeds".to_owned(),
            |until| format!("until {}", until.format("%Y-%m-%d %H:%M UTC")),
        );
        println!("  previous database kept as {previous:?} {until}");
    }
    if let Some(error) = &restore.error {
        println!("  error: {error}");
    }
}

fn step_line(step: &lifeboat_core::api::StepReport) -> String {
    let state = match step.state {
        StepState::Running => "running",
        StepState::Done => "done",
        StepState::AlreadyDone => "already done",
        StepState::Failed => "FAILED",
        StepState::Undone => "undone",
    };
    let mut line = format!("step {} {}: {state}", step.number, step.step);
    if let Some(ms) = step.duration_ms {
        line.push_str(&format!(" in {}", milliseconds(ms)));
    }
    if let Some(detail) = &step.detail {
        line.push_str(&format!(" ({detail})"));
    }
    line
}

/// Print the job's steps as they change until it ends (polled every second); exit 0 when
/// it succeeded, 1 when it failed for good.
async fn follow_job(
    catalog: &Catalog,
    requested: &RestoreRequested,
    follow: Follow,
) -> anyhow::Result<ExitCode> {
    let job = requested.job_id;
    if follow.no_wait {
        if follow.json {
            println!("{}", serde_json::to_string_pretty(requested)?);
        } else {
            println!(
                "enqueued job {job} (lifeboat restore status --tenant {})",
                requested.tenant
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !follow.json {
        println!("enqueued job {job}; following it (Ctrl-C stops following, not the job)");
    }
    let mut shown: BTreeMap<u32, StepState> = BTreeMap::new();
    let mut last_error: Option<String> = None;
    loop {
        let Some(status) = restores::restore_job_status(catalog, job).await? else {
            anyhow::bail!("job {job} is not in the catalog any more");
        };
        if !follow.json {
            for step in &status.steps {
                if shown.get(&step.number) != Some(&step.state) {
                    shown.insert(step.number, step.state);
                    println!("  {}", step_line(step));
                }
            }
            if status.error != last_error && status.state == JobState::Queued {
                if let Some(error) = &status.error {
                    println!("  attempt {} failed, retrying: {error}", status.attempts);
                }
                last_error.clone_from(&status.error);
            }
        }
        if status.state.is_finished() {
            if follow.json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
            return Ok(if status.state == JobState::Succeeded {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
