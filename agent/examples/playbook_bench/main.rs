//! Playbook benchmarks (issue 9): the nightly drill against a plain `pg_restore` of the same
//! dump from a local file, what `pg_restore --jobs 2` would gain, the whole live restore
//! (safety backup included) against the sum of its parts, and how long the swap keeps the
//! tenant offline, without and with a client connected to live.
//!
//! Everything runs on this machine: one throwaway PostgreSQL and two SeaweedFS regions
//! (lifeboat-sandbox), an age key, a config file, and one tenant database grown until its
//! `pg_dump -Fc -Z0` is about `--size-mb` MB. The drill and the live restore go through the
//! agent's own entry points (`playbook_job::drill`, `playbook_job::run_playbook_job` with a
//! `RestoreLive` job, then two `Rollback` jobs, each only a swap), so they run the built-in
//! playbooks exactly as jobs do. The figures are printed as Markdown with the machine and
//! its load; nothing is asserted (the targets are reported). Servers stop when dropped.
//!
//! ```sh
//! cargo run --release -p lifeboat-agent --example playbook_bench -- --size-mb 500
//! ```

mod data;
mod measure;
mod probe;

use secrecy::ExposeSecret as _;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use lifeboat_agent::playbook_job::{self, RunContext};
use lifeboat_core::api::{
    ClaimedJob, DrillOutcome, JobOutcome, JobResult, JobWork, RestoreResult, StepReport,
};
use lifeboat_core::config::Config;
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::manifest::{BackupKind, Manifest};
use lifeboat_core::progress::Silent;
use lifeboat_core::region::Regions;
use lifeboat_core::service_config::RestoreJobs;
use lifeboat_provisioner::playbook::NoObserver;
use lifeboat_sandbox::{PostgresCluster, SeaweedRegion};
use tokio_util::sync::CancellationToken;

use crate::data::{TENANT, TENANT_PASSWORD};
use crate::measure::{CpuUsed, ServerProcesses};
use crate::probe::{ProbeReport, start_probe};

const ACCESS_KEY_ID: &str = "pbbench";
const SECRET_ACCESS_KEY: &str = "pbbench-secret-0a9Zk";
const BUCKET: &str = "lifeboat-bench";
const REGION_COUNT: usize = 2;
/// The drill's target against a plain `pg_restore` of the same dump (issue 9).
const DRILL_RATIO_TARGET: f64 = 1.15;
/// The swap's target for the time the tenant cannot connect (issue 9).
const OFFLINE_TARGET_MS: u64 = 1000;

const USAGE: &str = "\
usage: playbook_bench [--size-mb N] [--jobs N]

  --size-mb N   size of the tenant's pg_dump -Fc -Z0 in MB (10^6 B); default 500, minimum 20
  --jobs N      the parallel pg_restore to compare with (--jobs N); default 2
";

#[derive(Debug)]
struct Options {
    size_mb: u64,
    parallel_jobs: u32,
}

fn parse_options() -> anyhow::Result<Options> {
    let mut options = Options {
        size_mb: 500,
        parallel_jobs: 2,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = |name: &str| {
            arguments
                .next()
                .with_context(|| format!("{name} needs a value\n{USAGE}"))
        };
        match argument.as_str() {
            "--size-mb" => {
                options.size_mb = value("--size-mb")?
                    .parse()
                    .context("--size-mb takes a whole number")?;
            }
            "--jobs" => {
                options.parallel_jobs = value("--jobs")?
                    .parse()
                    .context("--jobs takes a whole number")?;
            }
            "-h" | "--help" => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(options.size_mb >= 20, "--size-mb must be at least 20");
    ensure!(options.parallel_jobs >= 2, "--jobs must be at least 2");
    Ok(options)
}

/// The servers, the config and where the processes are, for one run.
struct Bench {
    postgres: PostgresCluster,
    _region_servers: Vec<SeaweedRegion>,
    config: Config,
    regions: Regions,
    servers: ServerProcesses,
    directory: tempfile::TempDir,
    started: Instant,
}

impl Bench {
    async fn start() -> anyhow::Result<Bench> {
        let started = Instant::now();
        let directory = tempfile::Builder::new()
            .prefix("lifeboat-pbbench-")
            .tempdir()
            .context("create the work directory")?;
        let (postgres, region_servers) = tokio::join!(PostgresCluster::start_temporary(), async {
            let mut servers = Vec::new();
            for _ in 0..REGION_COUNT {
                servers.push(SeaweedRegion::start(ACCESS_KEY_ID, SECRET_ACCESS_KEY, BUCKET).await?);
            }
            anyhow::Ok(servers)
        });
        let postgres = postgres.context("start PostgreSQL")?;
        let region_servers = region_servers.context("start the SeaweedFS regions")?;
        let identity_path = directory.path().join("identity.txt");
        let recipient = lifeboat_core::keys::generate_identity_file(&identity_path)
            .context("write the age identity")?;
        let config_path = directory.path().join("lifeboat.toml");
        std::fs::write(
            &config_path,
            config_text(
                &postgres,
                &region_servers,
                &recipient.to_string(),
                &identity_path,
            ),
        )
        .context("write the config file")?;
        let config = Config::load(Some(&config_path)).context("load the config file")?;
        let regions = Regions::from_config(&config);
        let servers = ServerProcesses::find(
            postgres.directory(),
            region_servers
                .iter()
                .map(|server| server.directory().to_path_buf())
                .collect(),
        );
        Ok(Bench {
            postgres,
            _region_servers: region_servers,
            config,
            regions,
            servers,
            directory,
            started,
        })
    }

    fn progress(&self, what: &str) {
        eprintln!("[{:>5.0} s] {what}", self.started.elapsed().as_secs_f64());
    }

    fn timer(&self) -> Timer {
        Timer {
            started: Instant::now(),
            cpu: self.servers.sample(),
            load: measure::load_average(),
        }
    }

    fn reference_dump(&self) -> PathBuf {
        self.directory.path().join("reference.dump")
    }
}

fn config_text(
    postgres: &PostgresCluster,
    region_servers: &[SeaweedRegion],
    recipient: &str,
    identity_path: &Path,
) -> String {
    let mut text = format!(
        "recipients = [{recipient:?}]\nidentity_file = {:?}\npg_bin_dir = {:?}\nmin_regions = {REGION_COUNT}\n",
        identity_path.display().to_string(),
        postgres.bin_dir().display().to_string(),
    );
    text.push_str(&format!(
        "\n[clusters.main]\nhost = \"127.0.0.1\"\nport = {}\nuser = {:?}\npassword = {:?}\n",
        postgres.port(),
        postgres.superuser(),
        postgres.superuser_password().expose_secret()
    ));
    for (index, server) in region_servers.iter().enumerate() {
        text.push_str(&format!(
            "\n[regions.r{}]\nendpoint = {:?}\nbucket = {BUCKET:?}\naccess_key_id = {ACCESS_KEY_ID:?}\nsecret_access_key = {SECRET_ACCESS_KEY:?}\npriority = {index}\n",
            index + 1,
            server.endpoint()
        ));
    }
    text.push_str(&format!(
        "\n[tenants.{TENANT}]\ncluster = \"main\"\ndatabase = {TENANT:?}\n"
    ));
    text
}

/// Started before a measured operation.
struct Timer {
    started: Instant,
    cpu: measure::CpuSample,
    load: f64,
}

/// One measured operation.
#[derive(Debug, Clone, Copy)]
struct Measured {
    wall: Duration,
    cpu: CpuUsed,
    load_before: f64,
    load_after: f64,
}

impl Timer {
    fn stop(self, servers: &ServerProcesses) -> Measured {
        let wall = self.started.elapsed();
        Measured {
            wall,
            cpu: CpuUsed::between(self.cpu, servers.sample()),
            load_before: self.load,
            load_after: measure::load_average(),
        }
    }
}

/// A row of the summary table.
struct Row {
    measurement: String,
    measured: Option<Measured>,
    /// Milliseconds when the row is not a timed operation (an offline time).
    milliseconds: u64,
    ratio: String,
    target: String,
    note: String,
}

impl Row {
    fn timed(
        measurement: &str,
        measured: Measured,
        ratio: String,
        target: &str,
        note: String,
    ) -> Row {
        Row {
            measurement: measurement.to_owned(),
            measured: Some(measured),
            milliseconds: millis(measured.wall),
            ratio,
            target: target.to_owned(),
            note,
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn ratio(numerator: u64, denominator: u64) -> f64 {
    numerator as f64 / (denominator.max(1)) as f64
}

fn tenant_name() -> anyhow::Result<TenantName> {
    TenantName::parse(TENANT).context("tenant name")
}

fn main_cluster() -> anyhow::Result<ClusterName> {
    ClusterName::parse("main").context("cluster name")
}

/// `pg_restore` of the reference dump into a fresh database (made and dropped untimed).
async fn timed_pg_restore(
    bench: &Bench,
    database: &str,
    parallel_jobs: Option<u32>,
) -> anyhow::Result<(Measured, Duration)> {
    let admin = bench.postgres.connect("postgres").await?;
    let creating = Instant::now();
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .with_context(|| format!("create {database}"))?;
    let created = creating.elapsed();
    let mut command = Command::new(bench.postgres.bin_dir().join("pg_restore"));
    if let Some(jobs) = parallel_jobs {
        command.arg(format!("--jobs={jobs}"));
    }
    command
        .arg("-d")
        .arg(database)
        // The password in the environment, not in the arguments `ps` shows.
        .envs(bench.postgres.libpq_environment())
        .arg(bench.reference_dump());
    let timer = bench.timer();
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .context("join pg_restore")?
        .context("run pg_restore")?;
    let measured = timer.stop(&bench.servers);
    ensure!(
        output.status.success(),
        "pg_restore into {database} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    admin
        .batch_execute(&format!("DROP DATABASE {database}"))
        .await
        .with_context(|| format!("drop {database}"))?;
    Ok((measured, created))
}

/// Write and delete one 16 MiB object in every region, so that no measured upload pays
/// for the volumes SeaweedFS creates on a bucket's first write.
/// A drill of `manifest`'s backup with `config` (its run tagged `run_tag`), timed; an error
/// unless it verified.
async fn timed_drill(
    bench: &Bench,
    config: &Config,
    manifest: &Manifest,
    run_tag: &str,
) -> anyhow::Result<(playbook_job::DrillRun, Measured)> {
    let cancel = CancellationToken::new();
    let timer = bench.timer();
    let drill = playbook_job::drill(
        config,
        &bench.regions,
        &manifest.tenant,
        &main_cluster()?,
        manifest.backup_id,
        Some(&manifest.object.sha256),
        RunContext {
            run_tag,
            resume: false,
            observer: &NoObserver,
            cancel: &cancel,
            tenant_keys: None,
        },
    )
    .await
    .with_context(|| format!("run the drill {run_tag}"))?;
    let measured = timer.stop(&bench.servers);
    ensure!(
        matches!(drill.result.outcome, DrillOutcome::Verified { .. }),
        "the drill {run_tag} did not verify: {:?}",
        drill.result.outcome
    );
    Ok((drill, measured))
}

async fn warm_up_regions(regions: &Regions) -> anyhow::Result<()> {
    const WARM_UP_KEY: &str = "pbbench-warm-up";
    for region in regions.iter() {
        let body: Vec<u8> = (0..16 * 1024 * 1024_u32)
            .map(|index| (index.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        region
            .put_object(WARM_UP_KEY, body.into())
            .await
            .context("warm-up write to a region")?;
        region
            .delete_object(WARM_UP_KEY)
            .await
            .context("delete the warm-up object")?;
    }
    Ok(())
}

fn restore_result(outcome: JobOutcome, what: &str) -> anyhow::Result<RestoreResult> {
    match outcome {
        JobOutcome::Succeeded {
            result: JobResult::Restore(result),
        } => Ok(result),
        other => bail!("the {what} did not succeed: {other:?}"),
    }
}

fn job(id: i64, work: JobWork) -> ClaimedJob {
    ClaimedJob {
        id,
        lease_token: uuid::Uuid::new_v4(),
        lease_seconds: 3600,
        attempt: 1,
        work,
        backup_id: None,
        earlier_backup_ids: Vec::new(),
        tenant_keys: None,
    }
}

/// A rollback job (a swap only): `revive` becomes live, live is kept as `keep`.
async fn timed_rollback(
    bench: &Bench,
    id: i64,
    revive: &str,
    keep: &str,
) -> anyhow::Result<(RestoreResult, Measured)> {
    let work = JobWork::Rollback {
        tenant: tenant_name()?,
        cluster: main_cluster()?,
        database: TENANT.to_owned(),
        restore_database: revive.to_owned(),
        previous_database: keep.to_owned(),
    };
    let cancel = CancellationToken::new();
    let timer = bench.timer();
    let outcome = playbook_job::run_playbook_job(
        &bench.config,
        &bench.regions,
        &job(id, work),
        &NoObserver,
        &cancel,
    )
    .await;
    let measured = timer.stop(&bench.servers);
    Ok((restore_result(outcome, "rollback")?, measured))
}

fn step_ms(steps: &[StepReport], name: &str) -> u64 {
    steps
        .iter()
        .filter(|step| step.step == name)
        .filter_map(|step| step.duration_ms)
        .sum()
}

fn steps_sum(steps: &[StepReport]) -> u64 {
    steps.iter().filter_map(|step| step.duration_ms).sum()
}

fn steps_table(title: &str, steps: &[StepReport], total_ms: u64, reference_ms: u64) -> String {
    let mut table = format!(
        "\n### {title}\n\n| step | ms | share of total | vs pg_restore | detail |\n|---|---|---|---|---|\n"
    );
    for step in steps {
        let milliseconds = step.duration_ms.unwrap_or(0);
        let _ = writeln!(
            table,
            "| {} {} | {milliseconds} | {:.1}% | {:.2}× | {} |",
            step.number,
            step.step,
            100.0 * ratio(milliseconds, total_ms),
            ratio(milliseconds, reference_ms),
            step.detail.as_deref().unwrap_or("").replace('|', "\\|"),
        );
    }
    let sum = steps_sum(steps);
    let _ = writeln!(
        table,
        "| Σ steps | {sum} | {:.1}% | | total {total_ms} ms; outside the steps {} ms |",
        100.0 * ratio(sum, total_ms),
        total_ms.saturating_sub(sum)
    );
    table
}

fn cpu_cells(measured: Option<Measured>) -> String {
    match measured {
        Some(measured) => format!(
            "{:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.1} → {:.1}",
            measured.cpu.own_seconds,
            measured.cpu.tools_seconds,
            measured.cpu.postgres_seconds,
            measured.cpu.seaweed_seconds,
            measured.cpu.cores_busy(measured.wall),
            measured.load_before,
            measured.load_after
        ),
        None => " | | | | | ".to_owned(),
    }
}

fn probe_note(probe: &ProbeReport) -> String {
    format!(
        "client-observed: longest gap between answered `SELECT 1` {} ms ({} queries, {} failed attempts, {} sessions)",
        millis(probe.longest_gap),
        probe.answered_queries,
        probe.failed_attempts,
        probe.sessions
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = parse_options()?;
    let uptime_before = measure::uptime();
    let bench = Bench::start().await?;
    bench.progress("servers started");
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // 1. The tenant database and the reference dump.
    let generated = data::generate_tenant(
        &bench.postgres,
        options.size_mb * 1_000_000,
        &bench.reference_dump(),
    )
    .await?;
    bench.progress(&format!(
        "generated {} event rows in {:.0} s",
        generated.event_rows,
        generated.generation.as_secs_f64()
    ));
    let admin = bench.postgres.connect("postgres").await?;
    let database_bytes: i64 = admin
        .query_one("SELECT pg_database_size($1)", &[&TENANT])
        .await?
        .get(0);
    let timer = bench.timer();
    let dump_bytes = data::dump_uncompressed(&bench.postgres, TENANT, &bench.reference_dump())?;
    let dumped = timer.stop(&bench.servers);
    rows.push(Row::timed(
        "`pg_dump -Fc -Z0` to a local file (the reference input; info)",
        dumped,
        String::new(),
        "",
        format!("{:.1} MB", dump_bytes as f64 / 1e6),
    ));

    // 2. The backup every restore below reads, after an untimed first write to each region
    //    (SeaweedFS creates a bucket's volumes on its first write).
    bench.progress("backup");
    warm_up_regions(&bench.regions).await?;
    let tenant = tenant_name()?;
    let tenant_config = bench.config.tenant(&tenant)?.clone();
    let timer = bench.timer();
    let backup = lifeboat_agent::backup_job::backup_tenant(
        &bench.config,
        &bench.regions,
        &tenant_config,
        BackupKind::Manual,
        None,
        Arc::new(Silent),
        CancellationToken::new(),
    )
    .await
    .context("back up the tenant")?;
    let backed_up = timer.stop(&bench.servers);
    rows.push(Row::timed(
        "lifeboat backup (`backup_tenant`, 2 regions; info)",
        backed_up,
        String::new(),
        "",
        format!(
            "stored {:.1} MB per region (zstd + age)",
            backup.manifest.object.stored_bytes as f64 / 1e6
        ),
    ));

    // 3. The references: plain pg_restore from the local file, and with --jobs.
    bench.progress("pg_restore (reference)");
    let (plain, plain_created) = timed_pg_restore(&bench, "reference_plain", None).await?;
    let reference_ms = millis(plain.wall);
    rows.push(Row::timed(
        "`pg_restore -d` of the -Z0 file into an empty database (reference)",
        plain,
        "1.00".to_owned(),
        "",
        format!(
            "its CREATE DATABASE (not timed in the reference) took {} ms",
            millis(plain_created)
        ),
    ));
    bench.progress(&format!("pg_restore --jobs {}", options.parallel_jobs));
    let (parallel, _) =
        timed_pg_restore(&bench, "reference_parallel", Some(options.parallel_jobs)).await?;
    rows.push(Row::timed(
        &format!(
            "`pg_restore --jobs {}` of the same file",
            options.parallel_jobs
        ),
        parallel,
        format!("{:.2}", ratio(millis(parallel.wall), reference_ms)),
        "",
        "what --jobs would gain (needs a file, not a pipe)".to_owned(),
    ));

    // 4. The drill.
    bench.progress("drill");
    let cancel = CancellationToken::new();
    let (drill, drilled) = timed_drill(&bench, &bench.config, &backup.manifest, "job-1001").await?;
    let drill_ms = millis(drilled.wall);
    let drill_restore_ms = step_ms(&drill.result.steps, "restore_backup");
    rows.push(Row::timed(
        "drill (`playbook_job::drill`, drill-tenant playbook), total",
        drilled,
        format!("**{:.2}**", ratio(drill_ms, reference_ms)),
        &format!("≤ {DRILL_RATIO_TARGET}× pg_restore"),
        format!(
            "its restore_backup step {drill_restore_ms} ms = {:.2}× pg_restore; the drill without its \
             create_database (untimed in the reference) {:.2}×",
            ratio(drill_restore_ms, reference_ms),
            ratio(
                drill_ms.saturating_sub(step_ms(&drill.result.steps, "create_database")),
                reference_ms
            )
        ),
    ));

    // 4b. The same drill staged: the decrypted dump written to local disk, then
    //     `pg_restore --jobs` from it (`[restore] jobs = N`, staging every size).
    bench.progress(&format!("drill, staged, --jobs {}", options.parallel_jobs));
    let mut staged_config = bench.config.clone();
    staged_config.restore.jobs = RestoreJobs::Fixed(options.parallel_jobs);
    staged_config.restore.stage_min_bytes = 0;
    staged_config.restore.staging_dir = Some(bench.directory.path().join("staging"));
    std::fs::create_dir_all(bench.directory.path().join("staging"))
        .context("create the staging directory")?;
    let (staged_drill, staged_drilled) =
        timed_drill(&bench, &staged_config, &backup.manifest, "job-1002").await?;
    let staged_ms = millis(staged_drilled.wall);
    let staged_restore_ms = step_ms(&staged_drill.result.steps, "restore_backup");
    rows.push(Row::timed(
        &format!(
            "drill, staged (`[restore] jobs = {}`): dump decrypted to local disk, then `pg_restore --jobs {}`",
            options.parallel_jobs, options.parallel_jobs
        ),
        staged_drilled,
        format!("{:.2}", ratio(staged_ms, reference_ms)),
        "",
        format!(
            "its restore_backup step {staged_restore_ms} ms = {:.2}× the streamed drill's; the whole drill {:.2}× the streamed one",
            ratio(staged_restore_ms, drill_restore_ms),
            ratio(staged_ms, drill_ms)
        ),
    ));

    // The reference again, after the drill: the order of the two must not decide the ratio.
    bench.progress("pg_restore (reference, again)");
    let (plain_again, _) = timed_pg_restore(&bench, "reference_plain_again", None).await?;
    rows.push(Row::timed(
        "`pg_restore -d` again, after the drill (order check)",
        plain_again,
        format!("{:.2}", ratio(millis(plain_again.wall), reference_ms)),
        "",
        format!(
            "the drill against this one: {:.2}×",
            ratio(drill_ms, millis(plain_again.wall))
        ),
    ));

    // 5. The live restore, as a job.
    bench.progress("live restore");
    let sessions_on_live: Vec<String> = admin
        .query(
            "SELECT coalesce(usename, '?') || ' ' || coalesce(application_name, '') || ' ' || coalesce(state, '') || ': ' || left(query, 60) \
             FROM pg_stat_activity WHERE datname = $1",
            &[&TENANT],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    notes.push(format!(
        "Sessions on live just before the live restore: {} {:?}.",
        sessions_on_live.len(),
        sessions_on_live
    ));
    let live_work = JobWork::RestoreLive {
        tenant: tenant.clone(),
        cluster: main_cluster()?,
        database: TENANT.to_owned(),
        backup_id: backup.manifest.backup_id,
        sha256: Some(backup.manifest.object.sha256.clone()),
        previous_database: "bench_previous_2001".to_owned(),
    };
    let timer = bench.timer();
    let outcome = playbook_job::run_playbook_job(
        &bench.config,
        &bench.regions,
        &job(2001, live_work),
        &NoObserver,
        &cancel,
    )
    .await;
    let restored_live = timer.stop(&bench.servers);
    let live = restore_result(outcome, "live restore")?;
    let live_ms = millis(restored_live.wall);
    let live_steps_ms = steps_sum(&live.steps);
    rows.push(Row::timed(
        "live restore (`run_playbook_job`, RestoreLive), total",
        restored_live,
        format!("{:.2}", ratio(live_ms, live_steps_ms)),
        "vs Σ its steps",
        format!(
            "Σ steps {live_steps_ms} ms; {:.2}× pg_restore",
            ratio(live_ms, reference_ms)
        ),
    ));
    let live_offline_ms = live.offline_ms.unwrap_or(u64::MAX);
    rows.push(Row {
        measurement: "live restore: swap offline time (`RestoreResult.offline_ms`), no client"
            .to_owned(),
        measured: None,
        milliseconds: live_offline_ms,
        ratio: String::new(),
        target: format!("≤ {OFFLINE_TARGET_MS} ms"),
        note: String::new(),
    });

    // 6. Two rollbacks (a swap each): one with nobody connected, one with a client on live.
    bench.progress("rollback, no client");
    let (quiet_rollback, quiet_measured) =
        timed_rollback(&bench, 2002, "bench_previous_2001", "bench_previous_2002").await?;
    let mut quiet_row = Row::timed(
        "rollback (swap only), no client: offline time (`offline_ms`)",
        quiet_measured,
        String::new(),
        &format!("≤ {OFFLINE_TARGET_MS} ms"),
        format!("whole rollback job {} ms", millis(quiet_measured.wall)),
    );
    quiet_row.milliseconds = quiet_rollback.offline_ms.unwrap_or(u64::MAX);
    rows.push(quiet_row);
    bench.progress("rollback, client connected");
    let stop_probe = CancellationToken::new();
    let probe_connection = format!(
        "host={} port={} user={TENANT} password={TENANT_PASSWORD} dbname={TENANT}",
        bench.postgres.host(),
        bench.postgres.port()
    );
    let probe = start_probe(probe_connection, stop_probe.clone()).await?;
    let (busy_rollback, busy_measured) =
        timed_rollback(&bench, 2003, "bench_previous_2002", "bench_previous_2003").await?;
    // Give the client time to come back before stopping it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_probe.cancel();
    let probe_report = probe.await.context("join the probe")?;
    let busy_offline_ms = busy_rollback.offline_ms.unwrap_or(u64::MAX);
    let mut busy_row = Row::timed(
        "rollback (swap only), a client connected to live: offline time (`offline_ms`)",
        busy_measured,
        String::new(),
        &format!("≤ {OFFLINE_TARGET_MS} ms"),
        format!(
            "whole rollback job {} ms; {}",
            millis(busy_measured.wall),
            probe_note(&probe_report)
        ),
    );
    busy_row.milliseconds = busy_offline_ms;
    rows.push(busy_row);

    // The live restore against its parts measured on their own.
    let standalone_parts_ms = millis(backed_up.wall)
        + step_ms(&drill.result.steps, "create_database")
        + drill_restore_ms
        + step_ms(&drill.result.steps, "verify")
        + step_ms(&quiet_rollback.steps, "swap_databases")
        + step_ms(&quiet_rollback.steps, "keep_previous");
    notes.push(format!(
        "Live restore {live_ms} ms against the same parts measured on their own ({standalone_parts_ms} ms: \
         the backup above {} ms + the drill's create_database, restore_backup and verify + the quiet rollback's \
         swap_databases and keep_previous): {:.2}×.",
        millis(backed_up.wall),
        ratio(live_ms, standalone_parts_ms)
    ));
    let uptime_after = measure::uptime();

    // The report.
    let pg_version = measure::version_of(&bench.postgres.bin_dir().join("postgres"), "--version");
    let weed_version = lifeboat_sandbox::weed_binary()
        .map(|binary| measure::version_of(&binary, "version"))
        .unwrap_or_else(|_| "unknown".to_owned());
    let mut report = String::new();
    let _ = writeln!(
        report,
        "## Playbook benchmark, --size-mb {}\n",
        options.size_mb
    );
    let _ = writeln!(report, "- machine: {}", measure::machine());
    let _ = writeln!(
        report,
        "- servers: {pg_version} (lifeboat-sandbox: fsync, full_page_writes and synchronous_commit off), {REGION_COUNT} × SeaweedFS `weed mini` ({weed_version}), all on this machine"
    );
    let _ = writeln!(
        report,
        "- data: `pg_dump -Fc -Z0` {:.1} MB, database {:.1} MB on disk, {} event rows (+100,000 customers, 2,000 products); generated in {:.0} s",
        dump_bytes as f64 / 1e6,
        database_bytes as f64 / 1e6,
        generated.event_rows,
        generated.generation.as_secs_f64()
    );
    let _ = writeln!(report, "- uptime before: `{uptime_before}`");
    let _ = writeln!(report, "- uptime after:  `{uptime_after}`\n");
    let _ = writeln!(
        report,
        "| measurement | ms | ratio | target | note | lifeboat CPU s | pg tools CPU s | PostgreSQL CPU s | SeaweedFS CPU s | cores busy | load 1 min before → after |"
    );
    let _ = writeln!(report, "|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &rows {
        let _ = writeln!(
            report,
            "| {} | {} | {} | {} | {} | {} |",
            row.measurement,
            row.milliseconds,
            row.ratio,
            row.target,
            row.note,
            cpu_cells(row.measured)
        );
    }
    report.push_str(&steps_table(
        "Drill steps",
        &drill.result.steps,
        drill_ms,
        reference_ms,
    ));
    report.push_str(&steps_table(
        "Live restore steps",
        &live.steps,
        live_ms,
        reference_ms,
    ));
    report.push_str(&steps_table(
        "Rollback steps (no client)",
        &quiet_rollback.steps,
        millis(quiet_measured.wall),
        reference_ms,
    ));
    report.push_str(&steps_table(
        "Rollback steps (client connected)",
        &busy_rollback.steps,
        millis(busy_measured.wall),
        reference_ms,
    ));
    report.push('\n');
    for note in &notes {
        let _ = writeln!(report, "{note}");
    }
    let _ = writeln!(
        report,
        "\nCPU columns: seconds of user + system time during the measurement. lifeboat = this process \
         (streaming, decryption, decompression, S3 client, playbook runner); pg tools = the pg_dump / \
         pg_restore it waited for; PostgreSQL = the postmaster and its backends; SeaweedFS = the region \
         servers. Cores busy = their sum / wall."
    );
    print!("{report}");
    bench.progress("done; stopping the servers");
    Ok(())
}
