//! Scrub and repair against real SeaweedFS regions and a real catalog: copies deleted or
//! overwritten behind lifeboat's back are found, copied again from a good region, and the
//! repaired copy alone restores the tenant.

use std::collections::BTreeMap;
use std::time::Duration;

use lifeboat_agent::maintenance::{run_replicate, run_scrub, run_scrub_with_upload_age};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::scrub::{
    apply_replicate_result, apply_scrub_result, degraded_backups, plan_repairs, plan_scrub,
};
use lifeboat_core::api::{CopyState, JobResult, JobWork};
use lifeboat_core::config::Config;
use lifeboat_core::copy::{self, ReplicateError};
use lifeboat_core::ids::{BackupId, ClusterName, RegionName, TenantName};
use lifeboat_core::manifest::{Manifest, ObjectKey};
use lifeboat_core::region::{Region, Regions};
use sha2::{Digest, Sha256};

use crate::harness::{
    Backend, Settings, TestEnv, assert_no_open_uploads, read_object, stderr, stdout,
};

pub(crate) const CATALOG_DATABASE: &str = "lifeboat_catalog";

/// A tenant backed up to every region by the command line and recorded in the catalog.
pub(crate) struct BackedUp {
    pub(crate) config: Config,
    config_path: std::path::PathBuf,
    pub(crate) regions: Vec<Region>,
    pub(crate) region_names: Vec<RegionName>,
    tenant: TenantName,
    pub(crate) manifest: Manifest,
}

impl BackedUp {
    pub(crate) fn object_key(&self) -> String {
        ObjectKey::Dump(&self.tenant, self.manifest.backup_id).to_key()
    }

    fn manifest_key(&self) -> String {
        ObjectKey::Manifest(&self.tenant, self.manifest.backup_id).to_key()
    }
}

pub(crate) async fn back_up(env: &TestEnv, rows: u32) -> BackedUp {
    env.create_tenant_database("acme", rows).await;
    let config_path = env.config_file(&Settings {
        extra: format!("[catalog]\ncluster = \"main\"\ndatabase = \"{CATALOG_DATABASE}\"\n"),
        ..Settings::default()
    });
    let config = Config::load(Some(&config_path)).expect("config");
    let output = env.lifeboat(&config_path, &["backup", "--tenant", "acme", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(summary["degraded"], false, "{}", stdout(&output));
    let backup_id = BackupId::parse(summary["backup_id"].as_str().expect("id")).expect("id");
    let tenant = TenantName::parse("acme").expect("tenant");
    let regions: Vec<Region> = config.regions.iter().map(Region::new).collect();
    let manifest = lifeboat_core::restore::read_manifest(&regions[0], &tenant, backup_id)
        .await
        .expect("manifest");
    let region_names = config
        .regions
        .iter()
        .map(|region| region.name.clone())
        .collect();
    BackedUp {
        config,
        config_path,
        regions,
        region_names,
        tenant,
        manifest,
    }
}

pub(crate) async fn catalog(env: &TestEnv, backed_up: &BackedUp) -> Catalog {
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {CATALOG_DATABASE}"))
        .await
        .expect("create catalog database");
    let cluster = backed_up
        .config
        .cluster(&ClusterName::parse("main").expect("cluster"))
        .expect("cluster");
    let catalog = Catalog::connect(cluster, CATALOG_DATABASE)
        .await
        .expect("catalog");
    catalog.migrate().await.expect("migrate");
    let connection = catalog.connection().await.expect("connection");
    let client: &tokio_postgres::Client = &connection;
    let copies: Vec<(RegionName, CopyState)> = backed_up
        .region_names
        .iter()
        .map(|region| (region.clone(), CopyState::Present))
        .collect();
    lifeboat_controller::backups::record_backup(client, &backed_up.manifest, &copies)
        .await
        .expect("record backup");
    catalog
}

/// `(state, hashed, detail)` of each recorded copy of `backup_id`, by region.
async fn copy_states(
    catalog: &Catalog,
    backup_id: BackupId,
) -> BTreeMap<String, (String, bool, Option<String>)> {
    let connection = catalog.connection().await.expect("connection");
    connection
        .query(
            "SELECT region, state, hashed_at IS NOT NULL, detail FROM backup_copies WHERE backup_id = $1",
            &[&backup_id.as_uuid()],
        )
        .await
        .expect("query copies")
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2), row.get(3))))
        .collect()
}

/// Plan a scrub of every region, run it as an agent would and apply the results.
pub(crate) async fn scrub_round(
    backed_up: &BackedUp,
    catalog: &Catalog,
    full_sample_per_day: usize,
) {
    let jobs = plan_scrub(
        catalog,
        &backed_up.region_names,
        full_sample_per_day,
        chrono::Utc::now(),
    )
    .await
    .expect("plan scrub");
    assert_eq!(
        jobs.len(),
        backed_up.region_names.len(),
        "one job per region"
    );
    for job in jobs {
        let JobWork::Scrub {
            region,
            copies,
            keep,
        } = job
        else {
            panic!("not a scrub job: {job:?}");
        };
        // Every backup the catalog has is kept from the orphan sweep, trashed ones too.
        let in_catalog: i64 = catalog
            .connection()
            .await
            .expect("connection")
            .query_one("SELECT count(*) FROM backups", &[])
            .await
            .expect("count")
            .get(0);
        assert_eq!(keep.len() as i64, in_catalog, "{keep:?}");
        let result = run_scrub(
            &Regions::from_config(&backed_up.config),
            &region,
            &copies,
            &keep,
        )
        .await
        .expect("scrub");
        let JobResult::Scrub { region, copies } = result else {
            panic!("not a scrub result: {result:?}");
        };
        apply_scrub_result(
            &**catalog.connection().await.expect("connection"),
            &region,
            &copies,
        )
        .await
        .expect("apply scrub result");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

async fn open_uploads(region: &Region) -> Vec<(String, String)> {
    region
        .list_multipart_uploads("")
        .await
        .expect("list uploads")
}

/// Overwrite an object with garbage of the same size, so only its hash gives it away.
pub(crate) async fn corrupt_keeping_size(region: &Region, key: &str, size: u64) {
    let garbage = vec![0x5a_u8; usize::try_from(size).expect("size")];
    region
        .put_object(key, bytes::Bytes::from(garbage))
        .await
        .expect("overwrite object");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_finds_missing_and_corrupt_copies_and_repair_makes_them_restorable() {
    let mut env = TestEnv::start(Backend::Seaweed, 3).await;
    let backed_up = back_up(&env, 60_000).await;
    let object = &backed_up.manifest.object;
    assert!(
        object.part_count >= 2,
        "the copy must cross part boundaries: {object:?}"
    );
    let catalog = catalog(&env, &backed_up).await;
    let backup_id = backed_up.manifest.backup_id;
    let object_key = backed_up.object_key();
    let [eu, us, ap] = &backed_up.regions[..] else {
        panic!("three regions");
    };
    us.delete_object(&object_key).await.expect("delete in us");
    corrupt_keeping_size(ap, &object_key, object.stored_bytes).await;

    // Size checks alone find the missing copy but not the same-size garbage.
    scrub_round(&backed_up, &catalog, 0).await;
    let states = copy_states(&catalog, backup_id).await;
    assert_eq!(states["eu"], ("present".to_owned(), false, None));
    assert_eq!(states["us"].0, "missing", "{states:?}");
    assert!(
        states["us"].2.as_deref().unwrap_or("").contains("missing"),
        "{states:?}"
    );
    assert_eq!(states["ap"].0, "present", "{states:?}");

    // Reading the copies in full finds the garbage.
    scrub_round(&backed_up, &catalog, 10).await;
    let states = copy_states(&catalog, backup_id).await;
    assert_eq!(states["eu"], ("present".to_owned(), true, None));
    assert_eq!(states["us"].0, "missing", "{states:?}");
    assert_eq!(states["ap"].0, "corrupt", "{states:?}");
    assert!(states["ap"].1, "ap was hashed");
    assert!(
        states["ap"].2.as_deref().unwrap_or("").contains("SHA-256"),
        "{states:?}"
    );
    let degraded = degraded_backups(&catalog, &backed_up.region_names)
        .await
        .expect("degraded");
    assert_eq!(degraded.len(), 1);
    assert_eq!(degraded[0].present, vec![backed_up.region_names[0].clone()]);
    let lacking: Vec<(&str, Option<CopyState>)> = degraded[0]
        .lacking
        .iter()
        .map(|copy| (copy.region.as_str(), copy.state))
        .collect();
    assert_eq!(
        lacking,
        [
            ("us", Some(CopyState::Missing)),
            ("ap", Some(CopyState::Corrupt))
        ]
    );

    // Repair both from eu, as agents would, and record it.
    let repairs = plan_repairs(&catalog, &backed_up.region_names)
        .await
        .expect("plan repairs");
    assert_eq!(repairs.len(), 2, "{repairs:?}");
    for job in repairs {
        let JobWork::Replicate {
            tenant,
            backup_id: job_backup,
            sources,
            to,
            stored_bytes,
            sha256,
        } = job
        else {
            panic!("not a replicate job: {job:?}");
        };
        assert_eq!(sources, vec![backed_up.region_names[0].clone()]);
        assert_eq!(job_backup, backup_id);
        let result = run_replicate(
            &backed_up.config,
            &Regions::from_config(&backed_up.config),
            &tenant,
            job_backup,
            &sources,
            &to,
            stored_bytes,
            &sha256,
        )
        .await
        .expect("replicate");
        assert_eq!(result, JobResult::Replicate { region: to.clone() });
        apply_replicate_result(
            &**catalog.connection().await.expect("connection"),
            job_backup,
            &to,
        )
        .await
        .expect("apply replicate result");
    }
    let manifest_key = backed_up.manifest_key();
    let original_manifest = read_object(eu, &manifest_key).await;
    for region in [us, ap] {
        let repaired = read_object(region, &object_key).await;
        assert_eq!(repaired.len() as u64, object.stored_bytes);
        assert_eq!(sha256_hex(&repaired), object.sha256, "{:?}", region.name());
        assert_eq!(read_object(region, &manifest_key).await, original_manifest);
        assert_no_open_uploads(region, "", "after scrub").await;
    }
    assert!(
        degraded_backups(&catalog, &backed_up.region_names)
            .await
            .expect("degraded")
            .is_empty()
    );
    // Repaired copies are read back in full by the next scrub, and pass.
    scrub_round(&backed_up, &catalog, 10).await;
    let states = copy_states(&catalog, backup_id).await;
    for region in ["eu", "us", "ap"] {
        assert_eq!(
            states[region],
            ("present".to_owned(), true, None),
            "{region}"
        );
    }

    // The repaired copy alone restores the tenant: the other regions are gone.
    env.regions[0].kill();
    env.regions[1].kill();
    let output = env.lifeboat(
        &backed_up.config_path,
        &[
            "restore", "--tenant", "acme", "--latest", "--into", "newdb", "--json",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(summary["region"], "ap", "{summary}");
    assert_eq!(summary["backup_id"], backup_id.to_string());
    assert_eq!(
        env.table_fingerprints("newdb").await,
        env.table_fingerprints("acme").await
    );

    // A region that does not answer is not a lost copy: the scrub fails and the catalog keeps
    // what it knew.
    let targets = match &plan_scrub(
        &catalog,
        &backed_up.region_names[..1],
        10,
        chrono::Utc::now(),
    )
    .await
    .expect("plan")[0]
    {
        JobWork::Scrub { copies, .. } => copies.clone(),
        other => panic!("not a scrub job: {other:?}"),
    };
    assert_eq!(targets.len(), 1);
    run_scrub(
        &Regions::from_config(&backed_up.config),
        &backed_up.region_names[0],
        &targets,
        &[],
    )
    .await
    .expect_err("eu is down");
    assert_eq!(
        copy_states(&catalog, backup_id).await["eu"],
        ("present".to_owned(), true, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicate_falls_back_from_a_corrupt_source_and_leaves_nothing_when_none_is_good() {
    let env = TestEnv::start(Backend::Seaweed, 3).await;
    let backed_up = back_up(&env, 1000).await;
    let object = &backed_up.manifest.object;
    let object_key = backed_up.object_key();
    let manifest_key = backed_up.manifest_key();
    let [eu, us, ap] = &backed_up.regions[..] else {
        panic!("three regions");
    };
    let [eu_name, us_name, ap_name] = &backed_up.region_names[..] else {
        panic!("three regions");
    };
    let sources = vec![eu_name.clone(), ap_name.clone()];
    let agent_regions = Regions::from_config(&backed_up.config);
    let replicate_to_us = || {
        run_replicate(
            &backed_up.config,
            &agent_regions,
            &backed_up.tenant,
            backed_up.manifest.backup_id,
            &sources,
            us_name,
            object.stored_bytes,
            &object.sha256,
        )
    };
    corrupt_keeping_size(eu, &object_key, object.stored_bytes).await;
    us.delete_object(&object_key).await.expect("delete object");
    us.delete_object(&manifest_key)
        .await
        .expect("delete manifest");

    replicate_to_us()
        .await
        .expect("replicated from ap after eu failed");
    let repaired = read_object(us, &object_key).await;
    assert_eq!(sha256_hex(&repaired), object.sha256);
    assert_eq!(
        read_object(us, &manifest_key).await,
        read_object(ap, &manifest_key).await
    );
    assert_no_open_uploads(us, "", "eu's attempt was aborted").await;

    // No good source: nothing of the backup is left in the target, and no open upload.
    corrupt_keeping_size(ap, &object_key, object.stored_bytes).await;
    us.delete_object(&manifest_key)
        .await
        .expect("delete manifest");
    us.delete_object(&object_key).await.expect("delete object");
    let error = replicate_to_us().await.expect_err("no good source");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            lifeboat_agent::maintenance::MaintenanceError::Replicate(
                ReplicateError::NoGoodSource { .. }
            )
        ),
        "{message}"
    );
    assert!(
        message.contains("eu:") && message.contains("ap:"),
        "{message}"
    );
    assert!(us.list_keys("tenants/").await.expect("list").is_empty());
    assert_no_open_uploads(us, "", "no good source").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_aborts_stale_uploads_under_tenants_only() {
    let env = TestEnv::start(Backend::Seaweed, 1).await;
    let config = env.config(&Settings::default());
    let region = env.region(&config, 0);
    let stale_key = "tenants/acme/2020/01/stale.dump.zst.age";
    let stale = region
        .create_multipart_upload(stale_key)
        .await
        .expect("create stale upload");
    region
        .upload_part(
            stale_key,
            &stale,
            1,
            bytes::Bytes::from_static(b"half a backup"),
        )
        .await
        .expect("upload part");
    let elsewhere = region
        .create_multipart_upload("elsewhere/not-ours")
        .await
        .expect("create upload outside tenants/");
    // A backup job still running, for longer than the stale age: the catalog keeps its id.
    let running_backup = BackupId::new();
    let running = region
        .create_multipart_upload(
            &ObjectKey::Dump(&TenantName::parse("acme").expect("tenant"), running_backup).to_key(),
        )
        .await
        .expect("create the running backup's upload");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let fresh = region
        .create_multipart_upload("tenants/acme/2020/01/fresh.dump.zst.age")
        .await
        .expect("create fresh upload");

    let result = run_scrub_with_upload_age(
        &Regions::from_config(&config),
        &config.regions[0].name,
        &[],
        &[running_backup],
        Duration::from_secs(2),
    )
    .await
    .expect("scrub");
    assert_eq!(
        result,
        JobResult::Scrub {
            region: config.regions[0].name.clone(),
            copies: Vec::new()
        }
    );
    let mut left: Vec<String> = open_uploads(&region)
        .await
        .into_iter()
        .map(|(_, upload_id)| upload_id)
        .collect();
    left.sort();
    let mut expected = vec![elsewhere, fresh, running];
    expected.sort();
    assert_eq!(
        left, expected,
        "only the stale upload under tenants/ is gone, not a running backup's"
    );
    // The default age leaves the rest alone.
    run_scrub(
        &Regions::from_config(&config),
        &config.regions[0].name,
        &[],
        &[],
    )
    .await
    .expect("scrub");
    assert_eq!(open_uploads(&region).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_upload_cleanup_counts_none_where_uploads_cannot_be_listed() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config = env.config(&Settings::default());
    let region = env.region(&config, 0);
    let aborted = copy::abort_stale_uploads(
        &region,
        "tenants/",
        chrono::Utc::now(),
        &std::collections::HashSet::new(),
    )
    .await
    .expect("not supported is not an error");
    assert_eq!(aborted, 0);
    assert_eq!(
        region.list_open_uploads("tenants/").await.expect("list"),
        None,
        "s3s-fs does not list uploads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_deletes_stale_dump_objects_without_a_manifest_unless_the_catalog_knows_them() {
    let env = TestEnv::start(Backend::Seaweed, 1).await;
    env.create_tenant_database("acme", 100).await;
    let config = env.config(&Settings::default());
    let region = env.region(&config, 0);
    let committed = crate::harness::backup(&config, "acme")
        .await
        .expect("backup");
    let tenant = TenantName::parse("acme").expect("tenant");
    let orphan = ObjectKey::Dump(&tenant, BackupId::default()).to_key();
    // One of the catalog's backups in this region (a scrub target), and one the catalog
    // has in another state (trashed, or its copy here marked missing): both kept.
    let target_id = BackupId::default();
    let target = ObjectKey::Dump(&tenant, target_id).to_key();
    let kept_id = BackupId::default();
    let kept = ObjectKey::Dump(&tenant, kept_id).to_key();
    let not_a_backup = "tenants/acme/2020/01/notes.dump.zst.age";
    for key in [
        orphan.as_str(),
        target.as_str(),
        kept.as_str(),
        not_a_backup,
    ] {
        region
            .put_object(key, bytes::Bytes::from_static(b"left behind"))
            .await
            .expect("put");
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let fresh = ObjectKey::Dump(&tenant, BackupId::default()).to_key();
    region
        .put_object(&fresh, bytes::Bytes::from_static(b"in progress"))
        .await
        .expect("put");

    // The default age (a day) deletes nothing.
    run_scrub(
        &Regions::from_config(&config),
        &config.regions[0].name,
        &[],
        &[],
    )
    .await
    .expect("scrub");
    assert!(
        region
            .list_keys(&orphan)
            .await
            .expect("list")
            .contains(&orphan)
    );

    let targets = [lifeboat_core::api::ScrubTarget {
        tenant: tenant.clone(),
        backup_id: target_id,
        stored_bytes: 11,
        sha256: "0".repeat(64),
        full: false,
    }];
    run_scrub_with_upload_age(
        &Regions::from_config(&config),
        &config.regions[0].name,
        &targets,
        &[kept_id],
        Duration::from_secs(2),
    )
    .await
    .expect("scrub");
    let left = region.list_keys("").await.expect("list");
    assert!(
        !left.contains(&orphan),
        "the stale orphan is deleted: {left:?}"
    );
    for kept in [
        &target,
        &kept,
        &fresh,
        &not_a_backup.to_owned(),
        &committed.manifest.object.key,
    ] {
        assert!(left.contains(kept), "{kept} is kept: {left:?}");
    }
    crate::harness::restore(
        &config,
        "acme",
        lifeboat_core::restore::BackupSelector::Latest,
        "acme_restored",
    )
    .await
    .expect("the committed backup still restores");
}
