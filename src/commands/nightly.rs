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
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::nightly::{self, DrillLine, TenantOutcome};
use lifeboat_controller::queue::{JobStatus, NewJob};
use lifeboat_controller::{retention, scrub};
use lifeboat_core::api::JobWork;
use lifeboat_core::config::Config;
use lifeboat_core::ids::{BackupId, RegionName};
use lifeboat_core::region::Region;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

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
    /// Skip retention, scrub and repair: backups only.
    #[arg(long)]
    pub backups_only: bool,
    /// After the backups, drill each tenant's new backup: restore it into a scratch
    /// database on its cluster, verify its row counts against the manifest, drop it. Needs
    /// an agent holding the age identity (`identity_file`); a tenant whose drill fails has
    /// no good backup from this run.
    #[arg(long)]
    pub drill: bool,
    /// Copies per region read whole and hashed by tonight's scrub (besides the size check
    /// of every copy).
    #[arg(long, default_value_t = 20)]
    pub scrub_full_sample: usize,
    /// Stop waiting after this long; tenants whose backups are not done by then count as
    /// failed (their jobs stay queued for the agents).
    #[arg(long, default_value_t = 480)]
    pub deadline_minutes: u64,
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
    /// Retention, scrub and repair; absent with `--backups-only`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance: Option<Maintenance>,
}

/// What the maintenance phases did.
#[derive(Debug, Default, Serialize)]
pub struct Maintenance {
    /// Backups moved to the trash by retention, and purged from the trash.
    pub trashed: usize,
    pub purged: usize,
    /// Copies checked by scrub, and those found missing or corrupt.
    pub copies_checked: u64,
    pub copies_bad: u64,
    /// Copies made again from a healthy region.
    pub repaired: usize,
    /// Live backups still lacking a good copy in some region after repair.
    pub degraded_after_repair: usize,
    /// What went wrong, if anything (the backups' outcome decides the exit code).
    pub problems: Vec<String>,
}

pub async fn run(config_path: Option<&Path>, flags: NightlyFlags) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load_config(config_path)?);
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
        None => Utc::now().format(nightly::RUN_DATE_FORMAT).to_string(),
    };
    anyhow::ensure!(
        !flags.drill || flags.no_agent || config.identity_file.is_some(),
        "--drill: the nightly's own agent restores the backups it drills and needs identity_file in the config (or run with --no-agent, with agents that have it)"
    );
    let catalog = wiring::open_migrated_catalog(&config).await?;
    let cancel = cancel_on_signal();
    let summary = execute(&config, &catalog, &run_name, &flags, &cancel).await?;
    anyhow::ensure!(
        !cancel.is_cancelled(),
        "interrupted; run the nightly again to finish (work already done is kept)"
    );
    print_summary(&summary, flags.json)?;
    Ok(if summary.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Run nightly `run_name` on `catalog`: start the controller API on loopback (and an
/// embedded agent unless `--no-agent`), back up every tenant, then retention, scrub and
/// repair; stop them and return the summary.
pub async fn execute(
    config: &Arc<Config>,
    catalog: &Catalog,
    run_name: &str,
    flags: &NightlyFlags,
    cancel: &CancellationToken,
) -> anyhow::Result<NightlySummary> {
    let policy = flags.queue.policy()?;
    let started = Instant::now();
    // Waiting ends at the deadline (or on Ctrl-C); the summary then counts what is done.
    let waiting = cancel.child_token();
    let deadline = tokio::spawn({
        let waiting = waiting.clone();
        let limit = Duration::from_secs(flags.deadline_minutes.saturating_mul(60));
        async move {
            tokio::time::sleep(limit).await;
            tracing::warn!("the nightly's deadline passed; summarising what is done");
            waiting.cancel();
        }
    });
    let max_attempts = policy.max_attempts;
    let running = wiring::start(
        config,
        catalog.clone(),
        "127.0.0.1:0".parse().context("loopback address")?,
        wiring::controller_options(config, policy, false, None, false),
        (!flags.no_agent).then_some(flags.concurrency),
        cancel.child_token(),
    )
    .await?;
    let summary = async {
        let jobs = nightly::enqueue_backups(catalog, run_name, max_attempts).await?;
        running.work_ready.notify_waiters();
        if !flags.json {
            eprintln!("nightly {run_name}: {} tenant backups queued", jobs.len());
        }
        let ids: Vec<i64> = jobs.values().copied().collect();
        let statuses =
            nightly::wait_for_jobs(catalog, &ids, Duration::from_millis(200), &waiting).await?;
        let mut outcomes: Vec<TenantOutcome> = jobs
            .iter()
            .filter_map(|(tenant, id)| {
                statuses
                    .iter()
                    .find(|status| status.id == *id)
                    .map(|status| TenantOutcome::from_status(tenant, status))
            })
            .collect();
        if flags.drill {
            if !waiting.is_cancelled() {
                drill_new_backups(
                    catalog,
                    run_name,
                    &mut outcomes,
                    max_attempts,
                    flags.json,
                    &waiting,
                    &running.work_ready,
                )
                .await?;
            }
            // With --drill, a backup is good only once drilled.
            for outcome in &mut outcomes {
                if outcome.state == "succeeded" && outcome.drill.is_none() {
                    outcome.drill = Some(DrillLine::not_drilled(
                        "not drilled: the nightly stopped waiting before its drill was queued",
                    ));
                }
            }
        }
        let maintenance = if flags.backups_only || waiting.is_cancelled() {
            None
        } else {
            Some(
                maintenance(
                    config,
                    catalog,
                    run_name,
                    flags,
                    max_attempts,
                    &waiting,
                    &running.work_ready,
                )
                .await,
            )
        };
        anyhow::Ok(NightlySummary {
            maintenance,
            run: run_name.to_owned(),
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
    deadline.abort();
    running.stop().await?;
    summary
}

/// Drill every backup this run took (one drill job per tenant, for agents that can
/// decrypt), wait for them, and attach each drill to its tenant's outcome.
async fn drill_new_backups(
    catalog: &Catalog,
    run: &str,
    outcomes: &mut [TenantOutcome],
    max_attempts: i32,
    json: bool,
    cancel: &CancellationToken,
    work_ready: &tokio::sync::Notify,
) -> anyhow::Result<()> {
    let backups: std::collections::BTreeMap<String, BackupId> = outcomes
        .iter()
        .filter(|outcome| outcome.state == "succeeded")
        .filter_map(|outcome| {
            let backup_id = BackupId::parse(outcome.backup_id.as_deref()?).ok()?;
            Some((outcome.tenant.clone(), backup_id))
        })
        .collect();
    if backups.is_empty() {
        return Ok(());
    }
    let jobs = nightly::enqueue_drills(catalog, run, &backups, max_attempts).await?;
    work_ready.notify_waiters();
    if !json {
        eprintln!("nightly {run}: {} drills queued", jobs.len());
    }
    let ids: Vec<i64> = jobs.values().copied().collect();
    let statuses =
        nightly::wait_for_jobs(catalog, &ids, Duration::from_millis(200), cancel).await?;
    for outcome in outcomes {
        if outcome.state != "succeeded" {
            continue;
        }
        let Some(id) = jobs.get(&outcome.tenant) else {
            outcome.drill = Some(DrillLine::not_drilled(
                "not drilled: no drill could be queued (tenant removed, or no backup id)",
            ));
            continue;
        };
        let Some(status) = statuses.iter().find(|status| status.id == *id) else {
            continue;
        };
        let drilled = status
            .result
            .as_ref()
            .and_then(|result| result.get("backup_id"))
            .and_then(serde_json::Value::as_str);
        outcome.drill = Some(match drilled {
            // A run started again after its backup was taken again keeps its earlier drill.
            Some(drilled) if Some(drilled) != outcome.backup_id.as_deref() => {
                DrillLine::not_drilled(format!(
                    "not drilled: this run's drill job {id} drilled backup {drilled}, an earlier one; run the nightly under a new --run name"
                ))
            }
            _ => DrillLine::from_status(status),
        });
    }
    Ok(())
}

/// Retention, then scrub, then repair of what scrub (or the backups) found lacking. Each
/// phase's failure is recorded and the next phase still runs.
async fn maintenance(
    config: &Config,
    catalog: &Catalog,
    run: &str,
    flags: &NightlyFlags,
    max_attempts: i32,
    cancel: &CancellationToken,
    work_ready: &tokio::sync::Notify,
) -> Maintenance {
    let mut done = Maintenance::default();
    let now = Utc::now();
    let region_names: Vec<RegionName> = config
        .regions
        .iter()
        .map(|region| region.name.clone())
        .collect();
    match retention::apply(catalog, None, now, false, config.trash_period, "nightly").await {
        Ok(report) => {
            done.trashed = report.tenants.iter().map(|plan| plan.trash.len()).sum();
        }
        Err(error) => done.problems.push(format!("retention: {error}")),
    }
    let regions: Vec<Region> = config.regions.iter().map(Region::new).collect();
    match retention::purge_due(catalog, &regions, now).await {
        Ok(report) => {
            done.purged = report.purged.len();
            for failure in report.failed {
                done.problems.push(format!(
                    "purge of backup {} ({}): {}",
                    failure.backup_id,
                    failure.tenant,
                    failure.errors.join("; ")
                ));
            }
        }
        Err(error) => done.problems.push(format!("purge: {error}")),
    }
    // Maintenance jobs get two attempts: a region that is down tonight is retried tomorrow.
    let attempts = max_attempts.min(2);
    match scrub::plan_scrub(catalog, &region_names, flags.scrub_full_sample, now).await {
        Ok(works) => {
            for status in run_jobs(
                catalog,
                run,
                works,
                attempts,
                cancel,
                work_ready,
                &mut done.problems,
            )
            .await
            {
                let field = |name: &str| {
                    status
                        .result
                        .as_ref()
                        .and_then(|result| result.get(name))
                        .and_then(serde_json::Value::as_u64)
                        .unwrap_or(0)
                };
                done.copies_checked += field("checked");
                done.copies_bad += field("bad");
            }
        }
        Err(error) => done.problems.push(format!("scrub plan: {error}")),
    }
    match scrub::plan_repairs(catalog, &region_names).await {
        Ok(works) => {
            done.repaired = run_jobs(
                catalog,
                run,
                works,
                attempts,
                cancel,
                work_ready,
                &mut done.problems,
            )
            .await
            .iter()
            .filter(|status| status.state == "succeeded")
            .count();
        }
        Err(error) => done.problems.push(format!("repair plan: {error}")),
    }
    match scrub::degraded_backups(catalog, &region_names).await {
        Ok(degraded) => done.degraded_after_repair = degraded.len(),
        Err(error) => done.problems.push(format!("degraded backups: {error}")),
    }
    done
}

/// Enqueue a phase's jobs under the run's keys, wait for them, and note the failures.
async fn run_jobs(
    catalog: &Catalog,
    run: &str,
    works: Vec<JobWork>,
    attempts: i32,
    cancel: &CancellationToken,
    work_ready: &tokio::sync::Notify,
    problems: &mut Vec<String>,
) -> Vec<JobStatus> {
    if works.is_empty() {
        return Vec::new();
    }
    let jobs: Vec<NewJob> = works
        .into_iter()
        .map(|work| NewJob {
            dedup_key: Some(nightly::maintenance_key(run, &work)),
            work,
        })
        .collect();
    let statuses = async {
        let ids = nightly::enqueue_run_jobs(catalog, &jobs, attempts).await?;
        work_ready.notify_waiters();
        nightly::wait_for_jobs(catalog, &ids, Duration::from_millis(200), cancel).await
    }
    .await;
    match statuses {
        Ok(statuses) => {
            for status in statuses.iter().filter(|status| status.state != "succeeded") {
                problems.push(format!(
                    "{} job {}: {}",
                    status.kind,
                    status.id,
                    status.last_error.as_deref().unwrap_or(&status.state)
                ));
            }
            statuses
        }
        Err(error) => {
            problems.push(format!("maintenance jobs: {error}"));
            Vec::new()
        }
    }
}

pub fn print_summary(summary: &NightlySummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
        return Ok(());
    }
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "tenant", "result", "attempts", "backup", "stored", "seconds", "drill", "note",
    ]);
    for outcome in &summary.outcomes {
        let drill = match &outcome.drill {
            None => String::new(),
            Some(drill) if drill.verified => format!(
                "verified ({} rows)",
                drill.rows_verified.unwrap_or_default()
            ),
            Some(_) => "FAILED".to_owned(),
        };
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
            drill,
            match (&outcome.error, outcome.degraded) {
                (Some(error), _) => error.clone(),
                (None, _) if outcome.drill.as_ref().is_some_and(|drill| !drill.verified) => {
                    format!(
                        "drill: {}",
                        outcome
                            .drill
                            .as_ref()
                            .and_then(|drill| drill.error.clone())
                            .unwrap_or_default()
                    )
                }
                (None, true) => "degraded: not in every region; scrub will repair".to_owned(),
                (None, false) => String::new(),
            },
        ]);
    }
    println!("{table}");
    if let Some(done) = &summary.maintenance {
        println!(
            "retention: {} trashed, {} purged; scrub: {} copies checked, {} bad; repair: {} copies made again; {} backups still degraded",
            done.trashed,
            done.purged,
            done.copies_checked,
            done.copies_bad,
            done.repaired,
            done.degraded_after_repair
        );
        for problem in &done.problems {
            println!("problem: {problem}");
        }
    }
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
