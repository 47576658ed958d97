//! The scheduler: turns each tenant's schedule into backup jobs.
//!
//! A tick reads every tenant, finds the newest slot of its schedule that is due (after the
//! slot it last enqueued, or after the tenant was added) and enqueues one backup job for it
//! with the dedup key `backup:<tenant>:<slot>`. So:
//! - a slot is enqueued at most once, even with two controllers ticking on one catalog (the
//!   key is unique in `jobs`) and across restarts (`tenants.last_slot` remembers it);
//! - slots missed while no controller ran are caught up once: only the newest due slot is
//!   enqueued, not one job per missed slot.
//!
//! A slot whose date already has the tenant's backup from `lifeboat nightly` (cron on the
//! same catalog) is remembered but not enqueued: a tenant is backed up once a day either way.
//!
//! A tick is a read of `tenants` plus, when something is due, a lookup of the nightly's
//! keys, one insert and one update, so it stays cheap with thousands of tenants (see
//! BENCHMARKS.md).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration as ChronoDuration, NaiveTime, Timelike, Utc};
use lifeboat_core::api::JobWork;
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::manifest::BackupKind;

use crate::catalog::{Catalog, CatalogError, query_error};
use crate::dedup_key::DedupKey;
use crate::nightly;
use crate::queue::{self, NewJob};
use crate::schedule::{self, BackupWindow};

/// What one tick did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TickReport {
    pub tenants: usize,
    /// Slots that were due.
    pub due: usize,
    /// Jobs inserted now (a due slot another controller enqueued first is not counted).
    pub enqueued: usize,
    /// Tenants whose stored schedule no longer parses; skipped and logged.
    pub invalid_schedules: usize,
    /// Due slots not enqueued because the nightly of the slot's date already backs the
    /// tenant up (`lifeboat nightly` from cron on the same catalog).
    pub covered_by_nightly: usize,
}

/// The scheduler's memory between ticks: parsed cron expressions.
#[derive(Debug)]
pub struct Scheduler {
    window: BackupWindow,
    parsed: HashMap<String, Option<cron::Schedule>>,
}

impl Scheduler {
    pub fn new(window: BackupWindow) -> Scheduler {
        Scheduler {
            window,
            parsed: HashMap::new(),
        }
    }

    /// The newest slot of a schedule in `(after, now]`, if any.
    fn due_slot(
        &mut self,
        tenant: &TenantName,
        expression: Option<&str>,
        after: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, ()> {
        let newest = match expression {
            None => {
                // Daily at the tenant's minute: today's if it has passed, else yesterday's.
                let minute = schedule::default_minute_of_day(tenant, self.window);
                let midnight = now.date_naive().and_time(NaiveTime::MIN).and_utc();
                let today = midnight + ChronoDuration::minutes(i64::from(minute));
                if today <= now {
                    today
                } else {
                    today - ChronoDuration::days(1)
                }
            }
            Some(expression) => {
                let parsed = self
                    .parsed
                    .entry(expression.to_owned())
                    .or_insert_with(|| schedule::parse_cron(expression).ok());
                let Some(parsed) = parsed else {
                    return Err(());
                };
                // The newest occurrence at or before now.
                let just_after_now =
                    now.with_nanosecond(0).unwrap_or(now) + ChronoDuration::seconds(1);
                match parsed.after(&just_after_now).next_back() {
                    Some(slot) => slot,
                    None => return Ok(None),
                }
            }
        };
        Ok((newest > after && newest <= now).then_some(newest))
    }

    /// Whether `slot` is the first slot of its UTC date in the tenant's schedule: the only
    /// one a nightly of that date can stand in for. Daily schedules have one slot a day.
    fn first_slot_of_its_day(&mut self, expression: Option<&str>, slot: DateTime<Utc>) -> bool {
        let Some(expression) = expression else {
            return true;
        };
        let Some(Some(parsed)) = self.parsed.get(expression) else {
            return true;
        };
        let midnight = slot.date_naive().and_time(NaiveTime::MIN).and_utc();
        // `after` is exclusive: start a second before midnight to see a slot at 00:00:00.
        parsed
            .after(&(midnight - ChronoDuration::seconds(1)))
            .next()
            .is_none_or(|first| first >= slot)
    }

    /// Enqueue every due slot. Safe to run from several controllers at once.
    pub async fn tick(
        &mut self,
        catalog: &Catalog,
        now: DateTime<Utc>,
        max_attempts: i32,
    ) -> Result<TickReport, CatalogError> {
        let mut connection = catalog.connection().await?;
        let rows = connection
            .query(
                "SELECT name, cluster, database_name, schedule, coalesce(last_slot, created_at) FROM tenants",
                &[],
            )
            .await
            .map_err(query_error("read tenants for the scheduler"))?;
        let mut report = TickReport {
            tenants: rows.len(),
            ..TickReport::default()
        };
        let mut jobs = Vec::new();
        let mut names = Vec::new();
        let mut slots = Vec::new();
        // Tenants whose due slot is the first of its date: the nightly may cover it.
        let mut first_of_day = Vec::new();
        for row in &rows {
            let name: &str = row.get(0);
            let (Ok(tenant), Ok(cluster)) = (
                TenantName::parse(name),
                ClusterName::parse(row.get::<_, &str>(1)),
            ) else {
                report.invalid_schedules += 1;
                continue;
            };
            let expression: Option<&str> = row.get(3);
            let after: DateTime<Utc> = row.get(4);
            let slot = match self.due_slot(&tenant, expression, after, now) {
                Ok(Some(slot)) => slot,
                Ok(None) => continue,
                Err(()) => {
                    report.invalid_schedules += 1;
                    tracing::warn!(tenant = %tenant, schedule = ?expression, "skipping a tenant whose schedule does not parse");
                    continue;
                }
            };
            jobs.push(NewJob {
                dedup_key: Some(DedupKey::scheduled_backup(&tenant, slot)),
                work: JobWork::Backup {
                    tenant: tenant.clone(),
                    cluster,
                    database: row.get(2),
                    backup_kind: BackupKind::Scheduled,
                },
            });
            if self.first_slot_of_its_day(expression, slot) {
                first_of_day.push((tenant.to_string(), slot.date_naive()));
            }
            names.push(tenant.to_string());
            slots.push(slot);
        }
        report.due = jobs.len();
        if jobs.is_empty() {
            return Ok(report);
        }
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin scheduler tick"))?;
        // A tenant is backed up once a day whether the nightly (cron) or this scheduler
        // enqueues it: the first slot of a date that the nightly of that date already backs
        // up is not enqueued. Recorded once that job succeeded; asked again at each tick
        // while it is under way; enqueued after all if it fails for good. Slots later in
        // the day (sub-daily schedules) are not affected.
        nightly::lock_daily_backups(&*transaction).await?;
        // A tenant removed since the read above is not enqueued (removal takes this lock).
        let listed: Vec<&str> = names.iter().map(String::as_str).collect();
        let still_there = nightly::existing_tenants(&*transaction, &listed).await?;
        if still_there.len() < names.len() {
            jobs.retain(|job| match &job.work {
                JobWork::Backup { tenant, .. } => still_there.contains(tenant.as_str()),
                _ => true,
            });
            first_of_day.retain(|(name, _)| still_there.contains(name));
        }
        let covered = if first_of_day.is_empty() {
            BTreeMap::new()
        } else {
            nightly::nightly_backups_of(&*transaction, &first_of_day).await?
        };
        if !covered.is_empty() {
            jobs.retain(|job| match &job.work {
                JobWork::Backup { tenant, .. } => !covered.contains_key(tenant.as_str()),
                _ => true,
            });
            report.covered_by_nightly = report.due - jobs.len();
            let (kept_names, kept_slots): (Vec<String>, Vec<DateTime<Utc>>) = names
                .into_iter()
                .zip(slots)
                .filter(|(name, _)| covered.get(name) != Some(&nightly::NightlyCover::Pending))
                .unzip();
            (names, slots) = (kept_names, kept_slots);
        }
        report.enqueued = queue::enqueue(&*transaction, &jobs, max_attempts)
            .await?
            .len();
        transaction
            .execute(
                "UPDATE tenants SET last_slot = due.slot
                 FROM unnest($1::text[], $2::timestamptz[]) AS due (name, slot)
                 WHERE tenants.name = due.name AND (last_slot IS NULL OR last_slot < due.slot)",
                &[&names, &slots],
            )
            .await
            .map_err(query_error("remember enqueued slots"))?;
        transaction
            .commit()
            .await
            .map_err(query_error("commit scheduler tick"))?;
        if report.enqueued > 0 {
            tracing::info!(
                enqueued = report.enqueued,
                due = report.due,
                "scheduler enqueued backups"
            );
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn the_newest_missed_slot_is_due_once() {
        let mut scheduler = Scheduler::new(schedule::DEFAULT_WINDOW);
        let tenant = TenantName::parse("acme").expect("tenant");
        let hourly = Some("0 0 * * * *");
        // Down from 01:30 to 05:10: slots 02:00..05:00 were missed; only 05:00 is due.
        let slot = scheduler
            .due_slot(
                &tenant,
                hourly,
                at("2026-11-23T01:30:00Z"),
                at("2026-11-23T05:10:00Z"),
            )
            .expect("parses");
        assert_eq!(slot, Some(at("2026-11-23T05:00:00Z")));
        // Once 05:00 is remembered, nothing is due until 06:00.
        let slot = scheduler
            .due_slot(
                &tenant,
                hourly,
                at("2026-11-23T05:00:00Z"),
                at("2026-11-23T05:59:59Z"),
            )
            .expect("parses");
        assert_eq!(slot, None);
        // A slot exactly now is due.
        let slot = scheduler
            .due_slot(
                &tenant,
                hourly,
                at("2026-11-23T05:00:00Z"),
                at("2026-11-23T06:00:00Z"),
            )
            .expect("parses");
        assert_eq!(slot, Some(at("2026-11-23T06:00:00Z")));
        assert!(
            scheduler
                .due_slot(
                    &tenant,
                    Some("nonsense"),
                    at("2026-11-23T05:00:00Z"),
                    at("2026-11-23T06:00:00Z")
                )
                .is_err()
        );
    }

    #[test]
    fn the_default_schedule_is_daily_at_the_tenants_minute() {
        let mut scheduler = Scheduler::new(schedule::DEFAULT_WINDOW);
        let tenant = TenantName::parse("globex").expect("tenant");
        let minute = schedule::default_minute_of_day(&tenant, schedule::DEFAULT_WINDOW);
        let today = at("2026-11-23T00:00:00Z") + ChronoDuration::minutes(i64::from(minute));
        // Added yesterday at noon; at 12:00 today today's slot is due.
        let due = scheduler
            .due_slot(
                &tenant,
                None,
                at("2026-11-22T12:00:00Z"),
                at("2026-11-23T12:00:00Z"),
            )
            .expect("default");
        assert_eq!(due, Some(today));
        // After today's slot was enqueued, nothing more today.
        let due = scheduler
            .due_slot(&tenant, None, today, at("2026-11-23T23:59:00Z"))
            .expect("default");
        assert_eq!(due, None);
        // The cron form of the default agrees.
        let expression = schedule::default_schedule(&tenant, schedule::DEFAULT_WINDOW);
        let via_cron = scheduler
            .due_slot(
                &tenant,
                Some(&expression),
                at("2026-11-22T12:00:00Z"),
                at("2026-11-23T12:00:00Z"),
            )
            .expect("cron");
        assert_eq!(via_cron, Some(today));
    }
}
