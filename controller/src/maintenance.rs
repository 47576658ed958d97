//! Maintenance: the one home of the work that follows a night's backups, for every door.
//!
//! [`run_maintenance`] is a pass over the whole catalog, in one order:
//! 1. with `drill`, a drill job for each tenant whose newest backup no drill has verified
//!    (before retention, which keeps each tenant's newest verified backup);
//! 2. retention, then the purge of the trash that is due, and download links spent (used or
//!    expired) more than a day ago are forgotten;
//! 3. scrub jobs for every region;
//! 4. a replicate job for every copy a backup or scrub found lacking ([`enqueue_repairs`]);
//! 5. a drop-database job for every database a restore kept that is past its time (the
//!    previous database after `[restore] keep_previous_days`, an expired copy).
//!
//! `lifeboat nightly` runs a pass after its backups and waits for its jobs (so tonight's
//! repairs follow tonight's scrub, and the summary counts them); a long-running controller
//! runs one a day from its own clock ([`Daily`]) without waiting, and [`enqueue_repairs`]
//! every few minutes. A pass is named like a nightly run (by its date unless told
//! otherwise): its jobs' [`DedupKey`]s make each scrub, drill and repair of a pass happen
//! once, even with two controllers, or a controller and a nightly of the same date.
//! Retention and purge are idempotent. The audit log names the pass: `maintenance:<run>`.

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use lifeboat_core::api::JobWork;
use lifeboat_core::ids::{ClusterName, RegionName};
use lifeboat_core::region::Region;
use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::audit::Actor;
use crate::catalog::Catalog;
use crate::dedup_key::{DedupKey, RunName};
use crate::nightly;
use crate::queue::{self, JobState, JobStatus, NewJob};
use crate::{drills, restores, retention, scrub};

/// What maintenance needs.
#[derive(Clone)]
pub struct MaintenanceOptions {
    /// Every configured region, for the purge (which deletes from all of them).
    pub regions: Vec<Region>,
    pub trash_period: Duration,
    /// Copies per region read whole and hashed by each pass's scrub.
    pub scrub_full_sample: usize,
    /// When a controller's daily pass starts (minute of the UTC day).
    pub minute_of_day: u32,
    /// Also drill each tenant's newest backup, if no drill has verified it yet (needs
    /// agents that hold the identity).
    pub drill: bool,
    /// Where drills restore (`[controller] drill_cluster`); `None`: each tenant's cluster.
    pub drill_cluster: Option<ClusterName>,
    /// Drill a tenant only once its last verified drill is this many days old
    /// (`[controller] drill_every_days`, default 1).
    pub drill_every_days: u32,
}

impl std::fmt::Debug for MaintenanceOptions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MaintenanceOptions")
            .field("trash_period", &self.trash_period)
            .field("scrub_full_sample", &self.scrub_full_sample)
            .field("minute_of_day", &self.minute_of_day)
            .field("drill", &self.drill)
            .finish_non_exhaustive()
    }
}

impl MaintenanceOptions {
    fn region_names(&self) -> Vec<RegionName> {
        self.regions
            .iter()
            .map(|region| region.name().clone())
            .collect()
    }
}

/// Waiting for a pass's jobs: the nightly waits, a controller's daily pass does not.
#[derive(Debug, Clone, Copy)]
pub struct WaitForJobs<'a> {
    /// Waiting ends here (the nightly's deadline or Ctrl-C); what is done is counted.
    pub until: &'a CancellationToken,
    /// Woken when jobs are enqueued, so agents long-polling this controller claim at once.
    pub work_ready: &'a Notify,
}

/// What one pass did. Counts of copies and repairs are known only when waiting.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MaintenanceReport {
    pub drill_jobs: usize,
    /// Backups moved to the trash by retention, and purged from the trash.
    pub trashed: usize,
    pub purged: usize,
    /// Copies in regions with object lock whose lock was extended (kept backups).
    pub locks_extended: usize,
    pub scrub_jobs: usize,
    /// Copies checked by scrub, and those found missing or corrupt.
    pub copies_checked: u64,
    pub copies_bad: u64,
    /// Copies in regions with object lock made current again from their locked version.
    pub recovered_from_lock: usize,
    /// Multipart uploads left open in regions with object lock, aborted with the manager's
    /// key (agents' scrubs, with the writer key, cannot).
    pub stale_uploads_aborted: usize,
    pub repair_jobs: usize,
    /// Copies made again from a healthy region.
    pub repaired: usize,
    /// Live backups still lacking a good copy in some region after repair.
    pub degraded_after_repair: usize,
    /// Databases kept by restores (previous databases, copies) past their time: drop jobs.
    pub drop_jobs: usize,
    /// What went wrong, if anything; each phase runs whatever the one before did.
    pub problems: Vec<String>,
    /// A phase could not run at all (the catalog failed it): the pass is worth retrying.
    #[serde(skip)]
    pub incomplete: bool,
}

impl MaintenanceReport {
    fn phase_failed(&mut self, phase: &str, error: impl std::fmt::Display) {
        self.problems.push(format!("{phase}: {error}"));
        self.incomplete = true;
    }
}

/// Who a pass acts as, in the audit log.
pub fn actor(run: &RunName) -> Actor {
    Actor::system(format!("maintenance:{run}"))
}

/// Run maintenance pass `run` (see the module's documentation for the order). Job
/// failures and purge failures are reported in `problems`; nothing here stops the phases
/// after it.
pub async fn run_maintenance(
    catalog: &Catalog,
    options: &MaintenanceOptions,
    run: &RunName,
    now: DateTime<Utc>,
    max_attempts: i32,
    wait: Option<WaitForJobs<'_>>,
) -> MaintenanceReport {
    let mut report = MaintenanceReport::default();
    let actor = actor(run);
    if options.drill {
        match drills::plan_drills_of_newest(
            catalog,
            options.drill_cluster.as_ref(),
            options.drill_every_days,
        )
        .await
        {
            Ok(works) => {
                let statuses = run_jobs(
                    catalog,
                    works,
                    |work| match work {
                        JobWork::Drill { tenant, .. } => Some(DedupKey::Drill {
                            run: run.clone(),
                            tenant: tenant.clone(),
                        }),
                        _ => None,
                    },
                    max_attempts,
                    wait,
                    &mut report,
                )
                .await;
                report.drill_jobs = statuses.enqueued;
            }
            Err(error) => report.phase_failed("drill plan", error),
        }
    }
    match retention::apply(catalog, None, now, false, options.trash_period, &actor).await {
        Ok(retained) => {
            report.trashed = retained.tenants.iter().map(|plan| plan.trash.len()).sum();
        }
        Err(error) => report.phase_failed("retention", error),
    }
    match retention::extend_locks(catalog, &options.regions, now, options.trash_period).await {
        Ok(extended) => {
            report.locks_extended = extended.extended;
            report.problems.extend(extended.problems);
        }
        Err(error) => report.phase_failed("lock extension", error),
    }
    match retention::purge_due(catalog, &options.regions, now, &actor).await {
        Ok(purged) => {
            report.purged = purged.purged.len();
            for failure in purged.failed {
                report.problems.push(format!(
                    "purge of backup {} ({}): {}",
                    failure.backup_id,
                    failure.tenant,
                    failure.errors.join("; ")
                ));
            }
            for skipped in purged.skipped {
                report.problems.push(format!(
                    "purge of backup {} ({}) skipped: {}",
                    skipped.backup_id, skipped.tenant, skipped.reason
                ));
            }
        }
        Err(error) => report.phase_failed("purge", error),
    }
    if let Err(error) =
        crate::downloads::forget_spent_links(catalog, now - chrono::Duration::days(1)).await
    {
        report.phase_failed("download links", error);
    }
    // Maintenance jobs get two attempts: a region that is down today is retried tomorrow.
    let attempts = max_attempts.min(2);
    let region_names = options.region_names();
    match scrub::plan_scrub(catalog, &region_names, options.scrub_full_sample, now).await {
        Ok(works) => {
            let scrubbed = run_jobs(
                catalog,
                works,
                |work| match work {
                    JobWork::Scrub { region, .. } => Some(DedupKey::Scrub {
                        run: run.clone(),
                        region: region.clone(),
                    }),
                    _ => None,
                },
                attempts,
                wait,
                &mut report,
            )
            .await;
            report.scrub_jobs = scrubbed.enqueued;
            for status in &scrubbed.finished {
                if let Some(summary) = status.scrub_summary() {
                    report.copies_checked += summary.checked;
                    report.copies_bad += summary.bad;
                }
            }
        }
        Err(error) => report.phase_failed("scrub plan", error),
    }
    match scrub::recover_locked_copies(catalog, &options.regions, &actor).await {
        Ok(recovery) => {
            report.recovered_from_lock = recovery.recovered.len();
            report.problems.extend(recovery.problems);
        }
        Err(error) => report.phase_failed("recovery from locked versions", error),
    }
    match scrub::abort_stale_uploads_in_locked_regions(
        catalog,
        &options.regions,
        lifeboat_core::copy::created_before_age(lifeboat_core::copy::STALE_UPLOAD_AGE),
    )
    .await
    {
        Ok((aborted, problems)) => {
            report.stale_uploads_aborted = aborted;
            report.problems.extend(problems);
        }
        Err(error) => report.phase_failed("stale uploads in locked regions", error),
    }
    let repaired = enqueue_repairs(catalog, options, run, attempts, wait).await;
    report.repair_jobs = repaired.repair_jobs;
    report.repaired = repaired.repaired;
    report.problems.extend(repaired.problems);
    report.incomplete |= repaired.incomplete;
    match restores::plan_kept_database_drops(catalog).await {
        Ok(due) => {
            let keys: std::collections::HashMap<(String, String), i64> = due
                .iter()
                .filter_map(|drop| match &drop.work {
                    JobWork::DropDatabase {
                        cluster, database, ..
                    } => Some(((cluster.to_string(), database.clone()), drop.kept)),
                    _ => None,
                })
                .collect();
            let dropped = run_jobs(
                catalog,
                due.into_iter().map(|drop| drop.work).collect(),
                |work| match work {
                    JobWork::DropDatabase {
                        cluster, database, ..
                    } => Some(DedupKey::DropKeptDatabase {
                        run: run.clone(),
                        kept: *keys.get(&(cluster.to_string(), database.clone()))?,
                    }),
                    _ => None,
                },
                attempts,
                wait,
                &mut report,
            )
            .await;
            report.drop_jobs = dropped.enqueued;
        }
        Err(error) => report.phase_failed("kept databases", error),
    }
    if wait.is_some() {
        match scrub::degraded_backups(catalog, &region_names).await {
            Ok(degraded) => report.degraded_after_repair = degraded.len(),
            Err(error) => report.phase_failed("degraded backups", error),
        }
    }
    report
}

/// Enqueue a replicate job for every copy known to be lacking, once per pass and copy
/// (so a failing repair is tried again in the next pass, not in a loop), and with `wait`,
/// wait for them.
pub async fn enqueue_repairs(
    catalog: &Catalog,
    options: &MaintenanceOptions,
    run: &RunName,
    attempts: i32,
    wait: Option<WaitForJobs<'_>>,
) -> MaintenanceReport {
    let mut report = MaintenanceReport::default();
    match scrub::plan_repairs(catalog, &options.region_names()).await {
        Ok(works) => {
            let repaired = run_jobs(
                catalog,
                works,
                |work| match work {
                    JobWork::Replicate { backup_id, to, .. } => Some(DedupKey::Repair {
                        run: run.clone(),
                        backup: *backup_id,
                        region: to.clone(),
                    }),
                    _ => None,
                },
                attempts,
                wait,
                &mut report,
            )
            .await;
            report.repair_jobs = repaired.enqueued;
            report.repaired = repaired
                .finished
                .iter()
                .filter(|status| status.state == JobState::Succeeded)
                .count();
        }
        Err(error) => report.phase_failed("repair plan", error),
    }
    report
}

/// A phase's jobs: how many were enqueued and, when waiting, how each ended.
struct PhaseJobs {
    enqueued: usize,
    finished: Vec<JobStatus>,
}

/// Enqueue a phase's jobs under the pass's keys (requeuing those that failed for good in an
/// earlier run of the same pass), and with `wait`, wait for them and note the failures.
async fn run_jobs(
    catalog: &Catalog,
    works: Vec<JobWork>,
    key_of: impl Fn(&JobWork) -> Option<DedupKey>,
    attempts: i32,
    wait: Option<WaitForJobs<'_>>,
    report: &mut MaintenanceReport,
) -> PhaseJobs {
    let mut phase = PhaseJobs {
        enqueued: 0,
        finished: Vec::new(),
    };
    let jobs: Vec<NewJob> = works
        .into_iter()
        .filter_map(|work| {
            Some(NewJob {
                dedup_key: Some(key_of(&work)?),
                work,
            })
        })
        .collect();
    if jobs.is_empty() {
        return phase;
    }
    let Some(wait) = wait else {
        // Not waiting (a controller's pass, its repair loop): a key already used, even by
        // a job that failed, enqueues nothing, so a failing repair waits for the next pass
        // instead of running every few minutes.
        let inserted = match catalog.connection().await {
            Ok(connection) => queue::enqueue(&**connection, &jobs, attempts)
                .await
                .map_err(|error| error.to_string()),
            Err(error) => Err(error.to_string()),
        };
        match inserted {
            Ok(inserted) => phase.enqueued = inserted.len(),
            Err(error) => report.phase_failed("enqueue maintenance jobs", error),
        }
        return phase;
    };
    // Waiting (the nightly): a rerun of the same pass waits for the same jobs and gives
    // those that failed for good fresh attempts.
    let ids = match nightly::enqueue_run_jobs(catalog, &jobs, attempts).await {
        Ok(ids) => ids,
        Err(error) => {
            report.phase_failed("enqueue maintenance jobs", error);
            return phase;
        }
    };
    phase.enqueued = ids.len();
    wait.work_ready.notify_waiters();
    match nightly::wait_for_jobs(catalog, &ids, Duration::from_millis(200), wait.until).await {
        Ok(statuses) => {
            for status in statuses
                .iter()
                .filter(|status| status.state != JobState::Succeeded)
            {
                report.problems.push(format!(
                    "{} job {}: {}",
                    status.kind,
                    status.id,
                    status
                        .last_error
                        .as_deref()
                        .unwrap_or(status.state.as_str())
                ));
            }
            phase.finished = statuses;
        }
        Err(error) => report.phase_failed("wait for maintenance jobs", error),
    }
    phase
}

/// A controller's daily pass: its memory of the last day it completed in this process.
#[derive(Debug, Default)]
pub struct Daily {
    done_for: Option<chrono::NaiveDate>,
}

impl Daily {
    /// Run today's pass (named by the date) if it is time and this process has not done it
    /// yet today. A pass that could not complete a phase is run again at the next call.
    pub async fn run(
        &mut self,
        catalog: &Catalog,
        options: &MaintenanceOptions,
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Option<MaintenanceReport> {
        let today = now.date_naive();
        if now.hour() * 60 + now.minute() < options.minute_of_day || self.done_for == Some(today) {
            return None;
        }
        let run = RunName::for_date(today);
        let report = run_maintenance(catalog, options, &run, now, max_attempts, None).await;
        if !report.incomplete {
            self.done_for = Some(today);
        }
        Some(report)
    }
}
