//! Staged restores (`[restore] jobs`): the decrypted dump is written to a private file,
//! checked, restored with `pg_restore --jobs`, and removed; a corrupt copy never reaches
//! pg_restore and the next region serves the backup.

use bytes::Bytes;
use lifeboat_core::restore::{BackupSelector, RestoreMethod};
use std::path::Path;

use crate::harness::{Backend, Settings, TestEnv, backup, read_object, restore};

/// Settings that stage every dump, whatever its size, in `staging`.
fn staging_settings(database: &str, staging: &Path) -> Settings {
    Settings {
        tenants: vec![("acme".to_owned(), database.to_owned())],
        extra: format!(
            "\n[restore]\njobs = 2\nstage_min_mb = 0\nstaging_dir = {:?}\n",
            staging.display().to_string()
        ),
        ..Settings::default()
    }
}

fn files_in(directory: &Path) -> Vec<String> {
    std::fs::read_dir(directory)
        .expect("read the staging directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_staged_restore_runs_pg_restore_jobs_from_a_file_it_removes_afterwards() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let database = "Acme \"staged\" ünïcode";
    env.create_tenant_database(database, 3000).await;
    let staging = env.dir.path().join("staging dir");
    std::fs::create_dir(&staging).expect("staging dir");
    let config = env.config(&staging_settings(database, &staging));
    backup(&config, "acme").await.expect("backup");

    let restored = restore(&config, "acme", BackupSelector::Latest, "acme restored")
        .await
        .expect("staged restore");
    assert_eq!(restored.method, RestoreMethod::Staged { jobs: 2 });
    assert_eq!(restored.rows_verified, 9100);
    assert_eq!(
        env.table_fingerprints(database).await,
        env.table_fingerprints("acme restored").await
    );
    assert_eq!(
        files_in(&staging),
        Vec::<String>::new(),
        "the staged dump is removed"
    );

    // The same configuration with a threshold above the dump streams it.
    let mut streamed_settings = staging_settings(database, &staging);
    streamed_settings.extra = streamed_settings
        .extra
        .replace("stage_min_mb = 0", "stage_min_mb = 1024");
    let config = env.config(&streamed_settings);
    let restored = restore(&config, "acme", BackupSelector::Latest, "acme streamed")
        .await
        .expect("streamed restore");
    assert_eq!(restored.method, RestoreMethod::Streamed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_copy_is_caught_while_staging_and_never_reaches_pg_restore() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 2000).await;
    let staging = env.dir.path().join("staging");
    std::fs::create_dir(&staging).expect("staging dir");
    let config = env.config(&staging_settings("acme", &staging));
    let report = backup(&config, "acme").await.expect("backup");
    let key = &report.manifest.object.key;

    // One flipped byte at the very end: found only after the whole dump was written to
    // the staging file, which must then be removed and never handed to pg_restore.
    let first = env.region(&config, 0);
    let mut object = read_object(&first, key).await.to_vec();
    let last = object.len() - 1;
    object[last] ^= 0x01;
    first
        .put_object(key, Bytes::from(object.clone()))
        .await
        .expect("corrupt the first region's copy");

    let restored = restore(&config, "acme", BackupSelector::Latest, "acme_restored")
        .await
        .expect("the second region serves it");
    assert_eq!(restored.region.as_str(), "us");
    assert_eq!(restored.method, RestoreMethod::Staged { jobs: 2 });
    assert_eq!(
        restored.failed_attempts.len(),
        1,
        "{:?}",
        restored.failed_attempts
    );
    assert_eq!(restored.failed_attempts[0].region.as_str(), "eu");
    assert_eq!(
        env.table_fingerprints("acme").await,
        env.table_fingerprints("acme_restored").await
    );
    assert_eq!(files_in(&staging), Vec::<String>::new());

    // Corrupt everywhere: refused, the half-made database dropped, no file left.
    env.region(&config, 1)
        .put_object(key, Bytes::from(object))
        .await
        .expect("corrupt the second region's copy");
    let error = restore(&config, "acme", BackupSelector::Latest, "acme_again")
        .await
        .expect_err("no region has a good copy");
    assert!(
        error.to_string().contains("SHA-256") || error.to_string().contains("corrupt"),
        "{error}"
    );
    assert!(!env.database_exists("acme_again").await);
    assert_eq!(files_in(&staging), Vec::<String>::new());
}
