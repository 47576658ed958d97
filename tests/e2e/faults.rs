//! Regions that are down, die, or hold bad bytes.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use lifeboat_core::backup::BackupError;
use lifeboat_core::progress::Progress;
use lifeboat_core::restore::BackupSelector;
use tokio::sync::oneshot;

use crate::harness::{
    Backend, Settings, TestEnv, all_keys, assert_no_open_uploads, backup, backup_with_progress,
    read_object, restore,
};

/// Signals once the dump has passed `threshold_bytes`, so a test can act mid-backup.
struct SignalAfterBytes {
    threshold_bytes: u64,
    seen_bytes: AtomicU64,
    signal: Mutex<Option<oneshot::Sender<()>>>,
}

impl Progress for SignalAfterBytes {
    fn add_bytes(&self, bytes: u64) {
        let seen = self.seen_bytes.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if seen >= self.threshold_bytes
            && let Some(signal) = self.signal.lock().expect("lock").take()
        {
            let _ = signal.send(());
        }
    }
}

/// Back up `acme` and inject `fault` mid-upload: once 4 MiB of the dump have streamed past
/// and every region has the multipart upload open (and 200 ms more, for the answers to
/// arrive).
async fn backup_with_fault_midway(
    config: &lifeboat_core::config::Config,
    fault: impl FnOnce(),
) -> Result<lifeboat_core::backup::BackupReport, BackupError> {
    let (progress, mid_backup) = signal_after(4 * 1024 * 1024);
    let regions: Vec<_> = config
        .regions
        .iter()
        .map(lifeboat_core::region::Region::new)
        .collect();
    let (report, ()) = tokio::join!(backup_with_progress(config, "acme", progress), async {
        mid_backup.await.expect("backup reached the threshold");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        for region in &regions {
            while region
                .list_multipart_uploads("tenants/")
                .await
                .expect("list uploads")
                .is_empty()
            {
                assert!(std::time::Instant::now() < deadline, "no upload opened");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        fault();
    });
    report
}

fn signal_after(threshold_bytes: u64) -> (Arc<SignalAfterBytes>, oneshot::Receiver<()>) {
    let (sender, receiver) = oneshot::channel();
    (
        Arc::new(SignalAfterBytes {
            threshold_bytes,
            seen_bytes: AtomicU64::new(0),
            signal: Mutex::new(Some(sender)),
        }),
        receiver,
    )
}

/// A config whose region `index` is reached through a [`StallProxy`](crate::stall_proxy::StallProxy).
async fn behind_stall_proxy(
    env: &TestEnv,
    index: usize,
) -> (
    crate::stall_proxy::StallProxy,
    lifeboat_core::config::Config,
) {
    let proxy = crate::stall_proxy::StallProxy::start(&env.regions[index].endpoint()).await;
    let config_path = env.config_file(&Settings::default());
    let text = std::fs::read_to_string(&config_path)
        .expect("read config")
        .replace(&env.regions[index].endpoint(), &proxy.endpoint);
    std::fs::write(&config_path, text).expect("write config");
    let config = lifeboat_core::config::Config::load(Some(&config_path)).expect("config");
    (proxy, config)
}

/// `region` does not hold the backup, and its error says `why`.
fn assert_dropped_because(report: &lifeboat_core::backup::BackupReport, region: &str, why: &str) {
    let dropped = report
        .regions
        .iter()
        .find(|result| result.region.as_str() == region)
        .unwrap_or_else(|| panic!("{region} reported"));
    assert!(
        !dropped.stored
            && dropped
                .error
                .as_deref()
                .is_some_and(|error| error.contains(why)),
        "{dropped:?}"
    );
}

/// Enough data for several 5 MiB parts after compression.
const LARGE_ROWS: u32 = 120_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_stopped_before_backup_leaves_it_degraded_and_says_which() {
    let mut env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", 1000).await;
    let config = env.config(&Settings::default());
    env.regions[1].kill();

    let report = backup(&config, "acme")
        .await
        .expect("backup on two regions");
    assert!(report.degraded);
    let holding: Vec<&str> = report.manifest.regions.iter().map(|r| r.as_str()).collect();
    assert_eq!(holding, ["eu", "ap"]);
    let missing = report
        .regions
        .iter()
        .find(|region| region.region.as_str() == "us")
        .expect("us reported");
    assert!(!missing.stored);
    assert!(
        missing
            .error
            .as_deref()
            .is_some_and(|error| error.contains("us")),
        "{missing:?}"
    );

    restore(&config, "acme", BackupSelector::Latest, "acme_restored")
        .await
        .expect("restore from the regions that hold it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_killed_during_backup_is_dropped_and_the_others_commit() {
    let mut env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", LARGE_ROWS).await;
    let config = env.config(&Settings::default());
    let killed_region = &mut env.regions[2];
    let report = backup_with_fault_midway(&config, || killed_region.kill())
        .await
        .expect("backup commits on the surviving regions");
    assert!(
        report.manifest.object.part_count >= 3,
        "{:?}",
        report.manifest.object
    );
    assert!(report.degraded);
    let holding: Vec<&str> = report.manifest.regions.iter().map(|r| r.as_str()).collect();
    assert_eq!(holding, ["eu", "us"]);
    let dropped = report
        .regions
        .iter()
        .find(|region| region.region.as_str() == "ap")
        .expect("ap reported");
    assert!(!dropped.stored && dropped.error.is_some(), "{dropped:?}");

    let restored = restore(&config, "acme", BackupSelector::Latest, "acme_restored")
        .await
        .expect("restore");
    assert_eq!(restored.rows_verified, u64::from(LARGE_ROWS) * 3 + 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_regions_down_fails_cleanly_without_manifest_or_open_upload() {
    let mut env = TestEnv::start(Backend::Seaweed, 3).await;
    // One tenant whose object is one part (PutObject), one that needs a multipart upload.
    env.create_tenant_database("acme", 1000).await;
    env.create_tenant_database("globex", LARGE_ROWS).await;
    let config = env.config(&Settings {
        tenants: vec![
            ("acme".to_owned(), "acme".to_owned()),
            ("globex".to_owned(), "globex".to_owned()),
        ],
        ..Settings::default()
    });
    for region in &mut env.regions {
        region.kill();
    }

    for tenant in ["acme", "globex"] {
        let error = tokio::time::timeout(Duration::from_secs(120), backup(&config, tenant))
            .await
            .expect("fails without waiting for ever")
            .expect_err("no region can take it");
        // Refused by every region before pg_dump was started.
        assert!(
            matches!(error, BackupError::RegionsUnreachable { answered: 0, .. }),
            "{tenant}: {error}"
        );
        let message = error.to_string();
        for name in ["eu", "us", "ap"] {
            assert!(
                message.contains(&format!("region {name}")),
                "{tenant}: {message}"
            );
        }
    }

    for region in &mut env.regions {
        region.restart().await;
    }
    for index in 0..3 {
        let region = env.region(&config, index);
        assert!(all_keys(&region).await.is_empty());
        assert_no_open_uploads(&region, "", "all regions down").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_region_wedged_no_dump_starts_and_the_tenant_keeps_no_lock() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database("acme", 1000).await;
    let (proxy, config) = behind_stall_proxy(&env, 0).await;
    proxy.stall();

    let started = std::time::Instant::now();
    let backup_config = config.clone();
    let attempt = tokio::spawn(async move { backup(&backup_config, "acme").await });
    tokio::time::sleep(Duration::from_secs(1)).await;
    // The backup is waiting for its region. A schema change of the tenant's is not held
    // up: no snapshot, no row count and no pg_dump holds a lock yet.
    let tenant = env.postgres.connect("acme").await.expect("connect");
    tenant
        .batch_execute("SET lock_timeout = '2s'; ALTER TABLE customers ADD COLUMN probe int")
        .await
        .expect("DDL while the regions are wedged");

    let error = tokio::time::timeout(Duration::from_secs(60), attempt)
        .await
        .expect("gives up in the straggler allowance, not the S3 timeouts")
        .expect("join")
        .expect_err("no region answers");
    assert!(
        matches!(error, BackupError::RegionsUnreachable { answered: 0, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("no answer to HeadBucket"),
        "{error}"
    );
    // patience 2 s × 4 parts of lag = 8 s allowance.
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    let count: i64 = tenant
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pg_dump'",
            &[],
        )
        .await
        .expect("activity")
        .get(0);
    assert_eq!(count, 0, "no pg_dump ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_that_loses_its_quorum_midway_aborts_every_upload_it_can_reach() {
    let mut env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", LARGE_ROWS).await;
    let config = env.config(&Settings {
        min_regions: Some(3),
        ..Settings::default()
    });
    let killed_region = &mut env.regions[0];
    let error = backup_with_fault_midway(&config, || killed_region.kill())
        .await
        .expect_err("three regions were required");
    assert!(
        matches!(error, BackupError::TooFewRegions { available: 2, .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("eu: "),
        "the dropped region is named: {error}"
    );

    for index in 1..3 {
        let region = env.region(&config, index);
        assert!(
            all_keys(&region).await.is_empty(),
            "region {index} kept objects"
        );
        assert_no_open_uploads(
            &region,
            "",
            &format!("region {index} after the lost quorum"),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_object_in_first_region_falls_back_to_the_next() {
    let env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", 2000).await;
    let config = env.config(&Settings::default());
    let report = backup(&config, "acme").await.expect("backup");
    let key = &report.manifest.object.key;

    let first = env.region(&config, 0);
    let mut object = read_object(&first, key).await.to_vec();
    let middle = object.len() / 2;
    object[middle] ^= 0x40;
    first
        .put_object(key, Bytes::from(object))
        .await
        .expect("corrupt object");

    let restored = restore(&config, "acme", BackupSelector::Latest, "acme_restored")
        .await
        .expect("restore falls back");
    assert_eq!(restored.region.as_str(), "us");
    assert_eq!(restored.failed_attempts.len(), 1);
    assert_eq!(restored.failed_attempts[0].region.as_str(), "eu");
    assert!(
        restored.failed_attempts[0].error.contains("corrupt"),
        "{}",
        restored.failed_attempts[0].error
    );
    assert_eq!(
        env.table_fingerprints("acme").await,
        env.table_fingerprints("acme_restored").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_and_dead_region_fall_back_to_the_next() {
    let mut env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", 1000).await;
    let config = env.config(&Settings::default());
    let report = backup(&config, "acme").await.expect("backup");
    env.region(&config, 0)
        .delete_object(&report.manifest.object.key)
        .await
        .expect("delete object in eu");
    env.regions[1].kill();

    let restored = restore(&config, "acme", BackupSelector::Latest, "acme_restored")
        .await
        .expect("restore from ap");
    assert_eq!(restored.region.as_str(), "ap");
    let failed: Vec<&str> = restored
        .failed_attempts
        .iter()
        .map(|a| a.region.as_str())
        .collect();
    assert_eq!(failed, ["eu", "us"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_object_is_detected_and_no_database_is_left() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 2000).await;
    let config = env.config(&Settings::default());
    let report = backup(&config, "acme").await.expect("backup");
    let key = &report.manifest.object.key;
    for index in 0..2 {
        let region = env.region(&config, index);
        let object = read_object(&region, key).await;
        let truncated = object.slice(..(report.manifest.object.stored_bytes as usize / 2));
        region.put_object(key, truncated).await.expect("truncate");
    }

    let error = restore(&config, "acme", BackupSelector::Latest, "acme_restored")
        .await
        .expect_err("truncated everywhere");
    let message = error.to_string();
    assert!(message.contains("truncated"), "{message}");
    assert!(!env.database_exists("acme_restored").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_region_is_dropped_after_a_bounded_lag_and_the_others_commit() {
    let env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", LARGE_ROWS).await;
    let (proxy, config) = behind_stall_proxy(&env, 1).await;
    let started = std::time::Instant::now();
    let report = backup_with_fault_midway(&config, || proxy.stall())
        .await
        .expect("backup commits without the stalled region");
    // Patience is 2 s per part and the lag bound 4 parts: far below the 120 s request timeout.
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let holding: Vec<&str> = report.manifest.regions.iter().map(|r| r.as_str()).collect();
    assert_eq!(holding, ["eu", "ap"]);
    assert_dropped_because(&report, "us", "parts behind");
}

/// Back up `acme` (a database of `rows` rows) with region `us` stalled from the start: the
/// backup must commit in `eu` and `ap` within `limit` (far below the 120 s request
/// timeout), with `us` dropped because `why`.
async fn backup_with_us_stalled_from_the_start(
    rows: u32,
    limit: Duration,
    why: &str,
) -> (
    TestEnv,
    crate::stall_proxy::StallProxy,
    lifeboat_core::config::Config,
    lifeboat_core::backup::BackupReport,
) {
    let env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", rows).await;
    let (proxy, config) = behind_stall_proxy(&env, 1).await;
    proxy.stall();

    let started = std::time::Instant::now();
    let report = backup(&config, "acme")
        .await
        .expect("backup commits without the stalled region");
    assert!(started.elapsed() < limit, "{:?}", started.elapsed());
    let holding: Vec<&str> = report.manifest.regions.iter().map(|r| r.as_str()).collect();
    assert_eq!(holding, ["eu", "ap"]);
    assert_dropped_because(&report, "us", why);
    (env, proxy, config, report)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_region_is_dropped_from_a_one_part_backup_after_the_straggler_allowance() {
    // One part: PutObject in each region; the stalled one is given patience (2 s) × the
    // lag bound (4) after the others have stored it, then 15 s to clean up.
    let (env, _proxy, config, report) =
        backup_with_us_stalled_from_the_start(1000, Duration::from_secs(45), "still storing").await;
    assert_eq!(report.manifest.object.part_count, 1);
    for index in [0, 2] {
        let region = env.region(&config, index);
        assert_no_open_uploads(&region, "", "a one-part backup opens no multipart upload").await;
    }
    // By id: finding the latest would list the stalled region too.
    restore(
        &config,
        "acme",
        BackupSelector::Id(report.manifest.backup_id),
        "acme_restored",
    )
    .await
    .expect("restore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn region_stalled_before_a_multipart_upload_opens_is_dropped_after_the_straggler_allowance() {
    // Opening the upload: once the others have, the stalled one gets patience (2 s) × the
    // lag bound (4).
    let (_env, _proxy, _config, report) = backup_with_us_stalled_from_the_start(
        LARGE_ROWS,
        Duration::from_secs(60),
        "still opening the upload",
    )
    .await;
    assert!(report.manifest.object.part_count >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_of_the_latest_backup_does_not_wait_for_a_stalled_region() {
    let env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", 100).await;
    let (proxy, config) = behind_stall_proxy(&env, 1).await;
    let report = backup(&config, "acme").await.expect("backup");
    assert!(!report.degraded);
    proxy.stall();

    let started = std::time::Instant::now();
    let restored = restore(&config, "acme", BackupSelector::Latest, "acme_restored")
        .await
        .expect("restore from the regions that answer");
    // The others answer at once; the stalled one gets 10 s, not the 120 s request timeout.
    assert!(
        started.elapsed() < Duration::from_secs(40),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(restored.backup_id, report.manifest.backup_id);
    assert_eq!(restored.region.as_str(), "eu");
    let unlisted: Vec<&str> = restored
        .regions_not_listed
        .iter()
        .map(|attempt| attempt.region.as_str())
        .collect();
    assert_eq!(unlisted, ["us"], "{:?}", restored.regions_not_listed);
}
