//! `lifeboat demo`: the whole data path on this machine, with nothing but PostgreSQL's
//! server binaries installed.
//!
//! It starts a throwaway PostgreSQL cluster under the working directory and three
//! S3-compatible regions embedded in this process, creates three sample tenants and the
//! controller's catalog, registers the tenants there and runs a nightly with drills through
//! the job queue (controller API and an agent in this process: backups to all three
//! regions; drill jobs that restore each new backup into a scratch database, verify row
//! counts, drop it and record the drill; retention, scrub, repair), then prints a summary.
//! Everything it starts belongs to values dropped on return or on Ctrl-C, which stops the
//! servers.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comfy_table::Table;
use lifeboat_controller::tenants::{self, NewTenant, Retention};
use lifeboat_core::config::Config;
use lifeboat_core::ids::TenantName;
use lifeboat_core::region::Regions;
use lifeboat_sandbox::{EmbeddedRegion, PostgresCluster};
use tokio_util::sync::CancellationToken;

use super::cancel_on_signal;
use super::controller;
use super::nightly;
use crate::output::{human_bytes, human_duration};
use lifeboat_controller::dedup_key::RunName;
use lifeboat_controller::nightly::NightlyOptions;
use lifeboat_controller::queue::QueuePolicy;

const MARKER_FILE: &str = ".lifeboat-demo";
const REGION_NAMES: [&str; 3] = ["eu", "us", "ap"];
const BUCKET: &str = "lifeboat-demo";
const ACCESS_KEY_ID: &str = "lifeboat-demo";
const SAMPLE_DATA_SQL: &str = include_str!("demo_data.sql");
const CATALOG_DATABASE: &str = "lifeboat";

/// The sample tenants: name, database name (one with quotes and spaces), data scale.
const TENANTS: [(&str, &str, u32); 3] = [
    ("acme", "acme", 1),
    ("globex", "Globex Corp's \"main\" DB", 1),
    ("initech", "initech", 3),
];

struct TenantOutcome {
    tenant: String,
    database_bytes: u64,
    stored_bytes: u64,
    regions: String,
    backup_seconds: f64,
    restore_seconds: Option<f64>,
    verified: Result<String, String>,
}

pub async fn run(dir: &Path, keep: bool) -> anyhow::Result<ExitCode> {
    let dir = prepare_directory(dir)?;
    let cancel = cancel_on_signal();
    let outcome = tokio::select! {
        outcome = run_demo(&dir, cancel.clone()) => outcome,
        () = cancel.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    // Ctrl-C reaches the whole process group, so PostgreSQL may stop first and a step fail
    // with its error: say what really happened.
    let outcome = if cancel.is_cancelled() {
        Err(anyhow::anyhow!(
            "interrupted; everything the demo started was stopped"
        ))
    } else {
        outcome
    };
    if keep {
        eprintln!("kept {}", dir.display());
    } else if let Err(error) = std::fs::remove_dir_all(&dir) {
        eprintln!("warning: could not remove {}: {error}", dir.display());
    }
    let outcomes = outcome?;
    print_summary(&outcomes);
    let all_verified = outcomes.iter().all(|outcome| outcome.verified.is_ok());
    if all_verified {
        println!("all {} tenants restored and verified", outcomes.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("some tenants could not be restored and verified");
        Ok(ExitCode::FAILURE)
    }
}

/// Empty the working directory, refusing one that a demo did not make.
fn prepare_directory(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let is_demo_directory = dir.join(MARKER_FILE).is_file();
        let is_empty = std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .next()
            .is_none();
        if !is_demo_directory && !is_empty {
            anyhow::bail!(
                "{} exists and was not made by lifeboat demo; choose another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(dir.join(MARKER_FILE), b"made by lifeboat demo\n")
        .with_context(|| format!("write {}", dir.join(MARKER_FILE).display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolve {}", dir.display()))
}

async fn run_demo(dir: &Path, cancel: CancellationToken) -> anyhow::Result<Vec<TenantOutcome>> {
    eprintln!(
        "starting a PostgreSQL cluster in {}",
        dir.join("postgres").display()
    );
    let cluster = PostgresCluster::start(&dir.join("postgres"))
        .await
        .context("start the demo PostgreSQL cluster")?;
    let secret_access_key = uuid::Uuid::new_v4().simple().to_string();
    let mut regions = Vec::new();
    for name in REGION_NAMES {
        let region = EmbeddedRegion::start(
            &dir.join("regions").join(name),
            ACCESS_KEY_ID,
            &secret_access_key,
            BUCKET,
        )
        .await
        .with_context(|| format!("start region {name}"))?;
        eprintln!("region {name} listening on {}", region.endpoint());
        regions.push((name, region));
    }

    let identity_path = dir.join("identity.txt");
    let recipient = lifeboat_core::keys::generate_identity_file(&identity_path)?;
    let secret_path = dir.join("s3-secret");
    write_private_file(&secret_path, &secret_access_key)?;
    let config_path = dir.join("lifeboat.toml");
    std::fs::write(
        &config_path,
        demo_config(
            &cluster,
            &regions,
            &recipient.to_string(),
            &identity_path,
            &secret_path,
        ),
    )
    .with_context(|| format!("write {}", config_path.display()))?;
    let config = Config::load(Some(&config_path))?;
    let region_clients = Regions::from_config(&config);
    let cluster_config = config
        .clusters
        .values()
        .next()
        .context("the demo configuration has a cluster")?
        .clone();

    let mut database_sizes = Vec::new();
    for (tenant_name, database, scale) in TENANTS {
        eprintln!("tenant {tenant_name}: creating database {database:?} with sample data");
        lifeboat_provisioner::create_database(&cluster_config, database).await?;
        let client = lifeboat_core::postgres::connect(&cluster_config, database).await?;
        client
            .batch_execute(&SAMPLE_DATA_SQL.replace("{scale}", &scale.to_string()))
            .await
            .with_context(|| format!("load sample data into {database:?}"))?;
        drop(client);
        database_sizes
            .push(lifeboat_provisioner::database_size_bytes(&cluster_config, database).await?);
    }

    // The controller's catalog lives in the same throwaway cluster; the tenants are
    // registered there and the nightly runs through the job queue, as in production.
    eprintln!("creating the catalog (database {CATALOG_DATABASE:?}) and registering the tenants");
    lifeboat_provisioner::create_database(&cluster_config, CATALOG_DATABASE).await?;
    let catalog = controller::open_migrated_catalog(&config).await?;
    for (tenant_name, database, _) in TENANTS {
        tenants::add_tenant(
            &catalog,
            NewTenant {
                name: TenantName::parse(tenant_name)?,
                cluster: cluster_config.name.clone(),
                database: Some(database.to_owned()),
                schedule: None,
                retention: Retention::default(),
            },
            std::slice::from_ref(&cluster_config.name),
            &region_clients,
            "demo",
        )
        .await?;
    }
    let config = Arc::new(config);
    let policy = QueuePolicy {
        retry_base: Duration::from_secs(5),
        max_attempts: 3,
        ..QueuePolicy::from_settings(&config.queue)
    };
    let options = NightlyOptions {
        run: RunName::parse("demo")?,
        drill: true,
        maintenance: Some(controller::maintenance_options(
            &config,
            &region_clients,
            20,
            false,
        )),
        max_attempts: policy.max_attempts,
    };
    let harness = nightly::Harness {
        policy,
        agent_concurrency: Some(2),
        deadline: Duration::from_secs(10 * 60),
        announce: true,
    };
    let night = nightly::execute(
        &config,
        &region_clients,
        &catalog,
        &options,
        harness,
        &cancel,
    )
    .await?;

    // The nightly drilled each new backup through the queue: restored into a scratch
    // database by the agent, verified against the manifest, recorded in the catalog.
    let mut outcomes = Vec::new();
    for ((tenant_name, _, _), database_bytes) in TENANTS.iter().zip(database_sizes) {
        let Some(backed_up) = night
            .outcomes
            .iter()
            .find(|outcome| outcome.tenant == *tenant_name)
        else {
            continue;
        };
        let verified = match (&backed_up.drill, &backed_up.error) {
            (_, Some(error)) => Err(format!("backup failed: {error}")),
            (Some(drill), None) if drill.verified => Ok(format!(
                "yes ({} tables, {} rows)",
                drill.tables_verified.unwrap_or_default(),
                drill.rows_verified.unwrap_or_default()
            )),
            (Some(drill), None) => Err(format!(
                "drill failed: {}",
                drill.error.as_deref().unwrap_or("unknown error")
            )),
            (None, None) => Err("not drilled".to_owned()),
        };
        outcomes.push(TenantOutcome {
            tenant: (*tenant_name).to_owned(),
            database_bytes,
            stored_bytes: backed_up.stored_bytes.unwrap_or(0),
            regions: if backed_up.degraded {
                "degraded".to_owned()
            } else {
                REGION_NAMES.join(",")
            },
            backup_seconds: backed_up.duration_ms.unwrap_or(0) as f64 / 1000.0,
            restore_seconds: backed_up
                .drill
                .as_ref()
                .filter(|_| verified.is_ok())
                .and_then(|drill| drill.duration_ms)
                .map(|ms| ms as f64 / 1000.0),
            verified,
        });
    }
    if let Some(done) = &night.maintenance {
        eprintln!(
            "nightly maintenance: scrub checked {} copies ({} bad), repair made {} copies, {} problems",
            done.copies_checked,
            done.copies_bad,
            done.repaired,
            done.problems.len()
        );
        for problem in &done.problems {
            eprintln!("  problem: {problem}");
        }
    }
    drop(catalog);
    for (_, region) in regions {
        region.stop().await;
    }
    cluster.stop().await?;
    Ok(outcomes)
}

fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

fn toml_string(text: &str) -> String {
    // A JSON string is a valid TOML basic string.
    serde_json::to_string(text).unwrap_or_default()
}

fn demo_config(
    cluster: &PostgresCluster,
    regions: &[(&str, EmbeddedRegion)],
    recipient: &str,
    identity_path: &Path,
    secret_path: &Path,
) -> String {
    let mut config = format!(
        "# Written by lifeboat demo.\nrecipients = [{}]\nidentity_file = {}\npg_bin_dir = {}\n\n[clusters.demo]\nhost = {}\nport = {}\nuser = {}\n",
        toml_string(recipient),
        toml_string(&identity_path.display().to_string()),
        toml_string(&cluster.bin_dir().display().to_string()),
        toml_string(cluster.host()),
        cluster.port(),
        toml_string(cluster.superuser()),
    );
    for (priority, (name, region)) in regions.iter().enumerate() {
        config.push_str(&format!(
            "\n[regions.{name}]\nendpoint = {}\nbucket = {}\naccess_key_id = {}\nsecret_access_key_file = {}\npriority = {priority}\n",
            toml_string(&region.endpoint()),
            toml_string(region.bucket()),
            toml_string(ACCESS_KEY_ID),
            toml_string(&secret_path.display().to_string()),
        ));
    }
    config.push_str(&format!(
        "\n[catalog]\ncluster = \"demo\"\ndatabase = {}\n",
        toml_string(CATALOG_DATABASE)
    ));
    // No [tenants]: the tenants live in the catalog, as `lifeboat tenant add` puts them.
    config
}

fn print_summary(outcomes: &[TenantOutcome]) {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "tenant",
        "database size",
        "stored size",
        "regions",
        "backup time",
        "restore time",
        "verified",
    ]);
    for outcome in outcomes {
        table.add_row([
            outcome.tenant.clone(),
            human_bytes(outcome.database_bytes),
            human_bytes(outcome.stored_bytes),
            outcome.regions.clone(),
            human_duration(Duration::from_secs_f64(outcome.backup_seconds)),
            outcome
                .restore_seconds
                .map(|seconds| human_duration(Duration::from_secs_f64(seconds)))
                .unwrap_or_else(|| "-".to_owned()),
            match &outcome.verified {
                Ok(summary) => summary.clone(),
                Err(error) => format!("NO: {error}"),
            },
        ]);
    }
    println!("{table}");
}
