//! Daily maintenance for a long-running controller: what `lifeboat nightly` does after the
//! backups, on the controller's own clock.
//!
//! - Once a day, at a set minute (by default the end of the backup window): scrub jobs for
//!   every region, then retention and the purge of the trash. The scrub jobs' dedup keys
//!   (`daily:<date>:scrub:<region>`) make the scrub happen once a day even with two
//!   controllers; retention and purge are idempotent and run once a day per controller.
//! - It runs in its own task ([`crate::server`]), so a slow purge never delays the
//!   scheduler or the lease reaper.
//! - With `drill`, in the same daily pass: a drill job for each tenant whose newest backup
//!   no drill has verified (`daily:<date>:drill:<tenant>`), for agents that hold the
//!   identity.
//! - Every few minutes: a replicate job for each copy scrub or a backup found lacking
//!   (`repair:<date>:<backup>:<region>`, so a failing repair is tried again the next day,
//!   not in a loop).

use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use lifeboat_core::api::JobWork;
use lifeboat_core::ids::RegionName;
use lifeboat_core::region::Region;

use crate::catalog::Catalog;
use crate::queue::{self, NewJob};
use crate::{drills, retention, scrub};

/// What daily maintenance needs.
#[derive(Clone)]
pub struct MaintenanceOptions {
    /// Every configured region, for the purge (which deletes from all of them).
    pub regions: Vec<Region>,
    pub trash_period: Duration,
    /// Copies per region read whole and hashed each day.
    pub scrub_full_sample: usize,
    /// When the day's scrub and retention start (UTC).
    pub minute_of_day: u32,
    /// Also drill each tenant's newest backup once a day, if no drill has verified it yet
    /// (`lifeboat controller --drill`; needs agents that hold the identity).
    pub drill: bool,
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

/// What one call did.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct MaintenanceReport {
    pub scrub_jobs: usize,
    pub drill_jobs: usize,
    pub trashed: usize,
    pub purged: usize,
    pub repair_jobs: usize,
}

fn region_names(options: &MaintenanceOptions) -> Vec<RegionName> {
    options
        .regions
        .iter()
        .map(|region| region.name().clone())
        .collect()
}

/// Daily maintenance's memory: the last day it completed in this process.
#[derive(Debug, Default)]
pub struct Daily {
    done_for: Option<chrono::NaiveDate>,
}

impl Daily {
    /// Start today's scrub, retention and purge if it is time and this process has not
    /// done them yet today. Scrub jobs are enqueued once a day across controllers (their
    /// dedup keys); retention and purge are idempotent, so each controller runs them once a
    /// day, and a failure is retried at the next call rather than skipped for the day.
    pub async fn run(
        &mut self,
        catalog: &Catalog,
        options: &MaintenanceOptions,
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> anyhow::Result<MaintenanceReport> {
        let mut report = MaintenanceReport::default();
        let today = now.date_naive();
        if now.hour() * 60 + now.minute() < options.minute_of_day || self.done_for == Some(today) {
            return Ok(report);
        }
        let date = now.format("%Y-%m-%d");
        let prefix = format!("daily:{date}:scrub:");
        let started: i64 = catalog
            .connection()
            .await?
            .query_one(
                "SELECT count(*) FROM jobs WHERE dedup_key LIKE $1 || '%'",
                &[&prefix],
            )
            .await?
            .get(0);
        if started == 0 {
            let works = scrub::plan_scrub(
                catalog,
                &region_names(options),
                options.scrub_full_sample,
                now,
            )
            .await?;
            let jobs: Vec<NewJob> = works
                .into_iter()
                .map(|work| {
                    let key = match &work {
                        JobWork::Scrub { region, .. } => format!("{prefix}{region}"),
                        other => format!("daily:{date}:{}", other.kind()),
                    };
                    NewJob {
                        dedup_key: Some(key),
                        work,
                    }
                })
                .collect();
            report.scrub_jobs =
                queue::enqueue(&**catalog.connection().await?, &jobs, max_attempts.min(2))
                    .await?
                    .len();
            tracing::info!(scrub_jobs = report.scrub_jobs, "daily scrub enqueued");
        }
        if options.drill {
            // Before retention, which keeps each tenant's newest verified backup. Keyed by
            // date and tenant: once a day, even with two controllers.
            let jobs: Vec<NewJob> = drills::plan_drills_of_newest(catalog)
                .await?
                .into_iter()
                .map(|work| {
                    let tenant = match &work {
                        JobWork::Drill { tenant, .. } => tenant.to_string(),
                        other => other.kind().to_string(),
                    };
                    NewJob {
                        dedup_key: Some(format!("daily:{date}:drill:{tenant}")),
                        work,
                    }
                })
                .collect();
            report.drill_jobs = queue::enqueue(&**catalog.connection().await?, &jobs, max_attempts)
                .await?
                .len();
            if report.drill_jobs > 0 {
                tracing::info!(drill_jobs = report.drill_jobs, "daily drills enqueued");
            }
        }
        let retained = retention::apply(
            catalog,
            None,
            now,
            false,
            options.trash_period,
            "controller",
        )
        .await?;
        report.trashed = retained.tenants.iter().map(|plan| plan.trash.len()).sum();
        let purged = retention::purge_due(catalog, &options.regions, now).await?;
        report.purged = purged.purged.len();
        for failure in &purged.failed {
            tracing::warn!(backup = %failure.backup_id, tenant = %failure.tenant, errors = ?failure.errors, "purge incomplete; retried tomorrow");
        }
        self.done_for = Some(today);
        Ok(report)
    }
}

/// Enqueue a replicate job for every copy known to be lacking, once a day per copy.
pub async fn repairs(
    catalog: &Catalog,
    options: &MaintenanceOptions,
    now: DateTime<Utc>,
    max_attempts: i32,
) -> anyhow::Result<MaintenanceReport> {
    let date = now.format("%Y-%m-%d");
    let jobs: Vec<NewJob> = scrub::plan_repairs(catalog, &region_names(options))
        .await?
        .into_iter()
        .map(|work| {
            let key = match &work {
                JobWork::Replicate { backup_id, to, .. } => {
                    format!("repair:{date}:{backup_id}:{to}")
                }
                other => format!("repair:{date}:{}", other.kind()),
            };
            NewJob {
                dedup_key: Some(key),
                work,
            }
        })
        .collect();
    let inserted =
        queue::enqueue(&**catalog.connection().await?, &jobs, max_attempts.min(2)).await?;
    Ok(MaintenanceReport {
        repair_jobs: inserted.len(),
        ..MaintenanceReport::default()
    })
}
