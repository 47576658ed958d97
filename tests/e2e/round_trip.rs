//! A backup restores to the same data, and every region holds the same bytes.

use lifeboat_core::restore::BackupSelector;
use sha2::{Digest, Sha256};

use crate::harness::{Backend, Settings, TestEnv, backup, read_object, restore};

async fn round_trip(backend: Backend, database: &str, restored_database: &str) {
    let env = TestEnv::start(backend, 3).await;
    env.create_tenant_database(database, 3000).await;
    let config = env.config(&Settings {
        tenants: vec![("acme".to_owned(), database.to_owned())],
        ..Settings::default()
    });

    let report = backup(&config, "acme").await.expect("backup");
    assert!(!report.degraded, "{:?}", report.regions);
    let manifest = &report.manifest;
    assert_eq!(manifest.regions.len(), 3);
    let counts: Vec<(&str, &str, u64)> = manifest
        .row_counts
        .iter()
        .map(|count| (count.schema.as_str(), count.table.as_str(), count.rows))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("Sales Dept", "Q3 \"final\" numbers", 100),
            ("public", "customers", 3000),
            ("public", "events", 6000),
        ]
    );

    let facts = manifest
        .database_facts
        .as_ref()
        .expect("the manifest records the database's facts");
    assert!(
        facts.owners.contains_key("table public.customers"),
        "{:?}",
        facts.owners
    );

    for index in 0..3 {
        let region = env.region(&config, index);
        let object = read_object(&region, &manifest.object.key).await;
        assert_eq!(
            object.len() as u64,
            manifest.object.stored_bytes,
            "region {index}"
        );
        assert_eq!(
            hex::encode(Sha256::digest(&object)),
            manifest.object.sha256,
            "region {index}"
        );
    }

    let restored = restore(&config, "acme", BackupSelector::Latest, restored_database)
        .await
        .expect("restore");
    assert_eq!(restored.backup_id, manifest.backup_id);
    assert_eq!(restored.region.as_str(), "eu");
    assert!(restored.failed_attempts.is_empty());
    assert_eq!(restored.dump_bytes, manifest.object.dump_bytes);
    assert_eq!(restored.rows_verified, 9100);
    assert_eq!(
        env.table_fingerprints(database).await,
        env.table_fingerprints(restored_database).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_seaweedfs_restores_identical_data_from_identical_objects() {
    round_trip(Backend::Seaweed, "acme", "acme_restored").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_on_the_embedded_server_handles_names_with_quotes_spaces_and_unicode() {
    round_trip(
        Backend::Embedded,
        "Acme \"Corp\" db's",
        "restored ünïcode 'db'",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_by_backup_id_picks_that_backup_not_the_newest() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database("acme", 500).await;
    let config = env.config(&Settings::default());
    let first = backup(&config, "acme").await.expect("first backup");
    let client = env.postgres.connect("acme").await.expect("connect");
    client
        .batch_execute("DELETE FROM events WHERE id % 2 = 0")
        .await
        .expect("change data");
    let second = backup(&config, "acme").await.expect("second backup");
    assert!(second.manifest.backup_id > first.manifest.backup_id);

    let restored = restore(
        &config,
        "acme",
        BackupSelector::Id(first.manifest.backup_id),
        "acme_first",
    )
    .await
    .expect("restore first");
    assert_eq!(restored.backup_id, first.manifest.backup_id);
    let latest = restore(&config, "acme", BackupSelector::Latest, "acme_latest")
        .await
        .expect("restore latest");
    assert_eq!(latest.backup_id, second.manifest.backup_id);
    let first_events = env.table_fingerprints("acme_first").await["public.events"].0;
    let latest_events = env.table_fingerprints("acme_latest").await["public.events"].0;
    assert_eq!((first_events, latest_events), (1000, 500));
}
