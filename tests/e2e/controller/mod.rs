//! The controller: scheduler, job queue, agents over HTTP and the nightly, against a real
//! PostgreSQL (catalog and tenant databases) and real SeaweedFS regions.
//!
//! Split by subject: [`nightly_runs`], [`scheduling`], [`daily_maintenance`], [`job_queue`]; the helpers
//! they share are here.

mod daily_maintenance;
mod job_queue;
mod nightly_runs;
mod scheduling;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat_controller::agents::{AgentScope, ClusterScope};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::dedup_key::{DedupKey, RunName};
use lifeboat_controller::nightly;
use lifeboat_controller::queue::{self, NewJob, QueuePolicy};
use lifeboat_controller::schedule;
use lifeboat_controller::scheduler::Scheduler;
use lifeboat_controller::server::{self, Controller, EmbeddedAgent};
use lifeboat_core::api::{
    ClaimRequest, ClaimedJob, ErrorBody, JobOutcome, JobReport, JobResult, JobWork,
};
use lifeboat_core::config::Config;
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::manifest::{BackupKind, listing_prefix};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, Settings, TestEnv, api_options, stderr, stdout};

const CATALOG_DATABASE: &str = "lifeboat_catalog";

pub(crate) fn catalog_settings() -> Settings {
    Settings {
        // A backup in one region is committed (and degraded); repair copies it later.
        min_regions: Some(1),
        extra: format!("[catalog]\ncluster = \"main\"\ndatabase = \"{CATALOG_DATABASE}\"\n"),
        ..Settings::default()
    }
}

/// Create the catalog database, migrate it and add `tenants` (each with its own database of
/// `rows` sample rows). Returns the config file.
pub(crate) async fn env_with_tenants(env: &TestEnv, tenants: &[&str], rows: u32) -> PathBuf {
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {CATALOG_DATABASE}"))
        .await
        .expect("create catalog database");
    let config = env.config_file(&catalog_settings());
    let migrated = env.lifeboat(&config, &["controller", "migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    for tenant in tenants {
        env.create_tenant_database(tenant, rows).await;
        let added = env.lifeboat(&config, &["tenant", "add", tenant, "--cluster", "main"]);
        assert!(added.status.success(), "{}", stderr(&added));
    }
    config
}

pub(crate) async fn open_catalog(config: &Config) -> Catalog {
    let catalog = config.catalog.as_ref().expect("catalog configured");
    Catalog::connect(
        config.cluster(&catalog.cluster).expect("cluster"),
        &catalog.database,
    )
    .await
    .expect("connect catalog")
}

pub(crate) async fn scalar(catalog: &Catalog, sql: &str) -> i64 {
    catalog
        .connection()
        .await
        .expect("connection")
        .query_one(sql, &[])
        .await
        .expect(sql)
        .get(0)
}

/// Poll `condition` every 20 ms until it holds; fail after a minute, naming `what`.
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn manifests_in(keys: &[String], tenant: &str) -> usize {
    keys.iter()
        .filter(|key| {
            key.starts_with(&format!("tenants/{tenant}/")) && key.ends_with(".manifest.json")
        })
        .count()
}

/// Daily maintenance due at once (minute 0), over every configured region, with a trash
/// period of an hour.
fn maintenance_options(
    config: &Config,
    scrub_full_sample: usize,
    drill: bool,
) -> lifeboat_controller::maintenance::MaintenanceOptions {
    lifeboat_controller::maintenance::MaintenanceOptions {
        regions: config
            .regions
            .iter()
            .map(lifeboat_core::region::Region::new)
            .collect(),
        trash_period: Duration::from_secs(3600),
        scrub_full_sample,
        minute_of_day: 0,
        drill,
        drill_cluster: None,
        drill_every_days: 1,
    }
}

/// A controller serving the API in this process, with no agent.
struct InProcessController {
    base: String,
    cancel: CancellationToken,
}

impl Drop for InProcessController {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve_in_process(
    catalog: &Catalog,
    config: &Config,
    policy: QueuePolicy,
) -> InProcessController {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let cancel = CancellationToken::new();
    tokio::spawn(server::serve(
        catalog.clone(),
        listener,
        api_options(config, policy),
        Some(EmbeddedAgent {
            token: SecretString::from("lbt_embedded-test-token"),
            scope: AgentScope {
                clusters: ClusterScope::All,
                can_decrypt: true,
            },
        }),
        Controller {
            work_ready: Arc::default(),
        },
        cancel.clone(),
    ));
    InProcessController { base, cancel }
}

/// A `lifeboat` process in the background, killed when dropped.
struct Background(Option<Child>);

impl Background {
    /// Take the process out, to wait for it; it is no longer killed on drop.
    fn into_child(mut self) -> Child {
        self.0.take().expect("child")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_lifeboat(config: &Path, arguments: &[&str]) -> Background {
    Background(Some(
        Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .arg("--config")
            .arg(config)
            .args(arguments)
            .env_remove("LIFEBOAT_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lifeboat"),
    ))
}
