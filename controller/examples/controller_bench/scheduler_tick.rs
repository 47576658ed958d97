//! The scheduler tick with many tenants: cold (all due), steady (none due) and one
//! minute of the backup window.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Days, NaiveTime, Utc};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::schedule;
use lifeboat_controller::scheduler::{Scheduler, TickReport};

use crate::measure::{SUMMARY_HEADER, Summary};
use crate::{Args, CRON_SCHEDULES, Environment, top_statements};

// ------------------------------------------------------------------- scheduler tick --

/// `day` at `hour:minute:second` UTC.
pub(crate) fn at(
    day: chrono::NaiveDate,
    hour: u32,
    minute: u32,
    second: u32,
) -> anyhow::Result<DateTime<Utc>> {
    let time = NaiveTime::from_hms_opt(hour, minute, second).context("a valid time of day")?;
    Ok(day.and_time(time).and_utc())
}

pub(crate) async fn insert_tenants(
    sql: &tokio_postgres::Client,
    tenants: u32,
    cron_percent: u32,
) -> anyhow::Result<()> {
    // t-00001 …: zero-padded so the names sort; wider than 5 digits only when needed.
    let width = i32::try_from(tenants.to_string().len().max(5))?;
    let schedules: Vec<&str> = CRON_SCHEDULES.to_vec();
    sql.execute(
        "INSERT INTO tenants (name, cluster, database_name, schedule)
         SELECT 't-' || lpad(n::text, $2, '0'), 'main', 't-' || lpad(n::text, $2, '0'),
                CASE WHEN n % 100 < $3 THEN ($4::text[])[1 + n % cardinality($4::text[])] END
         FROM generate_series(1, $1) AS n",
        &[
            &i32::try_from(tenants)?,
            &width,
            &i32::try_from(cron_percent)?,
            &schedules,
        ],
    )
    .await
    .context("insert tenants")?;
    sql.batch_execute("VACUUM ANALYZE tenants")
        .await
        .context("vacuum tenants")?;
    Ok(())
}

/// Forget every enqueued slot, as if the tenants had just been added: the next tick at a
/// day later finds all of them due.
pub(crate) async fn reset_schedule_state(sql: &tokio_postgres::Client) -> anyhow::Result<()> {
    sql.batch_execute("TRUNCATE jobs; UPDATE tenants SET last_slot = NULL")
        .await
        .context("reset the scheduler state")?;
    sql.batch_execute("VACUUM ANALYZE tenants")
        .await
        .context("vacuum tenants")?;
    sql.batch_execute("VACUUM ANALYZE jobs")
        .await
        .context("vacuum jobs")?;
    Ok(())
}

/// The scheduler's read of every tenant, as `Scheduler::tick` sends it.
pub(crate) const TICK_READ_SQL: &str =
    "SELECT name, cluster, database_name, schedule, coalesce(last_slot, created_at) FROM tenants";

pub(crate) async fn reset_statements(
    sql: &tokio_postgres::Client,
    enabled: bool,
) -> anyhow::Result<()> {
    if enabled {
        sql.batch_execute("SELECT pg_stat_statements_reset()")
            .await
            .context("reset pg_stat_statements")?;
    }
    Ok(())
}

pub(crate) async fn statements_if(
    sql: &tokio_postgres::Client,
    enabled: bool,
    title: &str,
    ticks: usize,
) -> anyhow::Result<String> {
    if enabled {
        top_statements(sql, title, "tick", ticks).await
    } else {
        Ok(String::new())
    }
}

pub(crate) async fn timed_tick(
    scheduler: &mut Scheduler,
    catalog: &Catalog,
    now: DateTime<Utc>,
) -> anyhow::Result<(Duration, TickReport)> {
    let started = Instant::now();
    let report = scheduler.tick(catalog, now, 4).await?;
    Ok((started.elapsed(), report))
}

pub(crate) async fn tick_benchmark(
    environment: &Environment,
    args: &Args,
    out: &mut String,
) -> anyhow::Result<()> {
    let catalog = &environment.catalog;
    let sql = &environment.sql;
    let started = Instant::now();
    insert_tenants(sql, args.tenants, args.cron_percent).await?;
    let insert_time = started.elapsed();
    let cron_tenants: i64 = sql
        .query_one(
            "SELECT count(*) FROM tenants WHERE schedule IS NOT NULL",
            &[],
        )
        .await?
        .get(0);

    // Tenants were created now. Two days on at 12:00:01 every tenant has a slot after its
    // creation: the default ones between 01:00 and 05:00 that day, the cron ones at 12:00.
    let today = Utc::now().date_naive();
    let day_two = today
        .checked_add_days(Days::new(2))
        .context("a date two days on")?;
    let day_three = today
        .checked_add_days(Days::new(3))
        .context("a date three days on")?;
    let cold_now = at(day_two, 12, 0, 1)?;
    let expected_all = usize::try_from(args.tenants)?;

    let mut samples_cold_fresh = Vec::new();
    let mut samples_cold_warm = Vec::new();
    let mut warm = Scheduler::new(schedule::DEFAULT_WINDOW);
    reset_statements(sql, args.pg_stat_statements).await?;
    // Alternating, so that both variants see the same catalog conditions.
    for run in 0..args.cold_runs * 2 {
        reset_schedule_state(sql).await?;
        let fresh = run % 2 == 0;
        let (elapsed, report) = if fresh {
            let mut scheduler = Scheduler::new(schedule::DEFAULT_WINDOW);
            timed_tick(&mut scheduler, catalog, cold_now).await?
        } else {
            timed_tick(&mut warm, catalog, cold_now).await?
        };
        ensure!(
            report.due == expected_all && report.enqueued == expected_all,
            "cold tick: expected all {expected_all} tenants due and enqueued, got {report:?}"
        );
        if fresh {
            samples_cold_fresh.push(elapsed);
        } else {
            samples_cold_warm.push(elapsed);
        }
    }
    let jobs_after_cold: i64 = sql
        .query_one("SELECT count(*) FROM jobs", &[])
        .await?
        .get(0);
    ensure!(
        usize::try_from(jobs_after_cold)? == expected_all,
        "one job per tenant after the last cold tick, found {jobs_after_cold}"
    );

    let cold_statements = statements_if(
        sql,
        args.pg_stat_statements,
        "cold ticks",
        args.cold_runs * 2,
    )
    .await?;

    // What the tick's one read costs alone: the same SELECT, all rows fetched.
    let mut samples_read = Vec::new();
    {
        let connection = catalog.connection().await?;
        for _ in 0..args.tick_runs {
            let started = Instant::now();
            let rows = connection.query(TICK_READ_SQL, &[]).await?;
            samples_read.push(started.elapsed());
            ensure!(rows.len() == expected_all, "read {} tenants", rows.len());
        }
    }

    reset_statements(sql, args.pg_stat_statements).await?;
    // Steady state: ticks every 15 s after the cold tick; the next slot of any tenant is
    // 12:15 (every 15 min) or later, so nothing is due.
    let mut samples_steady_warm = Vec::new();
    let mut samples_steady_fresh = Vec::new();
    for run in 1..=args.tick_runs {
        let now = cold_now + chrono::TimeDelta::seconds(15 * i64::try_from(run)?);
        let (elapsed, report) = timed_tick(&mut warm, catalog, now).await?;
        ensure!(
            report.due == 0,
            "steady tick at {now}: nothing should be due, got {report:?}"
        );
        samples_steady_warm.push(elapsed);
    }
    for run in 1..=args.tick_runs {
        let now = cold_now + chrono::TimeDelta::seconds(15 * i64::try_from(run)?);
        let mut scheduler = Scheduler::new(schedule::DEFAULT_WINDOW);
        let (elapsed, report) = timed_tick(&mut scheduler, catalog, now).await?;
        ensure!(
            report.due == 0,
            "steady tick at {now}: nothing should be due, got {report:?}"
        );
        samples_steady_fresh.push(elapsed);
    }

    // One minute of the backup window: an untimed tick at 01:00:30 the next day catches
    // up what fired since (the hourly and six-hourly crons, the 01:00 default slots);
    // then a tick at each full minute 01:01 … finds that minute's default tenants due,
    // about 1/240 of them (the window is 240 minutes long).
    let (_, catch_up) = timed_tick(&mut warm, catalog, at(day_three, 1, 0, 30)?).await?;
    let mut samples_window = Vec::new();
    let mut window_due = Vec::new();
    for minute in 1..=args.tick_runs.min(59) {
        let now = at(day_three, 1, u32::try_from(minute)?, 0)?;
        let (elapsed, report) = timed_tick(&mut warm, catalog, now).await?;
        ensure!(
            report.due == report.enqueued,
            "window tick at {now}: every due slot is new, got {report:?}"
        );
        window_due.push(report.due);
        samples_window.push(elapsed);
    }
    let steady_statements = statements_if(
        sql,
        args.pg_stat_statements,
        "steady and window ticks",
        args.tick_runs * 2 + 1 + samples_window.len(),
    )
    .await?;
    let due_min = window_due.iter().min().copied().unwrap_or(0);
    let due_max = window_due.iter().max().copied().unwrap_or(0);
    let due_mean = window_due.iter().sum::<usize>() as f64 / window_due.len().max(1) as f64;

    writeln!(out, "## Scheduler tick\n")?;
    writeln!(
        out,
        "{} tenants ({} with a cron schedule, the rest default-daily in the 01:00–05:00 window), \
         inserted with one INSERT … SELECT generate_series in {:.2} s. \
         `Scheduler::tick(&catalog, now, 4)` timed from the call to its return; \
         \"fresh\" = a new `Scheduler` (empty cron cache), as after a restart.\n",
        args.tenants,
        cron_tenants,
        insert_time.as_secs_f64()
    )?;
    writeln!(out, "{SUMMARY_HEADER}")?;
    writeln!(
        out,
        "{}",
        Summary::of(&samples_steady_warm).row(
            "steady tick, nothing due (the common case, every 15 s)",
            "now = 12:00:16, 12:00:31 …: every tenant read, none due"
        )
    )?;
    writeln!(
        out,
        "{}",
        Summary::of(&samples_steady_fresh).row("steady tick, fresh Scheduler", "same instants")
    )?;
    writeln!(
        out,
        "{}",
        Summary::of(&samples_window).row(
            "one minute of the window (~1/240 due)",
            &format!(
                "now = 01:01:00, 01:02:00 …; due per tick {due_min}–{due_max}, mean {due_mean:.1}; \
                 untimed catch-up tick at 01:00:30 enqueued {} first",
                catch_up.enqueued
            )
        )
    )?;
    writeln!(
        out,
        "{}",
        Summary::of(&samples_cold_fresh).row(
            "cold tick, all due, fresh Scheduler",
            &format!("{expected_all} jobs enqueued + {expected_all} tenants updated in one transaction; jobs truncated and last_slot reset before each run")
        )
    )?;
    writeln!(
        out,
        "{}",
        Summary::of(&samples_cold_warm).row("cold tick, all due, warm Scheduler", "same")
    )?;
    writeln!(
        out,
        "{}",
        Summary::of(&samples_read).row(
            "the tick's read alone (its SELECT of all tenants, rows fetched)",
            "one pooled connection, as the tick uses"
        )
    )?;
    writeln!(out)?;
    for statements in [cold_statements, steady_statements] {
        if !statements.is_empty() {
            writeln!(out, "{statements}")?;
        }
    }
    Ok(())
}
