//! Listing backups straight from a region's manifests, with no catalog.

use crate::harness::{Backend, Settings, TestEnv, backup, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_list_reads_manifests_with_no_catalog() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 100).await;
    env.create_tenant_database("globex", 100).await;
    let settings = Settings {
        tenants: vec![
            ("acme".to_owned(), "acme".to_owned()),
            ("globex".to_owned(), "globex".to_owned()),
        ],
        ..Settings::default()
    };
    let config = env.config(&settings);
    let config_path = env.config_file(&settings);
    let first = backup(&config, "acme").await.expect("backup");
    let second = backup(&config, "acme").await.expect("backup");
    backup(&config, "globex").await.expect("backup");

    let all = env.lifeboat(&config_path, &["backups", "list", "--json"]);
    assert!(all.status.success(), "{}", stderr(&all));
    let manifests: Vec<serde_json::Value> = serde_json::from_slice(&all.stdout).expect("json");
    assert_eq!(manifests.len(), 3);

    let acme = env.lifeboat(
        &config_path,
        &[
            "backups", "list", "--tenant", "acme", "--region", "us", "--json",
        ],
    );
    assert!(acme.status.success(), "{}", stderr(&acme));
    let manifests: Vec<serde_json::Value> = serde_json::from_slice(&acme.stdout).expect("json");
    let ids: Vec<&str> = manifests
        .iter()
        .map(|m| m["backup_id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        ids,
        [
            first.manifest.backup_id.to_string(),
            second.manifest.backup_id.to_string()
        ]
    );

    let text = env.lifeboat(&config_path, &["backups", "list"]);
    assert!(text.status.success());
    let table = stdout(&text);
    assert!(
        table.contains("globex") && table.contains(&first.manifest.backup_id.to_string()),
        "{table}"
    );

    let unknown_region = env.lifeboat(&config_path, &["backups", "list", "--region", "mars"]);
    assert!(!unknown_region.status.success());
    assert!(
        stderr(&unknown_region).contains("unknown region \"mars\""),
        "{}",
        stderr(&unknown_region)
    );
}
