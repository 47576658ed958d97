//! Bad input gets one clear error, a non-zero exit, and leaves nothing half-made.

use bytes::Bytes;
use lifeboat_agent::restore_job::RestoreJobError;
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::manifest::ObjectKey;
use lifeboat_core::restore::{BackupSelector, RestoreError};
use lifeboat_provisioner::ProvisionError;

use crate::harness::{
    Backend, SECRET_ACCESS_KEY, Settings, TestEnv, all_keys, backup, restore, stderr,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_identity_is_a_clear_error_and_leaves_no_database() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 200).await;
    let config = env.config(&Settings::default());
    backup(&config, "acme").await.expect("backup");
    let other_identity = env.dir.path().join("other-identity.txt");
    lifeboat_core::keys::generate_identity_file(&other_identity).expect("keygen");
    let wrong_config = env.config(&Settings {
        identity_file: Some(other_identity),
        ..Settings::default()
    });

    let error = restore(
        &wrong_config,
        "acme",
        BackupSelector::Latest,
        "acme_restored",
    )
    .await
    .expect_err("wrong key");
    assert!(
        matches!(
            error,
            RestoreJobError::Restore(RestoreError::WrongIdentity { .. })
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("does not match any recipient"),
        "{error}"
    );
    assert!(!env.database_exists("acme_restored").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_into_an_existing_database_is_refused_and_leaves_it_untouched() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database("acme", 200).await;
    let config = env.config(&Settings::default());
    backup(&config, "acme").await.expect("backup");
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE taken")
        .await
        .expect("create");
    let taken = env.postgres.connect("taken").await.expect("connect");
    taken
        .batch_execute("CREATE TABLE precious (note text); INSERT INTO precious VALUES ('keep me')")
        .await
        .expect("fill");

    let error = restore(&config, "acme", BackupSelector::Latest, "taken")
        .await
        .expect_err("refused");
    assert!(
        matches!(
            &error,
            RestoreJobError::Provision(provision) if matches!(**provision, ProvisionError::DatabaseExists { .. })
        ),
        "{error}"
    );
    let notes: Vec<String> = taken
        .query("SELECT note FROM precious", &[])
        .await
        .expect("still there")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(notes, ["keep me"]);
    let tables: i64 = taken
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .expect("count tables")
        .get(0);
    assert_eq!(tables, 1, "nothing was restored into the existing database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_tenant_database_is_a_clear_error_and_uploads_nothing() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    let config = env.config(&Settings::default());
    let error = backup(&config, "acme").await.expect_err("no database");
    assert!(
        error
            .to_string()
            .contains("database \"acme\" does not exist"),
        "{error}"
    );
    for index in 0..2 {
        let region = env.region(&config, index);
        assert!(all_keys(&region).await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_names_what_is_wrong_and_exits_non_zero() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env.config_file(&Settings::default());

    let unknown_tenant = env.lifeboat(&config_path, &["backup", "--tenant", "nobody"]);
    assert!(!unknown_tenant.status.success());
    assert!(
        stderr(&unknown_tenant).contains("unknown tenant \"nobody\" (configured: acme)"),
        "{}",
        stderr(&unknown_tenant)
    );

    let quoted = env.lifeboat(&config_path, &["backup", "--tenant", "it's me"]);
    assert!(!quoted.status.success());
    assert!(stderr(&quoted).contains("--tenant"), "{}", stderr(&quoted));
    assert!(
        stderr(&quoted).contains("not a slug"),
        "{}",
        stderr(&quoted)
    );

    let bad_id = env.lifeboat(
        &config_path,
        &[
            "restore",
            "--tenant",
            "acme",
            "--backup",
            "yesterday",
            "--into",
            "x",
        ],
    );
    assert!(!bad_id.status.success());
    assert!(
        stderr(&bad_id).contains("\"yesterday\" is not a lifeboat backup id"),
        "{}",
        stderr(&bad_id)
    );

    for command in ["restore", "drill"] {
        let mut arguments = vec![command, "--tenant", "acme"];
        if command == "restore" {
            arguments.extend(["--into", "x"]);
        }
        let no_backup = env.lifeboat(&config_path, &arguments);
        assert_eq!(no_backup.status.code(), Some(2), "{}", stderr(&no_backup));
        assert!(
            stderr(&no_backup).contains("<--backup <BACKUP>|--latest>"),
            "{command}: {}",
            stderr(&no_backup)
        );
    }

    let moved = env.lifeboat(
        &config_path,
        &["controller", "--backup-window", "22:00-02:00"],
    );
    assert!(!moved.status.success());
    assert!(
        stderr(&moved).contains("backup_window = \"22:00-02:00\""),
        "the error says where the window went: {}",
        stderr(&moved)
    );

    let malformed = env.dir.path().join("malformed.toml");
    std::fs::write(&malformed, "recipients = [\n").expect("write");
    let output = env.lifeboat(&malformed, &["config", "check"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("malformed.toml"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_check_reports_every_problem_with_its_key() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let open_identity = env.dir.path().join("open-identity.txt");
    lifeboat_core::keys::generate_identity_file(&open_identity).expect("keygen");
    std::fs::set_permissions(
        &open_identity,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .expect("chmod");
    let path = env.dir.path().join("broken.toml");
    std::fs::write(
        &path,
        format!(
            r#"
recipients = ["age1notakey", "{recipient}"]
identity_file = "{identity}"
min_regions = 5
compression_level = 99
region_patience_seconds = 0
[clusters.main]
host = "127.0.0.1"
user = "postgres"
[regions.eu]
endpoint = "ftp://example.com"
access_key_id = "key"
secret_access_key = "{SECRET_ACCESS_KEY}"
[regions."Bad Region"]
endpoint = "http://127.0.0.1:1"
bucket = "b"
[tenants.acme]
cluster = "nowhere"
[schedule]
backup_window = "25:00-03:00"
"#,
            recipient = env.recipient,
            identity = open_identity.display()
        ),
    )
    .expect("write");
    let output = env.lifeboat(&path, &["config", "check"]);
    assert!(!output.status.success());
    let report = stderr(&output);
    for expected in [
        "recipients[0]: \"age1notakey\" is not an age X25519 recipient",
        "identity_file: ",
        "chmod 600",
        "compression_level: 99",
        "regions.eu.endpoint: \"ftp://example.com\" is not an http:// or https:// URL",
        "regions.eu.bucket: missing",
        "regions.Bad Region: region name \"Bad Region\" is not a slug",
        "min_regions: 5",
        "region_patience_seconds: must be between 1 and 3600",
        "tenants.acme.cluster: unknown cluster \"nowhere\"",
        "schedule.backup_window: backup window \"25:00-03:00\" is not HH:MM-HH:MM (UTC)",
    ] {
        assert!(
            report.contains(expected),
            "missing {expected:?} in:\n{report}"
        );
    }
    assert!(
        !report.contains(SECRET_ACCESS_KEY),
        "secret leaked:\n{report}"
    );
    assert!(
        !report.contains("AGE-SECRET-KEY"),
        "identity leaked:\n{report}"
    );

    let valid_path = env.config_file(&Settings::default());
    let valid = env.lifeboat(&valid_path, &["config", "check"]);
    assert!(valid.status.success(), "{}", stderr(&valid));

    // LIFEBOAT_* variables override the file; ones that name no config key are left alone.
    let overridden = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(&valid_path)
        .args(["config", "check"])
        .env("LIFEBOAT_MIN_REGIONS", "7")
        .env("LIFEBOAT_REGIONS__EU__ENDPOINT", "gopher://nowhere")
        .env("LIFEBOAT_BIN", "/usr/local/bin/lifeboat")
        .output()
        .expect("run");
    let report = stderr(&overridden);
    assert!(!overridden.status.success());
    assert!(
        report.contains("min_regions: 7 is not between 1 and the 1 configured regions"),
        "{report}"
    );
    assert!(
        report.contains("regions.eu.endpoint: \"gopher://nowhere\""),
        "{report}"
    );
    assert!(!report.contains("bin"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_postgres_and_refused_credentials_fail_clearly_without_leaking_secrets() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database("acme", 100).await;
    let unreachable = env.config_file(&Settings {
        extra: String::new(),
        ..Settings::default()
    });
    let text = std::fs::read_to_string(&unreachable)
        .expect("read")
        .replace(&format!("port = {}", env.postgres.port()), "port = 1");
    std::fs::write(&unreachable, text).expect("write");
    let output = env.lifeboat(&unreachable, &["backup", "--tenant", "acme"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot connect to cluster main (127.0.0.1:1)"),
        "{}",
        stderr(&output)
    );

    let wrong_secret = env.config_file(&Settings::default());
    let text = std::fs::read_to_string(&wrong_secret)
        .expect("read")
        .replace(SECRET_ACCESS_KEY, "wrong-secret-9f8e7d");
    std::fs::write(&wrong_secret, text).expect("write");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(&wrong_secret)
        .args(["backup", "--tenant", "acme"])
        .env("LIFEBOAT_LOG", "debug")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let errors = stderr(&output);
    assert!(errors.contains("region eu"), "{errors}");
    assert!(
        !errors.contains("wrong-secret-9f8e7d"),
        "secret leaked:\n{errors}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_of_an_unknown_version_is_refused_by_name() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env.config_file(&Settings::default());
    let config = env.config(&Settings::default());
    let tenant = TenantName::parse("acme").expect("tenant");
    let backup_id = BackupId::new();
    env.region(&config, 0)
        .put_object(
            &ObjectKey::Manifest(&tenant, backup_id).to_key(),
            Bytes::from_static(br#"{"version": 99, "tenant": "acme"}"#),
        )
        .await
        .expect("put manifest");

    let output = env.lifeboat(
        &config_path,
        &[
            "restore",
            "--tenant",
            "acme",
            "--backup",
            &backup_id.to_string(),
            "--into",
            "acme_restored",
        ],
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("has version 99; this lifeboat reads version 1"),
        "{}",
        stderr(&output)
    );
    assert!(!env.database_exists("acme_restored").await);
    assert_eq!(all_keys(&env.region(&config, 0)).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_token_file_others_can_read_is_refused_without_showing_it() {
    use std::os::unix::fs::PermissionsExt;
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config = env.config_file(&Settings::default());
    let token_file = env.dir.path().join("agent-token");
    std::fs::write(&token_file, "lbt_0123456789abcdef\n").expect("write token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let token_path = token_file.display().to_string();
    let output = env.lifeboat(
        &config,
        &[
            "agent",
            "--controller",
            "http://127.0.0.1:9",
            "--token-file",
            &token_path,
        ],
    );
    assert!(!output.status.success());
    let error = stderr(&output);
    assert!(error.contains("chmod 600"), "{error}");
    assert!(!error.contains("lbt_0123456789abcdef"), "{error}");
}
