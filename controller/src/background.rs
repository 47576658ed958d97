//! The controller's background loops, beside the API in the same process:
//! - [`background_loops`]: the scheduler tick (due slots become backup jobs) and the lease
//!   reaper (jobs whose agents went silent, or ran past their deadline, are requeued);
//! - [`maintenance_loop`]: daily scrub, retention and purge, and repairs every few minutes,
//!   in a task of their own so that a purge stuck on a dead region holds back neither.
//!
//! Each wakes waiting claims (`work_ready`) when it made work claimable.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::dedup_key::RunName;
use crate::maintenance::{self, MaintenanceOptions};
use crate::queue;
use crate::scheduler::Scheduler;
use crate::server::ControllerOptions;

/// How often daily maintenance checks whether its time has come.
const MAINTENANCE_TICK: Duration = Duration::from_secs(60);

/// How often a running controller looks for copies to repair.
const REPAIR_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The scheduler tick and the lease reaper, until `cancel`.
pub async fn background_loops(
    catalog: Catalog,
    options: Arc<ControllerOptions>,
    work_ready: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut scheduler = Scheduler::new(options.window);
    let reap_every = (options.policy.lease / 4).max(Duration::from_millis(200));
    let mut reap = tokio::time::interval(reap_every);
    let mut tick = tokio::time::interval(options.tick_interval);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = reap.tick() => {
                match queue::reap_expired_leases(&catalog, &options.policy).await {
                    Ok(0) => {}
                    Ok(reaped) => {
                        tracing::warn!(reaped, "requeued jobs whose agents stopped sending heartbeats");
                        work_ready.notify_waiters();
                    }
                    Err(error) => tracing::error!(error = %error, "reaping expired leases failed"),
                }
            }
            _ = tick.tick(), if options.schedule => {
                match scheduler.tick(&catalog, Utc::now(), options.policy.max_attempts).await {
                    Ok(report) if report.enqueued > 0 => work_ready.notify_waiters(),
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = %error, "scheduler tick failed"),
                }
            }
        }
    }
}

/// Daily maintenance and repairs, until `cancel`.
pub async fn maintenance_loop(
    catalog: Catalog,
    maintenance: MaintenanceOptions,
    max_attempts: i32,
    work_ready: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut daily = maintenance::Daily::default();
    let mut tick = tokio::time::interval(MAINTENANCE_TICK);
    let mut repair = tokio::time::interval(REPAIR_INTERVAL);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                if let Some(report) = daily.run(&catalog, &maintenance, Utc::now(), max_attempts).await {
                    if report.problems.is_empty() {
                        tracing::info!(?report, "daily maintenance done");
                    } else {
                        tracing::warn!(?report, "daily maintenance done with problems");
                    }
                    work_ready.notify_waiters();
                }
            }
            _ = repair.tick() => {
                let run = RunName::for_date(Utc::now().date_naive());
                let report = maintenance::enqueue_repairs(&catalog, &maintenance, &run, max_attempts.min(2), None).await;
                for problem in &report.problems {
                    tracing::error!(problem, "planning repairs failed");
                }
                if report.repair_jobs > 0 {
                    tracing::info!(repair_jobs = report.repair_jobs, "repairs enqueued");
                    work_ready.notify_waiters();
                }
            }
        }
    }
}
