//! `lifeboat catalog rebuild`: a lost catalog comes back from one region's manifests.

use lifeboat_core::config::Config;
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::manifest::ObjectKey;
use lifeboat_core::region::Region;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, stderr, stdout};

/// What the catalog says about backups: (id, tenant, kind, stored bytes, sha256) and
/// (id, region, state), both sorted.
type Snapshot = (
    Vec<(String, String, String, i64, String)>,
    Vec<(String, String, String)>,
);

async fn snapshot(env: &TestEnv) -> Snapshot {
    let catalog = env
        .postgres
        .connect("lifeboat_catalog")
        .await
        .expect("connect catalog");
    let backups = catalog
        .query(
            "SELECT id::text, tenant, kind, stored_bytes, sha256 FROM backups ORDER BY id",
            &[],
        )
        .await
        .expect("backups")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4)))
        .collect();
    let copies = catalog
        .query(
            "SELECT backup_id::text, region, state FROM backup_copies ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("copies")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    (backups, copies)
}

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("not JSON ({error}): {}", stdout(output));
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_rebuilt_from_one_region_has_the_same_backups_sizes_hashes_and_copies() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 200).await;
    env.create_catalog().await;
    let config_path = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    assert!(run(&["controller", "migrate"]).status.success());

    let mut taken = Vec::new();
    for _ in 0..2 {
        let backup = json(&run(&["backup", "--tenant", "acme", "--json"]));
        assert_eq!(backup["degraded"], false, "{backup}");
        taken.push((
            backup["backup_id"].as_str().expect("id").to_owned(),
            "acme".to_owned(),
            "manual".to_owned(),
            backup["stored_bytes"].as_i64().expect("size"),
            backup["sha256"].as_str().expect("sha256").to_owned(),
        ));
    }
    taken.sort();

    // Region us loses the object of the first backup; its manifest stays.
    let config = Config::load(Some(&config_path)).expect("config");
    let us = Region::new(&config.regions[1]);
    let object_key = ObjectKey::Dump(
        &TenantName::parse("acme").expect("tenant"),
        BackupId::parse(&taken[0].0).expect("backup id"),
    )
    .to_key();
    us.delete_object(&object_key).await.expect("delete object");

    let report = json(&run(&["catalog", "rebuild", "--region", "eu", "--json"]));
    assert_eq!(report["backups_found"], 2, "{report}");
    assert_eq!(report["backups_recorded"], 2, "{report}");
    assert_eq!(report["regions"][0]["region"], "eu");
    assert_eq!(report["regions"][0]["present"], 2, "{report}");
    assert_eq!(report["regions"][1]["region"], "us");
    assert_eq!(report["regions"][1]["present"], 1, "{report}");
    assert_eq!(report["regions"][1]["missing"], 1, "{report}");

    let expected_copies = vec![
        (taken[0].0.clone(), "eu".to_owned(), "present".to_owned()),
        (taken[0].0.clone(), "us".to_owned(), "missing".to_owned()),
        (taken[1].0.clone(), "eu".to_owned(), "present".to_owned()),
        (taken[1].0.clone(), "us".to_owned(), "present".to_owned()),
    ];
    let first = snapshot(&env).await;
    assert_eq!(first, (taken.clone(), expected_copies.clone()));

    let again = run(&["catalog", "rebuild", "--region", "eu"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stdout(&again).contains("2 backups found, 2 recorded"),
        "{}",
        stdout(&again)
    );
    assert_eq!(
        snapshot(&env).await,
        first,
        "a second rebuild changes nothing"
    );

    // The catalog is lost; a new one is rebuilt from the other region.
    env.postgres
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("DROP DATABASE lifeboat_catalog WITH (FORCE)")
        .await
        .expect("drop catalog");
    env.create_catalog().await;
    assert!(run(&["controller", "migrate"]).status.success());
    let report = json(&run(&["catalog", "rebuild", "--region", "us", "--json"]));
    assert_eq!(report["backups_found"], 2, "{report}");
    assert_eq!(
        snapshot(&env).await,
        (taken.clone(), expected_copies),
        "the same backups and copies, rebuilt from region us"
    );

    let catalog = env
        .postgres
        .connect("lifeboat_catalog")
        .await
        .expect("connect catalog");
    let audited: i64 = catalog
        .query_one(
            "SELECT count(*) FROM audit_log WHERE action = 'catalog.rebuild' AND details->>'source_region' = 'us'",
            &[],
        )
        .await
        .expect("audit")
        .get(0);
    assert_eq!(audited, 1);

    let unknown = run(&["catalog", "rebuild", "--region", "nowhere"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("unknown region \"nowhere\" (configured: eu, us)"),
        "{}",
        stderr(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_reports_an_unreachable_region_and_gives_it_no_copies() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database("acme", 50).await;
    env.create_catalog().await;
    let healthy = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    assert!(
        env.lifeboat(&healthy, &["controller", "migrate"])
            .status
            .success()
    );
    let backup = json(&env.lifeboat(&healthy, &["backup", "--tenant", "acme", "--json"]));

    // A second region that refuses connections.
    let with_dead_region = env.config_file(&Settings {
        extra: format!(
            "{CATALOG}\n[regions.dead]\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"gone\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\npriority = 9\n"
        ),
        ..Settings::default()
    });
    let output = env.lifeboat(&with_dead_region, &["catalog", "rebuild", "--region", "eu"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("unreachable, left to scrub"),
        "{}",
        stdout(&output)
    );
    let (backups, copies) = snapshot(&env).await;
    assert_eq!(backups.len(), 1);
    assert_eq!(backups[0].0, backup["backup_id"].as_str().expect("id"));
    assert_eq!(
        copies,
        [(backups[0].0.clone(), "eu".to_owned(), "present".to_owned())]
    );
}
