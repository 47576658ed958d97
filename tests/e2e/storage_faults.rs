//! One chosen request fails, through the regions' fault injector, in front of real servers:
//! the backup and the restore react as they do when a server is killed (`faults.rs`).

use std::sync::Arc;

use lifeboat_core::backup::BackupError;
use lifeboat_core::ids::RegionName;
use lifeboat_core::progress::Silent;
use lifeboat_core::region::{Fault, INJECTED_FAULT, Operation, Regions};
use lifeboat_core::restore::BackupSelector;

use crate::harness::{
    Backend, Settings, TestEnv, all_keys, assert_no_open_uploads, backup_through, restore_through,
};

/// Enough data for several 5 MiB parts after compression (as in `faults.rs`).
const LARGE_ROWS: u32 = 120_000;

fn region<'a>(regions: &'a Regions, name: &str) -> &'a lifeboat_core::region::Region {
    regions
        .named(&RegionName::parse(name).expect("region name"))
        .expect("configured region")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_upload_of_part_2_drops_that_region_and_the_backup_is_degraded() {
    let env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", LARGE_ROWS).await;
    let config = env.config(&Settings::default());
    let regions = Regions::from_config(&config);
    region(&regions, "us")
        .faults()
        .arm(Fault::on(Operation::UploadPart).part(2));

    let report = backup_through(&config, &regions, "acme", Arc::new(Silent))
        .await
        .expect("backup commits on the other two regions");
    assert!(
        report.manifest.object.part_count >= 3,
        "{:?}",
        report.manifest.object
    );
    assert!(report.degraded);
    let holding: Vec<&str> = report.manifest.regions.iter().map(|r| r.as_str()).collect();
    assert_eq!(holding, ["eu", "ap"]);
    let dropped = report
        .regions
        .iter()
        .find(|result| result.region.as_str() == "us")
        .expect("us reported");
    let reason = dropped.error.as_deref().unwrap_or_default();
    assert!(
        !dropped.stored && reason.contains("upload part 2") && reason.contains(INJECTED_FAULT),
        "{dropped:?}"
    );
    assert_eq!(
        region(&regions, "us").faults().injected(),
        [format!("upload part {} part 2", report.manifest.object.key)]
    );
    // Unlike a killed server, this one can be told: nothing of the backup stays in us.
    let us = env.region(&config, 1);
    assert!(all_keys(&us).await.is_empty(), "{:?}", all_keys(&us).await);
    assert_no_open_uploads(&us, "", "us after its part failed").await;

    let restored = restore_through(
        &config,
        &Regions::from_config(&config),
        "acme",
        BackupSelector::Latest,
        "acme_restored",
    )
    .await
    .expect("restore");
    assert_eq!(restored.rows_verified, u64::from(LARGE_ROWS) * 3 + 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_manifest_put_in_every_region_leaves_no_manifest_and_no_open_upload() {
    let env = TestEnv::start(Backend::Seaweed, 3).await;
    env.create_tenant_database("acme", LARGE_ROWS).await;
    let config = env.config(&Settings::default());
    let regions = Regions::from_config(&config);
    for region in regions.iter() {
        region
            .faults()
            .arm(Fault::on(Operation::PutObject).key_ending(".manifest.json"));
    }

    let error = backup_through(&config, &regions, "acme", Arc::new(Silent))
        .await
        .expect_err("no region took the manifest");
    assert!(
        matches!(error, BackupError::TooFewRegions { available: 0, .. }),
        "{error}"
    );
    assert!(error.to_string().contains(INJECTED_FAULT), "{error}");
    for region in regions.iter() {
        assert_eq!(region.faults().injected().len(), 1, "{region:?}");
        // The multipart upload had completed: the object is deleted, nothing left open.
        let keys = all_keys(region).await;
        assert!(keys.is_empty(), "{}: {keys:?}", region.name());
        assert_no_open_uploads(region, "", "after the failed commit").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_get_of_the_object_in_the_first_region_falls_back_to_the_next() {
    let env = TestEnv::start(Backend::Embedded, 3).await;
    env.create_tenant_database("acme", 1000).await;
    let config = env.config(&Settings::default());
    let report = crate::harness::backup(&config, "acme")
        .await
        .expect("backup");
    assert!(!report.degraded);

    let regions = Regions::from_config(&config);
    let object_key = report.manifest.object.key.clone();
    region(&regions, "eu")
        .faults()
        .arm(Fault::on(Operation::GetObject).key_ending(&object_key));
    let restored = restore_through(
        &config,
        &regions,
        "acme",
        BackupSelector::Latest,
        "acme_restored",
    )
    .await
    .expect("restore falls back");
    assert_eq!(restored.region.as_str(), "us");
    assert_eq!(restored.failed_attempts.len(), 1);
    assert_eq!(restored.failed_attempts[0].region.as_str(), "eu");
    assert!(
        restored.failed_attempts[0].error.contains(INJECTED_FAULT),
        "{}",
        restored.failed_attempts[0].error
    );
    // Only the object's GET failed: eu's manifest was read, the object asked for once.
    assert_eq!(
        region(&regions, "eu").faults().injected(),
        [format!("get object {object_key}")]
    );
    assert_eq!(
        env.table_fingerprints("acme").await,
        env.table_fingerprints("acme_restored").await
    );
}
