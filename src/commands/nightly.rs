//! `lifeboat nightly`: the night's work from cron, through the job queue.
//!
//! Starts a controller API on loopback with an embedded agent (unless `--no-agent`, when
//! other agents serve the catalog's queue), enqueues a backup of every tenant in the
//! catalog, waits for them, prints a summary and exits non-zero if any tenant lacks a good
//! backup from this run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use comfy_table::Table;
use lifeboat_controller::nightly::{self, TenantOutcome};
use serde::Serialize;

use super::controller::{self as wiring, QueueFlags};
use super::{cancel_on_signal, load_config};

/// `nightly` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct NightlyFlags {
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run no agent here: wait for the jobs to be done by running `lifeboat agent`s.
    #[arg(long)]
    pub no_agent: bool,
    /// Jobs the embedded agent runs at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Name of the run (default: today's UTC date). A run's jobs are done once; running
    /// the same run again waits for them and retries only those that failed.
    #[arg(long)]
    pub run: Option<String>,
    #[command(flatten)]
    pub queue: QueueFlags,
}

/// The summary printed at the end.
#[derive(Debug, Serialize)]
pub struct NightlySummary {
    pub run: String,
    pub seconds: f64,
    pub tenants: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub degraded: usize,
    pub outcomes: Vec<TenantOutcome>,
}

pub async fn run(config_path: Option<&Path>, flags: NightlyFlags) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load_config(config_path)?);
    let policy = flags.queue.policy()?;
    let run_name = match &flags.run {
        Some(name) => {
            anyhow::ensure!(
                !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
                "--run {name:?}: use letters, digits, '-' and '_' (at most 64)"
            );
            name.clone()
        }
        None => Utc::now().format("%Y-%m-%d").to_string(),
    };
    let started = Instant::now();
    let catalog = wiring::open_migrated_catalog(&config).await?;
    let cancel = cancel_on_signal();
    let max_attempts = policy.max_attempts;
    let running = wiring::start(
        &config,
        catalog.clone(),
        "127.0.0.1:0".parse().context("loopback address")?,
        wiring::controller_options(&config, policy, false, wiring::default_window()),
        (!flags.no_agent).then_some(flags.concurrency),
        cancel.clone(),
    )
    .await?;
    let summary = async {
        let jobs = nightly::enqueue_backups(&catalog, &run_name, max_attempts).await?;
        if !flags.json {
            eprintln!("nightly {run_name}: {} tenant backups queued", jobs.len());
        }
        let ids: Vec<i64> = jobs.values().copied().collect();
        let statuses =
            nightly::wait_for_jobs(&catalog, &ids, Duration::from_millis(200), &cancel).await?;
        let outcomes: Vec<TenantOutcome> = jobs
            .iter()
            .filter_map(|(tenant, id)| {
                statuses
                    .iter()
                    .find(|status| status.id == *id)
                    .map(|status| TenantOutcome::from_status(tenant, status))
            })
            .collect();
        anyhow::Ok(NightlySummary {
            run: run_name.clone(),
            seconds: started.elapsed().as_secs_f64(),
            tenants: outcomes.len(),
            succeeded: outcomes
                .iter()
                .filter(|outcome| outcome.succeeded())
                .count(),
            failed: outcomes
                .iter()
                .filter(|outcome| !outcome.succeeded())
                .count(),
            degraded: outcomes.iter().filter(|outcome| outcome.degraded).count(),
            outcomes,
        })
    }
    .await;
    let interrupted = cancel.is_cancelled();
    running.stop().await?;
    let summary = summary?;
    anyhow::ensure!(
        !interrupted,
        "interrupted; run the nightly again to finish (work already done is kept)"
    );
    print_summary(&summary, flags.json)?;
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(summary: &NightlySummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "tenant", "result", "attempts", "backup", "stored", "seconds", "note",
    ]);
    for outcome in &summary.outcomes {
        table.add_row([
            outcome.tenant.clone(),
            outcome.state.clone(),
            outcome.attempts.to_string(),
            outcome.backup_id.clone().unwrap_or_default(),
            outcome
                .stored_bytes
                .map(|bytes| format!("{:.1} MiB", bytes as f64 / 1_048_576.0))
                .unwrap_or_default(),
            outcome
                .duration_ms
                .map(|ms| format!("{:.1}", ms as f64 / 1000.0))
                .unwrap_or_default(),
            match (&outcome.error, outcome.degraded) {
                (Some(error), _) => error.clone(),
                (None, true) => "degraded: not in every region; scrub will repair".to_owned(),
                (None, false) => String::new(),
            },
        ]);
    }
    println!("{table}");
    println!(
        "nightly {}: {} of {} tenants backed up ({} degraded, {} failed) in {:.1} s",
        summary.run,
        summary.succeeded,
        summary.tenants,
        summary.degraded,
        summary.failed,
        summary.seconds
    );
    Ok(())
}
