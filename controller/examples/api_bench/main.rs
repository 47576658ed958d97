//! API-load benchmark (issue 10): listing a tenant's backups under load from a second
//! process on loopback, and sign-ins under bursts of wrong passwords.
//!
//! This process sets up the real parts: a throwaway PostgreSQL (lifeboat-sandbox) with a
//! migrated catalog, the tenant under test and `--other-tenants` neighbours with
//! `--backups` daily backups each (copies in two regions, a drill of each), an owner and a
//! viewer API token (`lbu_…`) for the tenant, made through the library's own functions;
//! then it serves the controller's API (`server::serve`, as `lifeboat controller` does,
//! over plain HTTP on 127.0.0.1: no TLS on loopback for this benchmark) and re-executes
//! itself as the load (`load`, [`load`]), the token and password passed in the
//! environment. The load prints one JSON line; this process prints it as tables, and
//! **exits non-zero if sign-ins misbehave** (a wrong password let in, an answer other than
//! 401 or 429, more attempts checked than the throttle allows, the right password let in
//! while the throttle holds or never let in after it): those are correctness checks. The
//! listing targets (p99 ≤ 50 ms, ≥ 1,000 requests/s) are reported, not asserted, since
//! they depend on the machine; a listing error (non-200 or a wrong body) does fail.
//!
//! ```sh
//! cargo run --release -p lifeboat-controller --example api_bench -- \
//!     --connections 100 --requests 20000 --max-seconds 30
//! ```
//!
//! Needs the PostgreSQL binaries, as the tests do. BENCHMARKS.md ("API under load") quotes
//! the figures.

mod load;
mod seed;

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use chrono::Utc;
use clap::{Parser, Subcommand};
use lifeboat_controller::accounts::throttle::{PER_ADDRESS, PER_LOGIN, ThrottlePolicy};
use lifeboat_controller::accounts::{Accounts, NewUser, Role, generate_password};
use lifeboat_controller::audit::Actor;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::evidence;
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::schedule;
use lifeboat_controller::server::{self, Controller, ControllerOptions};
use lifeboat_core::config::Config;
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::region::Regions;
use lifeboat_sandbox::PostgresCluster;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::load::{BurstReport, Latencies, LoadArgs, LoadReport, Phase};

const CATALOG_DATABASE: &str = "lifeboat_catalog";
const TENANT: &str = "acme";
const OWNER_LOGIN: &str = "acme-owner";

#[derive(Debug, Parser)]
#[command(about = "Benchmark the API under load from a second process, and sign-ins under bursts")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Keep-alive connections listing at once.
    #[arg(long, default_value_t = 100)]
    connections: usize,
    /// Listing requests in all (the run also stops at --max-seconds).
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// The listing run's time limit.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
    /// Backups of the tenant listed (and of each neighbour).
    #[arg(long, default_value_t = 60)]
    backups: usize,
    /// Other tenants in the catalog, each with as many backups and drills.
    #[arg(long, default_value_t = 20)]
    other_tenants: usize,
    /// Wrong passwords per burst, sent at once.
    #[arg(long, default_value_t = 200)]
    burst: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The load (started by the benchmark itself, in a process of its own).
    Load(LoadArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Load(args)) => load::run(args).await,
        None => benchmark(&cli).await,
    }
}

async fn benchmark(cli: &Cli) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("lifeboat-api-bench-")
        .tempdir()?;
    eprintln!("starting PostgreSQL");
    let postgres = PostgresCluster::start_temporary().await?;
    let config_path = work.path().join("lifeboat.toml");
    write_config(&config_path, work.path(), &postgres)?;
    let config = Config::load(Some(&config_path))?;
    postgres
        .connect("postgres")
        .await?
        .batch_execute(&format!("CREATE DATABASE {CATALOG_DATABASE}"))
        .await
        .context("create the catalog database")?;
    let catalog = Catalog::open(&config).await?;
    catalog.migrate().await?;

    let actor = Actor::system("api-bench");
    let cluster = ClusterName::parse("main")?;
    let tenant = TenantName::parse(TENANT)?;
    eprintln!(
        "seeding {} tenants with {} backups and drills each",
        cli.other_tenants + 1,
        cli.backups
    );
    seed::seed_tenant(&catalog, &cluster, &tenant, cli.backups, &actor).await?;
    for index in 0..cli.other_tenants {
        let neighbour = TenantName::parse(&format!("neighbour-{index:03}"))?;
        seed::seed_tenant(&catalog, &cluster, &neighbour, cli.backups, &actor).await?;
    }
    // What autovacuum does within a minute of so many inserts: statistics for the planner
    // and a visibility map, so the listing's copies are read from the index alone.
    catalog
        .connection()
        .await?
        .batch_execute("VACUUM ANALYZE")
        .await?;

    // The production password hashing: the same `Accounts::new` the server uses.
    let accounts = Accounts::new(catalog.clone(), config.panel)?;
    let password = generate_password();
    accounts
        .add_user(
            NewUser {
                login: OWNER_LOGIN.to_owned(),
                role: Role::Owner,
                tenant: Some(tenant.clone()),
                password: password.clone(),
            },
            &actor,
        )
        .await?;
    let token = accounts
        .issue_api_token(
            &tenant,
            Role::Viewer,
            "api-bench",
            Duration::from_secs(24 * 3600),
            Utc::now(),
            &actor,
        )
        .await?
        .token;

    // The body every listing must return: the library's own view, serialised as the
    // handler's `Json` does.
    let expected = {
        let connection = catalog.connection().await?;
        evidence::tenant_backups(&connection, &tenant).await?
    };
    if expected.len()
        != cli
            .backups
            .min(usize::try_from(evidence::MAX_LISTED_BACKUPS)?)
    {
        bail!(
            "the catalog lists {} backups, not {}",
            expected.len(),
            cli.backups
        );
    }
    let expected_body = serde_json::to_vec(&expected)?;
    let expected_path = work.path().join("expected-listing.json");
    std::fs::write(&expected_path, &expected_body)?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let cancel = CancellationToken::new();
    let served = tokio::spawn(server::serve(
        catalog.clone(),
        listener,
        ControllerOptions {
            policy: QueuePolicy::default(),
            schedule: false,
            window: schedule::DEFAULT_WINDOW,
            tick_interval: Duration::from_secs(3600),
            regions: Regions::from_config(&config),
            maintenance: None,
            metrics_token: None,
            identities: None,
            config: Some(Arc::new(config.clone())),
        },
        None,
        Controller {
            work_ready: Arc::default(),
        },
        cancel.clone(),
    ));

    eprintln!("serving {base}");
    let postmaster = find_postmaster(postgres.directory());
    let load = LoadProcess {
        base: &base,
        expected_path: &expected_path,
        cli,
        token: token.expose_secret(),
        password: password.expose_secret(),
    };
    let (listing, listing_cpu) = load.run(Phase::Listing, postmaster).await?;
    let (bursts, bursts_cpu) = load.run(Phase::Bursts, postmaster).await?;
    cancel.cancel();
    let _ = served.await;
    let report = LoadReport {
        listing: listing.listing,
        bursts: bursts.bursts,
        load_cpu_seconds: listing.load_cpu_seconds + bursts.load_cpu_seconds,
    };
    print_report(cli, &report, [listing_cpu, bursts_cpu], expected_body.len());
    let problems = judge(&report);
    if !problems.is_empty() {
        let mut stderr = std::io::stderr();
        writeln!(stderr, "\nFAILED:")?;
        for problem in &problems {
            writeln!(stderr, "- {problem}")?;
        }
        bail!("{} problem(s) with the API under load", problems.len());
    }
    println!("\nAll sign-in checks passed; every listing was a 200 with the expected body.");
    Ok(())
}

/// How to start the load process.
struct LoadProcess<'a> {
    base: &'a str,
    expected_path: &'a Path,
    cli: &'a Cli,
    token: &'a str,
    password: &'a str,
}

/// CPU seconds one phase cost, by process.
#[derive(Debug, Clone, Copy)]
struct PhaseCpu {
    wall_seconds: f64,
    server: f64,
    postgres: f64,
    load: f64,
}

impl LoadProcess<'_> {
    /// Run `phase` in a process of its own; its report and what it cost.
    async fn run(
        &self,
        phase: Phase,
        postmaster: Option<u32>,
    ) -> anyhow::Result<(LoadReport, PhaseCpu)> {
        let started = std::time::Instant::now();
        let (server_before, postgres_before) =
            (own_cpu_seconds()?, postgres_cpu_seconds(postmaster));
        let phase_name = match phase {
            Phase::Listing => "listing",
            Phase::Bursts => "bursts",
        };
        let output = tokio::process::Command::new(std::env::current_exe()?)
            .arg("load")
            .args(["--phase", phase_name])
            .args([
                "--base",
                self.base,
                "--tenant",
                TENANT,
                "--login",
                OWNER_LOGIN,
            ])
            .arg("--expected-body")
            .arg(self.expected_path)
            .args(["--connections", &self.cli.connections.to_string()])
            .args(["--requests", &self.cli.requests.to_string()])
            .args(["--max-seconds", &self.cli.max_seconds.to_string()])
            .args(["--burst", &self.cli.burst.to_string()])
            .env(load::TOKEN_VARIABLE, self.token)
            .env(load::PASSWORD_VARIABLE, self.password)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .output()
            .await
            .with_context(|| format!("run the load process ({phase_name})"))?;
        if !output.status.success() {
            bail!(
                "the load process ({phase_name}) failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stdout).trim()
            );
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        let report: LoadReport = serde_json::from_str(
            stdout
                .lines()
                .last()
                .context("the load process printed no report")?,
        )
        .context("parse the load's report")?;
        let cpu = PhaseCpu {
            wall_seconds: started.elapsed().as_secs_f64(),
            server: own_cpu_seconds()? - server_before,
            postgres: postgres_cpu_seconds(postmaster) - postgres_before,
            load: report.load_cpu_seconds,
        };
        Ok((report, cpu))
    }
}

/// A configuration with the catalog on `postgres`. The regions are named (tenants need
/// some) but never reached: nothing here reads or writes an object.
fn write_config(path: &Path, work: &Path, postgres: &PostgresCluster) -> anyhow::Result<()> {
    let recipient = lifeboat_core::keys::generate_identity_file(&work.join("identity.txt"))?;
    let mut config = format!(
        "recipients = [\"{recipient}\"]\nmin_regions = 1\n\
         [catalog]\ncluster = \"main\"\ndatabase = \"{CATALOG_DATABASE}\"\n\
         [clusters.main]\nhost = \"127.0.0.1\"\nport = {}\nuser = {:?}\npassword = {:?}\n",
        postgres.port(),
        postgres.superuser(),
        postgres.superuser_password().expose_secret(),
    );
    for region in seed::REGIONS {
        config.push_str(&format!(
            "[regions.{region}]\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"lifeboat-{region}\"\n\
             access_key_id = \"unused\"\nsecret_access_key = \"unused-secret\"\n"
        ));
    }
    std::fs::write(path, config)?;
    Ok(())
}

fn print_report(cli: &Cli, report: &LoadReport, cpu: [PhaseCpu; 2], body_bytes: usize) {
    let listing = report.listing.clone().unwrap_or_default();
    println!(
        "\nListing `GET /api/v1/tenants/{TENANT}/backups` ({} backups, {body_bytes} bytes of JSON; \
         catalog of {} tenants): {} keep-alive connections, up to {} requests or {} s.\n",
        cli.backups,
        cli.other_tenants + 1,
        cli.connections,
        cli.requests,
        cli.max_seconds,
    );
    println!("| requests | seconds | requests/s | p50 ms | p90 ms | p99 ms | max ms | errors |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!("{}", latency_row(&listing));
    println!(
        "\nTargets: p99 ≤ 50 ms: {}; ≥ 1,000 requests/s: {}.",
        met(listing.p99_ms <= 50.0),
        met(listing.requests_per_second >= 1000.0),
    );
    println!("\n| CPU seconds | wall | API process | PostgreSQL | load process | cores busy |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, phase) in [("listing (warm-up included)", cpu[0]), ("bursts", cpu[1])] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            phase.wall_seconds,
            phase.server,
            phase.postgres,
            phase.load,
            (phase.server + phase.postgres + phase.load) / phase.wall_seconds,
        );
    }
    println!(
        "\nBursts of {} wrong passwords sent at once, each on its own open connection, while {} \
         other connections keep listing:\n",
        cli.burst,
        load::BACKGROUND_CONNECTIONS,
    );
    println!(
        "| burst | logins | addresses | 401 | 429 | other | seconds | 401 p50/p99 ms | 429 p50/p99 ms | listing meanwhile p50/p99/max ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for burst in &report.bursts {
        let count = |status: u16| burst.statuses.get(&status).copied().unwrap_or(0);
        let other = burst.attempts - count(401) - count(429);
        println!(
            "| {} | {} | {} | {} | {} | {other} | {:.2} | {:.0} / {:.0} | {:.0} / {:.0} | {:.1} / {:.1} / {:.0} |",
            burst.name,
            burst.logins,
            burst.addresses,
            count(401),
            count(429),
            burst.seconds,
            burst.refused_401.p50_ms,
            burst.refused_401.p99_ms,
            burst.throttled_429.p50_ms,
            burst.throttled_429.p99_ms,
            burst.listing_meanwhile.p50_ms,
            burst.listing_meanwhile.p99_ms,
            burst.listing_meanwhile.max_ms,
        );
    }
    println!("\nThe owner's right password after each burst:\n");
    for burst in &report.bursts {
        for (when, status) in &burst.right_password {
            println!("- {}: {when}: {status}", burst.name);
        }
        if let Some(at) = burst.first_right_password_at {
            println!(
                "- {}: first answer {at:.2} s after the burst began",
                burst.name
            );
        }
        if let Some(seconds) = burst.seconds_until_let_in {
            println!("- {}: let in {seconds:.1} s after that", burst.name);
        }
    }
}

fn latency_row(latencies: &Latencies) -> String {
    format!(
        "| {} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
        latencies.requests,
        latencies.seconds,
        latencies.requests_per_second,
        latencies.p50_ms,
        latencies.p90_ms,
        latencies.p99_ms,
        latencies.max_ms,
        latencies.errors,
    )
}

fn met(met: bool) -> &'static str {
    if met { "met" } else { "NOT met" }
}

/// The most attempts `policy` lets through to a password check, for one subject, within
/// `seconds`: its free failures and the one that starts the delays, then one more each
/// time the delay so far has passed, up to the lock.
fn most_admitted(policy: ThrottlePolicy, seconds: f64) -> usize {
    let mut admitted = policy.free_failures + 1;
    let mut waited = policy.delay_after(admitted);
    while admitted < policy.lock_after && waited.as_secs_f64() <= seconds {
        admitted += 1;
        waited += policy.delay_after(admitted);
    }
    usize::try_from(admitted).unwrap_or(0)
}

/// What is wrong with the sign-ins and the listing, in words; empty if nothing.
fn judge(report: &LoadReport) -> Vec<String> {
    let mut problems = Vec::new();
    let listing = report.listing.clone().unwrap_or_default();
    if listing.errors > 0 || listing.requests == 0 {
        problems.push(format!(
            "listing: {} errors in {} requests (first: {:?})",
            listing.errors, listing.requests, listing.first_error
        ));
    }
    for burst in &report.bursts {
        judge_burst(burst, &mut problems);
    }
    problems
}

fn judge_burst(burst: &BurstReport, problems: &mut Vec<String>) {
    let name = &burst.name;
    let count = |status: u16| burst.statuses.get(&status).copied().unwrap_or(0);
    if count(200) > 0 {
        problems.push(format!(
            "{name}: {} wrong passwords were let in",
            count(200)
        ));
    }
    let unexpected: Vec<String> = burst
        .statuses
        .iter()
        .filter(|(status, _)| !matches!(status, 401 | 429))
        .map(|(status, times)| format!("{times} × {status}"))
        .collect();
    if !unexpected.is_empty() {
        problems.push(format!(
            "{name}: answers other than 401 and 429: {}",
            unexpected.join(", ")
        ));
    }
    if burst.listing_meanwhile.errors > 0 {
        problems.push(format!(
            "{name}: the listing failed meanwhile: {:?}",
            burst.listing_meanwhile.first_error
        ));
    }
    // Per subject, at most what its policy admits in the burst's time; a subject's
    // attempts can be no more checked than the tighter of its login's and address's.
    let per_login = most_admitted(PER_LOGIN, burst.seconds);
    let per_address = most_admitted(PER_ADDRESS, burst.seconds);
    let most_checked = if burst.logins == 1 {
        per_login.min(per_address * burst.addresses)
    } else if burst.addresses == 1 {
        per_address.min(per_login * burst.logins)
    } else {
        burst.attempts
    };
    let checked = count(401);
    if checked > most_checked {
        problems.push(format!(
            "{name}: {checked} attempts reached a password check; the throttle allows at most {most_checked} in {:.1} s",
            burst.seconds
        ));
    }
    if burst.logins > 1 && burst.addresses > 1 && checked != burst.attempts {
        problems.push(format!(
            "{name}: a spray of new logins from new addresses should be checked (401) every time, got {checked} of {}",
            burst.attempts
        ));
    }
    if checked == 0 {
        problems.push(format!("{name}: no attempt reached a password check"));
    }
    let throttled = burst.logins == 1 || burst.addresses == 1;
    if throttled && checked + count(429) != burst.attempts {
        problems.push(format!(
            "{name}: not every attempt was refused with 401 or 429"
        ));
    }
    let answers: Vec<u16> = burst
        .right_password
        .iter()
        .map(|(_, status)| *status)
        .collect();
    // The owner's right password right after the burst: refused (429) while the delay the
    // burst started holds; if the burst took longer than that first delay, the policy
    // lets it in. Then let in: once the delay is over (one login), or at once from
    // another address (one address). A spray throttles nothing: let in at once.
    let (first_delay, then) = if burst.logins == 1 {
        (
            PER_LOGIN.delay_after(PER_LOGIN.free_failures + 1),
            Some(200),
        )
    } else if burst.addresses == 1 {
        (
            PER_ADDRESS.delay_after(PER_ADDRESS.free_failures + 1),
            Some(200),
        )
    } else {
        (Duration::ZERO, None)
    };
    let first_at = burst.first_right_password_at.unwrap_or(f64::INFINITY);
    let first_allowed: &[u16] = if then.is_none() {
        &[200]
    } else if first_at < first_delay.as_secs_f64() {
        &[429]
    } else {
        &[429, 200]
    };
    let right = match (answers.first(), answers.get(1), then) {
        (Some(first), None, None) => first_allowed.contains(first),
        (Some(first), Some(second), Some(then)) => {
            first_allowed.contains(first) && *second == then && answers.len() == 2
        }
        _ => false,
    };
    if !right {
        problems.push(format!(
            "{name}: the owner's right password got {answers:?} (first at {first_at:.2} s, the first delay is {} s): {:?}",
            first_delay.as_secs(),
            burst.right_password
        ));
    }
}

/// User + system CPU seconds of PostgreSQL so far: the postmaster (and the backends it
/// reaped) and its live children.
fn postgres_cpu_seconds(postmaster: Option<u32>) -> f64 {
    let Some(postmaster) = postmaster else {
        return 0.0;
    };
    let mut ticks = proc_ticks(postmaster).map_or(0, |(_, own, reaped)| own + reaped);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for pid in entries
            .filter_map(Result::ok)
            .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        {
            if let Some((parent, own, _)) = proc_ticks(pid)
                && parent == postmaster
            {
                ticks += own;
            }
        }
    }
    ticks as f64 / 100.0
}

/// The postmaster of the cluster in `directory`: the process whose command line names its
/// data directory.
fn find_postmaster(directory: &Path) -> Option<u32> {
    let needle = directory.join("data").to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| {
                String::from_utf8_lossy(&line)
                    .replace('\0', " ")
                    .contains(&needle)
            })
        })
}

/// `(ppid, utime + stime, cutime + cstime)` of `pid`, in clock ticks (100 a second here).
fn proc_ticks(pid: u32) -> Option<(u32, u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: the fields start after its closing parenthesis.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let number = |index: usize| fields.get(index)?.parse::<u64>().ok();
    // Field 4 (ppid) is fields[1]; utime, stime, cutime, cstime are fields 14-17.
    Some((
        u32::try_from(number(1)?).ok()?,
        number(11)? + number(12)?,
        number(13)? + number(14)?,
    ))
}

/// User + system CPU seconds of this process so far.
fn own_cpu_seconds() -> anyhow::Result<f64> {
    let (_, own, _) = proc_ticks(std::process::id()).context("read /proc/self/stat")?;
    Ok(own as f64 / 100.0)
}
