//! Object lock and least-privilege keys (issue 11): a region whose bucket is versioned and
//! locked, an agents' writer key whose policy denies every delete, and a manager key for
//! the controller. `regions check` reports what the bucket and the keys allow.

use lifeboat_core::region::{Region, RegionErrorKind};

use crate::harness::{Backend, Settings, TestEnv, stderr, stdout};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_region_keeps_a_backup_against_its_writer_key_and_a_versioned_delete() {
    let env = TestEnv::start(Backend::SeaweedLocked, 1).await;
    env.create_tenant_database("acme", 200).await;
    let settings = Settings {
        min_regions: Some(1),
        ..Settings::default()
    };
    let config_path = env.config_file(&settings);

    let checked = env.lifeboat(&config_path, &["regions", "check", "--json"]);
    assert!(
        checked.status.success(),
        "{}{}",
        stdout(&checked),
        stderr(&checked)
    );
    let checks: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("json");
    let check = &checks[0];
    assert_eq!(check["versioning"], "Enabled", "{check}");
    assert_eq!(check["object_lock_enabled"], true, "{check}");
    assert_eq!(check["configured_lock"], "compliance", "{check}");
    assert_eq!(check["writer_delete_refused"], true, "{check}");
    assert_eq!(check["separate_manager_key"], true, "{check}");
    assert_eq!(check["problems"], serde_json::json!([]), "{check}");

    let before = chrono::Utc::now();
    let backed_up = env.lifeboat(&config_path, &["backup", "--tenant", "acme", "--json"]);
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    let config = env.config(&settings);
    let writer = Region::new(&config.regions[0]);
    let manager = Region::manager(&config.regions[0]);
    let keys = writer.list_keys("tenants/acme/").await.expect("list");
    assert_eq!(keys.len(), 2, "a dump and its manifest: {keys:?}");

    // Every object of the backup is locked in compliance mode until the earliest moment
    // any policy could purge it: a manual backup's 30 days (`lifeboat backup` takes a
    // manual one), then the 14 days of trash.
    let earliest_purge = before + chrono::TimeDelta::days(30 + 14);
    for key in &keys {
        let retention = writer
            .object_retention(key, None)
            .await
            .expect("head")
            .unwrap_or_else(|| panic!("{key} has no retention"));
        assert_eq!(retention.mode, "COMPLIANCE", "{key}");
        let off_by = (retention.retain_until - earliest_purge)
            .num_seconds()
            .abs();
        assert!(
            off_by < 600,
            "{key} is locked until {}",
            retention.retain_until
        );
    }

    // The writer key (the agents') is refused every delete.
    for key in &keys {
        let refused = writer.delete_object(key).await.expect_err("writer delete");
        assert_eq!(refused.kind, RegionErrorKind::AccessDenied, "{refused}");
    }
    let dump = keys
        .iter()
        .find(|key| !key.ends_with(".json"))
        .expect("the dump")
        .clone();
    let versions = manager.list_versions(&dump).await.expect("versions");
    let [locked] = &versions[..] else {
        panic!("one version of the dump: {versions:?}");
    };

    // A plain delete (the manager's key may) only hides it behind a delete marker, an
    // overwrite only adds a version, and the locked version cannot be deleted by anyone.
    manager.delete_object(&dump).await.expect("plain delete");
    writer
        .put_object(
            &dump,
            bytes::Bytes::from_static(b"overwritten by an attacker"),
        )
        .await
        .expect("an overwrite is a new version");
    let refused = manager
        .delete_version(&dump, &locked.version_id)
        .await
        .expect_err("the locked version");
    assert_eq!(refused.kind, RegionErrorKind::AccessDenied, "{refused}");
    let versions = manager.list_versions(&dump).await.expect("versions");
    assert_eq!(
        versions.len(),
        3,
        "version, delete marker, overwrite: {versions:?}"
    );
    assert!(versions.iter().any(|version| version.delete_marker));
    let kept = versions
        .iter()
        .find(|version| version.version_id == locked.version_id)
        .expect("the locked version is still there");
    assert_eq!(kept.size, locked.size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_check_warns_of_a_writer_key_that_can_delete_and_require_lock_refuses_it() {
    let env = TestEnv::start(Backend::Seaweed, 1).await;
    let plain = env.config_file(&Settings::default());
    let checked = env.lifeboat(&plain, &["regions", "check"]);
    assert!(checked.status.success(), "{}", stderr(&checked));
    let text = stdout(&checked);
    assert!(
        text.contains("the writer key (access_key_id) can delete objects"),
        "{text}"
    );
    assert!(text.contains("no manager key"), "{text}");

    let required = env.config_file(&Settings {
        region_extra: "object_lock = \"compliance\"\nrequire_lock = true\n".to_owned(),
        ..Settings::default()
    });
    let checked = env.lifeboat(&required, &["regions", "check", "--json"]);
    assert_eq!(checked.status.code(), Some(1), "{}", stdout(&checked));
    let checks: serde_json::Value = serde_json::from_slice(&checked.stdout).expect("json");
    let problems = checks[0]["problems"].to_string();
    assert!(problems.contains("has no versioning"), "{problems}");
    assert!(problems.contains("require_lock = true"), "{problems}");
    assert_eq!(checks[0]["writer_delete_refused"], false);
    // And nothing is backed up to such a region.
    env.create_tenant_database("acme", 10).await;
    let refused = env.lifeboat(&required, &["backup", "--tenant", "acme"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("require_lock is set"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        Region::new(&env.config(&Settings::default()).regions[0])
            .list_keys("tenants/")
            .await
            .expect("list"),
        Vec::<String>::new()
    );
    // The probe left nothing behind.
    let config = env.config(&Settings::default());
    let left = Region::new(&config.regions[0])
        .list_keys("lifeboat-check/")
        .await
        .expect("list");
    assert_eq!(left, Vec::<String>::new());
}

/// The attack drill: an agent's writer key is stolen. It is refused a delete of every
/// object of every tenant in every region, and overwrites them all; someone with a key
/// that may delete (a stolen manager key, a careless admin) also hides every manifest
/// behind a delete marker. The next nightly's scrub finds every copy bad, the controller
/// brings each back from its locked version, audits it, and every backup restores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_writer_key_cannot_destroy_any_backup_and_scrub_brings_every_copy_back() {
    use crate::controller::{catalog_settings, env_with_tenants, open_catalog, scalar};

    let env = TestEnv::start(Backend::SeaweedLocked, 2).await;
    let tenants = ["acme", "globex"];
    let config_path = env_with_tenants(&env, &tenants, 300).await;
    let config = env.config(&catalog_settings());
    let first = env.lifeboat(&config_path, &["nightly", "--json", "--run", "r1"]);
    assert!(
        first.status.success(),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    let summary: serde_json::Value = serde_json::from_slice(&first.stdout).expect("json");
    let backups: Vec<(String, String)> = summary["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|outcome| {
            (
                outcome["tenant"].as_str().expect("tenant").to_owned(),
                outcome["backup_id"].as_str().expect("backup id").to_owned(),
            )
        })
        .collect();
    assert_eq!(backups.len(), 2, "{summary}");
    // Held, so that the next nightly's backups (the same day) do not send them to the
    // trash: scrub checks live backups.
    for (_, backup_id) in &backups {
        let held = env.lifeboat(&config_path, &["backups", "hold", backup_id]);
        assert!(held.status.success(), "{}", stderr(&held));
    }
    let catalog = open_catalog(&config).await;
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backup_copies WHERE state = 'present'"
        )
        .await,
        4
    );

    let mut attempted = 0;
    for region_config in &config.regions {
        let writer = Region::new(region_config);
        let manager = Region::manager(region_config);
        let keys = writer.list_keys("tenants/").await.expect("list");
        assert_eq!(
            keys.len(),
            6,
            "two dumps, two manifests and the two tenants' identity files: {keys:?}"
        );
        for key in &keys {
            let refused = writer.delete_object(key).await.expect_err("writer delete");
            assert_eq!(refused.kind, RegionErrorKind::AccessDenied, "{refused}");
            writer
                .put_object(key, bytes::Bytes::from_static(b"ransom note"))
                .await
                .expect("an overwrite is only a new version");
            if key.ends_with(".manifest.json") {
                manager.delete_object(key).await.expect("a delete marker");
            }
            attempted += 1;
        }
    }
    assert_eq!(attempted, 12);

    let second = env.lifeboat(&config_path, &["nightly", "--json", "--run", "r2"]);
    assert!(
        second.status.success(),
        "{}{}",
        stdout(&second),
        stderr(&second)
    );
    let summary: serde_json::Value = serde_json::from_slice(&second.stdout).expect("json");
    let maintenance = &summary["maintenance"];
    assert_eq!(maintenance["copies_bad"], 4, "{summary}");
    assert_eq!(maintenance["recovered_from_lock"], 4, "{summary}");
    assert_eq!(maintenance["problems"], serde_json::json!([]), "{summary}");
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM audit_log WHERE action = 'copy.recover'"
        )
        .await,
        4
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backup_copies WHERE state <> 'present'"
        )
        .await,
        0,
        "every copy is present again"
    );
    for (tenant, backup_id) in &backups {
        let into = format!("{tenant}_after_attack");
        let restored = env.lifeboat(
            &config_path,
            &[
                "restore", "--tenant", tenant, "--backup", backup_id, "--into", &into,
            ],
        );
        assert!(restored.status.success(), "{}", stderr(&restored));
        assert_eq!(
            env.table_fingerprints(&into).await,
            env.table_fingerprints(tenant).await,
            "{tenant} restored after the attack"
        );
    }
}

/// Retention keeps a kept backup locked (the controller extends its lock before it could
/// end), and purge deletes nothing that is still locked: it says until when instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_backups_locks_are_extended_and_purge_waits_for_the_lock_to_end() {
    use crate::controller::{catalog_settings, env_with_tenants, open_catalog, scalar};
    use lifeboat_controller::retention::extend_locks;
    use lifeboat_core::region::Regions;

    let env = TestEnv::start(Backend::SeaweedLocked, 1).await;
    let config_path = env_with_tenants(&env, &["acme"], 100).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    // Two nightlies the same day: retention keeps the newer and trashes the older.
    for run in ["r1", "r2"] {
        let ran = env.lifeboat(&config_path, &["nightly", "--json", "--run", run]);
        assert!(ran.status.success(), "{}{}", stdout(&ran), stderr(&ran));
    }
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backups WHERE trashed_at IS NOT NULL"
        )
        .await,
        1
    );
    // The report's HEAD recorded each copy's lock: maintenance need not ask the region,
    // and has nothing to extend the night a backup is made.
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backup_copies WHERE locked_until IS NULL
                OR locked_until < now() + interval '20 days'"
        )
        .await,
        0,
        "every copy's lock recorded, at least trash + 7 days"
    );
    let managers = Regions::from_config(&config).managers(&config);
    let trash = config.trash_period;
    let tonight = extend_locks(&catalog, &managers, chrono::Utc::now(), trash)
        .await
        .expect("extend");
    assert_eq!(tonight.extended, 0, "{tonight:?}");

    // Twenty days on, the kept backup's first lock (14 + 7 days) would end within the
    // trash period: it is extended to the trash period plus a week from then.
    let later = chrono::Utc::now() + chrono::TimeDelta::days(20);
    let extended = extend_locks(&catalog, &managers, later, trash)
        .await
        .expect("extend");
    assert_eq!(extended.extended, 1, "{extended:?}");
    assert_eq!(extended.problems, Vec::<String>::new());
    let kept: String = catalog
        .connection()
        .await
        .expect("connection")
        .query_one(
            "SELECT tenant || '/' || id::text FROM backups WHERE trashed_at IS NULL",
            &[],
        )
        .await
        .expect("kept")
        .get(0);
    let (_, kept_id) = kept.split_once('/').expect("tenant/id");
    let writer = Region::new(&config.regions[0]);
    let keys = writer.list_keys("tenants/acme/").await.expect("list");
    let wanted = later + chrono::TimeDelta::days(14 + 7);
    for key in keys.iter().filter(|key| key.contains(kept_id)) {
        let retention = writer
            .object_retention(key, None)
            .await
            .expect("head")
            .expect("locked");
        let off_by = (retention.retain_until - wanted).num_seconds().abs();
        assert!(
            off_by < 600,
            "{key} locked until {}",
            retention.retain_until
        );
    }
    let recorded: chrono::DateTime<chrono::Utc> = catalog
        .connection()
        .await
        .expect("connection")
        .query_one(
            "SELECT c.locked_until FROM backup_copies c JOIN backups b ON b.id = c.backup_id
             WHERE b.trashed_at IS NULL",
            &[],
        )
        .await
        .expect("the kept copy's lock")
        .get(0);
    assert!((recorded - wanted).num_seconds().abs() < 600, "{recorded}");

    // The trashed backup is due, but still locked: purge deletes nothing and says why.
    catalog
        .connection()
        .await
        .expect("connection")
        .execute(
            "UPDATE backups SET purge_after = now() - interval '1 day' WHERE trashed_at IS NOT NULL",
            &[],
        )
        .await
        .expect("make it due");
    let versions_before = writer.list_versions("tenants/").await.expect("versions");
    assert_refused_while_locked(&purge_now(&catalog, &managers).await);
    assert_eq!(
        writer
            .list_versions("tenants/")
            .await
            .expect("versions")
            .len(),
        versions_before.len(),
        "nothing deleted, not even a delete marker added"
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backups WHERE trashed_at IS NOT NULL"
        )
        .await,
        1,
        "the backup stays in the trash for a later purge"
    );
}

/// A copy repaired into a locked region gets the lock of the copy it was made from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repaired_copy_keeps_the_lock_of_its_source() {
    use crate::controller::{catalog_settings, env_with_tenants, open_catalog, scalar};

    let mut env = TestEnv::start(Backend::SeaweedLocked, 2).await;
    let config_path = env_with_tenants(&env, &["acme"], 100).await;
    let config = env.config(&catalog_settings());
    env.regions[1].kill();
    let first = env.lifeboat(
        &config_path,
        &["nightly", "--json", "--run", "r1", "--backups-only"],
    );
    assert!(
        first.status.success(),
        "{}{}",
        stdout(&first),
        stderr(&first)
    );
    env.regions[1].restart().await;
    let catalog = open_catalog(&config).await;
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backup_copies WHERE state = 'present'"
        )
        .await,
        1
    );
    let second = env.lifeboat(&config_path, &["nightly", "--json", "--run", "r2"]);
    assert!(
        second.status.success(),
        "{}{}",
        stdout(&second),
        stderr(&second)
    );
    let backup_id: String = catalog
        .connection()
        .await
        .expect("connection")
        .query_one(
            "SELECT b.id::text FROM backups b JOIN backup_copies c ON c.backup_id = b.id
             GROUP BY b.id HAVING count(*) FILTER (WHERE c.state = 'present') = 2
             ORDER BY min(b.started_at) LIMIT 1",
            &[],
        )
        .await
        .expect("the first backup, repaired")
        .get(0);
    let source = Region::new(&config.regions[0]);
    let repaired = Region::new(&config.regions[1]);
    let keys = source.list_keys("tenants/acme/").await.expect("list");
    let mut checked = 0;
    for key in keys.iter().filter(|key| key.contains(&backup_id)) {
        let original = source
            .object_retention(key, None)
            .await
            .expect("head")
            .expect("locked");
        let copy = repaired
            .object_retention(key, None)
            .await
            .expect("head")
            .unwrap_or_else(|| panic!("the repaired {key} is not locked"));
        assert_eq!(copy.mode, "COMPLIANCE");
        assert!(
            copy.retain_until >= original.retain_until - chrono::TimeDelta::seconds(1),
            "{key}: {} < {}",
            copy.retain_until,
            original.retain_until
        );
        checked += 1;
    }
    assert_eq!(checked, 2, "{keys:?}");
}

/// In governance mode the manager key may bypass a lock; lifeboat's purge never does. Once
/// the lock has ended, purge deletes every version of the trashed backup (and adds no
/// delete marker), and leaves the kept backup alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_never_bypasses_a_governance_lock_and_deletes_every_version_once_it_ends() {
    use crate::controller::{catalog_settings, env_with_tenants, open_catalog, scalar};
    use aws_sdk_s3::types::{ObjectLockRetention, ObjectLockRetentionMode};
    use lifeboat_core::region::{Regions, client_config};

    let mut env = TestEnv::start(Backend::SeaweedLocked, 1).await;
    env.lock_mode = "governance";
    let config_path = env_with_tenants(&env, &["acme"], 100).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    for run in ["r1", "r2"] {
        let ran = env.lifeboat(&config_path, &["nightly", "--json", "--run", run]);
        assert!(ran.status.success(), "{}{}", stdout(&ran), stderr(&ran));
    }
    let connection = catalog.connection().await.expect("connection");
    let ids = |trashed: bool| {
        let connection = &connection;
        async move {
            connection
                .query(
                    "SELECT id::text FROM backups WHERE (trashed_at IS NOT NULL) = $1",
                    &[&trashed],
                )
                .await
                .expect("backups")
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>()
        }
    };
    let (trashed, kept) = (ids(true).await, ids(false).await);
    assert_eq!((trashed.len(), kept.len()), (1, 1));
    let (trashed, kept) = (trashed[0].clone(), kept[0].clone());
    connection
        .execute(
            "UPDATE backups SET purge_after = now() - interval '1 day' WHERE trashed_at IS NOT NULL",
            &[],
        )
        .await
        .expect("make it due");
    let managers = Regions::from_config(&config).managers(&config);
    let manager = Region::manager(&config.regions[0]);
    let versions_of = |id: String| {
        let manager = &manager;
        async move {
            manager
                .list_versions("tenants/acme/")
                .await
                .expect("versions")
                .into_iter()
                .filter(|version| version.key.contains(&id))
                .collect::<Vec<_>>()
        }
    };
    let locked = versions_of(trashed.clone()).await;
    assert_eq!(
        locked.len(),
        2,
        "dump and manifest, one version each: {locked:?}"
    );
    for version in &locked {
        let retention = manager
            .object_retention(&version.key, Some(&version.version_id))
            .await
            .expect("head")
            .expect("locked");
        assert_eq!(retention.mode, "GOVERNANCE", "{}", version.key);
    }

    // Locked: the manager key could bypass the lock, but purge does not.
    assert_refused_while_locked(&purge_now(&catalog, &managers).await);
    assert_eq!(
        versions_of(trashed.clone()).await.len(),
        2,
        "nothing deleted"
    );

    // The lock ends: an operator with the bypass right shortens it to a moment from now.
    let region_config = &config.regions[0];
    let s3 =
        aws_sdk_s3::Client::from_conf(client_config(region_config, &region_config.manager_key()));
    let ends = chrono::Utc::now() + chrono::TimeDelta::seconds(2);
    for version in &locked {
        s3.put_object_retention()
            .bucket(&region_config.bucket)
            .key(&version.key)
            .version_id(&version.version_id)
            .bypass_governance_retention(true)
            .retention(
                ObjectLockRetention::builder()
                    .mode(ObjectLockRetentionMode::Governance)
                    .retain_until_date(aws_sdk_s3::primitives::DateTime::from_millis(
                        ends.timestamp_millis(),
                    ))
                    .build(),
            )
            .send()
            .await
            .expect("shorten the governance lock with the bypass right");
    }
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;

    let report = purge_now(&catalog, &managers).await;
    assert_eq!(report.purged.len(), 1, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        versions_of(trashed).await,
        Vec::new(),
        "every version of the purged backup is gone, and no delete marker was left"
    );
    assert_eq!(
        versions_of(kept).await.len(),
        2,
        "the kept backup is untouched"
    );
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 1);
}

/// Purge the backups due now, with the manager regions, as maintenance does.
async fn purge_now(
    catalog: &lifeboat_controller::catalog::Catalog,
    managers: &[Region],
) -> lifeboat_controller::retention::PurgeReport {
    lifeboat_controller::retention::purge_due(
        catalog,
        managers,
        chrono::Utc::now(),
        &lifeboat_controller::audit::Actor::system("test"),
    )
    .await
    .expect("purge")
}

/// A purge that deleted nothing because a lock lasts, and said so.
fn assert_refused_while_locked(report: &lifeboat_controller::retention::PurgeReport) {
    assert!(report.purged.is_empty(), "{report:?}");
    let errors = report.failed[0].errors.join("; ");
    assert!(errors.contains("locked until"), "{errors}");
}

/// An upload a failed backup left open in a locked region: the writer key (what agents
/// scrub with) is refused its abort, the controller's maintenance aborts it with the
/// manager key, and leaves alone the upload of a backup the catalog keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_uploads_in_a_locked_region_are_aborted_with_the_manager_key() {
    use crate::controller::{catalog_settings, env_with_tenants, open_catalog};
    use lifeboat_controller::scrub::abort_stale_uploads_in_locked_regions;
    use lifeboat_core::ids::{BackupId, TenantName};
    use lifeboat_core::manifest::ObjectKey;
    use lifeboat_core::region::Regions;

    let env = TestEnv::start(Backend::SeaweedLocked, 1).await;
    let config_path = env_with_tenants(&env, &["acme"], 100).await;
    let config = env.config(&catalog_settings());
    let ran = env.lifeboat(
        &config_path,
        &["nightly", "--json", "--run", "r1", "--backups-only"],
    );
    assert!(ran.status.success(), "{}{}", stdout(&ran), stderr(&ran));
    let catalog = open_catalog(&config).await;
    let kept_id: String = catalog
        .connection()
        .await
        .expect("connection")
        .query_one("SELECT id::text FROM backups", &[])
        .await
        .expect("the backup")
        .get(0);
    let acme = TenantName::parse("acme").expect("name");
    let kept_key = ObjectKey::Dump(&acme, BackupId::parse(&kept_id).expect("id")).to_key();
    let stale_key = ObjectKey::Dump(&acme, BackupId::new()).to_key();

    let writer = Region::new(&config.regions[0]);
    let stale_upload = writer
        .create_multipart_upload(&stale_key)
        .await
        .expect("open an upload");
    writer
        .create_multipart_upload(&kept_key)
        .await
        .expect("open an upload of a kept backup");
    let refused = writer
        .abort_multipart_upload(&stale_key, &stale_upload)
        .await
        .expect_err("the writer key may not abort");
    assert_eq!(refused.kind, RegionErrorKind::AccessDenied, "{refused}");

    let managers = Regions::from_config(&config).managers(&config);
    let later = chrono::Utc::now() + chrono::TimeDelta::minutes(1);
    let (aborted, problems) = abort_stale_uploads_in_locked_regions(&catalog, &managers, later)
        .await
        .expect("abort");
    assert_eq!((aborted, problems), (1, Vec::<String>::new()));
    let open: Vec<String> = writer
        .list_open_uploads("tenants/")
        .await
        .expect("list")
        .expect("SeaweedFS lists uploads")
        .into_iter()
        .map(|upload| upload.key)
        .collect();
    assert_eq!(
        open,
        vec![kept_key],
        "only the kept backup's upload is left"
    );
}
