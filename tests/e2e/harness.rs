//! `TestEnv`: one PostgreSQL cluster, N regions, an age key pair and a config file, all in
//! a temporary directory and all stopped when the value is dropped.

use secrecy::ExposeSecret as _;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use lifeboat_core::config::Config;
use lifeboat_core::ids::TenantName;
use lifeboat_core::manifest::BackupKind;
use lifeboat_core::progress::{Progress, Silent};
use lifeboat_core::region::{Region, Regions};
use lifeboat_sandbox::{
    EmbeddedRegion, PostgresCluster, PostgresOptions, SeaweedRegion, WriterKey,
};
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

pub const ACCESS_KEY_ID: &str = "lifeboat-test";
pub const SECRET_ACCESS_KEY: &str = "test-secret-Zq81kL0p";
pub const BUCKET: &str = "lifeboat-test";
/// The manager's key of a [`Backend::SeaweedLocked`] region (the writer's is
/// [`ACCESS_KEY_ID`]).
pub const MANAGER_KEY_ID: &str = "lifeboat-test-manager";
pub const MANAGER_SECRET: &str = "test-manager-secret-Hw27xQ";
/// The `[catalog]` section of a test configuration; [`TestEnv::create_catalog`] creates it.
pub const CATALOG: &str = "[catalog]\ncluster = \"main\"\ndatabase = \"lifeboat_catalog\"\n";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Seaweed,
    /// SeaweedFS with a versioned, object-locked bucket, a writer key ([`ACCESS_KEY_ID`])
    /// whose policy denies every delete and a manager key ([`MANAGER_KEY_ID`]); the
    /// configuration says `object_lock = "compliance"` (or [`TestEnv::lock_mode`]).
    SeaweedLocked,
    Embedded,
}

pub enum RegionServer {
    Seaweed(SeaweedRegion),
    Embedded(EmbeddedRegion),
}

impl RegionServer {
    pub fn endpoint(&self) -> String {
        match self {
            RegionServer::Seaweed(region) => region.endpoint(),
            RegionServer::Embedded(region) => region.endpoint(),
        }
    }

    /// Kill the region's server now, as a crash would.
    pub fn kill(&mut self) {
        match self {
            RegionServer::Seaweed(region) => region.kill(),
            RegionServer::Embedded(_) => panic!("only SeaweedFS regions can be killed"),
        }
    }

    pub async fn restart(&mut self) {
        match self {
            RegionServer::Seaweed(region) => region.restart().await.expect("restart region"),
            RegionServer::Embedded(_) => panic!("only SeaweedFS regions can be restarted"),
        }
    }
}

/// Settings a test may change; the rest are the defaults.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub min_regions: Option<usize>,
    /// `(tenant, database)`; default: `acme` → `acme`.
    pub tenants: Vec<(String, String)>,
    pub identity_file: Option<PathBuf>,
    pub extra: String,
    /// More settings of `[clusters.main]` (e.g. `sslmode`).
    pub cluster_extra: String,
    /// `recipients`; default: the environment's one recipient.
    pub recipients: Vec<String>,
    /// More settings of every `[regions.X]` (e.g. `require_lock`).
    pub region_extra: String,
}

pub struct TestEnv {
    pub postgres: PostgresCluster,
    pub regions: Vec<RegionServer>,
    pub region_names: Vec<String>,
    pub recipient: String,
    pub identity_path: PathBuf,
    pub dir: TempDir,
    /// The regions are [`Backend::SeaweedLocked`].
    pub locked: bool,
    /// The `object_lock` mode the configuration asks of locked regions (default
    /// `compliance`; the bucket takes either).
    pub lock_mode: &'static str,
}

impl TestEnv {
    pub async fn start(backend: Backend, region_count: usize) -> TestEnv {
        Self::start_with_postgres(backend, region_count, &PostgresOptions::default()).await
    }

    /// [`TestEnv::start`] with a PostgreSQL cluster started with `options` (e.g. TLS).
    pub async fn start_with_postgres(
        backend: Backend,
        region_count: usize,
        options: &PostgresOptions,
    ) -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let (postgres, regions) =
            tokio::join!(PostgresCluster::start_temporary_with(options), async {
                let mut regions = Vec::new();
                for index in 0..region_count {
                    let region = match backend {
                        Backend::Seaweed => RegionServer::Seaweed(
                            SeaweedRegion::start(ACCESS_KEY_ID, SECRET_ACCESS_KEY, BUCKET)
                                .await
                                .expect("start SeaweedFS region"),
                        ),
                        Backend::SeaweedLocked => RegionServer::Seaweed(
                            SeaweedRegion::start_locked(
                                MANAGER_KEY_ID,
                                MANAGER_SECRET,
                                WriterKey {
                                    access_key_id: ACCESS_KEY_ID.to_owned(),
                                    secret_access_key: SECRET_ACCESS_KEY.to_owned(),
                                },
                                BUCKET,
                            )
                            .await
                            .expect("start locked SeaweedFS region"),
                        ),
                        Backend::Embedded => RegionServer::Embedded(
                            EmbeddedRegion::start(
                                &dir.path().join(format!("region-{index}")),
                                ACCESS_KEY_ID,
                                SECRET_ACCESS_KEY,
                                BUCKET,
                            )
                            .await
                            .expect("start embedded region"),
                        ),
                    };
                    regions.push(region);
                }
                regions
            });
        let postgres = postgres.expect("start PostgreSQL");
        let identity_path = dir.path().join("identity.txt");
        let recipient = lifeboat_core::keys::generate_identity_file(&identity_path)
            .expect("keygen")
            .to_string();
        let region_names = ["eu", "us", "ap", "sa", "af"][..region_count]
            .iter()
            .map(|name| (*name).to_owned())
            .collect();
        TestEnv {
            postgres,
            regions,
            region_names,
            recipient,
            identity_path,
            dir,
            locked: backend == Backend::SeaweedLocked,
            lock_mode: "compliance",
        }
    }

    /// Write a config file with `settings` and load it.
    pub fn config_file(&self, settings: &Settings) -> PathBuf {
        let recipients = if settings.recipients.is_empty() {
            vec![self.recipient.clone()]
        } else {
            settings.recipients.clone()
        };
        let mut text = format!(
            "recipients = {:?}\nidentity_file = {:?}\npg_bin_dir = {:?}\n",
            recipients,
            settings
                .identity_file
                .as_deref()
                .unwrap_or(&self.identity_path)
                .display()
                .to_string(),
            self.postgres.bin_dir().display().to_string(),
        );
        if let Some(min_regions) = settings.min_regions {
            text.push_str(&format!("min_regions = {min_regions}\n"));
        }
        text.push_str("region_patience_seconds = 2\n");
        text.push_str(&settings.extra);
        text.push_str(&format!(
            "\n[clusters.main]\nhost = \"127.0.0.1\"\nport = {}\nuser = {:?}\npassword = {:?}\n",
            self.postgres.port(),
            self.postgres.superuser(),
            self.postgres.superuser_password().expose_secret()
        ));
        text.push_str(&settings.cluster_extra);
        for (priority, (name, server)) in self.region_names.iter().zip(&self.regions).enumerate() {
            text.push_str(&format!(
                "\n[regions.{name}]\nendpoint = {:?}\nbucket = {BUCKET:?}\naccess_key_id = {ACCESS_KEY_ID:?}\nsecret_access_key = {SECRET_ACCESS_KEY:?}\npriority = {priority}\n",
                server.endpoint()
            ));
            text.push_str(&settings.region_extra);
            if self.locked {
                text.push_str(&format!(
                    "manager_access_key_id = {MANAGER_KEY_ID:?}\nmanager_secret_access_key = {MANAGER_SECRET:?}\nobject_lock = {:?}\n",
                    self.lock_mode
                ));
            }
        }
        let tenants = if settings.tenants.is_empty() {
            vec![("acme".to_owned(), "acme".to_owned())]
        } else {
            settings.tenants.clone()
        };
        for (tenant, database) in tenants {
            text.push_str(&format!(
                "\n[tenants.{tenant}]\ncluster = \"main\"\ndatabase = {database:?}\n"
            ));
        }
        let path = self
            .dir
            .path()
            .join(format!("lifeboat-{}.toml", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub fn config(&self, settings: &Settings) -> Config {
        Config::load(Some(&self.config_file(settings))).expect("valid test config")
    }

    pub fn region(&self, config: &Config, index: usize) -> Region {
        Region::new(&config.regions[index])
    }

    /// Create the catalog database that [`CATALOG`] names (empty: `controller migrate` fills it).
    pub async fn create_catalog(&self) {
        let admin = self.postgres.connect("postgres").await.expect("connect");
        admin
            .batch_execute("CREATE DATABASE lifeboat_catalog")
            .await
            .expect("create catalog");
    }

    /// Create `database` with sample data of about `rows` rows in each of three tables,
    /// one of them in a schema and with a name that need quoting.
    pub async fn create_tenant_database(&self, database: &str, rows: u32) {
        let admin = self.postgres.connect("postgres").await.expect("connect");
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                lifeboat_core::postgres::quote_identifier(database)
            ))
            .await
            .expect("create database");
        let client = self
            .postgres
            .connect(database)
            .await
            .expect("connect tenant");
        client
            .batch_execute(&SAMPLE_SQL.replace("{rows}", &rows.to_string()))
            .await
            .expect("load sample data");
    }

    /// Per table, a hash of all rows in primary-key order: equal hashes, equal data.
    pub async fn table_fingerprints(&self, database: &str) -> BTreeMap<String, (i64, String)> {
        let client = self.postgres.connect(database).await.expect("connect");
        let mut fingerprints = BTreeMap::new();
        for (table, order) in [
            ("public.customers", "id"),
            ("public.events", "id"),
            ("\"Sales Dept\".\"Q3 \"\"final\"\" numbers\"", "id"),
        ] {
            let row = client
                .query_one(
                    &format!(
                        "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY {order}), '')) FROM {table} t"
                    ),
                    &[],
                )
                .await
                .expect("fingerprint table");
            fingerprints.insert(table.to_owned(), (row.get(0), row.get(1)));
        }
        fingerprints
    }

    pub async fn database_exists(&self, database: &str) -> bool {
        let client = self.postgres.connect("postgres").await.expect("connect");
        client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
                &[&database],
            )
            .await
            .expect("query")
            .get(0)
    }

    /// The lifeboat binary with `--config`.
    pub fn lifeboat(&self, config_path: &Path, arguments: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .arg("--config")
            .arg(config_path)
            .args(arguments)
            .env_remove("LIFEBOAT_CONFIG")
            .output()
            .expect("run lifeboat")
    }
}

pub async fn backup(
    config: &Config,
    tenant: &str,
) -> Result<lifeboat_core::backup::BackupReport, lifeboat_core::backup::BackupError> {
    backup_with_progress(config, tenant, Arc::new(Silent)).await
}

pub async fn backup_with_progress(
    config: &Config,
    tenant: &str,
    progress: Arc<dyn Progress>,
) -> Result<lifeboat_core::backup::BackupReport, lifeboat_core::backup::BackupError> {
    backup_through(config, &Regions::from_config(config), tenant, progress).await
}

/// Back up `tenant` through `regions` (which a test may have armed with faults).
pub async fn backup_through(
    config: &Config,
    regions: &Regions,
    tenant: &str,
    progress: Arc<dyn Progress>,
) -> Result<lifeboat_core::backup::BackupReport, lifeboat_core::backup::BackupError> {
    lifeboat_agent::backup_job::backup_tenant(
        config,
        regions,
        config
            .tenant(&TenantName::parse(tenant).expect("tenant"))
            .expect("configured tenant"),
        BackupKind::Manual,
        None,
        progress,
        CancellationToken::new(),
    )
    .await
}

pub async fn restore(
    config: &Config,
    tenant: &str,
    selector: lifeboat_core::restore::BackupSelector,
    into: &str,
) -> Result<lifeboat_agent::restore_job::RestoreReport, lifeboat_agent::restore_job::RestoreJobError>
{
    restore_through(
        config,
        &Regions::from_config(config),
        tenant,
        selector,
        into,
    )
    .await
}

/// Restore through `regions` (which a test may have armed with faults).
pub async fn restore_through(
    config: &Config,
    regions: &Regions,
    tenant: &str,
    selector: lifeboat_core::restore::BackupSelector,
    into: &str,
) -> Result<lifeboat_agent::restore_job::RestoreReport, lifeboat_agent::restore_job::RestoreJobError>
{
    lifeboat_agent::restore_job::restore_into_new_database(
        config,
        regions,
        lifeboat_agent::restore_job::RestoreRequest {
            tenant: config
                .tenant(&TenantName::parse(tenant).expect("tenant"))
                .expect("configured tenant"),
            selector,
            into_database: into,
            catalog_sha256: None,
            tenant_keys: None,
        },
        Arc::new(Silent),
        CancellationToken::new(),
    )
    .await
}

/// A whole stored object.
pub async fn read_object(region: &Region, key: &str) -> bytes::Bytes {
    region
        .get_object(key)
        .await
        .expect("get object")
        .body
        .collect()
        .await
        .expect("read object")
        .into_bytes()
}

/// All keys in a region's bucket.
pub async fn all_keys(region: &Region) -> Vec<String> {
    region.list_keys("").await.expect("list keys")
}

/// Panics, naming `what` and the uploads, if `region` has a multipart upload open under `prefix`.
pub async fn assert_no_open_uploads(region: &Region, prefix: &str, what: &str) {
    let open = region
        .list_multipart_uploads(prefix)
        .await
        .expect("list uploads");
    assert!(open.is_empty(), "{what}: open uploads {open:?}");
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const SAMPLE_SQL: &str = r#"
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    profile jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO customers (name, profile, created_at)
SELECT 'Customer ' || i || ' ' || (ARRAY['Smith', 'García', 'O''Brien', 'Müller'])[1 + i % 4],
       jsonb_build_object('plan', (ARRAY['free', 'pro'])[1 + i % 2], 'seats', i % 40, 'note', md5(i::text)),
       timestamptz '2024-01-01 00:00:00+00' + make_interval(mins => i)
FROM generate_series(1, {rows}) AS i;
CREATE INDEX customers_created_at ON customers (created_at);

CREATE TABLE events (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id),
    payload text NOT NULL
);
INSERT INTO events (customer_id, payload)
SELECT 1 + i % {rows}, md5(i::text) || md5((i * 31)::text) || md5((i * 17)::text)
FROM generate_series(1, {rows} * 2) AS i;

CREATE SCHEMA "Sales Dept";
CREATE TABLE "Sales Dept"."Q3 ""final"" numbers" (id int PRIMARY KEY, amount numeric(10, 2));
INSERT INTO "Sales Dept"."Q3 ""final"" numbers" SELECT i, i * 1.5 FROM generate_series(1, 100) AS i;
"#;

/// A controller's options for an API served by a test: the configured regions, no
/// scheduler, no maintenance, `/metrics` for loopback clients.
pub fn api_options(
    config: &Config,
    policy: lifeboat_controller::queue::QueuePolicy,
) -> lifeboat_controller::server::ControllerOptions {
    lifeboat_controller::server::ControllerOptions {
        policy,
        schedule: false,
        window: lifeboat_controller::schedule::DEFAULT_WINDOW,
        tick_interval: std::time::Duration::from_secs(60),
        regions: Regions::from_config(config),
        maintenance: None,
        metrics_token: None,
        config: Some(Arc::new(config.clone())),
        identities: config.identity_file.as_deref().map(|path| {
            Arc::new(lifeboat_core::keys::Identities::load(path).expect("load the identity file"))
        }),
    }
}
