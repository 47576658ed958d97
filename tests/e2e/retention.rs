//! Retention, the trash and legal holds, end to end: real backups in real regions, the
//! catalog rebuilt from them, history shaped by moving `started_at` back in the catalog.

use lifeboat_core::config::Config;
use lifeboat_core::region::Region;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, all_keys, stderr, stdout};

fn json(output: &std::process::Output) -> serde_json::Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!("not JSON ({error}): {}", stdout(output));
    })
}

/// A tenant `acme` with `backups` real backups, oldest first, recorded in a fresh catalog,
/// and retention keeping one daily backup.
async fn tenant_with_backups(
    env: &TestEnv,
    backups: usize,
    extra_config: &str,
) -> (std::path::PathBuf, Vec<String>, tokio_postgres::Client) {
    env.create_tenant_database("acme", 100).await;
    env.create_catalog().await;
    let config_path = env.config_file(&Settings {
        extra: format!("{CATALOG}{extra_config}"),
        ..Settings::default()
    });
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    assert!(run(&["controller", "migrate"]).status.success());
    let added = run(&[
        "tenant",
        "add",
        "acme",
        "--cluster",
        "main",
        "--keep-daily",
        "1",
        "--keep-weekly",
        "0",
        "--keep-monthly",
        "0",
    ]);
    assert!(added.status.success(), "{}", stderr(&added));
    let mut ids = Vec::new();
    for _ in 0..backups {
        let backup = json(&run(&["backup", "--tenant", "acme", "--json"]));
        ids.push(backup["backup_id"].as_str().expect("id").to_owned());
    }
    json(&run(&["catalog", "rebuild", "--region", "eu", "--json"]));
    let catalog = env
        .postgres
        .connect("lifeboat_catalog")
        .await
        .expect("connect catalog");
    (config_path, ids, catalog)
}

/// The catalog as the controller opens it, and the configured regions' names.
async fn catalog_pool(
    config: &Config,
) -> (
    lifeboat_controller::catalog::Catalog,
    Vec<lifeboat_core::ids::RegionName>,
) {
    let catalog = config.catalog.as_ref().expect("catalog configured");
    let pool = lifeboat_controller::catalog::Catalog::connect(
        config.cluster(&catalog.cluster).expect("cluster"),
        &catalog.database,
    )
    .await
    .expect("catalog pool");
    let region_names = config
        .regions
        .iter()
        .map(|region| region.name.clone())
        .collect();
    (pool, region_names)
}

/// Move a backup back in time, past the 30 days manual backups are kept whatever the policy.
async fn age_backup(catalog: &tokio_postgres::Client, id: &str, days: i32) {
    let changed = catalog
        .execute(
            "UPDATE backups SET started_at = started_at - make_interval(days => $2),
                                finished_at = finished_at - make_interval(days => $2)
             WHERE id = $1::text::uuid",
            &[&id, &days],
        )
        .await
        .expect("age backup");
    assert_eq!(changed, 1);
}

fn ids_of(list: &serde_json::Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|entry| entry["backup_id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trashed_backup_is_purged_from_every_region_and_the_other_still_restores() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    let (config_path, ids, catalog) = tenant_with_backups(&env, 2, "").await;
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    let (old, new) = (&ids[0], &ids[1]);
    age_backup(&catalog, old, 40).await;

    let dry = json(&run(&["retention", "run", "--dry-run", "--json"]));
    let plan = &dry["tenants"][0];
    assert_eq!(plan["tenant"], "acme");
    assert_eq!(ids_of(&plan["trash"]), [old.as_str()], "{dry}");
    assert_eq!(ids_of(&plan["keep"]), [new.as_str()], "{dry}");
    assert_eq!(plan["keep"][0]["reasons"][0], "newest", "{dry}");
    assert!(
        plan["keep"][0]["reasons"][1]
            .as_str()
            .expect("reason")
            .starts_with("daily "),
        "{dry}"
    );
    assert!(
        plan["trash"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("keep daily 1"),
        "{dry}"
    );
    let in_trash: i64 = catalog
        .query_one(
            "SELECT count(*) FROM backups WHERE trashed_at IS NOT NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(in_trash, 0, "a dry run changes nothing");

    let applied = json(&run(&[
        "retention",
        "run",
        "--tenant",
        "acme",
        "--trash-days",
        "0",
        "--json",
    ]));
    assert_eq!(ids_of(&applied["tenants"][0]["trash"]), [old.as_str()]);
    let trash = json(&run(&["trash", "list", "--json"]));
    assert_eq!(ids_of(&trash), [old.as_str()]);

    let config = Config::load(Some(&config_path)).expect("config");
    // Scrub no longer checks a trashed backup, but keeps its objects from the orphan sweep.
    let (pool, region_names) = catalog_pool(&config).await;
    let jobs = lifeboat_controller::scrub::plan_scrub(&pool, &region_names, 0, chrono::Utc::now())
        .await
        .expect("plan scrub");
    for job in jobs {
        let lifeboat_core::api::JobWork::Scrub { copies, keep, .. } = job else {
            panic!("not a scrub job: {job:?}");
        };
        assert!(!copies.iter().any(|copy| copy.backup_id.to_string() == *old));
        assert!(keep.iter().any(|id| id.to_string() == *old), "{keep:?}");
    }
    let regions: Vec<Region> = config.regions.iter().map(Region::new).collect();
    for region in &regions {
        let keys = all_keys(region).await;
        assert_eq!(
            keys.iter().filter(|key| key.contains(old.as_str())).count(),
            2,
            "trashed, not yet purged: {keys:?}"
        );
    }

    let purged = json(&run(&["trash", "purge", "--json"]));
    assert_eq!(ids_of(&purged["purged"]), [old.as_str()], "{purged}");
    assert_eq!(purged["failed"], serde_json::json!([]));
    for region in &regions {
        let keys = all_keys(region).await;
        assert!(
            !keys.iter().any(|key| key.contains(old.as_str())),
            "region {} still holds {old}: {keys:?}",
            region.name()
        );
        assert_eq!(
            keys.iter().filter(|key| key.contains(new.as_str())).count(),
            2,
            "the kept backup's object and manifest stay: {keys:?}"
        );
    }
    let remaining: Vec<String> = catalog
        .query("SELECT id::text FROM backups", &[])
        .await
        .expect("backups")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(remaining, [new.as_str()]);
    assert_eq!(
        json(&run(&["trash", "list", "--json"])),
        serde_json::json!([])
    );

    let restored = run(&[
        "restore",
        "--tenant",
        "acme",
        "--latest",
        "--into",
        "acme_restored",
        "--json",
    ]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert!(
        stdout(&restored).contains(new.as_str()),
        "{}",
        stdout(&restored)
    );
    assert_eq!(
        env.table_fingerprints("acme").await,
        env.table_fingerprints("acme_restored").await
    );

    let actions: Vec<String> = catalog
        .query(
            "SELECT action FROM audit_log WHERE action LIKE 'retention.%' OR action LIKE 'trash.%' ORDER BY id",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(actions, ["retention.trash", "trash.purge"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legal_holds_stop_trash_and_purge_and_trash_restore_brings_a_backup_back() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let (config_path, ids, catalog) =
        tenant_with_backups(&env, 3, "[retention]\ntrash_days = 0\n").await;
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    let (held, unheld, newest) = (&ids[0], &ids[1], &ids[2]);
    age_backup(&catalog, held, 60).await;
    age_backup(&catalog, unheld, 50).await;

    let hold = run(&["backups", "hold", held]);
    assert!(hold.status.success(), "{}", stderr(&hold));
    let applied = json(&run(&["retention", "run", "--json"]));
    let plan = &applied["tenants"][0];
    assert_eq!(ids_of(&plan["trash"]), [unheld.as_str()], "{applied}");
    assert_eq!(ids_of(&plan["keep"]), [newest.as_str(), held.as_str()]);
    assert_eq!(
        plan["keep"][1]["reasons"],
        serde_json::json!(["legal hold"])
    );

    // A tenant-wide hold keeps even the trash from being purged.
    assert!(run(&["tenant", "hold", "acme"]).status.success());
    let purged = json(&run(&["trash", "purge", "--json"]));
    assert_eq!(purged["purged"], serde_json::json!([]), "{purged}");
    let trash = json(&run(&["trash", "list", "--json"]));
    assert_eq!(ids_of(&trash), [unheld.as_str()]);
    assert_eq!(trash[0]["legal_hold"], true);
    assert_eq!(
        trash[0]["purge_after"], trash[0]["trashed_at"],
        "[retention] trash_days = 0 makes it due at once: {trash}"
    );
    let held_plan = json(&run(&["retention", "run", "--dry-run", "--json"]));
    assert_eq!(held_plan["tenants"][0]["trash"], serde_json::json!([]));
    assert!(run(&["tenant", "unhold", "acme"]).status.success());

    let restored = run(&["trash", "restore", unheld]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert!(
        stdout(&restored).contains("unless it is held"),
        "{}",
        stdout(&restored)
    );
    assert_eq!(
        json(&run(&["trash", "list", "--json"])),
        serde_json::json!([])
    );
    let state: (Option<String>, bool) = catalog
        .query_one(
            "SELECT trash_reason, purge_after IS NULL FROM backups WHERE id = $1::text::uuid",
            &[&unheld.as_str()],
        )
        .await
        .map(|row| (row.get(0), row.get(1)))
        .expect("backup");
    assert_eq!(state, (None, true));

    // Nothing left to purge: both older backups stay in the region.
    let purged = json(&run(&["trash", "purge", "--json"]));
    assert_eq!(purged["purged"], serde_json::json!([]));
    let config = Config::load(Some(&config_path)).expect("config");
    let keys = all_keys(&Region::new(&config.regions[0])).await;
    for id in &ids {
        assert_eq!(
            keys.iter().filter(|key| key.contains(id.as_str())).count(),
            2,
            "{id}: {keys:?}"
        );
    }

    for (arguments, expected) in [
        (
            vec!["trash", "restore", newest.as_str()],
            "is not in the trash",
        ),
        (
            vec!["backups", "hold", "0190a5c4-7d0e-7cc2-8e8a-0f5d7a3b2c11"],
            "is not in the catalog",
        ),
        (
            vec!["tenant", "hold", "nobody"],
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

    let actions: Vec<String> = catalog
        .query(
            "SELECT action FROM audit_log WHERE action NOT IN ('tenant.add', 'catalog.rebuild') ORDER BY id",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        actions,
        [
            "backup.hold",
            "retention.trash",
            "tenant.hold",
            "tenant.unhold",
            "trash.restore"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_drill_is_recorded_and_keeps_its_backup_from_retention_a_failed_one_does_not() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    let (config_path, ids, catalog) = tenant_with_backups(&env, 3, "").await;
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    let (oldest, middle, newest) = (&ids[0], &ids[1], &ids[2]);

    let drilled = json(&run(&[
        "drill", "--tenant", "acme", "--backup", oldest, "--json",
    ]));
    assert_eq!(drilled["verified"], true, "{drilled}");
    assert_eq!(drilled["backup_id"], oldest.as_str());
    assert_eq!(drilled["rows_verified"], 100 * 3 + 100, "{drilled}");
    let scratch = drilled["scratch_database"].as_str().expect("scratch");
    assert!(scratch.starts_with("lifeboat_drill_"), "{scratch}");
    assert!(
        !env.database_exists(scratch).await,
        "the scratch database is dropped"
    );

    // The middle backup's object is gone from every region: its drill fails, is recorded
    // as failed, and marks nothing verified.
    let config = Config::load(Some(&config_path)).expect("config");
    for region in config.regions.iter().map(Region::new) {
        let key = all_keys(&region)
            .await
            .into_iter()
            .find(|key| key.contains(middle.as_str()) && key.ends_with(".age"))
            .expect("object key");
        region.delete_object(&key).await.expect("delete object");
    }
    let failed = run(&["drill", "--tenant", "acme", "--backup", middle]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(stdout(&failed).contains("FAILED"), "{}", stdout(&failed));
    let leftover: i64 = catalog
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'lifeboat_drill_%'",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(leftover, 0, "a failed drill leaves no scratch database");

    let listed = json(&run(&["drills", "list", "--tenant", "acme", "--json"]));
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(listed[0]["backup_id"], middle.as_str());
    assert_eq!(listed[0]["outcome"], "failed", "{listed:?}");
    assert!(
        listed[0]["error"]
            .as_str()
            .is_some_and(|error| error.contains("missing") || error.contains("not found")),
        "{listed:?}"
    );
    assert_eq!(listed[1]["backup_id"], oldest.as_str());
    assert_eq!(listed[1]["outcome"], "verified", "{listed:?}");
    assert_eq!(listed[1]["rows_verified"], 400, "{listed:?}");
    let verified: Vec<String> = catalog
        .query(
            "SELECT id::text FROM backups WHERE verified_at IS NOT NULL",
            &[],
        )
        .await
        .expect("verified")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(verified, [oldest.as_str()]);
    let (pool, region_names) = catalog_pool(&config).await;
    let metrics = lifeboat_controller::metrics::render(&pool, &region_names)
        .await
        .expect("metrics");
    assert!(
        metrics.contains("lifeboat_tenant_last_verified_backup_timestamp_seconds{tenant=\"acme\"}")
            && metrics.contains("lifeboat_tenant_last_drill_duration_seconds{tenant=\"acme\"}"),
        "{metrics}"
    );

    // Past the 30 days manual backups are kept, with keep-daily 1: the newest is kept as
    // newest, the oldest as the newest verified, and the middle one goes to the trash.
    for id in &ids {
        age_backup(&catalog, id, 40).await;
    }
    let plan = json(&run(&["retention", "run", "--dry-run", "--json"]));
    let plan = &plan["tenants"][0];
    assert_eq!(ids_of(&plan["trash"]), [middle.as_str()], "{plan}");
    let kept = ids_of(&plan["keep"]);
    assert!(kept.contains(newest) && kept.contains(oldest), "{plan}");
    let oldest_kept = plan["keep"]
        .as_array()
        .expect("keep")
        .iter()
        .find(|entry| entry["backup_id"] == oldest.as_str())
        .expect("oldest kept");
    assert!(
        oldest_kept["reasons"]
            .as_array()
            .expect("reasons")
            .iter()
            .any(|reason| reason == "newest verified"),
        "{plan}"
    );

    // A verified drill that cannot be recorded has not marked its backup verified: exit 1.
    catalog
        .execute("DELETE FROM backups WHERE id = $1::text::uuid", &[newest])
        .await
        .expect("forget the newest backup");
    let unrecorded = run(&["drill", "--tenant", "acme", "--backup", newest]);
    assert_eq!(unrecorded.status.code(), Some(1), "{}", stderr(&unrecorded));
    assert!(
        stdout(&unrecorded).contains("verified"),
        "{}",
        stdout(&unrecorded)
    );
    assert!(
        stderr(&unrecorded).contains("not in the catalog"),
        "{}",
        stderr(&unrecorded)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_tenant_can_trash_its_backups_but_not_held_ones_nor_a_held_tenant() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let (config_path, ids, catalog) =
        tenant_with_backups(&env, 3, "[retention]\ntrash_days = 0\n").await;
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    let (held, others) = (&ids[0], &ids[1..]);
    assert!(run(&["backups", "hold", held]).status.success());

    // A tenant under legal hold is not removed: the hold lives on its row.
    assert!(run(&["tenant", "hold", "acme"]).status.success());
    let refused = run(&["tenant", "remove", "acme", "--trash-backups"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("tenant acme is under legal hold"),
        "{}",
        stderr(&refused)
    );
    assert!(run(&["tenant", "show", "acme"]).status.success(), "kept");
    assert_eq!(
        json(&run(&["trash", "list", "--json"])),
        serde_json::json!([])
    );
    assert!(run(&["tenant", "unhold", "acme"]).status.success());

    // A backup job of the tenant: while it runs, the tenant is not removed; queued, it is
    // cancelled with the removal, so no backup outside retention lands afterwards.
    let config = Config::load(Some(&config_path)).expect("config");
    let (pool, _) = catalog_pool(&config).await;
    let job = lifeboat_controller::queue::NewJob {
        dedup_key: Some(lifeboat_controller::dedup_key::DedupKey::NightlyBackup {
            run: lifeboat_controller::dedup_key::RunName::parse("test").expect("run"),
            tenant: lifeboat_core::ids::TenantName::parse("acme").expect("tenant"),
        }),
        work: lifeboat_core::api::JobWork::Backup {
            tenant: lifeboat_core::ids::TenantName::parse("acme").expect("tenant"),
            cluster: lifeboat_core::ids::ClusterName::parse("main").expect("cluster"),
            database: "acme".to_owned(),
            backup_kind: lifeboat_core::manifest::BackupKind::Scheduled,
        },
    };
    let drill = lifeboat_controller::queue::NewJob {
        dedup_key: Some(lifeboat_controller::dedup_key::DedupKey::NightlyDrill {
            run: lifeboat_controller::dedup_key::RunName::parse("test").expect("run"),
            tenant: lifeboat_core::ids::TenantName::parse("acme").expect("tenant"),
        }),
        work: lifeboat_core::api::JobWork::Drill {
            tenant: lifeboat_core::ids::TenantName::parse("acme").expect("tenant"),
            cluster: lifeboat_core::ids::ClusterName::parse("main").expect("cluster"),
            backup_id: lifeboat_core::ids::BackupId::parse(others[0].as_str()).expect("id"),
            sha256: None,
        },
    };
    let job_ids = lifeboat_controller::queue::enqueue(
        &**pool.connection().await.expect("connection"),
        &[job, drill],
        4,
    )
    .await
    .expect("enqueue");
    let job_id = job_ids[0];
    catalog
        .execute(
            "UPDATE jobs SET state = 'running', lease_token = gen_random_uuid() WHERE id = $1",
            &[&job_id],
        )
        .await
        .expect("mark running");
    let refused = run(&["tenant", "remove", "acme", "--trash-backups"]);
    assert!(
        stderr(&refused).contains(&format!("has a backup or drill running (job {job_id})")),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        json(&run(&["trash", "list", "--json"])),
        serde_json::json!([])
    );
    catalog
        .execute(
            "UPDATE jobs SET state = 'queued', lease_token = NULL WHERE id = $1",
            &[&job_id],
        )
        .await
        .expect("back to queued");

    let removed = run(&["tenant", "remove", "acme", "--trash-backups"]);
    assert!(removed.status.success(), "{}", stderr(&removed));
    let said = stdout(&removed);
    assert!(
        said.contains("2 queued backup and drill jobs cancelled"),
        "{said}"
    );
    for id in &job_ids {
        let row = catalog
            .query_one("SELECT state, last_error FROM jobs WHERE id = $1", &[id])
            .await
            .expect("job");
        let (state, error): (String, Option<String>) = (row.get(0), row.get(1));
        assert_eq!(
            (state.as_str(), error.as_deref()),
            ("failed", Some("tenant removed"))
        );
    }
    assert!(said.contains("2 backups moved to the trash"), "{said}");
    assert!(
        said.contains("1 backups stay in the regions under their own legal hold"),
        "{said}"
    );
    let trash = json(&run(&["trash", "list", "--json"]));
    let mut trashed = ids_of(&trash);
    trashed.sort();
    assert_eq!(trashed, others);
    assert_eq!(trash[0]["trash_reason"], "tenant removed", "{trash}");

    // trash_days = 0: due at once. The held backup stays in the region and the catalog.
    let purged = json(&run(&["trash", "purge", "--json"]));
    assert_eq!(
        purged["purged"].as_array().expect("purged").len(),
        2,
        "{purged}"
    );
    let config = Config::load(Some(&config_path)).expect("config");
    // The tenant's identity file stays until `tenant shred`: it is not a backup.
    let keys: Vec<String> = all_keys(&Region::new(&config.regions[0]))
        .await
        .into_iter()
        .filter(|key| !key.ends_with("/identity.age"))
        .collect();
    assert_eq!(
        keys.len(),
        2,
        "only the held backup's object and manifest: {keys:?}"
    );
    assert!(
        keys.iter().all(|key| key.contains(held.as_str())),
        "{keys:?}"
    );
    let audit: String = catalog
        .query_one(
            "SELECT details::text FROM audit_log WHERE action = 'tenant.remove'",
            &[],
        )
        .await
        .expect("audit")
        .get(0);
    let audit: serde_json::Value = serde_json::from_str(&audit).expect("audit json");
    assert_eq!(audit["backups_trashed"], 2, "{audit}");
    assert_eq!(audit["backups_left"], 1, "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_keeps_a_trashed_backup_when_the_tenant_has_no_other_restorable_one() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    let (config_path, ids, catalog) = tenant_with_backups(&env, 2, "").await;
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    let (old, new) = (&ids[0], &ids[1]);
    age_backup(&catalog, old, 40).await;
    let applied = json(&run(&[
        "retention",
        "run",
        "--tenant",
        "acme",
        "--trash-days",
        "0",
        "--json",
    ]));
    assert_eq!(ids_of(&applied["tenants"][0]["trash"]), [old.as_str()]);
    // Since retention ran, every copy of the kept backup was found lost.
    catalog
        .execute(
            "UPDATE backup_copies SET state = 'missing' WHERE backup_id = $1::text::uuid",
            &[&new.as_str()],
        )
        .await
        .expect("lose the kept backup's copies");

    let purged = json(&run(&["trash", "purge", "--json"]));
    assert_eq!(purged["purged"], serde_json::json!([]), "{purged}");
    assert_eq!(ids_of(&purged["skipped"]), [old.as_str()], "{purged}");
    assert!(
        purged["skipped"][0]["reason"]
            .as_str()
            .expect("reason")
            .contains("no other restorable backup"),
        "{purged}"
    );
    let config = Config::load(Some(&config_path)).expect("config");
    for region in config.regions.iter().map(Region::new) {
        let keys = all_keys(&region).await;
        assert_eq!(
            keys.iter().filter(|key| key.contains(old.as_str())).count(),
            2,
            "the last restorable backup stays in region {}: {keys:?}",
            region.name()
        );
    }

    // Once a copy of the newer backup is back, the old one goes.
    catalog
        .execute(
            "UPDATE backup_copies SET state = 'present' WHERE backup_id = $1::text::uuid",
            &[&new.as_str()],
        )
        .await
        .expect("repair the kept backup");
    let purged = json(&run(&["trash", "purge", "--json"]));
    assert_eq!(ids_of(&purged["purged"]), [old.as_str()], "{purged}");
}
