//! Download benchmark (issue 10): a backup of at least `--size-mb` MB of dump downloaded
//! through `GET /api/v1/downloads/{token}`, against the same object fetched raw from S3 and
//! piped through `age -d | zstd -d` (and, for the plain-SQL form, `| pg_restore -f - |
//! gzip`), with the peak RSS of the process serving the API.
//!
//! Everything runs on this machine: a throwaway PostgreSQL and one SeaweedFS region
//! (lifeboat-sandbox), a generated tenant database, one backup through lifeboat's own
//! backup path, recorded in a catalog. The API runs in a child process (this same binary,
//! `serve`), so its `VmHWM` in `/proc` is the serving process's peak RSS and nothing else's.
//! The client streams each body and throws it away. The figures are printed as Markdown;
//! BENCHMARKS.md ("Downloads") quotes them. Nothing is asserted.
//!
//! ```sh
//! cargo run --release -p lifeboat-controller --example download_bench -- --size-mb 500
//! ```
//!
//! Needs `age`, `zstd` and `gzip` on the PATH (ci/install-test-deps installs them), the
//! PostgreSQL binaries and SeaweedFS's `weed` (as the tests do).

use std::fmt::Write as _;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use lifeboat_controller::audit::Actor;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::server::{self, Controller, ControllerOptions};
use lifeboat_controller::{backups, downloads, schedule};
use lifeboat_core::backup::{BackupRequest, run_backup};
use lifeboat_core::config::Config;
use lifeboat_core::download::DownloadFormat;
use lifeboat_core::ids::TenantName;
use lifeboat_core::keys::Identities;
use lifeboat_core::manifest::{BackupKind, Manifest};
use lifeboat_core::progress::Silent;
use lifeboat_core::region::Regions;
use lifeboat_sandbox::{PostgresCluster, SeaweedRegion};
use secrecy::ExposeSecret;
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;

const ACCESS_KEY_ID: &str = "download-bench";
const SECRET_ACCESS_KEY: &str = "download-bench-secret-0123";
const BUCKET: &str = "lifeboat-bench";
const CATALOG_DATABASE: &str = "lifeboat_catalog";
const TENANT: &str = "bench";
/// Bytes of `pg_dump -Fc -Z0` per generated row (measured: about 172, so the dump comes
/// out a little above the size asked for).
const DUMP_BYTES_PER_ROW: u64 = 160;

#[derive(Debug, Parser)]
#[command(about = "Benchmark downloads through the API against raw S3 + age + zstd")]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Size of the tenant's dump (pg_dump -Fc -Z0) to generate, in MB (10^6 bytes).
    #[arg(long, default_value_t = 500)]
    size_mb: u64,
    /// Timed runs of each measurement; the table shows the fastest and the slowest.
    #[arg(long, default_value_t = 2)]
    runs: usize,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API for the benchmark (started by the benchmark itself).
    Serve {
        #[arg(long)]
        config: PathBuf,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Command::Serve { config }) => serve(&config).await,
        None => benchmark(args.size_mb, args.runs.max(1)).await,
    }
}

/// The child: the controller's API on a loopback port (printed on stdout), until killed.
async fn serve(config_path: &Path) -> anyhow::Result<()> {
    let config = Config::load(Some(config_path))?;
    let catalog = Catalog::open(&config).await?;
    let identity_file = config
        .identity_file
        .as_deref()
        .context("the config has an identity_file")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening http://{}", listener.local_addr()?);
    server::serve(
        catalog,
        listener,
        ControllerOptions {
            policy: QueuePolicy::default(),
            schedule: false,
            window: schedule::DEFAULT_WINDOW,
            tick_interval: Duration::from_secs(3600),
            regions: Regions::from_config(&config),
            maintenance: None,
            metrics_token: None,
            identities: Some(Arc::new(Identities::load(identity_file)?)),
            config: Some(Arc::new(config.clone())),
        },
        None,
        Controller {
            work_ready: Arc::default(),
        },
        CancellationToken::new(),
    )
    .await?;
    Ok(())
}

/// One timed transfer: bytes out and seconds taken.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    bytes: u64,
    seconds: f64,
}

impl Transfer {
    fn megabytes_per_second(self, reference_bytes: u64) -> f64 {
        reference_bytes as f64 / 1e6 / self.seconds
    }
}

async fn benchmark(size_mb: u64, runs: usize) -> anyhow::Result<()> {
    let work = tempfile::Builder::new()
        .prefix("lifeboat-download-bench-")
        .tempdir()?;
    eprintln!("starting PostgreSQL and a SeaweedFS region");
    let (postgres, region) = tokio::join!(
        PostgresCluster::start_temporary(),
        SeaweedRegion::start(ACCESS_KEY_ID, SECRET_ACCESS_KEY, BUCKET)
    );
    let (postgres, region) = (postgres?, region?);
    let identity_path = work.path().join("identity.txt");
    let recipient = lifeboat_core::keys::generate_identity_file(&identity_path)?;
    let config_path = work.path().join("lifeboat.toml");
    std::fs::write(
        &config_path,
        format!(
            "recipients = [\"{recipient}\"]\nidentity_file = {:?}\npg_bin_dir = {:?}\nmin_regions = 1\n\
             [catalog]\ncluster = \"main\"\ndatabase = \"{CATALOG_DATABASE}\"\n\
             [clusters.main]\nhost = \"127.0.0.1\"\nport = {}\nuser = {:?}\npassword = {:?}\n\
             [regions.eu]\nendpoint = {:?}\nbucket = {BUCKET:?}\naccess_key_id = {ACCESS_KEY_ID:?}\nsecret_access_key = {SECRET_ACCESS_KEY:?}\n\
             [tenants.{TENANT}]\ncluster = \"main\"\ndatabase = \"{TENANT}\"\n",
            identity_path.display().to_string(),
            postgres.bin_dir().display().to_string(),
            postgres.port(),
            postgres.superuser(),
            postgres.superuser_password().expose_secret(),
            region.endpoint(),
        ),
    )?;
    let config = Config::load(Some(&config_path))?;

    let admin = postgres.connect("postgres").await?;
    for database in [CATALOG_DATABASE, TENANT] {
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .await
            .with_context(|| format!("create database {database}"))?;
    }
    let catalog = Catalog::open(&config).await?;
    catalog.migrate().await?;
    let rows = size_mb * 1_000_000 / DUMP_BYTES_PER_ROW + 1;
    eprintln!("generating {rows} rows (about {size_mb} MB of dump)");
    let started = Instant::now();
    postgres
        .connect(TENANT)
        .await?
        .batch_execute(&GENERATE_SQL.replace("{rows}", &rows.to_string()))
        .await
        .context("generate the tenant's data")?;
    eprintln!("generated in {:.0} s", started.elapsed().as_secs_f64());

    eprintln!("backing up through lifeboat's backup path");
    let tenant = TenantName::parse(TENANT)?;
    let regions = Regions::from_config(&config);
    let report = run_backup(BackupRequest {
        config: &config,
        tenant: config.tenant(&tenant)?,
        kind: BackupKind::Manual,
        backup_id: None,
        regions: regions.to_vec(),
        progress: Arc::new(Silent),
        cancel: CancellationToken::new(),
        tenant_recipient: None,
    })
    .await?;
    backups::record_checked_backup(&catalog, &regions, &report.manifest, &report.regions).await?;
    let manifest = report.manifest;
    eprintln!(
        "backup {}: dump {} bytes, stored {} bytes",
        manifest.backup_id, manifest.object.dump_bytes, manifest.object.stored_bytes
    );

    // The API in a child process of its own, so its peak RSS is the serving process's.
    let mut server = std::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::piped())
        .spawn()
        .context("start the API process")?;
    let server_pid = server.id();
    let server_stdout = server.stdout.take().context("the API's stdout")?;
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(server_stdout)
            .read_line(&mut line)
            .map(|_| line)
    })
    .await??;
    let base = first_line
        .trim()
        .strip_prefix("listening ")
        .context("the API's address")?
        .to_owned();
    let rss_at_start = proc_status_kib(server_pid, "VmRSS:")?;

    let http = reqwest::Client::new();
    let dump_bytes = manifest.object.dump_bytes;
    let mut results = Vec::new();

    let raw = time_runs(runs, || {
        raw_pipeline(&regions, &manifest, &identity_path, None)
    })
    .await?;
    results.push(("raw S3 GET \\| age -d \\| zstd -d", raw.clone(), None));
    let cpu_before = proc_cpu_seconds(server_pid)?;
    let api = time_runs(runs, || {
        api_download(
            &http,
            &base,
            &catalog,
            &tenant,
            &manifest,
            DownloadFormat::Custom,
            None,
        )
    })
    .await?;
    let api_cpu = (proc_cpu_seconds(server_pid)? - cpu_before) / runs as f64;
    results.push(("API, custom format", api.clone(), Some(api_cpu)));
    let customer_identity = work.path().join("customer.txt");
    let customer = lifeboat_core::keys::generate_identity_file(&customer_identity)?.to_string();
    let cpu_before = proc_cpu_seconds(server_pid)?;
    let api_age = time_runs(runs, || {
        api_download(
            &http,
            &base,
            &catalog,
            &tenant,
            &manifest,
            DownloadFormat::Custom,
            Some(customer.as_str()),
        )
    })
    .await?;
    let api_age_cpu = (proc_cpu_seconds(server_pid)? - cpu_before) / runs as f64;
    results.push((
        "API, custom format re-encrypted to an age recipient",
        api_age,
        Some(api_age_cpu),
    ));
    let peak_after_custom = proc_status_kib(server_pid, "VmHWM:")?;

    let pg_restore = postgres.bin_dir().join("pg_restore");
    let raw_sql = time_runs(runs, || {
        raw_pipeline(&regions, &manifest, &identity_path, Some(&pg_restore))
    })
    .await?;
    results.push((
        "raw S3 GET \\| age -d \\| zstd -d \\| pg_restore -f - \\| gzip",
        raw_sql.clone(),
        None,
    ));
    let cpu_before = proc_cpu_seconds(server_pid)?;
    let api_sql = time_runs(runs, || {
        api_download(
            &http,
            &base,
            &catalog,
            &tenant,
            &manifest,
            DownloadFormat::PlainSqlGzip,
            None,
        )
    })
    .await?;
    let api_sql_cpu = (proc_cpu_seconds(server_pid)? - cpu_before) / runs as f64;
    results.push(("API, plain SQL gzip", api_sql.clone(), Some(api_sql_cpu)));
    let peak_after_all = proc_status_kib(server_pid, "VmHWM:")?;
    server.kill().ok();
    server.wait().ok();

    let mut out = String::new();
    writeln!(
        out,
        "Backup: dump {:.0} MB (pg_dump -Fc -Z0), stored {:.0} MB (zstd level {}, age); one SeaweedFS region on loopback. {runs} runs each; throughput is the dump's size over the time, fastest run (slowest in brackets).\n",
        dump_bytes as f64 / 1e6,
        manifest.object.stored_bytes as f64 / 1e6,
        config.compression_level,
    )?;
    writeln!(
        out,
        "| path | output MB | MB/s of dump | seconds | API CPU s |"
    )?;
    writeln!(out, "|---|---:|---:|---:|---:|")?;
    for (name, transfers, cpu) in &results {
        let fastest = transfers
            .iter()
            .copied()
            .min_by(|a, b| a.seconds.total_cmp(&b.seconds))
            .context("a run")?;
        let slowest = transfers
            .iter()
            .copied()
            .max_by(|a, b| a.seconds.total_cmp(&b.seconds))
            .context("a run")?;
        writeln!(
            out,
            "| {name} | {:.0} | {:.0} ({:.0}) | {:.1} ({:.1}) | {} |",
            fastest.bytes as f64 / 1e6,
            fastest.megabytes_per_second(dump_bytes),
            slowest.megabytes_per_second(dump_bytes),
            fastest.seconds,
            slowest.seconds,
            cpu.map_or("–".to_owned(), |cpu| format!("{cpu:.1}")),
        )?;
    }
    let best = |transfers: &[Transfer]| {
        transfers
            .iter()
            .map(|transfer| transfer.seconds)
            .fold(f64::INFINITY, f64::min)
    };
    writeln!(
        out,
        "\nAPI custom / raw: {:.2}×; API plain SQL / raw plain SQL: {:.2}×.",
        best(&raw) / best(&api),
        best(&raw_sql) / best(&api_sql),
    )?;
    writeln!(
        out,
        "Serving process: RSS {:.1} MiB at start, peak (VmHWM) {:.1} MiB after the custom-format downloads, {:.1} MiB after all.",
        rss_at_start as f64 / 1024.0,
        peak_after_custom as f64 / 1024.0,
        peak_after_all as f64 / 1024.0,
    )?;
    println!("{out}");
    Ok(())
}

async fn time_runs<F, Fut>(runs: usize, mut run: F) -> anyhow::Result<Vec<Transfer>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Transfer>>,
{
    let mut transfers = Vec::new();
    for _ in 0..runs {
        transfers.push(run().await?);
    }
    Ok(transfers)
}

/// Issue a link (as the library does for an authenticated caller) and stream the file.
async fn api_download(
    http: &reqwest::Client,
    base: &str,
    catalog: &Catalog,
    tenant: &TenantName,
    manifest: &Manifest,
    format: DownloadFormat,
    recipient: Option<&str>,
) -> anyhow::Result<Transfer> {
    let link = downloads::issue_download_link(
        catalog,
        &Actor::system("download-bench"),
        tenant,
        manifest.backup_id,
        format,
        recipient,
    )
    .await?;
    let started = Instant::now();
    let mut response = http
        .get(format!(
            "{base}/api/v1/downloads/{}",
            link.token.expose_secret()
        ))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("download refused: {}", response.text().await?);
    }
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await? {
        bytes += chunk.len() as u64;
    }
    let transfer = Transfer {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "API {format}{}: {:.1} s",
        if recipient.is_some() { " (age)" } else { "" },
        transfer.seconds
    );
    Ok(transfer)
}

/// The object fetched raw from the region, piped into `age -d | zstd -d` (and `|
/// pg_restore -f - | gzip` when `pg_restore` is given), output counted by `wc -c`.
async fn raw_pipeline(
    regions: &Regions,
    manifest: &Manifest,
    identity: &Path,
    pg_restore: Option<&Path>,
) -> anyhow::Result<Transfer> {
    let started = Instant::now();
    let mut pipeline = "age --decrypt --identity \"$1\" | zstd --decompress --stdout".to_owned();
    if pg_restore.is_some() {
        pipeline.push_str(" | \"$2\" --file=- --no-owner --no-privileges | gzip");
    }
    pipeline.push_str(" | wc -c");
    let mut shell = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(&pipeline)
        .arg("sh")
        .arg(identity)
        .arg(pg_restore.unwrap_or(Path::new("")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = shell.stdin.take().context("the pipeline's stdin")?;
    let object = regions[0].get_object(&manifest.object.key).await?;
    let mut body = object.body.into_async_read();
    tokio::io::copy(&mut body, &mut stdin).await?;
    stdin.shutdown().await?;
    drop(stdin);
    let output = shell.wait_with_output().await?;
    if !output.status.success() {
        bail!("the raw pipeline failed: {pipeline}");
    }
    let bytes = String::from_utf8_lossy(&output.stdout).trim().parse()?;
    let transfer = Transfer {
        bytes,
        seconds: started.elapsed().as_secs_f64(),
    };
    eprintln!(
        "raw{}: {:.1} s",
        if pg_restore.is_some() {
            " plain SQL"
        } else {
            ""
        },
        transfer.seconds
    );
    Ok(transfer)
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in KiB.
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("{field} in /proc/{pid}/status"))
}

/// User + system CPU seconds of `pid` so far (its children included once reaped).
fn proc_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = &stat[stat.rfind(')').context("comm")? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    // state is field 3; utime, stime, cutime, cstime are fields 14-17.
    let ticks: u64 = fields
        .get(11..15)
        .context("times")?
        .iter()
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    Ok(ticks as f64 / 100.0)
}

/// Rows of about [`DUMP_BYTES_PER_ROW`] bytes of dump each: an id, a timestamp, a random
/// token (64 hex digits), a kind and a sentence from small vocabularies, an amount. zstd
/// (level 2) compresses the dump about 3.5:1.
const GENERATE_SQL: &str = r"
CREATE TABLE events (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    token text NOT NULL,
    kind text NOT NULL,
    note text NOT NULL,
    amount numeric(12, 2) NOT NULL
);
INSERT INTO events
SELECT i,
       timestamptz '2024-01-01 00:00:00+00' + i * interval '3 seconds',
       md5(random()::text) || md5(random()::text),
       (ARRAY['order.created','order.paid','order.shipped','order.refunded','user.login','invoice.sent'])[1 + i % 6],
       (ARRAY['Payment was authorised by the issuing bank.',
              'Shipment left the warehouse and is on its way.',
              'The customer requested a refund for the damaged item.',
              'Delivery was rescheduled at the request of the customer.',
              'Coupon applied at checkout, discount recalculated.'])[1 + (i * 7) % 5],
       round((random() * 5000)::numeric, 2)
FROM generate_series(1, {rows}) AS i;
";
