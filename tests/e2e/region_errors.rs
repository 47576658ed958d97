//! Errors a person can read, and failures the queue knows not to retry: a dead region is
//! reported in one line naming the region, the operation and the cause (in the library's
//! errors, the `--json` report and the warnings), and a backup of a database that does
//! not exist fails after one attempt.

use std::path::PathBuf;

use lifeboat_core::backup::BackupError;

use crate::harness::{Backend, Settings, TestEnv, backup, stderr, stdout};

/// An address on loopback that refuses connections: bound, then released.
fn refusing_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address").to_string();
    drop(listener);
    address
}

/// A config file of `env` with the regions at `dead_indexes` moved to addresses that
/// refuse connections; returns it and those addresses.
fn config_with_dead_regions(
    env: &TestEnv,
    settings: &Settings,
    dead_indexes: &[usize],
) -> (PathBuf, Vec<String>) {
    let path = env.config_file(settings);
    let mut text = std::fs::read_to_string(&path).expect("read config");
    let mut addresses = Vec::new();
    for index in dead_indexes {
        let address = refusing_address();
        text = text.replace(
            &env.regions[*index].endpoint(),
            &format!("http://{address}"),
        );
        addresses.push(address);
    }
    std::fs::write(&path, text).expect("write config");
    (path, addresses)
}

/// `text` is one line that names `region` and `operation`, says the connection to
/// `address` was refused, and holds none of the SDK's debug dump.
fn assert_readable_region_error(text: &str, region: &str, operation: &str, address: &str) {
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(
        text.contains(&format!("region {region}: {operation}")),
        "names the region and the operation: {text}"
    );
    assert!(
        text.contains(&format!("connection refused ({address})")),
        "says why and where: {text}"
    );
    for debug in ["DispatchFailure", "ConnectorError", "{", "Some("] {
        assert!(!text.contains(debug), "no debug output ({debug}): {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_region_is_reported_in_one_readable_line() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 100).await;
    let settings = Settings {
        min_regions: Some(1),
        ..Settings::default()
    };

    // One region dead: the backup commits in eu and reports us, in --json and on stderr.
    let (config_path, addresses) = config_with_dead_regions(&env, &settings, &[1]);
    let output = env.lifeboat(&config_path, &["backup", "--tenant", "acme", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(report["degraded"], true, "{report}");
    let us = report["region_results"]
        .as_array()
        .expect("region results")
        .iter()
        .find(|result| result["region"] == "us")
        .unwrap_or_else(|| panic!("us reported: {report}"));
    assert_eq!(us["stored"], false, "{us}");
    let error = us["error"].as_str().expect("an error for us");
    assert_readable_region_error(error, "us", "put object tenants/acme/", &addresses[0]);
    let warnings = stderr(&output);
    for debug in ["DispatchFailure", "ConnectorError", "dispatch failure"] {
        assert!(!warnings.contains(debug), "{debug} in warnings: {warnings}");
    }

    // Every region dead: the backup fails before the dump, naming each region's cause.
    let (config_path, addresses) = config_with_dead_regions(&env, &settings, &[0, 1]);
    let config = lifeboat_core::config::Config::load(Some(&config_path)).expect("config");
    let error = backup(&config, "acme")
        .await
        .expect_err("no region answers");
    assert!(
        matches!(error, BackupError::RegionsUnreachable { answered: 0, .. }),
        "{error}"
    );
    assert!(!error.is_permanent(), "regions may come back: {error}");
    let message = error.to_string();
    assert!(
        !message.contains("eu: region eu"),
        "the region is named once: {message}"
    );
    assert_readable_region_error(&message, "eu", "head bucket", &addresses[0]);
    assert_readable_region_error(&message, "us", "head bucket", &addresses[1]);
}

const CATALOG_DATABASE: &str = "lifeboat_catalog";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_job_for_a_missing_database_fails_after_one_attempt() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {CATALOG_DATABASE}"))
        .await
        .expect("create catalog database");
    let settings = Settings {
        min_regions: Some(1),
        tenants: vec![("ghost".to_owned(), "no_such_db".to_owned())],
        extra: format!("[catalog]\ncluster = \"main\"\ndatabase = \"{CATALOG_DATABASE}\"\n"),
        ..Settings::default()
    };
    let config_path = env.config_file(&settings);

    // The library says so itself.
    let config = lifeboat_core::config::Config::load(Some(&config_path)).expect("config");
    let error = backup(&config, "ghost")
        .await
        .expect_err("no such database");
    assert!(error.is_permanent(), "{error}");

    // Through the queue: one attempt of four, failed for good, with the reason.
    let migrated = env.lifeboat(&config_path, &["controller", "migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let added = env.lifeboat(
        &config_path,
        &[
            "tenant",
            "add",
            "ghost",
            "--cluster",
            "main",
            "--database",
            "no_such_db",
        ],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let nightly = env.lifeboat(
        &config_path,
        &[
            "nightly",
            "--run",
            "r1",
            "--max-attempts",
            "4",
            "--retry-base-seconds",
            "0",
        ],
    );
    assert!(
        !nightly.status.success(),
        "the failed tenant fails the nightly: {}",
        stdout(&nightly)
    );
    let catalog = env
        .postgres
        .connect(CATALOG_DATABASE)
        .await
        .expect("connect catalog");
    let job = catalog
        .query_one(
            "SELECT attempts, max_attempts, state::text AS state, last_error FROM jobs \
             WHERE kind = 'backup' AND tenant = 'ghost'",
            &[],
        )
        .await
        .expect("the ghost's backup job");
    let attempts: i32 = job.get("attempts");
    let max_attempts: i32 = job.get("max_attempts");
    let state: String = job.get("state");
    let last_error: Option<String> = job.get("last_error");
    assert_eq!((attempts, max_attempts), (1, 4), "{last_error:?}");
    assert_eq!(state, "failed");
    assert!(
        last_error
            .as_deref()
            .is_some_and(|error| error.contains("no_such_db") && error.contains("does not exist")),
        "{last_error:?}"
    );
}
