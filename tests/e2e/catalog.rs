//! The catalog: migrations and tenants, through the command line, on a real cluster.

use crate::harness::{Backend, CATALOG, Settings, TestEnv, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_migrates_once_and_manages_tenants_with_an_append_only_audit_log() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_catalog().await;
    let config = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    let run = |arguments: &[&str]| env.lifeboat(&config, arguments);

    let first = run(&["controller", "migrate"]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("applied V1__tenants_and_audit"),
        "{}",
        stdout(&first)
    );
    let second = run(&["controller", "migrate"]);
    assert!(
        stdout(&second).contains("catalog is up to date (version "),
        "{}",
        stdout(&second)
    );

    let added = run(&["tenant", "add", "acme", "--cluster", "main"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let shown = run(&["tenant", "show", "acme"]);
    let acme: serde_json::Value = serde_json::from_slice(&shown.stdout).expect("json");
    assert_eq!(acme["database"], "acme");
    assert_eq!(acme["schedule"], serde_json::Value::Null);
    assert_eq!(acme["retention"]["keep_monthly"], 12);
    let hour: u32 = acme["effective_schedule"]
        .as_str()
        .expect("schedule")
        .split_whitespace()
        .nth(2)
        .expect("hour field")
        .parse()
        .expect("hour");
    assert!(
        (1..5).contains(&hour),
        "default schedule inside 01:00-05:00: {acme}"
    );
    // The configured window moves the default schedule, for the scheduler and for the listing.
    let late_config = env.config_file(&Settings {
        extra: format!("{CATALOG}[schedule]\nbackup_window = \"22:00-23:00\"\n"),
        ..Settings::default()
    });
    let listed = env.lifeboat(&late_config, &["tenant", "list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    let late_hour = listed[0]["effective_schedule"]
        .as_str()
        .expect("schedule")
        .split_whitespace()
        .nth(2)
        .expect("hour field")
        .to_owned();
    assert_eq!(
        late_hour, "22",
        "default schedule inside 22:00-23:00: {listed}"
    );

    for (arguments, expected) in [
        (
            vec!["tenant", "add", "acme", "--cluster", "main"],
            "tenant acme already exists",
        ),
        (
            vec!["tenant", "add", "Bad Name", "--cluster", "main"],
            "not a slug",
        ),
        (
            vec!["tenant", "add", "initech", "--cluster", "nowhere"],
            "unknown cluster \"nowhere\"",
        ),
        (
            vec![
                "tenant",
                "add",
                "initech",
                "--cluster",
                "main",
                "--schedule",
                "every night",
            ],
            "invalid cron expression \"every night\"",
        ),
        (
            vec!["tenant", "show", "nobody"],
            "tenant nobody does not exist",
        ),
    ] {
        let output = run(&arguments);
        assert!(!output.status.success(), "{arguments:?} succeeded");
        assert!(
            stderr(&output).contains(expected),
            "{arguments:?}: {}",
            stderr(&output)
        );
    }

    let scheduled = run(&[
        "tenant",
        "add",
        "globex",
        "--cluster",
        "main",
        "--database",
        "Globex DB",
        "--schedule",
        "30 2 * * *",
    ]);
    assert!(scheduled.status.success(), "{}", stderr(&scheduled));
    let removed = run(&["tenant", "remove", "acme"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    assert!(stderr(&run(&["tenant", "remove", "acme"])).contains("tenant acme does not exist"));

    let listed = run(&["tenant", "list", "--json"]);
    let tenants: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(tenants.len(), 1, "refused adds changed nothing");
    assert_eq!(tenants[0]["name"], "globex");
    assert_eq!(tenants[0]["database"], "Globex DB");
    assert_eq!(tenants[0]["effective_schedule"], "30 2 * * *");

    let catalog = env
        .postgres
        .connect("lifeboat_catalog")
        .await
        .expect("connect");
    let actions: Vec<String> = catalog
        .query(
            "SELECT action || ':' || tenant FROM audit_log ORDER BY id",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        actions,
        ["tenant.add:acme", "tenant.add:globex", "tenant.remove:acme"]
    );
    let rewrite = catalog
        .batch_execute("UPDATE audit_log SET actor = 'someone else'")
        .await;
    assert!(rewrite.is_err(), "the audit log must be append-only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_catalog_database_or_section_is_a_clear_error() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let with_catalog = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    let output = env.lifeboat(&with_catalog, &["controller", "migrate"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output)
            .contains("catalog database \"lifeboat_catalog\" does not exist on cluster main"),
        "{}",
        stderr(&output)
    );

    let without_catalog = env.config_file(&Settings::default());
    let output = env.lifeboat(&without_catalog, &["tenant", "list"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("no [catalog] in the configuration"),
        "{}",
        stderr(&output)
    );
}
