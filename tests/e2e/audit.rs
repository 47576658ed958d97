//! The audit log's hash chain: entries from real operations verify; a changed, deleted,
//! reordered, newest-deleted or truncated entry is found by `verify` (tampering as the
//! catalog's superuser, with the append-only triggers bypassed); concurrent appends keep one
//! chain; the key decides who can vouch; the command line names its PostgreSQL role, not
//! `$USER`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use lifeboat_controller::audit::{
    self, Actor, AuditKey, ChainBreak, Page, entries_for_tenant, use_key_for_writing,
};
use lifeboat_controller::catalog::Catalog;
use lifeboat_core::ids::TenantName;
use serde_json::json;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, stderr, stdout};

const KEY_SECRET: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

fn write_key_file(env: &TestEnv) -> PathBuf {
    let path = env.dir.path().join("audit.key");
    std::fs::write(&path, format!("{KEY_SECRET}\n")).expect("write key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// The test cluster, reached as its superuser.
fn superuser_cluster(env: &TestEnv) -> lifeboat_core::config::ClusterConfig {
    lifeboat_core::config::ClusterConfig {
        name: lifeboat_core::ids::ClusterName::parse("main").expect("name"),
        host: "127.0.0.1".to_owned(),
        port: env.postgres.port(),
        user: env.postgres.superuser().to_owned(),
        password: Some(env.postgres.superuser_password().clone()),
        maintenance_database: "postgres".to_owned(),
        tls: lifeboat_core::config::ClusterTls::default(),
    }
}

/// A migrated catalog in its own database, with this process writing keyed entries.
async fn keyed_catalog(env: &TestEnv, database: &str) -> Catalog {
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {database}"))
        .await
        .expect("create database");
    let cluster = superuser_cluster(env);
    let catalog = Catalog::connect(&cluster, database).await.expect("catalog");
    catalog.migrate().await.expect("migrate");
    use_key_for_writing(Some(AuditKey::from_secret(KEY_SECRET.as_bytes())));
    catalog
}

/// Append `count` entries, each in its own transaction, about tenants acme and globex.
async fn append(catalog: &Catalog, count: usize) {
    for index in 0..count {
        let mut connection = catalog.connection().await.expect("connection");
        let transaction = connection.transaction().await.expect("begin");
        let tenant = if index % 2 == 0 { "acme" } else { "globex" };
        let actor = Actor {
            address: Some("192.0.2.7".parse().expect("address")),
            ..Actor::system("test")
        };
        audit::record(
            &*transaction,
            &actor,
            "test.step",
            Some(tenant),
            Some("because the test says so"),
            json!({ "index": index, "note": "ünïcödé \"quoted\"", "ratio": 0.1 }),
        )
        .await
        .expect("record");
        transaction.commit().await.expect("commit");
    }
}

/// Run `sql` as the superuser with every trigger off, as someone holding the catalog's
/// credentials would.
async fn tamper(env: &TestEnv, database: &str, sql: &str) {
    let client = env.postgres.connect(database).await.expect("connect");
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica; {sql}; RESET session_replication_role"
        ))
        .await
        .expect("tamper");
}

async fn verify_with_key(catalog: &Catalog) -> audit::VerifyReport {
    let key = AuditKey::from_secret(KEY_SECRET.as_bytes());
    audit::verify(catalog, Some(&key)).await.expect("verify")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_verify_finds_changed_deleted_reordered_and_removed_entries() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let cases: [(&str, &str, ChainBreak); 6] = [
        (
            "changed",
            "UPDATE audit_log SET action = 'nothing.happened' WHERE id = 3",
            ChainBreak::Changed { id: 3 },
        ),
        (
            "deleted",
            "DELETE FROM audit_log WHERE id = 3",
            ChainBreak::Missing {
                expected: 3,
                found: 4,
            },
        ),
        (
            // Entries 2 and 3 trade places: everything but the id moves.
            "reordered",
            "UPDATE audit_log AS a SET at = b.at, actor = b.actor, actor_role = b.actor_role,
                 tenant = b.tenant, action = b.action, reason = b.reason, address = b.address,
                 details = b.details, key_id = b.key_id, prev_hash = b.prev_hash,
                 entry_hash = b.entry_hash
             FROM audit_log AS b WHERE (a.id, b.id) IN ((2, 3), (3, 2))",
            ChainBreak::Changed { id: 2 },
        ),
        (
            "newest-deleted",
            "DELETE FROM audit_log WHERE id = 5",
            ChainBreak::NewestRemoved {
                last_present: 4,
                head_last_id: 5,
            },
        ),
        (
            "truncated",
            "TRUNCATE audit_log",
            ChainBreak::Emptied { head_entries: 5 },
        ),
        (
            "head-deleted",
            "TRUNCATE audit_log; DELETE FROM audit_chain_head",
            ChainBreak::HeadMissing,
        ),
    ];
    for (name, sql, expected) in cases {
        let database = format!("audit_{}", name.replace('-', "_"));
        let catalog = keyed_catalog(&env, &database).await;
        append(&catalog, 5).await;
        let before = verify_with_key(&catalog).await;
        assert!(before.is_intact(), "{name}: {before:?}");
        assert_eq!(before.chained_entries, 5, "{name}");
        assert_eq!(before.unkeyed_entries, 0, "{name}");
        assert_eq!(before.head_id, Some(5), "{name}");
        tamper(&env, &database, sql).await;
        let after = verify_with_key(&catalog).await;
        assert_eq!(after.problem.as_ref(), Some(&expected), "{name}: {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_entries_rehashed_without_the_key_are_found_and_the_log_refuses_rewrites() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let catalog = keyed_catalog(&env, "audit_rehash").await;
    append(&catalog, 4).await;

    // The triggers hold without superuser tricks: no UPDATE, DELETE or TRUNCATE, of the log
    // or its head.
    let client = env.postgres.connect("audit_rehash").await.expect("connect");
    for sql in [
        "UPDATE audit_log SET action = 'x' WHERE id = 1",
        "DELETE FROM audit_log WHERE id = 4",
        "TRUNCATE audit_log",
        "UPDATE audit_chain_head SET entries = 0, last_id = 0, last_hash = NULL",
        "DELETE FROM audit_chain_head",
        "TRUNCATE audit_chain_head",
        "INSERT INTO audit_chain_head (singleton, legacy_last_id, last_id, entries) VALUES (true, 0, 0, 0)",
    ] {
        let refused = client.batch_execute(sql).await;
        assert!(refused.is_err(), "{sql} must be refused");
    }

    // An attacker rewrites entry 2 and recomputes its hash with a key of their own: the
    // rewritten entry does not match under the real key.
    let forger = AuditKey::from_secret(b"the attacker's own key, not ours!!");
    let report = verify_with_key(&catalog).await;
    assert!(report.is_intact(), "{report:?}");
    let rows = client
        .query(
            "SELECT id, at, actor, actor_role, tenant, action, reason, address, details::text,
                    key_id, prev_hash FROM audit_log WHERE id = 2",
            &[],
        )
        .await
        .expect("read");
    let row = &rows[0];
    let key_id: Option<String> = row.get(9);
    let prev_hash: Vec<u8> = row.get(10);
    let details: String = row.get(8);
    let role: String = row.get(3);
    let forged = audit::chain::EntryFields {
        id: 2,
        at: row.get(1),
        actor: row.get(2),
        role: &role,
        tenant: row.get(4),
        action: "nothing.happened",
        reason: row.get(6),
        address: row.get(7),
        details: &details,
        key_id: key_id.as_deref(),
        prev_hash: &prev_hash,
    }
    .hash(Some(&forger));
    tamper(
        &env,
        "audit_rehash",
        &format!(
            "UPDATE audit_log SET action = 'nothing.happened', entry_hash = '\\x{}' WHERE id = 2",
            hex::encode(forged)
        ),
    )
    .await;
    let report = verify_with_key(&catalog).await;
    assert_eq!(report.problem, Some(ChainBreak::Changed { id: 2 }));

    // Hashing it as an unkeyed entry would be, but keeping the key's id: still no match,
    // because the real hash needs the secret.
    let public = audit::chain::EntryFields {
        id: 2,
        at: row.get(1),
        actor: row.get(2),
        role: &role,
        tenant: row.get(4),
        action: "nothing.happened",
        reason: row.get(6),
        address: row.get(7),
        details: &details,
        key_id: key_id.as_deref(),
        prev_hash: &prev_hash,
    }
    .hash(None);
    tamper(
        &env,
        "audit_rehash",
        &format!(
            "UPDATE audit_log SET entry_hash = '\\x{}' WHERE id = 2",
            hex::encode(public)
        ),
    )
    .await;
    let report = verify_with_key(&catalog).await;
    assert_eq!(report.problem, Some(ChainBreak::Changed { id: 2 }));

    // Marking it unkeyed and hashing it with the public key is a downgrade.
    let unkeyed = audit::chain::EntryFields {
        id: 2,
        at: row.get(1),
        actor: row.get(2),
        role: &role,
        tenant: row.get(4),
        action: "nothing.happened",
        reason: row.get(6),
        address: row.get(7),
        details: &details,
        key_id: None,
        prev_hash: &prev_hash,
    }
    .hash(None);
    tamper(
        &env,
        "audit_rehash",
        &format!(
            "UPDATE audit_log SET key_id = NULL, entry_hash = '\\x{}' WHERE id = 2",
            hex::encode(unkeyed)
        ),
    )
    .await;
    let report = verify_with_key(&catalog).await;
    assert_eq!(report.problem, Some(ChainBreak::Downgraded { id: 2 }));

    // A verifier without the key cannot vouch for keyed entries.
    let keyless = audit::verify(&catalog, None).await.expect("verify");
    assert!(
        matches!(keyless.problem, Some(ChainBreak::UnknownKey { id: 1, .. })),
        "{keyless:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_keep_one_chain_and_writers_keep_the_key() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let catalog = keyed_catalog(&env, "audit_concurrent").await;
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let catalog = catalog.clone();
            tokio::spawn(async move { append(&catalog, 10).await })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    let report = verify_with_key(&catalog).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.chained_entries, 60);
    assert_eq!(report.head_id, Some(60));

    // Once the log is keyed, a process without the key (or with another) may not append.
    use_key_for_writing(None);
    let connection = catalog.connection().await.expect("connection");
    let refused = audit::record(
        &**connection,
        &Actor::system("test"),
        "x",
        None,
        None,
        json!({}),
    )
    .await
    .expect_err("an unkeyed append after keyed entries");
    assert!(
        refused.to_string().contains("chained with key"),
        "{refused}"
    );
    use_key_for_writing(Some(AuditKey::from_secret(
        b"another key, also 32 characters+",
    )));
    let refused = audit::record(
        &**connection,
        &Actor::system("test"),
        "x",
        None,
        None,
        json!({}),
    )
    .await
    .expect_err("an append with another key");
    assert!(
        refused.to_string().contains("audit_key_file holds key"),
        "{refused}"
    );

    // Owners see their own tenant's entries only, newest first, a page at a time.
    let acme = TenantName::parse("acme").expect("name");
    let first = entries_for_tenant(
        &catalog,
        &acme,
        Page {
            before_id: None,
            limit: 20,
        },
    )
    .await
    .expect("page");
    assert_eq!(first.len(), 20);
    assert!(
        first
            .iter()
            .all(|entry| entry.tenant.as_deref() == Some("acme"))
    );
    assert!(first.windows(2).all(|pair| pair[0].id > pair[1].id));
    let rest = entries_for_tenant(
        &catalog,
        &acme,
        Page {
            before_id: first.last().map(|entry| entry.id),
            limit: 100,
        },
    )
    .await
    .expect("page");
    assert_eq!(first.len() + rest.len(), 30);
    assert_eq!(rest[0].reason.as_deref(), Some("because the test says so"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_cli_names_the_catalog_role_verifies_exports_and_fails_on_tampering() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_catalog().await;
    let key_file = write_key_file(&env);
    let config = env.config_file(&Settings {
        extra: format!(
            "audit_key_file = {:?}\n{CATALOG}",
            key_file.display().to_string()
        ),
        ..Settings::default()
    });
    // `$USER` says someone else: the audit log must not believe it.
    let run = |arguments: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .arg("--config")
            .arg(&config)
            .args(arguments)
            .env_remove("LIFEBOAT_CONFIG")
            .env("USER", "mallory")
            .env("LOGNAME", "mallory")
            .output()
            .expect("run lifeboat")
    };
    for arguments in [
        vec!["controller", "migrate"],
        vec!["tenant", "add", "acme", "--cluster", "main"],
        vec!["tenant", "add", "globex", "--cluster", "main"],
        vec!["tenant", "hold", "acme"],
        vec!["tenant", "remove", "globex"],
    ] {
        let output = run(&arguments);
        assert!(
            output.status.success(),
            "{arguments:?}: {}",
            stderr(&output)
        );
    }

    let verified = run(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    assert!(
        stdout(&verified).contains("audit log intact: 4 chained entries; head: entry 4"),
        "{}",
        stdout(&verified)
    );

    let export_path = env.dir.path().join("audit.jsonl");
    let exported = run(&[
        "audit",
        "export",
        "--output",
        export_path.to_str().expect("path"),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&export_path)
        .expect("read export")
        .lines()
        .map(|line| serde_json::from_str(line).expect("json line"))
        .collect();
    let actions: Vec<&str> = lines
        .iter()
        .map(|line| line["action"].as_str().expect("action"))
        .collect();
    assert_eq!(
        actions,
        ["tenant.add", "tenant.add", "tenant.hold", "tenant.remove"]
    );
    for line in &lines {
        assert_eq!(line["actor"], env.postgres.superuser(), "{line}");
        assert_eq!(line["actor_role"], "operator", "{line}");
        assert_eq!(
            line["entry_hash"].as_str().map(str::len),
            Some(64),
            "{line}"
        );
    }
    assert_eq!(lines[1]["prev_hash"], lines[0]["entry_hash"]);
    let acme_only = run(&[
        "audit",
        "export",
        "--tenant",
        "acme",
        "--since",
        "2000-01-01",
    ]);
    assert!(acme_only.status.success(), "{}", stderr(&acme_only));
    assert_eq!(stdout(&acme_only).lines().count(), 2);

    tamper(
        &env,
        "lifeboat_catalog",
        "UPDATE audit_log SET actor = 'someone else' WHERE id = 2",
    )
    .await;
    let broken = run(&["audit", "verify"]);
    assert!(!broken.status.success(), "a tampered log must fail verify");
    assert!(
        stderr(&broken).contains("entry 2 does not match its hash"),
        "{}",
        stderr(&broken)
    );
}

/// The migrations' SQL files with their version, in order.
fn migration_files() -> Vec<(u32, String)> {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("controller/migrations");
    let mut files: Vec<(u32, String)> = std::fs::read_dir(&directory)
        .expect("migrations")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let version = name
                .trim_start_matches('V')
                .split("__")
                .next()
                .and_then(|number| number.parse().ok())
                .expect("V<n>__");
            (
                version,
                std::fs::read_to_string(&path).expect("read migration"),
            )
        })
        .collect();
    files.sort_by_key(|(version, _)| *version);
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_from_before_the_chain_are_counted_apart_and_the_chain_starts_after_them() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE audit_legacy")
        .await
        .expect("create database");
    let client = env.postgres.connect("audit_legacy").await.expect("connect");
    let files = migration_files();
    for (version, sql) in files.iter().filter(|(version, _)| *version < 11) {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("V{version}: {error}"));
    }
    // The old writer's rows.
    client
        .batch_execute(
            "INSERT INTO audit_log (actor, action, tenant) VALUES
                ('cli:someone', 'tenant.add', 'acme'), ('cli:someone', 'tenant.add', 'globex'),
                ('demo', 'tenant.remove', 'globex')",
        )
        .await
        .expect("legacy rows");
    for (version, sql) in files.iter().filter(|(version, _)| *version >= 11) {
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("V{version}: {error}"));
    }
    let cluster = superuser_cluster(&env);
    let catalog = Catalog::connect(&cluster, "audit_legacy")
        .await
        .expect("catalog");
    use_key_for_writing(Some(AuditKey::from_secret(KEY_SECRET.as_bytes())));
    let empty = verify_with_key(&catalog).await;
    assert!(empty.is_intact(), "{empty:?}");
    assert_eq!((empty.legacy_entries, empty.chained_entries), (3, 0));

    append(&catalog, 2).await;
    let report = verify_with_key(&catalog).await;
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.legacy_entries, report.chained_entries), (3, 2));
    assert_eq!(report.head_id, Some(5), "the chain continues the ids");

    // Moving the chain's start over a chained entry breaks it.
    tamper(
        &env,
        "audit_legacy",
        "UPDATE audit_chain_head SET legacy_last_id = 4",
    )
    .await;
    let moved = verify_with_key(&catalog).await;
    assert_eq!(
        moved.problem,
        Some(ChainBreak::ChainedBeforeStart { id: 4 })
    );
}
