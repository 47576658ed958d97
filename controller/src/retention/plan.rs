//! The retention plan of one tenant: which backups to keep and why, which to trash.
//!
//! A pure function of the backups, the tenant's policy and the time, so that every rule is
//! tested without a database. The rules, in the words an operator would use:
//!
//! - **Grandfather-father-son.** Keep the newest backup of each of the newest `keep_daily`
//!   UTC days that have one, of the newest `keep_weekly` ISO weeks, `keep_monthly` months
//!   and `keep_yearly` years (as restic's `forget --keep-*` does). Only periods that *have* a
//!   backup count: a tenant whose backups stopped, or keep failing, keeps its old backups
//!   until newer ones replace them. Nothing is ever deleted because time passed.
//! - **Only good backups fill a period**: those with at least one `present` copy, whatever
//!   `verified_at` says (a drill proved the backup once; only a copy can restore it now). A
//!   backup whose every copy is missing or corrupt does not displace an older good one
//!   from its day.
//! - **Never trashed**: the newest backup, the newest good backup, the newest verified
//!   backup, and anything under legal hold (the tenant's or the backup's own).
//! - **Manual backups** (a customer or an operator asked for them) fill periods like
//!   scheduled ones and are kept at least [`MANUAL_MIN_AGE_DAYS`] days whatever the policy,
//!   because someone may still be downloading or relying on that exact one.
//! - **Pre-restore backups** (the safety copy of a live database taken before a helpdesk
//!   restore replaced it) are kept at least [`PRE_RESTORE_MIN_AGE_DAYS`] days, the window in
//!   which a restore is typically found to be a mistake. They never fill a period: they hold
//!   a state somebody chose to replace, not the tenant's history.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use lifeboat_core::ids::BackupId;
use lifeboat_core::manifest::BackupKind;
use serde::{Serialize, Serializer};

use crate::tenants::Retention;

pub use lifeboat_core::policy::{MANUAL_MIN_AGE_DAYS, PRE_RESTORE_MIN_AGE_DAYS};

/// What retention needs to know of one backup that is not in the trash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub backup_id: BackupId,
    pub kind: BackupKind,
    pub started_at: DateTime<Utc>,
    pub verified_at: Option<DateTime<Utc>>,
    pub legal_hold: bool,
    /// At least one region holds a copy in state `present`.
    pub has_present_copy: bool,
}

impl Candidate {
    fn is_good(&self) -> bool {
        self.has_present_copy
    }

    /// Whether this backup may represent its day, week, month and year.
    fn fills_periods(&self) -> bool {
        self.kind != BackupKind::PreRestore && self.is_good()
    }
}

/// A tenant's policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TenantPolicy {
    pub retention: Retention,
    /// Tenant-wide legal hold: nothing of the tenant is trashed or purged.
    pub legal_hold: bool,
}

/// A calendar period in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Day(NaiveDate),
    /// ISO 8601 week: (ISO year, week number).
    Week(i32, u32),
    Month(i32, u32),
    Year(i32),
}

impl fmt::Display for Period {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Day(date) => write!(formatter, "daily {date}"),
            Period::Week(year, week) => write!(formatter, "weekly {year}-W{week:02}"),
            Period::Month(year, month) => write!(formatter, "monthly {year}-{month:02}"),
            Period::Year(year) => write!(formatter, "yearly {year}"),
        }
    }
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepReason {
    TenantLegalHold,
    BackupLegalHold,
    Newest,
    NewestGood,
    NewestVerified,
    /// The newest good backup of this period, and the period is among the newest kept.
    Period(Period),
    RecentManual,
    RecentPreRestore,
}

impl fmt::Display for KeepReason {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::TenantLegalHold => formatter.write_str("tenant legal hold"),
            KeepReason::BackupLegalHold => formatter.write_str("legal hold"),
            KeepReason::Newest => formatter.write_str("newest"),
            KeepReason::NewestGood => formatter.write_str("newest good"),
            KeepReason::NewestVerified => formatter.write_str("newest verified"),
            KeepReason::Period(period) => period.fmt(formatter),
            KeepReason::RecentManual => {
                write!(formatter, "manual, kept {MANUAL_MIN_AGE_DAYS} days")
            }
            KeepReason::RecentPreRestore => {
                write!(
                    formatter,
                    "pre-restore, kept {PRE_RESTORE_MIN_AGE_DAYS} days"
                )
            }
        }
    }
}

impl Serialize for KeepReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A backup the plan keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub backup_id: BackupId,
    pub kind: BackupKind,
    pub started_at: DateTime<Utc>,
    pub reasons: Vec<KeepReason>,
}

/// A backup the plan moves to the trash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ToTrash {
    pub backup_id: BackupId,
    pub kind: BackupKind,
    pub started_at: DateTime<Utc>,
    pub reason: String,
}

/// Every candidate ends up in exactly one of the two lists, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub keep: Vec<Kept>,
    pub trash: Vec<ToTrash>,
}

fn period_of(granularity: Granularity, at: DateTime<Utc>) -> Period {
    match granularity {
        Granularity::Day => Period::Day(at.date_naive()),
        Granularity::Week => {
            let week = at.iso_week();
            Period::Week(week.year(), week.week())
        }
        Granularity::Month => Period::Month(at.year(), at.month()),
        Granularity::Year => Period::Year(at.year()),
    }
}

#[derive(Debug, Clone, Copy)]
enum Granularity {
    Day,
    Week,
    Month,
    Year,
}

/// Decide, for one tenant, which of `backups` (none of them in the trash) to keep.
pub fn plan(backups: &[Candidate], policy: &TenantPolicy, now: DateTime<Utc>) -> Plan {
    let mut newest_first: Vec<&Candidate> = backups.iter().collect();
    newest_first.sort_by(|left, right| {
        (right.started_at, right.backup_id).cmp(&(left.started_at, left.backup_id))
    });
    let mut reasons: Vec<Vec<KeepReason>> = vec![Vec::new(); newest_first.len()];

    for (index, backup) in newest_first.iter().enumerate() {
        if policy.legal_hold {
            reasons[index].push(KeepReason::TenantLegalHold);
        }
        if backup.legal_hold {
            reasons[index].push(KeepReason::BackupLegalHold);
        }
    }
    if let Some(first) = reasons.first_mut() {
        first.push(KeepReason::Newest);
    }
    if let Some(index) = newest_first.iter().position(|backup| backup.is_good())
        && index > 0
    {
        reasons[index].push(KeepReason::NewestGood);
    }
    if let Some(index) = newest_first
        .iter()
        .position(|backup| backup.verified_at.is_some())
    {
        reasons[index].push(KeepReason::NewestVerified);
    }

    let retention = policy.retention;
    for (granularity, count) in [
        (Granularity::Day, retention.keep_daily),
        (Granularity::Week, retention.keep_weekly),
        (Granularity::Month, retention.keep_monthly),
        (Granularity::Year, retention.keep_yearly),
    ] {
        let mut periods_kept: Vec<Period> = Vec::new();
        for (index, backup) in newest_first.iter().enumerate() {
            if !backup.fills_periods() {
                continue;
            }
            let period = period_of(granularity, backup.started_at);
            // Newest first, so the first backup seen of a period is its newest.
            if periods_kept.contains(&period) {
                continue;
            }
            if periods_kept.len() >= count as usize {
                break;
            }
            periods_kept.push(period);
            reasons[index].push(KeepReason::Period(period));
        }
    }

    for (index, backup) in newest_first.iter().enumerate() {
        let age = now - backup.started_at;
        match backup.kind {
            BackupKind::Manual if age < TimeDelta::days(MANUAL_MIN_AGE_DAYS) => {
                reasons[index].push(KeepReason::RecentManual);
            }
            BackupKind::PreRestore if age < TimeDelta::days(PRE_RESTORE_MIN_AGE_DAYS) => {
                reasons[index].push(KeepReason::RecentPreRestore);
            }
            _ => {}
        }
    }

    let mut result = Plan::default();
    for (backup, reasons) in newest_first.into_iter().zip(reasons) {
        if reasons.is_empty() {
            result.trash.push(ToTrash {
                backup_id: backup.backup_id,
                kind: backup.kind,
                started_at: backup.started_at,
                reason: trash_reason(backup, &retention),
            });
        } else {
            result.keep.push(Kept {
                backup_id: backup.backup_id,
                kind: backup.kind,
                started_at: backup.started_at,
                reasons,
            });
        }
    }
    result
}

fn trash_reason(backup: &Candidate, retention: &Retention) -> String {
    if backup.kind == BackupKind::PreRestore {
        return format!("pre-restore backup older than {PRE_RESTORE_MIN_AGE_DAYS} days");
    }
    let policy = format!(
        "keep daily {}, weekly {}, monthly {}, yearly {}",
        retention.keep_daily, retention.keep_weekly, retention.keep_monthly, retention.keep_yearly
    );
    if backup.is_good() {
        format!("not needed by retention ({policy})")
    } else {
        format!("no present copy and not needed by retention ({policy})")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(year: i32, month: u32, day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, hour, 0, 0)
            .single()
            .expect("valid time")
    }

    fn backup(started_at: DateTime<Utc>) -> Candidate {
        Candidate {
            backup_id: BackupId::new(),
            kind: BackupKind::Scheduled,
            started_at,
            verified_at: None,
            legal_hold: false,
            has_present_copy: true,
        }
    }

    fn policy(daily: u32, weekly: u32, monthly: u32, yearly: u32) -> TenantPolicy {
        TenantPolicy {
            retention: Retention {
                keep_daily: daily,
                keep_weekly: weekly,
                keep_monthly: monthly,
                keep_yearly: yearly,
            },
            legal_hold: false,
        }
    }

    /// One backup a day at 02:00 for `days` days, the last on `last_day`.
    fn daily_backups(last_day: DateTime<Utc>, days: i64) -> Vec<Candidate> {
        (0..days)
            .map(|offset| backup(last_day - TimeDelta::days(offset)))
            .collect()
    }

    fn kept_times(plan: &Plan) -> Vec<DateTime<Utc>> {
        plan.keep.iter().map(|kept| kept.started_at).collect()
    }

    fn reasons_of(plan: &Plan, backup_id: BackupId) -> Vec<String> {
        plan.keep
            .iter()
            .find(|kept| kept.backup_id == backup_id)
            .map(|kept| kept.reasons.iter().map(ToString::to_string).collect())
            .unwrap_or_default()
    }

    #[test]
    fn daily_keeps_the_newest_backup_of_each_of_the_newest_days() {
        let mut backups = Vec::new();
        for day in 1..=10 {
            for hour in [1, 9, 17] {
                backups.push(backup(at(2026, 3, day, hour)));
            }
        }
        let plan = plan(&backups, &policy(7, 0, 0, 0), at(2026, 3, 10, 20));
        let expected: Vec<DateTime<Utc>> = (4..=10).rev().map(|day| at(2026, 3, day, 17)).collect();
        assert_eq!(kept_times(&plan), expected);
        assert_eq!(plan.trash.len(), 30 - 7);
        assert!(
            plan.trash
                .iter()
                .all(|trashed| trashed.reason.contains("keep daily 7"))
        );
        let newest = plan.keep[0].backup_id;
        assert_eq!(reasons_of(&plan, newest), ["newest", "daily 2026-03-10"]);
    }

    #[test]
    fn weekly_uses_iso_weeks_across_the_new_year() {
        // 2020-12-28 .. 2021-01-03 is ISO week 2020-W53; 2021-01-04 starts 2021-W01.
        let backups = vec![
            backup(at(2020, 12, 21, 2)),
            backup(at(2020, 12, 29, 2)),
            backup(at(2021, 1, 3, 2)),
            backup(at(2021, 1, 4, 2)),
            backup(at(2021, 1, 5, 2)),
        ];
        let plan = plan(&backups, &policy(0, 2, 0, 0), at(2021, 1, 6, 0));
        assert_eq!(
            kept_times(&plan),
            [at(2021, 1, 5, 2), at(2021, 1, 3, 2)],
            "the newest of 2021-W01 and of 2020-W53"
        );
        assert_eq!(
            reasons_of(&plan, plan.keep[1].backup_id),
            ["weekly 2020-W53"]
        );
        assert_eq!(plan.trash.len(), 3);
    }

    #[test]
    fn monthly_and_yearly_keep_the_newest_of_their_period() {
        let backups = vec![
            backup(at(2023, 6, 1, 2)),
            backup(at(2023, 12, 31, 2)),
            backup(at(2024, 11, 2, 2)),
            backup(at(2024, 11, 30, 2)),
            backup(at(2024, 12, 15, 2)),
            backup(at(2025, 1, 10, 2)),
        ];
        let plan = plan(&backups, &policy(0, 0, 3, 3), at(2025, 1, 11, 0));
        assert_eq!(
            kept_times(&plan),
            [
                at(2025, 1, 10, 2),
                at(2024, 12, 15, 2),
                at(2024, 11, 30, 2),
                at(2023, 12, 31, 2),
            ]
        );
        assert_eq!(
            reasons_of(&plan, plan.keep[1].backup_id),
            ["monthly 2024-12", "yearly 2024"]
        );
        assert_eq!(reasons_of(&plan, plan.keep[3].backup_id), ["yearly 2023"]);
    }

    #[test]
    fn tenant_without_backups_for_thirty_days_loses_nothing() {
        // Backups stopped (or kept failing) 30 days ago; the 7 daily backups before that
        // are all the tenant has, and retention counts days that have a backup.
        let last_good = at(2026, 2, 1, 2);
        let backups = daily_backups(last_good, 7);
        let now = last_good + TimeDelta::days(30);
        let plan = plan(&backups, &policy(7, 0, 0, 0), now);
        assert!(plan.trash.is_empty(), "{:?}", plan.trash);
        assert_eq!(plan.keep.len(), 7);
    }

    #[test]
    fn a_long_outage_trashes_nothing_more_than_the_day_it_began() {
        let last_good = at(2026, 2, 1, 2);
        let backups = daily_backups(last_good, 400);
        let default_policy = TenantPolicy {
            retention: Retention::default(),
            legal_hold: false,
        };
        let first = plan(&backups, &default_policy, last_good + TimeDelta::hours(1));
        assert!(!first.trash.is_empty());
        let survivors: Vec<Candidate> = backups
            .iter()
            .filter(|backup| {
                first
                    .keep
                    .iter()
                    .any(|kept| kept.backup_id == backup.backup_id)
            })
            .cloned()
            .collect();
        for days_later in [1, 30, 365, 3650] {
            let later = plan(
                &survivors,
                &default_policy,
                last_good + TimeDelta::days(days_later),
            );
            assert!(later.trash.is_empty(), "{days_later} days later: {later:?}");
        }
    }

    #[test]
    fn newest_backup_is_kept_even_when_the_policy_keeps_nothing() {
        let backups = daily_backups(at(2026, 3, 10, 2), 5);
        let plan = plan(&backups, &policy(0, 0, 0, 0), at(2026, 3, 11, 0));
        assert_eq!(kept_times(&plan), [at(2026, 3, 10, 2)]);
        assert_eq!(reasons_of(&plan, plan.keep[0].backup_id), ["newest"]);
        assert_eq!(plan.trash.len(), 4);
    }

    #[test]
    fn newest_verified_and_newest_good_backups_are_never_trashed() {
        let mut backups = daily_backups(at(2026, 3, 10, 2), 6);
        // Newest: every copy lost; the one before: good but unverified; the 4th: verified.
        backups[0].has_present_copy = false;
        backups[3].verified_at = Some(at(2026, 3, 7, 5));
        let verified = backups[3].backup_id;
        let good = backups[1].backup_id;
        let plan = plan(&backups, &policy(0, 0, 0, 0), at(2026, 3, 11, 0));
        assert_eq!(plan.keep.len(), 3, "{plan:?}");
        assert_eq!(reasons_of(&plan, good), ["newest good"]);
        assert_eq!(reasons_of(&plan, verified), ["newest verified"]);
        assert_eq!(plan.trash.len(), 3);
    }

    #[test]
    fn a_backup_without_a_present_copy_does_not_fill_its_day() {
        let good = backup(at(2026, 3, 9, 2));
        let mut lost = backup(at(2026, 3, 9, 14));
        lost.has_present_copy = false;
        let newest = backup(at(2026, 3, 10, 2));
        let plan = plan(
            &[good.clone(), lost.clone(), newest],
            &policy(2, 0, 0, 0),
            at(2026, 3, 11, 0),
        );
        assert_eq!(reasons_of(&plan, good.backup_id), ["daily 2026-03-09"]);
        assert_eq!(plan.trash.len(), 1);
        assert_eq!(plan.trash[0].backup_id, lost.backup_id);
        assert!(plan.trash[0].reason.starts_with("no present copy"));
    }

    #[test]
    fn a_verified_backup_without_a_present_copy_does_not_fill_its_day() {
        // An agent's word (or a drill long ago) marked it verified; no region holds it now.
        let good = backup(at(2026, 3, 9, 2));
        let mut verified_but_lost = backup(at(2026, 3, 9, 14));
        verified_but_lost.has_present_copy = false;
        verified_but_lost.verified_at = Some(at(2026, 3, 9, 15));
        let newest = backup(at(2026, 3, 10, 2));
        let plan = plan(
            &[good.clone(), verified_but_lost, newest],
            &policy(2, 0, 0, 0),
            at(2026, 3, 11, 0),
        );
        assert_eq!(reasons_of(&plan, good.backup_id), ["daily 2026-03-09"]);
    }

    #[test]
    fn legal_hold_keeps_a_backup_or_a_whole_tenant() {
        let mut backups = daily_backups(at(2026, 3, 10, 2), 5);
        backups[4].legal_hold = true;
        let held = backups[4].backup_id;
        let plan_with_backup_hold = plan(&backups, &policy(1, 0, 0, 0), at(2026, 3, 11, 0));
        assert_eq!(reasons_of(&plan_with_backup_hold, held), ["legal hold"]);
        assert_eq!(plan_with_backup_hold.trash.len(), 3);

        let tenant_hold = TenantPolicy {
            legal_hold: true,
            ..policy(0, 0, 0, 0)
        };
        let plan_with_tenant_hold = plan(&backups, &tenant_hold, at(2026, 3, 11, 0));
        assert!(plan_with_tenant_hold.trash.is_empty());
        assert_eq!(plan_with_tenant_hold.keep.len(), 5);
        assert!(
            plan_with_tenant_hold
                .keep
                .iter()
                .all(|kept| kept.reasons.contains(&KeepReason::TenantLegalHold))
        );
    }

    #[test]
    fn pre_restore_backups_are_kept_two_weeks_and_never_fill_a_period() {
        let scheduled = backup(at(2026, 3, 1, 2));
        let mut pre_restore = backup(at(2026, 3, 1, 15));
        pre_restore.kind = BackupKind::PreRestore;
        let newest = backup(at(2026, 3, 2, 2));
        let backups = [scheduled.clone(), pre_restore.clone(), newest];

        let soon = plan(&backups, &policy(2, 0, 0, 0), at(2026, 3, 14, 0));
        assert_eq!(
            reasons_of(&soon, scheduled.backup_id),
            ["daily 2026-03-01"],
            "the pre-restore backup, though newer, does not represent its day"
        );
        assert_eq!(
            reasons_of(&soon, pre_restore.backup_id),
            ["pre-restore, kept 14 days"]
        );

        let later = plan(&backups, &policy(2, 0, 0, 0), at(2026, 3, 16, 0));
        assert_eq!(later.trash.len(), 1);
        assert_eq!(later.trash[0].backup_id, pre_restore.backup_id);
        assert_eq!(
            later.trash[0].reason,
            "pre-restore backup older than 14 days"
        );
    }

    #[test]
    fn manual_backups_fill_periods_and_are_kept_thirty_days() {
        let scheduled = backup(at(2026, 3, 1, 2));
        let mut manual = backup(at(2026, 3, 1, 12));
        manual.kind = BackupKind::Manual;
        let newest = backup(at(2026, 3, 2, 2));
        let backups = [scheduled.clone(), manual.clone(), newest];

        let soon = plan(&backups, &policy(2, 0, 0, 0), at(2026, 3, 20, 0));
        assert_eq!(
            reasons_of(&soon, manual.backup_id),
            ["daily 2026-03-01", "manual, kept 30 days"]
        );
        assert_eq!(soon.trash.len(), 1);
        assert_eq!(soon.trash[0].backup_id, scheduled.backup_id);

        let later = plan(&backups, &policy(1, 0, 0, 0), at(2026, 4, 1, 0));
        assert_eq!(later.trash.len(), 2, "{later:?}");
    }

    #[test]
    fn every_backup_lands_in_exactly_one_list() {
        let backups = daily_backups(at(2026, 3, 10, 2), 800);
        let plan = plan(
            &backups,
            &TenantPolicy {
                retention: Retention::default(),
                legal_hold: false,
            },
            at(2026, 3, 10, 3),
        );
        assert_eq!(plan.keep.len() + plan.trash.len(), 800);
        // 7 daily (the newest days also fill their week, month, year), then weeks and
        // months further back: at most 7 + 4 + 12 distinct backups.
        assert!(plan.keep.len() <= 23, "{}", plan.keep.len());
        assert!(plan.keep.len() > 12, "{}", plan.keep.len());
        let mut ids: Vec<BackupId> = plan
            .keep
            .iter()
            .map(|kept| kept.backup_id)
            .chain(plan.trash.iter().map(|trashed| trashed.backup_id))
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 800);
    }
}
