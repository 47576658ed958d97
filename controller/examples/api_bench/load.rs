//! The second process: the load. It lists the tenant's backups over many keep-alive
//! HTTP/1.1 connections, bounded by a request count and a time limit, then sends bursts of
//! wrong passwords at the sign-in route while a few connections keep listing, and prints
//! everything it saw as one JSON line ([`LoadReport`]) for the parent to judge.
//!
//! Every client is its own `reqwest::Client` holding one connection, so N clients are N
//! connections. Sign-ins come from chosen loopback addresses (`127.B.x.y`, all routed to
//! `lo` on Linux): the server sees them as distinct TCP peers, which is the only address
//! it trusts (no `X-Forwarded-For`), so the per-address throttle is exercised for real.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};

/// The API token the load lists with (never on the command line, where `ps` shows it).
pub const TOKEN_VARIABLE: &str = "LIFEBOAT_API_BENCH_TOKEN";
/// The owner's right password, for the sign-ins after each burst.
pub const PASSWORD_VARIABLE: &str = "LIFEBOAT_API_BENCH_PASSWORD";

/// Connections that keep listing while a burst of sign-ins runs.
pub const BACKGROUND_CONNECTIONS: usize = 8;
/// How long the load waits for a throttled login to be let in again.
const THROTTLE_PATIENCE: Duration = Duration::from_secs(120);
/// How often it asks, meanwhile.
const THROTTLE_POLL: Duration = Duration::from_millis(100);
/// Any single request taking longer than this is an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// What the parent tells the load process.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// The API's base URL, `http://127.0.0.1:PORT`.
    #[arg(long)]
    pub base: String,
    #[arg(long)]
    pub tenant: String,
    /// The owner's login (the target of the bursts).
    #[arg(long)]
    pub login: String,
    /// The listing's expected body, byte for byte.
    #[arg(long)]
    pub expected_body: PathBuf,
    #[arg(long)]
    pub connections: usize,
    #[arg(long)]
    pub requests: usize,
    #[arg(long)]
    pub max_seconds: u64,
    /// Wrong passwords per burst, all sent at once.
    #[arg(long)]
    pub burst: usize,
    #[arg(long, value_enum)]
    pub phase: Phase,
}

/// The load runs in two processes one after the other, so that the parent can tell the
/// CPU each phase cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Listing,
    Bursts,
}

/// Latencies of one kind of request, and the failures among them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latencies {
    pub requests: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Transport failures, statuses other than 200, or bodies other than the expected one.
    pub errors: usize,
    pub first_error: Option<String>,
}

impl Latencies {
    fn of(
        mut samples: Vec<Duration>,
        seconds: f64,
        errors: usize,
        first_error: Option<String>,
    ) -> Self {
        samples.sort_unstable();
        let percentile = |fraction: f64| {
            if samples.is_empty() {
                return 0.0;
            }
            // Nearest rank: the smallest sample with at least `fraction` of all at or below it.
            let rank = (fraction * samples.len() as f64).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1].as_secs_f64() * 1e3
        };
        Latencies {
            requests: samples.len() + errors,
            seconds,
            requests_per_second: if seconds > 0.0 {
                samples.len() as f64 / seconds
            } else {
                0.0
            },
            p50_ms: percentile(0.50),
            p90_ms: percentile(0.90),
            p99_ms: percentile(0.99),
            max_ms: samples.last().map_or(0.0, |max| max.as_secs_f64() * 1e3),
            errors,
            first_error,
        }
    }
}

/// One burst of wrong passwords and what followed it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BurstReport {
    pub name: String,
    pub attempts: usize,
    /// Distinct logins and client addresses the burst used.
    pub logins: usize,
    pub addresses: usize,
    /// From the first request sent to the last answer.
    pub seconds: f64,
    /// Answers by HTTP status (0: no answer).
    pub statuses: BTreeMap<u16, usize>,
    pub refused_401: Latencies,
    pub throttled_429: Latencies,
    /// The owner's right password afterwards: what was tried and what it got.
    pub right_password: Vec<(String, u16)>,
    /// When the first of those was answered, in seconds from the burst's start.
    pub first_right_password_at: Option<f64>,
    /// Seconds from the burst's end until the right password was let in, if it was waited for.
    pub seconds_until_let_in: Option<f64>,
    /// The listing on a few other connections while the burst ran.
    pub listing_meanwhile: Latencies,
}

/// Everything the load saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub listing: Option<Latencies>,
    pub bursts: Vec<BurstReport>,
    /// User + system CPU seconds of the load process itself.
    pub load_cpu_seconds: f64,
}

/// What a listing request must get back.
struct Listing {
    url: String,
    authorization: String,
    expected_body: Vec<u8>,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<()> {
    let token = std::env::var(TOKEN_VARIABLE).with_context(|| format!("${TOKEN_VARIABLE}"))?;
    let password =
        std::env::var(PASSWORD_VARIABLE).with_context(|| format!("${PASSWORD_VARIABLE}"))?;
    let listing = Arc::new(Listing {
        url: format!("{}/api/v1/tenants/{}/backups", args.base, args.tenant),
        authorization: format!("Bearer {token}"),
        expected_body: std::fs::read(&args.expected_body)
            .with_context(|| format!("read {}", args.expected_body.display()))?,
    });

    let report = match args.phase {
        Phase::Listing => LoadReport {
            listing: Some(listing_phase(&args, &listing).await?),
            bursts: Vec::new(),
            load_cpu_seconds: 0.0,
        },
        Phase::Bursts => LoadReport {
            listing: None,
            bursts: bursts_phase(&args, &listing, &password).await?,
            load_cpu_seconds: 0.0,
        },
    };
    let report = LoadReport {
        load_cpu_seconds: crate::own_cpu_seconds()?,
        ..report
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

async fn listing_phase(args: &LoadArgs, listing: &Arc<Listing>) -> anyhow::Result<Latencies> {
    let clients = (0..args.connections)
        .map(|_| client(None))
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Open every connection (and warm the server's pool) before anything is timed.
    let warm_up = run_listing(
        &clients,
        listing,
        clients.len() * 2,
        Duration::from_secs(60),
        None,
    )
    .await;
    if warm_up.errors > 0 {
        bail!("the warm-up listing failed: {:?}", warm_up.first_error);
    }
    eprintln!(
        "listing: {} connections, up to {} requests or {} s",
        args.connections, args.requests, args.max_seconds
    );
    Ok(run_listing(
        &clients,
        listing,
        args.requests,
        Duration::from_secs(args.max_seconds),
        None,
    )
    .await)
}

async fn bursts_phase(
    args: &LoadArgs,
    listing: &Arc<Listing>,
    password: &str,
) -> anyhow::Result<Vec<BurstReport>> {
    let background = (0..BACKGROUND_CONNECTIONS)
        .map(|_| client(None))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let login = args.login.as_str();
    let owner_attempt = |address: IpAddr, password: &str| Attempt {
        address,
        login: login.to_owned(),
        password: password.to_owned(),
    };
    let owner_from = |address: IpAddr| owner_attempt(address, password);
    let mut bursts = Vec::new();

    // 1. One login, one address: the per-login throttle alone.
    let attempts = (0..args.burst)
        .map(|index| owner_attempt(localhost(), &format!("wrong-password-{index}")))
        .collect();
    let mut report = burst(
        &args.base,
        "one login, one address",
        attempts,
        owner_from(localhost()),
        &background,
        listing,
    )
    .await?;
    let home = client(Some(localhost()))?;
    wait_until_let_in(&mut report, &home, &args.base, login, password).await?;
    bursts.push(report);

    // 2. One login from as many addresses as attempts: spreading over addresses does not
    // get past the per-login throttle.
    let attempts = (0..args.burst)
        .map(|index| {
            Ok(owner_attempt(
                loopback(1, index)?,
                &format!("wrong-password-{index}"),
            ))
        })
        .collect::<anyhow::Result<_>>()?;
    let mut report = burst(
        &args.base,
        "one login, many addresses",
        attempts,
        owner_from(loopback(5, 0)?),
        &background,
        listing,
    )
    .await?;
    let elsewhere = client(Some(loopback(5, 0)?))?;
    wait_until_let_in(&mut report, &elsewhere, &args.base, login, password).await?;
    bursts.push(report);

    // 3. Many logins from one address: the per-address throttle; the owner is turned away
    // from that address, and let in from another.
    let guessing_address = loopback(2, 0)?;
    let attempts = (0..args.burst)
        .map(|index| Attempt {
            address: guessing_address,
            login: format!("guess-{index}"),
            password: format!("wrong-password-{index}"),
        })
        .collect();
    let mut report = burst(
        &args.base,
        "many logins, one address",
        attempts,
        owner_from(guessing_address),
        &background,
        listing,
    )
    .await?;
    let status = sign_in(&client(Some(loopback(5, 1)?))?, &args.base, login, password).await?;
    report
        .right_password
        .push(("owner, from another address".to_owned(), status));
    bursts.push(report);

    // 4. A spray no throttle can stop (a new login from a new address each time): every
    // attempt costs a password verification; the cost the server pays, and whether the
    // listing stays responsive meanwhile.
    let attempts = (0..args.burst)
        .map(|index| {
            Ok(Attempt {
                address: loopback(3, index)?,
                login: format!("spray-{index}"),
                password: format!("wrong-password-{index}"),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let report = burst(
        &args.base,
        "many logins, many addresses",
        attempts,
        owner_from(loopback(5, 2)?),
        &background,
        listing,
    )
    .await?;
    bursts.push(report);
    Ok(bursts)
}

/// A client with one keep-alive HTTP/1.1 connection, from `address` if given.
fn client(address: Option<IpAddr>) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .local_address(address)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

fn localhost() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The `index`-th address of the loopback block `127.block.0.0/16`.
fn loopback(block: u8, index: usize) -> anyhow::Result<IpAddr> {
    let high = u8::try_from(index / 250).context("at most 64,000 addresses per block")?;
    let low = u8::try_from(index % 250 + 1)?;
    Ok(IpAddr::V4(Ipv4Addr::new(127, block, high, low)))
}

/// List on every client in turn until `max_requests` were sent or `max_duration` passed
/// (or `stop` is set); each request is checked for a 200 and the expected body.
async fn run_listing(
    clients: &[reqwest::Client],
    listing: &Arc<Listing>,
    max_requests: usize,
    max_duration: Duration,
    stop: Option<Arc<AtomicBool>>,
) -> Latencies {
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + max_duration;
    let mut workers = tokio::task::JoinSet::new();
    for client in clients {
        let (client, listing, sent, stop) =
            (client.clone(), listing.clone(), sent.clone(), stop.clone());
        workers.spawn(async move {
            let mut samples = Vec::new();
            let mut errors = 0;
            let mut first_error = None;
            while sent.fetch_add(1, Ordering::Relaxed) < max_requests
                && Instant::now() < deadline
                && !stop
                    .as_ref()
                    .is_some_and(|stop| stop.load(Ordering::Relaxed))
            {
                let sent_at = Instant::now();
                match list_once(&client, &listing).await {
                    Ok(()) => samples.push(sent_at.elapsed()),
                    Err(error) => {
                        errors += 1;
                        first_error.get_or_insert(format!("{error:#}"));
                    }
                }
            }
            (samples, errors, first_error)
        });
    }
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok((worker_samples, worker_errors, worker_error)) => {
                samples.extend(worker_samples);
                errors += worker_errors;
                if first_error.is_none() {
                    first_error = worker_error;
                }
            }
            Err(error) => {
                errors += 1;
                first_error.get_or_insert(format!("a worker failed: {error}"));
            }
        }
    }
    Latencies::of(
        samples,
        started.elapsed().as_secs_f64(),
        errors,
        first_error,
    )
}

async fn list_once(client: &reqwest::Client, listing: &Listing) -> anyhow::Result<()> {
    let response = client
        .get(&listing.url)
        .header(reqwest::header::AUTHORIZATION, &listing.authorization)
        .send()
        .await?;
    let status = response.status();
    let body = response.bytes().await?;
    if status != reqwest::StatusCode::OK {
        bail!("{status}: {}", String::from_utf8_lossy(&body));
    }
    if body != listing.expected_body {
        bail!(
            "the body differs from the expected listing ({} bytes)",
            body.len()
        );
    }
    Ok(())
}

/// One sign-in of a burst.
struct Attempt {
    address: IpAddr,
    login: String,
    password: String,
}

/// Send every attempt at once, each on its own connection (opened beforehand), while
/// the `background` clients keep listing.
async fn burst(
    base: &str,
    name: &str,
    attempts: Vec<Attempt>,
    right_after: Attempt,
    background: &[reqwest::Client],
    listing: &Arc<Listing>,
) -> anyhow::Result<BurstReport> {
    let attempt_count = attempts.len();
    let logins = attempts
        .iter()
        .map(|attempt| attempt.login.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let addresses = attempts
        .iter()
        .map(|attempt| attempt.address)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    eprintln!("burst: {attempt_count} wrong passwords, {name}");
    let mut connected = Vec::with_capacity(attempt_count);
    for attempt in attempts {
        let client = client(Some(attempt.address))?;
        // Open the connection now, so the burst times sign-ins, not TCP handshakes.
        let health = client.get(format!("{base}/healthz")).send().await?;
        if !health.status().is_success() {
            bail!("GET /healthz: {}", health.status());
        }
        connected.push((client, attempt));
    }
    let right_after_client = client(Some(right_after.address))?;
    right_after_client
        .get(format!("{base}/healthz"))
        .send()
        .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let meanwhile = {
        let (background, listing, stop) = (background.to_vec(), listing.clone(), stop.clone());
        tokio::spawn(async move {
            run_listing(
                &background,
                &listing,
                usize::MAX,
                Duration::from_secs(600),
                Some(stop),
            )
            .await
        })
    };
    // Let the background listing get going before the burst lands.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Arc::new(tokio::sync::Barrier::new(attempt_count));
    let started = Instant::now();
    let mut sign_ins = tokio::task::JoinSet::new();
    for (client, attempt) in connected {
        let (base, start) = (base.to_owned(), start.clone());
        sign_ins.spawn(async move {
            start.wait().await;
            let sent_at = Instant::now();
            let status = sign_in(&client, &base, &attempt.login, &attempt.password)
                .await
                .unwrap_or(0);
            (status, sent_at.elapsed())
        });
    }
    let mut statuses = BTreeMap::new();
    let mut latencies: BTreeMap<u16, Vec<Duration>> = BTreeMap::new();
    while let Some(joined) = sign_ins.join_next().await {
        let (status, latency) = joined?;
        *statuses.entry(status).or_default() += 1;
        latencies.entry(status).or_default().push(latency);
    }
    let seconds = started.elapsed().as_secs_f64();
    // The owner's right password at once: refused while the throttle holds.
    let right_after_status = sign_in(
        &right_after_client,
        base,
        &right_after.login,
        &right_after.password,
    )
    .await?;
    let first_right_password_at = started.elapsed().as_secs_f64();
    // Keep listing a little after the last answer: the server must have recovered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let listing_meanwhile = meanwhile.await?;
    let mut latencies_of = |status: u16| {
        Latencies::of(
            latencies.remove(&status).unwrap_or_default(),
            seconds,
            0,
            None,
        )
    };
    Ok(BurstReport {
        name: name.to_owned(),
        attempts: attempt_count,
        logins,
        addresses,
        seconds,
        refused_401: latencies_of(401),
        throttled_429: latencies_of(429),
        statuses,
        right_password: vec![(
            format!("owner, right after the burst, from {}", right_after.address),
            right_after_status,
        )],
        first_right_password_at: Some(first_right_password_at),
        seconds_until_let_in: None,
        listing_meanwhile,
    })
}

/// `POST /api/v1/session`; the status it got.
async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    login: &str,
    password: &str,
) -> anyhow::Result<u16> {
    let response = client
        .post(format!("{base}/api/v1/session"))
        .json(&serde_json::json!({ "login": login, "password": password }))
        .send()
        .await?;
    Ok(response.status().as_u16())
}

/// The owner's right password again and again after a burst, until it is let in.
async fn wait_until_let_in(
    report: &mut BurstReport,
    client: &reqwest::Client,
    base: &str,
    login: &str,
    password: &str,
) -> anyhow::Result<()> {
    let waiting_since = Instant::now();
    let mut refused = 0;
    loop {
        let status = sign_in(client, base, login, password).await?;
        if status == 200 {
            report.right_password.push((
                format!("owner, after {refused} more refusals while waiting"),
                status,
            ));
            report.seconds_until_let_in = Some(waiting_since.elapsed().as_secs_f64());
            return Ok(());
        }
        if status != 429 || waiting_since.elapsed() > THROTTLE_PATIENCE {
            report
                .right_password
                .push(("owner, while waiting (gave up)".to_owned(), status));
            return Ok(());
        }
        refused += 1;
        tokio::time::sleep(THROTTLE_POLL).await;
    }
}
