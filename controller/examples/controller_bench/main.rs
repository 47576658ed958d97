//! Controller benchmarks: the scheduler tick with many tenants, and the job queue's
//! throughput with several agents over the real HTTP API (and, to show where the time goes,
//! the same claims and completions straight through the library).
//!
//! Everything runs against a throwaway PostgreSQL started here (lifeboat-sandbox), in a
//! catalog database migrated like the controller's own. The figures are printed as Markdown;
//! `bench/controller.sh` runs this in release mode and records the machine with them, and
//! BENCHMARKS.md ("Controller") quotes them. Nothing here is a test: the targets (tick
//! ≤ 100 ms at 10,000 tenants, ≥ 500 jobs/s with 8 agents) are reported, not asserted.
//!
//! ```sh
//! cargo run --release -p lifeboat-controller --example controller_bench -- --help
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, ValueEnum};
use lifeboat_controller::catalog::Catalog;
use lifeboat_core::config::ClusterConfig;
use lifeboat_core::ids::ClusterName;
use lifeboat_sandbox::postgres::PostgresCluster;

use crate::job_queue::queue_benchmark;
use crate::measure::{clock_ticks_per_second, find_postmaster};
use crate::scheduler_tick::tick_benchmark;

/// The catalog database created in the throwaway cluster.
const CATALOG_DATABASE: &str = "lifeboat_catalog";

/// The embedded agent token the in-process controller accepts besides the catalog's.
const AGENT_TOKEN: &str = "lbt_controller-bench-embedded-token";

/// Cron schedules given to the `--cron-percent` share of tenants, in turn. None fires
/// between 01:00 and 05:00 UTC except the hourly one at the full hour, so the "one minute
/// of the backup window" ticks see only default-schedule tenants (see `tick_benchmark`).
const CRON_SCHEDULES: [&str; 4] = [
    "0 */15 6-23 * * *",
    "0 0 */6 * * *",
    "0 0 12 * * *",
    "0 0 * * * *",
];

/// How long the queue run may take before it is declared stuck.
const QUEUE_RUN_TIMEOUT: Duration = Duration::from_secs(600);

#[derive(Debug, Parser)]
#[command(about = "Benchmark the lifeboat controller: scheduler tick and job queue")]
struct Args {
    /// Tenants in the catalog for the scheduler tick.
    #[arg(long, default_value_t = 10_000)]
    tenants: u32,
    /// Percentage of tenants with a cron schedule; the others use the default (daily, at
    /// a minute of the backup window given by a hash of the name).
    #[arg(long, default_value_t = 20)]
    cron_percent: u32,
    /// Timed ticks per steady / window scenario.
    #[arg(long, default_value_t = 20)]
    tick_runs: usize,
    /// Timed cold ticks (all tenants due) per variant; the catalog is reset before each.
    #[arg(long, default_value_t = 5)]
    cold_runs: usize,
    /// Jobs pushed through the queue over HTTP.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Concurrent agents (tokio tasks, each with its own HTTP client).
    #[arg(long, default_value_t = 8)]
    agents: usize,
    /// Jobs pushed through the library directly (same number of workers); 0 skips it.
    #[arg(long, default_value_t = 10_000)]
    library_jobs: usize,
    /// Regions the jobs are spread over.
    #[arg(long, default_value_t = 16)]
    regions: usize,
    /// The work the queue carries.
    #[arg(long, value_enum, default_value_t = BenchJobKind::Scrub)]
    job_kind: BenchJobKind,
    /// What agents report: a success of the job's kind, a non-retryable failure, or
    /// (auto) a success if the controller accepts that kind of result, else a failure.
    #[arg(long, value_enum, default_value_t = ReportMode::Auto)]
    report: ReportMode,
    /// Restart PostgreSQL with pg_stat_statements loaded and print the statements that
    /// took the most server time during the HTTP queue run.
    #[arg(long)]
    pg_stat_statements: bool,
    #[arg(long)]
    skip_tick: bool,
    #[arg(long)]
    skip_queue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BenchJobKind {
    /// `scrub` jobs with no copies, round-robin over the regions: limited per region only.
    Scrub,
    /// `delete` jobs, one distinct tenant each: limited per tenant only.
    Delete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ReportMode {
    Auto,
    Succeeded,
    Failed,
}

mod job_queue;
mod measure;
mod scheduler_tick;

// ---------------------------------------------------------------------------- setup --

/// The throwaway PostgreSQL and the migrated catalog in it.
struct Environment {
    postgres: PostgresCluster,
    /// Set when the cluster lives in a directory of ours (restarted for pg_stat_statements).
    _directory: Option<tempfile::TempDir>,
    catalog: Catalog,
    /// A plain connection to the catalog database for setup and checks.
    sql: tokio_postgres::Client,
    server_version: String,
    postmaster: Option<u32>,
    ticks_per_second: f64,
}

async fn start_environment(pg_stat_statements: bool) -> anyhow::Result<Environment> {
    let (postgres, directory) = if pg_stat_statements {
        // The library must be preloaded, which takes a restart, which a temporary cluster
        // does not survive: use a directory of ours, start, configure, restart.
        let directory = tempfile::Builder::new()
            .prefix("lifeboat-controller-bench-")
            .tempdir()
            .context("create a directory for postgres")?;
        std::fs::set_permissions(
            directory.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .context("make the postgres directory traversable")?;
        let first = PostgresCluster::start(directory.path()).await?;
        let admin = first.connect("postgres").await?;
        admin
            .batch_execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
            .await
            .context("preload pg_stat_statements")?;
        drop(admin);
        first.stop().await?;
        let postgres = PostgresCluster::start(directory.path()).await?;
        // Known only once the library is loaded; one statement per query, as ALTER SYSTEM
        // refuses to run in a transaction block.
        let admin = postgres.connect("postgres").await?;
        for statement in [
            "ALTER SYSTEM SET pg_stat_statements.track_planning = on",
            "SELECT pg_reload_conf()",
        ] {
            admin
                .batch_execute(statement)
                .await
                .with_context(|| format!("configure pg_stat_statements: {statement}"))?;
        }
        (postgres, Some(directory))
    } else {
        (PostgresCluster::start_temporary().await?, None)
    };
    let admin = postgres.connect("postgres").await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {CATALOG_DATABASE}"))
        .await
        .context("create the catalog database")?;
    let server_version: String = admin
        .query_one("SHOW server_version", &[])
        .await
        .context("read the server version")?
        .get(0);
    let cluster = ClusterConfig {
        name: ClusterName::parse("bench")?,
        host: postgres.host().to_owned(),
        port: postgres.port(),
        user: postgres.superuser().to_owned(),
        password: Some(postgres.superuser_password().clone()),
        maintenance_database: "postgres".to_owned(),
        tls: lifeboat_core::config::ClusterTls::default(),
    };
    let catalog = Catalog::connect(&cluster, CATALOG_DATABASE).await?;
    catalog.migrate().await?;
    let sql = postgres.connect(CATALOG_DATABASE).await?;
    if pg_stat_statements {
        sql.batch_execute("CREATE EXTENSION pg_stat_statements")
            .await
            .context("create extension pg_stat_statements")?;
    }
    let postmaster = find_postmaster(postgres.directory());
    Ok(Environment {
        postgres,
        _directory: directory,
        catalog,
        sql,
        server_version,
        postmaster,
        ticks_per_second: clock_ticks_per_second(),
    })
}

async fn server_settings(sql: &tokio_postgres::Client) -> anyhow::Result<String> {
    let rows = sql
        .query(
            "SELECT name, setting, unit FROM pg_settings
             WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes', 'shared_buffers',
                            'max_connections', 'autovacuum')
             ORDER BY name",
            &[],
        )
        .await
        .context("read server settings")?;
    Ok(rows
        .iter()
        .map(|row| {
            let name: &str = row.get(0);
            let setting: &str = row.get(1);
            let unit: Option<&str> = row.get(2);
            match unit {
                Some("8kB") => format!(
                    "{name} {} MB",
                    setting.parse::<u64>().unwrap_or(0) * 8 / 1024
                ),
                _ => format!("{name} {setting}"),
            }
        })
        .collect::<Vec<_>>()
        .join(", "))
}

impl Args {
    fn job_kind_name(&self) -> &'static str {
        match self.job_kind {
            BenchJobKind::Scrub => "scrub",
            BenchJobKind::Delete => "delete",
        }
    }
}

/// The statements that took the most server time, with calls per job.
/// The statements that took the most server time since the last reset, with calls per
/// `unit` (a job, a tick).
async fn top_statements(
    sql: &tokio_postgres::Client,
    title: &str,
    unit: &str,
    units: usize,
) -> anyhow::Result<String> {
    let rows = sql
        .query(
            "SELECT calls, total_exec_time, mean_exec_time, regexp_replace(query, '\\s+', ' ', 'g'),
                    total_plan_time
             FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
             ORDER BY total_exec_time DESC LIMIT 12",
            &[],
        )
        .await
        .context("read pg_stat_statements")?;
    let mut text = String::new();
    writeln!(
        text,
        "### Server time by statement: {title} (pg_stat_statements)\n"
    )?;
    writeln!(
        text,
        "Server time of each statement: planning and execution (client round trips and \
         protocol handling are not in it).\n"
    )?;
    writeln!(
        text,
        "| calls | per {unit} | execution ms | mean ms | planning ms | statement |"
    )?;
    writeln!(text, "|---|---|---|---|---|---|")?;
    for row in &rows {
        let calls: i64 = row.get(0);
        let total: f64 = row.get(1);
        let mean: f64 = row.get(2);
        let query: String = row.get(3);
        let planning: f64 = row.get(4);
        let shortened: String = query.chars().take(110).collect();
        writeln!(
            text,
            "| {calls} | {:.2} | {total:.0} | {mean:.3} | {planning:.0} | `{}` |",
            calls as f64 / units.max(1) as f64,
            shortened.replace('|', "\\|")
        )?;
    }
    Ok(text)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let environment = start_environment(args.pg_stat_statements).await?;
    let mut out = String::new();
    writeln!(
        out,
        "- PostgreSQL {} (lifeboat-sandbox throwaway cluster: {}{})",
        environment.server_version,
        server_settings(&environment.sql).await?,
        if args.pg_stat_statements {
            "; pg_stat_statements loaded"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "- options: {}\n",
        if std::env::args().len() > 1 {
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        } else {
            "(defaults)".to_owned()
        }
    )?;
    if !args.skip_tick {
        tick_benchmark(&environment, &args, &mut out).await?;
    }
    if !args.skip_queue {
        queue_benchmark(&environment, &args, &mut out).await?;
    }
    print!("{out}");
    drop(environment.sql);
    environment.postgres.stop().await?;
    Ok(())
}
