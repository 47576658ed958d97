//! `lifeboat nightly`: the night's work from cron, through the job queue.
//!
//! The run itself is `lifeboat_controller::nightly::run_nightly`; this command parses the
//! flags, starts a controller API on loopback with an embedded agent (unless `--no-agent`,
//! when other agents serve the catalog's queue) around it, prints the summary and exits
//! non-zero if any tenant lacks a good backup from this run.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use comfy_table::Table;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::dedup_key::RunName;
use lifeboat_controller::nightly::{self, NightlyEvent, NightlyOptions, NightlySummary};
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_core::config::Config;
use lifeboat_core::region::Regions;
use tokio_util::sync::CancellationToken;

use super::controller::{self as wiring, QueueFlags};
use super::{cancel_on_signal, load_config, parse_flag};

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
    /// of every copy) [config: controller.scrub_full_sample, 20].
    #[arg(long)]
    pub scrub_full_sample: Option<usize>,
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

pub async fn run(config_path: Option<&Path>, flags: NightlyFlags) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load_config(config_path)?);
    let run = match &flags.run {
        Some(name) => parse_flag("run", name, RunName::parse)?,
        None => RunName::for_date(Utc::now().date_naive()),
    };
    anyhow::ensure!(
        !flags.drill || flags.no_agent || config.identity_file.is_some(),
        "--drill: the nightly's own agent restores the backups it drills and needs identity_file in the config (or run with --no-agent, with agents that have it)"
    );
    let policy = flags.queue.policy(&config)?;
    let regions = Regions::from_config(&config);
    lifeboat_core::region::check::check_required_locks(&config, &regions)
        .await
        .map_err(anyhow::Error::msg)?;
    let options = NightlyOptions {
        run,
        drill: flags.drill,
        maintenance: (!flags.backups_only).then(|| {
            let sample = flags
                .scrub_full_sample
                .unwrap_or(config.controller.scrub_full_sample);
            wiring::maintenance_options(&config, &regions, sample, false)
        }),
        max_attempts: policy.max_attempts,
        drill_cluster: config.controller.drill_cluster.clone(),
    };
    let catalog = wiring::open_migrated_catalog(&config).await?;
    let cancel = cancel_on_signal();
    let summary = execute(
        &config,
        &regions,
        &catalog,
        &options,
        Harness {
            policy,
            agent_concurrency: (!flags.no_agent).then_some(flags.concurrency),
            deadline: Duration::from_secs(flags.deadline_minutes.saturating_mul(60)),
            announce: !flags.json,
        },
        &cancel,
    )
    .await?;
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

/// What runs around a nightly in this process.
#[derive(Debug, Clone)]
pub struct Harness {
    pub policy: QueuePolicy,
    /// Jobs the embedded agent runs at once; `None`: no agent here.
    pub agent_concurrency: Option<usize>,
    /// Waiting ends after this long; what is done by then is summarised.
    pub deadline: Duration,
    /// Say on stderr what was queued.
    pub announce: bool,
}

/// Start the controller API on loopback (and an embedded agent) and run the nightly
/// through them; stop them and return the summary.
pub async fn execute(
    config: &Arc<Config>,
    regions: &Regions,
    catalog: &Catalog,
    options: &NightlyOptions,
    harness: Harness,
    cancel: &CancellationToken,
) -> anyhow::Result<NightlySummary> {
    // Waiting ends at the deadline (or on Ctrl-C); the summary then counts what is done.
    let waiting = cancel.child_token();
    let deadline_after = harness.deadline;
    let deadline = tokio::spawn({
        let waiting = waiting.clone();
        async move {
            tokio::time::sleep(deadline_after).await;
            tracing::warn!("the nightly's deadline passed; summarising what is done");
            waiting.cancel();
        }
    });
    let running = wiring::start(
        config,
        regions,
        catalog.clone(),
        wiring::Listen::loopback(),
        wiring::controller_options(config, regions, harness.policy.clone(), false, None, false),
        harness.agent_concurrency,
        cancel.child_token(),
    )
    .await?;
    let run = options.run.clone();
    let announce_events = harness.announce;
    let announce = move |event: NightlyEvent| {
        if !announce_events {
            return;
        }
        match event {
            NightlyEvent::BackupsQueued(count) => {
                eprintln!("nightly {run}: {count} tenant backups queued");
            }
            NightlyEvent::DrillsQueued(count) => eprintln!("nightly {run}: {count} drills queued"),
        }
    };
    let summary =
        nightly::run_nightly(catalog, options, &running.work_ready, &waiting, &announce).await;
    deadline.abort();
    running.stop().await?;
    Ok(summary?)
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
            "retention: {} trashed, {} purged; scrub: {} copies checked, {} bad; repair: {} copies made again; {} backups still degraded; kept databases past their time: {} drop jobs",
            done.trashed,
            done.purged,
            done.copies_checked,
            done.copies_bad,
            done.repaired,
            done.degraded_after_repair,
            done.drop_jobs
        );
        if done.locks_extended + done.recovered_from_lock + done.stale_uploads_aborted > 0 {
            println!(
                "object lock: {} copies' locks extended, {} copies brought back from their locked version, {} stale uploads aborted",
                done.locks_extended, done.recovered_from_lock, done.stale_uploads_aborted
            );
        }
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
