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

use crate::load::{BurstReport, Latencies, LoadArgs, LoadReport};

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
        evidence::tenant_backups(&**connection, &tenant).await?
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

    eprintln!("serving {base}; starting the load process");
    let cpu_before = own_cpu_seconds()?;
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .arg("load")
        .args(["--base", &base, "--tenant", TENANT, "--login", OWNER_LOGIN])
        .arg("--expected-body")
        .arg(&expected_path)
        .args(["--connections", &cli.connections.to_string()])
        .args(["--requests", &cli.requests.to_string()])
        .args(["--max-seconds", &cli.max_seconds.to_string()])
        .args(["--burst", &cli.burst.to_string()])
        .env(load::TOKEN_VARIABLE, token.expose_secret())
        .env(load::PASSWORD_VARIABLE, password.expose_secret())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .output()
        .await
        .context("run the load process")?;
    let server_cpu = own_cpu_seconds()? - cpu_before;
    cancel.cancel();
    let _ = served.await;
    if !output.status.success() {
        bail!("the load process failed ({})", output.status);
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: LoadReport = serde_json::from_str(
        stdout
            .lines()
            .last()
            .context("the load process printed no report")?,
    )
    .context("parse the load's report")?;

    print_report(cli, &report, server_cpu, expected_body.len());
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

/// A configuration with the catalog on `postgres`. The regions are named (tenants need
/// some) but never reached: nothing here reads or writes an object.
fn write_config(path: &Path, work: &Path, postgres: &PostgresCluster) -> anyhow::Result<()> {
    let recipient = lifeboat_core::keys::generate_identity_file(&work.join("identity.txt"))?;
    let mut config = format!(
        "recipients = [\"{recipient}\"]\nmin_regions = 1\n\
         [catalog]\ncluster = \"main\"\ndatabase = \"{CATALOG_DATABASE}\"\n\
         [clusters.main]\nhost = \"127.0.0.1\"\nport = {}\nuser = {:?}\n",
        postgres.port(),
        postgres.superuser(),
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

fn print_report(cli: &Cli, report: &LoadReport, server_cpu: f64, body_bytes: usize) {
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
    println!("{}", latency_row(&report.listing));
    println!(
        "\nTargets: p99 ≤ 50 ms: {}; ≥ 1,000 requests/s: {}. Serving process CPU over the whole \
         load (listing and bursts): {server_cpu:.1} s.",
        met(report.listing.p99_ms <= 50.0),
        met(report.listing.requests_per_second >= 1000.0),
    );
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
        if let Some(seconds) = burst.seconds_until_let_in {
            println!("- {}: let in {seconds:.1} s after the burst", burst.name);
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
    if report.listing.errors > 0 || report.listing.requests == 0 {
        problems.push(format!(
            "listing: {} errors in {} requests (first: {:?})",
            report.listing.errors, report.listing.requests, report.listing.first_error
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
    let expected: &[u16] = if burst.logins == 1 {
        // Refused while the login's delay lasts, let in once it is over.
        &[429, 200]
    } else if burst.addresses == 1 {
        // Refused from the throttled address, let in from another.
        &[429, 200]
    } else {
        &[200]
    };
    if answers != expected {
        problems.push(format!(
            "{name}: the owner's right password got {answers:?}, expected {expected:?} ({:?})",
            burst.right_password
        ));
    }
}

/// User + system CPU seconds of this process so far (the API, once the load runs).
fn own_cpu_seconds() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = &stat[stat.rfind(')').context("comm")? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // utime and stime are fields 14 and 15; `fields` starts at field 3.
    let ticks: u64 = fields
        .get(11..13)
        .context("times")?
        .iter()
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    Ok(ticks as f64 / 100.0)
}
