//! Customers' downloads (issue 10, item 3): a link issued by `downloads::issue_download_link`
//! and redeemed over HTTP (`GET /api/v1/downloads/{token}`) against a real catalog,
//! PostgreSQL and SeaweedFS regions. The files are checked with the tools a customer would
//! use: `pg_restore`, `gunzip | psql`, `age -d`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use lifeboat_controller::accounts::{Accounts, PasswordHashing};
use lifeboat_controller::audit::{Actor, ActorRole};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::downloads::{self, DownloadLinkError};
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::server::{self, Controller, ControllerOptions};
use lifeboat_core::config::Config;
use lifeboat_core::download::DownloadFormat;
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::manifest::ObjectKey;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, api_options, read_object, stderr};

fn settings() -> Settings {
    Settings {
        min_regions: Some(2),
        tenants: vec![
            ("acme".to_owned(), "acme".to_owned()),
            ("globex".to_owned(), "globex".to_owned()),
        ],
        extra: CATALOG.to_owned(),
        ..Settings::default()
    }
}

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).expect("tenant")
}

/// The tenant's owner, as the panel will authenticate them.
fn owner() -> Actor {
    Actor {
        name: "alice".to_owned(),
        role: ActorRole::Owner,
        address: Some("192.0.2.10".parse().expect("address")),
    }
}

/// A catalog with tenants acme (and globex) backed up into two SeaweedFS regions, and the
/// API served in this process.
struct Shop {
    env: TestEnv,
    config: Config,
    catalog: Catalog,
    base: String,
    http: reqwest::Client,
    cancel: CancellationToken,
    acme_backup: BackupId,
}

impl Drop for Shop {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Shop {
    /// `acme_rows` rows of sample data in acme (about 330 bytes of dump per row).
    async fn open(acme_rows: u32, with_identity: bool) -> Shop {
        let env = TestEnv::start(Backend::Seaweed, 2).await;
        env.create_catalog().await;
        let config_path = env.config_file(&settings());
        let migrated = env.lifeboat(&config_path, &["controller", "migrate"]);
        assert!(migrated.status.success(), "{}", stderr(&migrated));
        let config = env.config(&settings());
        let catalog = Catalog::open(&config).await.expect("open catalog");
        catalog
            .connection()
            .await
            .expect("connection")
            .batch_execute(
                "INSERT INTO tenants (name, cluster, database_name) VALUES ('acme', 'main', 'acme'), ('globex', 'main', 'globex')",
            )
            .await
            .expect("add tenants");
        for (name, rows) in [("acme", acme_rows), ("globex", 20)] {
            env.create_tenant_database(name, rows).await;
            let backed_up = env.lifeboat(&config_path, &["backup", "--tenant", name]);
            assert!(backed_up.status.success(), "{}", stderr(&backed_up));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let cancel = CancellationToken::new();
        let options = api_options(&config, QueuePolicy::default());
        tokio::spawn(server::serve(
            catalog.clone(),
            listener,
            ControllerOptions {
                identities: options.identities.clone().filter(|_| with_identity),
                ..options
            },
            None,
            Controller {
                work_ready: Arc::default(),
            },
            cancel.clone(),
        ));
        let mut shop = Shop {
            env,
            config,
            catalog,
            base,
            http: reqwest::Client::new(),
            cancel,
            acme_backup: BackupId::new(),
        };
        shop.acme_backup = shop.newest_backup("acme").await;
        shop
    }

    async fn newest_backup(&self, tenant: &str) -> BackupId {
        let client = self.catalog.connection().await.expect("connection");
        let id: uuid::Uuid = client
            .query_one(
                "SELECT id FROM backups WHERE tenant = $1 ORDER BY started_at DESC LIMIT 1",
                &[&tenant],
            )
            .await
            .expect("a backup")
            .get(0);
        BackupId::from_uuid(id).expect("UUIDv7")
    }

    async fn execute(&self, sql: &str) {
        let client = self.catalog.connection().await.expect("connection");
        client.batch_execute(sql).await.expect(sql);
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let client = self.catalog.connection().await.expect("connection");
        client.query_one(sql, &[]).await.expect(sql).get(0)
    }

    /// A link to acme's backup as its owner; the token.
    async fn issue(&self, format: DownloadFormat, recipient: Option<&str>) -> String {
        let link = downloads::issue_download_link(
            &self.catalog,
            &owner(),
            &tenant("acme"),
            self.acme_backup,
            format,
            recipient,
        )
        .await
        .expect("issue a link");
        assert!(link.token.expose_secret().starts_with("lbd_"));
        link.token.expose_secret().to_owned()
    }

    async fn get(&self, token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/api/v1/downloads/{token}", self.base))
            .send()
            .await
            .expect("request")
    }

    /// The whole body of a successful download.
    async fn download(&self, token: &str) -> (reqwest::header::HeaderMap, Bytes) {
        let response = self.get(token).await;
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let headers = response.headers().clone();
        let body = response.bytes().await.expect("a complete body");
        (headers, body)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.env.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write the download");
        path
    }

    async fn create_database(&self, name: &str) {
        let admin = self
            .env
            .postgres
            .connect("postgres")
            .await
            .expect("connect");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
    }

    /// A PostgreSQL client tool of the sandbox's install, connected as its superuser.
    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.env.postgres.bin_dir().join(name));
        command.envs(self.env.postgres.libpq_environment());
        command
    }

    /// Restore a custom-format file into a new, empty database as a customer would.
    async fn pg_restore(&self, file: &Path, database: &str) {
        self.create_database(database).await;
        let output = self
            .tool("pg_restore")
            .arg("--exit-on-error")
            .arg("--no-owner")
            .arg(format!("--dbname={database}"))
            .arg(file)
            .output()
            .expect("run pg_restore");
        assert!(
            output.status.success(),
            "pg_restore: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    async fn assert_same_data(&self, database: &str) {
        assert_eq!(
            self.env.table_fingerprints(database).await,
            self.env.table_fingerprints("acme").await,
            "{database} differs from acme"
        );
    }
}

/// Every byte of a body until it ends (`Ok`) or breaks (`Err`, with what came before).
async fn read_body(response: reqwest::Response) -> Result<Vec<u8>, Vec<u8>> {
    let mut response = response;
    let mut received = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => return Ok(received),
            Err(_) => return Err(received),
        }
    }
}

/// Everything logged in this process, at every level, from here on.
fn capture_logs() -> Arc<Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log buffer").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let logs = Arc::new(Mutex::new(Vec::new()));
    let writer = Capture(logs.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber)
        .expect("the only subscriber (nextest runs a process per test)");
    logs
}

fn captured(logs: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&logs.lock().expect("log buffer")).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_format_download_restores_with_pg_restore_and_its_link_works_once() {
    let logs = capture_logs();
    let shop = Shop::open(50, true).await;
    let token = shop.issue(DownloadFormat::Custom, None).await;

    let (headers, body) = shop.download(&token).await;
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    let disposition = headers["content-disposition"].to_str().expect("ascii");
    assert!(
        disposition.starts_with("attachment; filename=\"acme-") && disposition.ends_with(".dump\""),
        "{disposition}"
    );
    assert_eq!(
        headers["content-length"].to_str().expect("ascii"),
        body.len().to_string()
    );
    assert!(body.starts_with(b"PGDMP"), "a pg_dump custom-format file");
    let file = shop.file("acme.dump", &body);
    shop.pg_restore(&file, "acme_from_download").await;
    shop.assert_same_data("acme_from_download").await;

    // Used, unknown and expired links are refused alike.
    let used = shop.get(&token).await;
    assert_eq!(used.status(), 404);
    let used_body = used.text().await.expect("body");
    let unknown = shop.get(&format!("lbd_{}", "0".repeat(64))).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.text().await.expect("body"), used_body);
    let not_a_token = shop.get("whatever").await;
    assert_eq!(not_a_token.status(), 404);
    assert_eq!(not_a_token.text().await.expect("body"), used_body);
    let expiring = shop.issue(DownloadFormat::Custom, None).await;
    shop.execute(
        "UPDATE download_links SET created_at = now() - interval '10 minutes', expires_at = now() - interval '1 second' WHERE used_at IS NULL",
    )
    .await;
    let expired = shop.get(&expiring).await;
    assert_eq!(expired.status(), 404);
    assert_eq!(expired.text().await.expect("body"), used_body);
    assert!(
        used_body.contains("unknown, already used or expired"),
        "{used_body}"
    );

    // Audited: the link, and the download by the link's issuer from the address used.
    assert_eq!(
        shop.scalar("SELECT count(*) FROM audit_log WHERE action = 'download.link' AND actor = 'alice' AND tenant = 'acme'")
            .await,
        2
    );
    assert_eq!(
        shop.scalar("SELECT count(*) FROM audit_log WHERE action = 'download' AND actor = 'alice' AND actor_role = 'owner' AND address = '127.0.0.1'")
            .await,
        1
    );
    // Only hashes are stored.
    assert_eq!(
        shop.scalar(&format!(
            "SELECT count(*) FROM download_links WHERE token_sha256 = sha256(convert_to('{token}', 'UTF8'))"
        ))
        .await,
        1
    );

    // No token in any log line of the whole exchange, at any level.
    let logged = captured(&logs);
    assert!(logged.contains("download started"), "logs were captured");
    for secret in [&token, &expiring] {
        assert!(
            !logged.contains(secret.as_str()),
            "a download token was logged"
        );
        assert!(
            !logged.contains(&secret[4..]),
            "a download token was logged"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_sql_download_is_gzip_that_loads_with_psql() {
    let shop = Shop::open(50, true).await;
    let token = shop.issue(DownloadFormat::PlainSqlGzip, None).await;
    let (headers, body) = shop.download(&token).await;
    let disposition = headers["content-disposition"].to_str().expect("ascii");
    assert!(disposition.ends_with(".sql.gz\""), "{disposition}");
    assert_eq!(headers["content-type"], "application/gzip");
    let file = shop.file("acme.sql.gz", &body);

    shop.create_database("acme_from_sql").await;
    let mut gunzip = Command::new("gunzip")
        .arg("--stdout")
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .expect("gunzip");
    let sql = gunzip.stdout.take().expect("gunzip's stdout");
    let psql = shop
        .tool("psql")
        .args([
            "--no-psqlrc",
            "--quiet",
            "--set=ON_ERROR_STOP=1",
            "--dbname=acme_from_sql",
        ])
        .stdin(sql)
        .output()
        .expect("psql");
    assert!(
        gunzip.wait().expect("gunzip").success(),
        "a complete gzip file"
    );
    assert!(
        psql.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&psql.stderr)
    );
    shop.assert_same_data("acme_from_sql").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_encrypted_download_opens_only_with_the_customers_identity() {
    let shop = Shop::open(50, true).await;
    let customer_identity = shop.env.dir.path().join("customer-identity.txt");
    let customer = lifeboat_core::keys::generate_identity_file(&customer_identity)
        .expect("the customer's key");
    let token = shop
        .issue(DownloadFormat::Custom, Some(&customer.to_string()))
        .await;
    let (headers, body) = shop.download(&token).await;
    let disposition = headers["content-disposition"].to_str().expect("ascii");
    assert!(disposition.ends_with(".dump.age\""), "{disposition}");
    assert!(body.starts_with(b"age-encryption.org/v1\n"), "binary age");
    assert!(
        !body.windows(5).any(|window| window == b"PGDMP"),
        "nothing in the clear"
    );
    let encrypted = shop.file("acme.dump.age", &body);

    // The organisation's own identity, which encrypted the backup, cannot open it.
    let with_org_key = Command::new("age")
        .arg("--decrypt")
        .arg("--identity")
        .arg(&shop.env.identity_path)
        .arg(&encrypted)
        .output()
        .expect("age");
    assert!(
        !with_org_key.status.success(),
        "only the customer can read it"
    );

    let decrypted = shop.env.dir.path().join("acme.dump");
    let with_customer_key = Command::new("age")
        .arg("--decrypt")
        .arg("--identity")
        .arg(&customer_identity)
        .arg("--output")
        .arg(&decrypted)
        .arg(&encrypted)
        .output()
        .expect("age");
    assert!(
        with_customer_key.status.success(),
        "{}",
        String::from_utf8_lossy(&with_customer_key.stderr)
    );
    shop.pg_restore(&decrypted, "acme_from_age").await;
    shop.assert_same_data("acme_from_age").await;

    // Plain SQL re-encrypted: age around gzip.
    let token = shop
        .issue(DownloadFormat::PlainSqlGzip, Some(&customer.to_string()))
        .await;
    let (headers, body) = shop.download(&token).await;
    assert!(
        headers["content-disposition"]
            .to_str()
            .expect("ascii")
            .ends_with(".sql.gz.age\"")
    );
    let encrypted = shop.file("acme.sql.gz.age", &body);
    let opened = Command::new("sh")
        .arg("-c")
        .arg("age --decrypt --identity \"$1\" \"$2\" | gunzip | grep -c 'COPY public.customers'")
        .arg("sh")
        .arg(&customer_identity)
        .arg(&encrypted)
        .output()
        .expect("sh");
    assert_eq!(String::from_utf8_lossy(&opened.stdout).trim(), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_are_refused_for_another_tenants_backup_a_trashed_one_and_an_invalid_recipient() {
    let shop = Shop::open(20, true).await;
    let globex_backup = shop.newest_backup("globex").await;
    let issue = |tenant_name: &'static str, backup: BackupId, recipient: Option<&'static str>| {
        let catalog = shop.catalog.clone();
        async move {
            downloads::issue_download_link(
                &catalog,
                &owner(),
                &tenant(tenant_name),
                backup,
                DownloadFormat::Custom,
                recipient,
            )
            .await
        }
    };

    // Another tenant's backup reads exactly like one that does not exist.
    let other = issue("acme", globex_backup, None)
        .await
        .expect_err("globex's backup");
    let missing = issue("acme", BackupId::new(), None)
        .await
        .expect_err("no such backup");
    assert!(
        matches!(other, DownloadLinkError::NoSuchBackup { .. }),
        "{other}"
    );
    assert_eq!(
        other.to_string().replace(&globex_backup.to_string(), "ID"),
        missing.to_string().replace(
            &match &missing {
                DownloadLinkError::NoSuchBackup { backup, .. } => backup.to_string(),
                _ => panic!("{missing}"),
            },
            "ID"
        )
    );

    let invalid = issue("acme", shop.acme_backup, Some("age1notakey"))
        .await
        .expect_err("invalid recipient");
    assert!(matches!(invalid, DownloadLinkError::InvalidRecipient(_)));
    assert!(
        invalid.to_string().contains("recipient") && invalid.to_string().contains("age1…"),
        "{invalid}"
    );
    let secret = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
    let identity_given = issue("acme", shop.acme_backup, Some(secret))
        .await
        .expect_err("an identity is not a recipient");
    assert!(
        !identity_given.to_string().contains(secret),
        "{identity_given}"
    );
    assert!(
        identity_given.to_string().contains("identity"),
        "{identity_given}"
    );
    let api_error = lifeboat_controller::api::ApiError::from(invalid);
    assert_eq!(api_error.status(), 422);

    shop.execute(&format!(
        "UPDATE backups SET trashed_at = now(), purge_after = now() + interval '1 day' WHERE id = '{}'",
        globex_backup
    ))
    .await;
    let trashed = issue("globex", globex_backup, None)
        .await
        .expect_err("trashed");
    assert!(
        matches!(trashed, DownloadLinkError::Trashed(_)),
        "{trashed}"
    );
    assert_eq!(shop.scalar("SELECT count(*) FROM download_links").await, 0);

    // A link issued before the backup went to the trash is refused, unspent.
    let token = shop.issue(DownloadFormat::Custom, None).await;
    shop.execute(&format!(
        "UPDATE backups SET trashed_at = now(), purge_after = now() + interval '1 day' WHERE id = '{}'",
        shop.acme_backup
    ))
    .await;
    assert_eq!(shop.get(&token).await.status(), 410);
    assert_eq!(
        shop.scalar("SELECT count(*) FROM download_links WHERE used_at IS NULL")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_tenants_link_is_refused_until_it_is_unfrozen() {
    let shop = Shop::open(20, true).await;
    let token = shop.issue(DownloadFormat::Custom, None).await;
    let accounts = Accounts::with_password_hashing(
        shop.catalog.clone(),
        shop.config.panel,
        PasswordHashing::FOR_TESTS_ONLY,
    )
    .expect("accounts");
    let staff = Actor {
        name: "root".to_owned(),
        role: ActorRole::Admin,
        address: None,
    };
    accounts
        .freeze_tenant(&tenant("acme"), &staff, "unpaid invoice")
        .await
        .expect("freeze");
    let refused = shop.get(&token).await;
    assert_eq!(refused.status(), 403);
    assert!(refused.text().await.expect("body").contains("frozen"));
    let issued = downloads::issue_download_link(
        &shop.catalog,
        &owner(),
        &tenant("acme"),
        shop.acme_backup,
        DownloadFormat::Custom,
        None,
    )
    .await
    .expect_err("no new link while frozen");
    assert!(
        matches!(issued, DownloadLinkError::TenantFrozen(_)),
        "{issued}"
    );
    assert_eq!(
        shop.scalar("SELECT count(*) FROM audit_log WHERE action = 'download'")
            .await,
        0
    );

    accounts
        .unfreeze_tenant(&tenant("acme"), &staff, "paid")
        .await
        .expect("unfreeze");
    let (_, body) = shop.download(&token).await;
    assert!(body.starts_with(b"PGDMP"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_copy_in_the_first_region_is_replaced_by_the_next_before_the_first_byte() {
    let shop = Shop::open(50, true).await;
    let key = ObjectKey::Dump(&tenant("acme"), shop.acme_backup).to_key();
    let first = shop.env.region(&shop.config, 0);
    let mut object = read_object(&first, &key).await.to_vec();
    let middle = object.len() / 2;
    object[middle] ^= 0x40;
    first
        .put_object(&key, Bytes::from(object))
        .await
        .expect("corrupt the first region's copy");

    for format in [DownloadFormat::Custom, DownloadFormat::PlainSqlGzip] {
        let token = shop.issue(format, None).await;
        let (_, body) = shop.download(&token).await;
        if format == DownloadFormat::Custom {
            let file = shop.file("acme.dump", &body);
            shop.pg_restore(&file, "acme_from_second_region").await;
            shop.assert_same_data("acme_from_second_region").await;
        } else {
            let file = shop.file("acme.sql.gz", &body);
            let tested = Command::new("gzip")
                .arg("--test")
                .arg(&file)
                .output()
                .expect("gzip");
            assert!(tested.status.success(), "a complete gzip file");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_failing_its_check_everywhere_ends_the_transfer_with_an_error() {
    // About 2 MB of dump: several chunks, so bytes go out before the end is checked.
    let shop = Shop::open(6000, true).await;
    let dump_bytes = shop
        .scalar(&format!(
            "SELECT dump_bytes FROM backups WHERE id = '{}'",
            shop.acme_backup
        ))
        .await;
    assert!(dump_bytes > 1024 * 1024, "{dump_bytes} bytes");

    // A catalog hash that no copy matches: every byte decrypts, and only the final check
    // fails, after most of the file went out. The last chunk is never sent.
    let recorded: String = shop
        .catalog
        .connection()
        .await
        .expect("connection")
        .query_one(
            "SELECT sha256 FROM backups WHERE id = $1",
            &[&shop.acme_backup.as_uuid()],
        )
        .await
        .expect("hash")
        .get(0);
    shop.execute(&format!(
        "UPDATE backups SET sha256 = '{}' WHERE id = '{}'",
        "0".repeat(64),
        shop.acme_backup
    ))
    .await;
    for format in [DownloadFormat::Custom, DownloadFormat::PlainSqlGzip] {
        let token = shop.issue(format, None).await;
        let response = shop.get(&token).await;
        assert_eq!(response.status(), 200, "{format}: the first bytes went out");
        let received = read_body(response)
            .await
            .expect_err("the transfer breaks instead of ending");
        assert!(!received.is_empty(), "{format}: bytes before the break");
        if format == DownloadFormat::Custom {
            assert!(
                (received.len() as i64) < dump_bytes,
                "{format}: never the whole file"
            );
        } else {
            let file = shop.file("broken.sql.gz", &received);
            let tested = Command::new("gzip")
                .arg("--test")
                .arg(&file)
                .output()
                .expect("gzip");
            assert!(!tested.status.success(), "a truncated gzip file");
        }
    }

    // A flipped byte near the end of every copy: age refuses that chunk, mid-transfer.
    shop.execute(&format!(
        "UPDATE backups SET sha256 = '{recorded}' WHERE id = '{}'",
        shop.acme_backup
    ))
    .await;
    let key = ObjectKey::Dump(&tenant("acme"), shop.acme_backup).to_key();
    for index in 0..2 {
        let region = shop.env.region(&shop.config, index);
        let mut object = read_object(&region, &key).await.to_vec();
        let near_the_end = object.len() - 100;
        object[near_the_end] ^= 0x01;
        region
            .put_object(&key, Bytes::from(object))
            .await
            .expect("corrupt a copy");
    }
    let token = shop.issue(DownloadFormat::Custom, None).await;
    let response = shop.get(&token).await;
    assert_eq!(response.status(), 200);
    let received = read_body(response).await.expect_err("the transfer breaks");
    assert!((received.len() as i64) < dump_bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_identity_downloads_are_refused_and_the_link_is_not_spent() {
    let shop = Shop::open(20, false).await;
    let token = shop.issue(DownloadFormat::Custom, None).await;
    let refused = shop.get(&token).await;
    assert_eq!(refused.status(), 503);
    assert!(
        refused
            .text()
            .await
            .expect("body")
            .contains("identity_file"),
        "says why"
    );
    assert_eq!(
        shop.scalar("SELECT count(*) FROM download_links WHERE used_at IS NULL")
            .await,
        1
    );
}

/// The pids of this process's `pg_restore` children.
fn pg_restore_children() -> Vec<i32> {
    let me = std::process::id().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let parent = rest.split(' ').nth(1);
        if head.ends_with("(pg_restore") && parent == Some(me.as_str()) {
            pids.extend(
                head.split(' ')
                    .next()
                    .and_then(|pid| pid.parse::<i32>().ok()),
            );
        }
    }
    pids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_stops_the_download_and_pg_restore() {
    // About 20 MB of dump: far more than the chunks in flight.
    let shop = Shop::open(60_000, true).await;
    let token = shop.issue(DownloadFormat::PlainSqlGzip, None).await;
    let mut response = shop.get(&token).await;
    assert_eq!(response.status(), 200);
    let first = response
        .chunk()
        .await
        .expect("a chunk")
        .expect("not the end");
    assert!(!first.is_empty());
    assert_eq!(
        pg_restore_children().len(),
        1,
        "pg_restore converts the dump"
    );
    drop(response);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !pg_restore_children().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "pg_restore still runs after its client went away"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
