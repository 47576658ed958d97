//! `tenant provision` and `tenant deprovision` through the command line: each tenant's role
//! and database isolated from every other tenant (with password authentication, as the
//! sandbox's pg_hba asks of every role but the superuser), a restored tenant that still
//! works with its own credentials, and a deprovision that keeps a final backup.

use lifeboat_agent::playbook_job;
use lifeboat_core::api::{ClaimedJob, JobOutcome, JobWork};
use lifeboat_core::ids::{BackupId, ClusterName, TenantName};
use lifeboat_core::region::Regions;
use lifeboat_provisioner::playbook::NoObserver;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, stderr, stdout};

/// Connect as `role` with `password` over TCP (password authentication).
async fn connect_as(
    env: &TestEnv,
    role: &str,
    password: &str,
    database: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(env.postgres.port())
        .user(role)
        .password(password)
        .dbname(database);
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn password_from(output: &std::process::Output) -> String {
    stdout(output)
        .lines()
        .last()
        .expect("a password line")
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_tenants_are_isolated_and_work_with_their_own_credentials_after_a_restore() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_catalog().await;
    let config_path = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    assert!(run(&["controller", "migrate"]).status.success());

    let shop_a_database = "Shop A ü \"main\"";
    let provisioned = run(&[
        "tenant",
        "provision",
        "shop-a",
        "--cluster",
        "main",
        "--database",
        shop_a_database,
    ]);
    assert!(provisioned.status.success(), "{}", stderr(&provisioned));
    let password_a = password_from(&provisioned);
    assert_eq!(password_a.len(), 64, "{}", stdout(&provisioned));
    let password_file = env.dir.path().join("shop-b.password");
    let provisioned_b = run(&[
        "tenant",
        "provision",
        "shop-b",
        "--cluster",
        "main",
        "--password-file",
        password_file.to_str().expect("utf-8"),
    ]);
    assert!(provisioned_b.status.success(), "{}", stderr(&provisioned_b));
    assert!(!stdout(&provisioned_b).contains(&password_a));
    let metadata = std::fs::metadata(&password_file).expect("password file");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777,
        0o600
    );
    let password_b = std::fs::read_to_string(&password_file)
        .expect("read")
        .trim()
        .to_owned();

    // Each tenant reaches its own database, and only that one.
    let tenant_a = connect_as(&env, "shop-a", &password_a, shop_a_database)
        .await
        .expect("shop-a connects to its database");
    tenant_a
        .batch_execute("CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders VALUES (1, 'first')")
        .await
        .expect("shop-a writes");
    let refused = connect_as(&env, "shop-a", &password_a, "shop-b")
        .await
        .expect_err("shop-a reached shop-b's database");
    let message = refused
        .as_db_error()
        .map(|error| error.message().to_owned())
        .unwrap_or_default();
    assert!(
        message.contains("permission denied for database"),
        "{refused:?}"
    );
    assert!(
        connect_as(&env, "shop-b", &password_b, shop_a_database)
            .await
            .is_err()
    );
    assert!(
        connect_as(&env, "shop-a", "wrong", shop_a_database)
            .await
            .is_err()
    );
    // A role with no grants (what PUBLIC has) reaches neither.
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE ROLE outsider LOGIN PASSWORD 'outsider-pw'")
        .await
        .expect("outsider");
    assert!(
        connect_as(&env, "outsider", "outsider-pw", shop_a_database)
            .await
            .is_err()
    );
    assert!(
        connect_as(&env, "outsider", "outsider-pw", "shop-b")
            .await
            .is_err()
    );
    let stored: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = 'shop-a'",
            &[],
        )
        .await
        .expect("pg_authid")
        .get(0);
    assert!(stored.starts_with("SCRAM-SHA-256$"), "stored as SCRAM only");

    // The same name again is refused and changes nothing.
    let again = run(&["tenant", "provision", "shop-a", "--cluster", "main"]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("shop-a"), "{}", stderr(&again));
    tenant_a
        .simple_query("SELECT 1")
        .await
        .expect("shop-a's database untouched");

    // Back up, change, restore onto live: the tenant still works with its own credentials.
    let backed_up = run(&["backup", "--tenant", "shop-a", "--json"]);
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    let report: serde_json::Value = serde_json::from_slice(&backed_up.stdout).expect("json");
    let backup_id = BackupId::parse(
        report["manifest"]["backup_id"]
            .as_str()
            .or_else(|| report["backup_id"].as_str())
            .expect("backup id"),
    )
    .expect("backup id");
    tenant_a
        .batch_execute("DELETE FROM orders")
        .await
        .expect("change");
    drop(tenant_a);
    let config = lifeboat_core::config::Config::load(Some(&config_path)).expect("config");
    let regions = Regions::from_config(&config);
    let job = ClaimedJob {
        id: 4,
        lease_token: uuid::Uuid::new_v4(),
        lease_seconds: 60,
        attempt: 1,
        work: JobWork::RestoreLive {
            tenant: TenantName::parse("shop-a").expect("tenant"),
            cluster: ClusterName::parse("main").expect("cluster"),
            database: shop_a_database.to_owned(),
            backup_id,
            sha256: None,
            previous_database: "lifeboat_prev_shop_a".to_owned(),
        },
        backup_id: None,
        earlier_backup_ids: Vec::new(),
        tenant_keys: None,
    };
    let outcome = playbook_job::run_playbook_job(
        &config,
        &regions,
        &job,
        &NoObserver,
        &CancellationToken::new(),
    )
    .await;
    assert!(
        matches!(outcome, JobOutcome::Succeeded { .. }),
        "{outcome:?}"
    );
    let restored = connect_as(&env, "shop-a", &password_a, shop_a_database)
        .await
        .expect("shop-a connects to its restored database");
    let note: String = restored
        .query_one("SELECT note FROM orders WHERE id = 1", &[])
        .await
        .expect("the restored row")
        .get(0);
    assert_eq!(note, "first");
    restored
        .batch_execute("INSERT INTO orders VALUES (2, 'after the restore')")
        .await
        .expect("shop-a writes to its restored tables");
    assert!(
        connect_as(&env, "shop-b", &password_b, shop_a_database)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovision_keeps_a_final_backup_and_refuses_a_tenant_under_legal_hold() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_catalog().await;
    let config_path = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    assert!(run(&["controller", "migrate"]).status.success());
    for tenant in ["gone", "held"] {
        let provisioned = run(&["tenant", "provision", tenant, "--cluster", "main"]);
        assert!(provisioned.status.success(), "{}", stderr(&provisioned));
    }

    assert!(run(&["tenant", "hold", "held"]).status.success());
    let refused = run(&["tenant", "deprovision", "held", "--yes"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("legal hold"),
        "{}",
        stderr(&refused)
    );
    assert!(
        env.database_exists("held").await,
        "a held tenant's database was dropped"
    );

    let unconfirmed = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(&config_path)
        .args(["tenant", "deprovision", "gone"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(
        !unconfirmed.status.success(),
        "deprovisioned without the typed name"
    );
    assert!(env.database_exists("gone").await);

    let deprovisioned = run(&["tenant", "deprovision", "gone", "--yes"]);
    assert!(deprovisioned.status.success(), "{}", stderr(&deprovisioned));
    assert!(!env.database_exists("gone").await);
    let admin = env.postgres.connect("postgres").await.expect("connect");
    let role_left: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'gone')",
            &[],
        )
        .await
        .expect("roles")
        .get(0);
    assert!(!role_left, "the tenant's role was left");
    // The final backup is in the regions, of kind pre-destroy.
    let listed = run(&["backups", "list", "--tenant", "gone", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let text = stdout(&listed);
    assert!(text.contains("pre-destroy"), "{text}");
    let shown = run(&["tenant", "show", "gone"]);
    assert!(
        !shown.status.success(),
        "the tenant is still in the catalog"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deprovision_that_fails_after_its_final_backup_still_records_it() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_catalog().await;
    let config_path = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    assert!(run(&["controller", "migrate"]).status.success());
    let provisioned = run(&["tenant", "provision", "stuck", "--cluster", "main"]);
    assert!(provisioned.status.success(), "{}", stderr(&provisioned));
    // The role owns something in another database, so DROP ROLE fails after the drop.
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute(
            "CREATE TABLE held_by_stuck (id int); ALTER TABLE held_by_stuck OWNER TO stuck",
        )
        .await
        .expect("an object of the role elsewhere");

    let failed = run(&["tenant", "deprovision", "stuck", "--yes"]);
    assert!(!failed.status.success());
    let message = stderr(&failed);
    assert!(
        message.contains("drop_role") && message.contains("is recorded"),
        "{message}"
    );
    let catalog = env
        .postgres
        .connect("lifeboat_catalog")
        .await
        .expect("catalog");
    let kinds: Vec<String> = catalog
        .query("SELECT kind FROM backups WHERE tenant = 'stuck'", &[])
        .await
        .expect("backups")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(kinds, ["pre-destroy"], "the final backup is in the catalog");
    // Nothing was removed from the catalog: the operator fixes the role and retries.
    assert!(run(&["tenant", "show", "stuck"]).status.success());
}
