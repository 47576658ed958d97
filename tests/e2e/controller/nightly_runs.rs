//! The nightly through the queue: every tenant backed up once per run, drills of the new
//! backups, a run killed midway and run again, a region down during the night, a deadline.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_backs_up_every_tenant_through_the_queue_once_per_run() {
    let env = TestEnv::start(Backend::Seaweed, 2).await;
    let config_path = env_with_tenants(&env, &["acme", "globex"], 200).await;
    let config = env.config(&catalog_settings());

    let first = env.lifeboat(&config_path, &["nightly", "--json", "--run", "r1"]);
    assert!(
        first.status.success(),
        "{}\n{}",
        stdout(&first),
        stderr(&first)
    );
    let summary: serde_json::Value = serde_json::from_slice(&first.stdout).expect("json summary");
    assert_eq!(summary["succeeded"], 2, "{summary}");
    assert_eq!(summary["degraded"], 0, "{summary}");
    let first_ids: Vec<String> = summary["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|outcome| outcome["backup_id"].as_str().expect("backup id").to_owned())
        .collect();

    let catalog = open_catalog(&config).await;
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 2);
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backup_copies WHERE state = 'present'"
        )
        .await,
        4
    );
    for index in 0..2 {
        let keys = crate::harness::all_keys(&env.region(&config, index)).await;
        assert_eq!(manifests_in(&keys, "acme"), 1, "{keys:?}");
        assert_eq!(manifests_in(&keys, "globex"), 1, "{keys:?}");
    }

    // The same run again: the same backups, nothing done twice.
    let again = env.lifeboat(&config_path, &["nightly", "--json", "--run", "r1"]);
    assert!(again.status.success(), "{}", stderr(&again));
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json summary");
    let again_ids: Vec<String> = summary["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|outcome| outcome["backup_id"].as_str().expect("backup id").to_owned())
        .collect();
    assert_eq!(again_ids, first_ids);
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 2);

    // A tenant whose database is gone fails the run, with its reason, after one attempt
    // (a missing database is a permanent failure); the others still get their backups.
    let added = env.lifeboat(
        &config_path,
        &[
            "tenant",
            "add",
            "ghost",
            "--cluster",
            "main",
            "--database",
            "no_such_db",
        ],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let failing = env.lifeboat(
        &config_path,
        &[
            "nightly",
            "--run",
            "r2",
            "--max-attempts",
            "2",
            "--retry-base-seconds",
            "0",
        ],
    );
    assert!(
        !failing.status.success(),
        "a failed tenant fails the nightly"
    );
    let out = stdout(&failing);
    assert!(out.contains("2 of 3 tenants backed up"), "{out}");
    assert!(out.contains("no_such_db"), "the reason is shown: {out}");
    assert_eq!(
        scalar(
            &catalog,
            "SELECT attempts::bigint FROM jobs WHERE dedup_key = 'nightly:r2:backup:ghost'"
        )
        .await,
        1
    );
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 4);

    // A manual backup from the command line is recorded in the catalog too.
    let manual = env.lifeboat(&config_path, &["backup", "--tenant", "globex", "--json"]);
    assert!(manual.status.success(), "{}", stderr(&manual));
    let report: serde_json::Value = serde_json::from_slice(&manual.stdout).expect("json");
    assert_eq!(report["catalogued"], true, "{report}");
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backups WHERE kind = 'manual' AND tenant = 'globex'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_drills_each_new_backup_through_an_agent_that_can_decrypt() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    let config_path = env_with_tenants(&env, &["acme", "globex"], 200).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;

    // Drills go only to agents that hold the identity.
    let policy = QueuePolicy::default();
    let clusters = vec![ClusterName::parse("main").expect("cluster")];
    let probe = NewJob {
        dedup_key: Some(DedupKey::Drill {
            run: RunName::parse("test").expect("run"),
            tenant: TenantName::parse("acme").expect("tenant"),
        }),
        work: JobWork::Drill {
            tenant: TenantName::parse("acme").expect("tenant"),
            cluster: clusters[0].clone(),
            backup_id: lifeboat_core::ids::BackupId::new(),
            sha256: None,
        },
    };
    let probe_id = queue::enqueue(
        &**catalog.connection().await.expect("connection"),
        &[probe],
        1,
    )
    .await
    .expect("enqueue")[0];
    let public_keys_only = queue::claim(&catalog, "encrypt-only", &clusters, false, &policy)
        .await
        .expect("claim");
    assert!(public_keys_only.is_none(), "{public_keys_only:?}");
    let decrypting = queue::claim(&catalog, "decrypting", &clusters, true, &policy)
        .await
        .expect("claim")
        .expect("a drill for the agent that can decrypt");
    assert_eq!(decrypting.id, probe_id);
    catalog
        .connection()
        .await
        .expect("connection")
        .execute("DELETE FROM jobs WHERE id = $1", &[&probe_id])
        .await
        .expect("drop the probe");

    let night = env.lifeboat(
        &config_path,
        &[
            "nightly",
            "--json",
            "--backups-only",
            "--drill",
            "--run",
            "d1",
        ],
    );
    assert!(
        night.status.success(),
        "{}\n{}",
        stdout(&night),
        stderr(&night)
    );
    let summary: serde_json::Value = serde_json::from_slice(&night.stdout).expect("json summary");
    assert_eq!(summary["succeeded"], 2, "{summary}");
    for outcome in summary["outcomes"].as_array().expect("outcomes") {
        let drill = &outcome["drill"];
        assert_eq!(drill["verified"], true, "{outcome}");
        assert!(
            drill["rows_verified"].as_u64().expect("rows") >= 200,
            "{outcome}"
        );
    }
    // Recorded by the drill jobs' reports (as the agent): verified, and their backups marked
    // verified.
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM drills WHERE outcome = 'verified' AND requested_by LIKE 'agent:%'"
        )
        .await,
        2
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backups WHERE verified_at IS NOT NULL"
        )
        .await,
        2
    );
    // The scratch databases are gone.
    let admin = env.postgres.connect("postgres").await.expect("connect");
    let left: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'lifeboat_drill_%'",
            &[],
        )
        .await
        .expect("databases")
        .get(0);
    assert_eq!(left, 0);

    // A backup that does not restore fails its drill, and the nightly: acme's new backup is
    // corrupted in every region between a run's backups and its drills.
    let backups_only = env.lifeboat(
        &config_path,
        &["nightly", "--json", "--backups-only", "--run", "d3"],
    );
    assert!(backups_only.status.success(), "{}", stderr(&backups_only));
    let summary: serde_json::Value =
        serde_json::from_slice(&backups_only.stdout).expect("json summary");
    let acme_backup = summary["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|outcome| outcome["tenant"] == "acme")
        .and_then(|outcome| outcome["backup_id"].as_str())
        .expect("acme's backup")
        .to_owned();
    for index in 0..2 {
        let region = env.region(&config, index);
        for key in crate::harness::all_keys(&region).await {
            if key.contains(&acme_backup) && key.ends_with(".age") {
                let size = crate::harness::read_object(&region, &key).await.len();
                region
                    .put_object(&key, bytes::Bytes::from(vec![0x5a_u8; size]))
                    .await
                    .expect("corrupt the object");
            }
        }
    }
    let drilled = env.lifeboat(
        &config_path,
        &[
            "nightly",
            "--json",
            "--backups-only",
            "--drill",
            "--run",
            "d3",
            "--deadline-minutes",
            "5",
        ],
    );
    assert_eq!(drilled.status.code(), Some(1), "{}", stderr(&drilled));
    let summary: serde_json::Value = serde_json::from_slice(&drilled.stdout).expect("json summary");
    assert_eq!(summary["failed"], 1, "{summary}");
    for outcome in summary["outcomes"].as_array().expect("outcomes") {
        let (tenant, drill) = (&outcome["tenant"], &outcome["drill"]);
        assert_eq!(
            outcome["state"], "succeeded",
            "the backup job itself succeeded"
        );
        if tenant == "acme" {
            assert_eq!(outcome["backup_id"], acme_backup.as_str(), "{outcome}");
            assert_eq!(drill["verified"], false, "{outcome}");
            assert!(
                drill["error"].as_str().expect("error").contains("corrupt"),
                "{outcome}"
            );
        } else {
            assert_eq!(drill["verified"], true, "{outcome}");
        }
    }
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM drills WHERE outcome = 'failed'"
        )
        .await,
        1
    );

    // An agent that cannot decrypt cannot drill: the nightly says so before doing anything.
    let text = std::fs::read_to_string(&config_path).expect("config");
    let without_identity: String = text
        .lines()
        .filter(|line| !line.starts_with("identity_file"))
        .map(|line| format!("{line}\n"))
        .collect();
    let encrypt_only = env.dir.path().join("encrypt-only.toml");
    std::fs::write(&encrypt_only, without_identity).expect("write");
    let refused = env.lifeboat(&encrypt_only, &["nightly", "--drill", "--run", "d2"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--drill") && stderr(&refused).contains("identity_file"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM jobs WHERE dedup_key LIKE 'nightly:d2:%'"
        )
        .await,
        0,
        "nothing enqueued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nightly_killed_midway_finishes_when_run_again_without_doing_anything_twice() {
    let env = TestEnv::start(Backend::Seaweed, 2).await;
    let tenants = ["t-one", "t-two", "t-three", "t-four", "t-five"];
    let config_path = env_with_tenants(&env, &tenants, 3000).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    let arguments = [
        "nightly",
        "--json",
        "--run",
        "crash",
        "--concurrency",
        "1",
        "--lease-seconds",
        "2",
        "--retry-base-seconds",
        "1",
    ];
    let first = spawn_lifeboat(&config_path, &arguments);
    // Kill it once some tenants are done and others are not.
    wait_until("the first nightly to back up two tenants", || async {
        scalar(
            &catalog,
            "SELECT count(*) FROM jobs WHERE state = 'succeeded'",
        )
        .await
            >= 2
    })
    .await;
    drop(first);
    let done_before = scalar(
        &catalog,
        "SELECT count(*) FROM jobs WHERE state = 'succeeded'",
    )
    .await;
    assert!(done_before < 5, "killed too late to test anything");

    let again = env.lifeboat(&config_path, &arguments);
    assert!(
        again.status.success(),
        "{}\n{}",
        stdout(&again),
        stderr(&again)
    );
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).expect("json");
    assert_eq!(summary["succeeded"], 5, "{summary}");
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM jobs WHERE kind = 'backup'").await,
        5
    );
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 5);
    for index in 0..2 {
        let region = env.region(&config, index);
        let keys = crate::harness::all_keys(&region).await;
        for tenant in tenants {
            assert_eq!(manifests_in(&keys, tenant), 1, "{tenant}: {keys:?}");
        }
        crate::harness::assert_no_open_uploads(
            &region,
            "tenants/",
            "after the restarted controller",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_region_down_during_the_nightly_leaves_backups_degraded_until_scrub_repairs_them() {
    let mut env = TestEnv::start(Backend::Seaweed, 2).await;
    let config_path = env_with_tenants(&env, &["acme"], 500).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    let nightly = |env: &TestEnv, run: &str| {
        env.lifeboat(
            &config_path,
            &[
                "nightly",
                "--json",
                "--run",
                run,
                "--retry-base-seconds",
                "1",
            ],
        )
    };

    env.regions[1].kill();
    let degraded_night = nightly(&env, "n1");
    assert!(
        degraded_night.status.success(),
        "a backup in one region is still a backup: {}",
        stderr(&degraded_night)
    );
    let summary: serde_json::Value = serde_json::from_slice(&degraded_night.stdout).expect("json");
    assert_eq!(summary["degraded"], 1, "{summary}");
    assert_eq!(
        summary["maintenance"]["degraded_after_repair"], 1,
        "{summary}"
    );
    assert!(
        !summary["maintenance"]["problems"]
            .as_array()
            .expect("problems")
            .is_empty(),
        "the dead region is reported: {summary}"
    );
    let first_backup = summary["outcomes"][0]["backup_id"]
        .as_str()
        .expect("backup id")
        .to_owned();

    env.regions[1].restart().await;
    // Both nights fall on one day, so retention would trash the first backup (GFS keeps
    // the newest of each day); a legal hold keeps it for repair to work on.
    let held = env.lifeboat(&config_path, &["tenant", "hold", "acme"]);
    assert!(held.status.success(), "{}", stderr(&held));
    let repaired_night = nightly(&env, "n2");
    assert!(
        repaired_night.status.success(),
        "{}",
        stderr(&repaired_night)
    );
    let summary: serde_json::Value = serde_json::from_slice(&repaired_night.stdout).expect("json");
    assert_eq!(summary["degraded"], 0, "{summary}");
    assert!(
        summary["maintenance"]["repaired"]
            .as_u64()
            .expect("repaired")
            >= 1,
        "{summary}"
    );
    assert_eq!(
        summary["maintenance"]["degraded_after_repair"], 0,
        "{summary}"
    );
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backup_copies WHERE state <> 'present'"
        )
        .await,
        0
    );

    // The repaired copy is the same bytes as the one that was always there.
    let key = catalog
        .connection()
        .await
        .expect("connection")
        .query_one(
            "SELECT object_key FROM backups WHERE id = $1::text::uuid",
            &[&first_backup],
        )
        .await
        .expect("backup row")
        .get::<_, String>(0);
    let original = crate::harness::read_object(&env.region(&config, 0), &key).await;
    let repaired = crate::harness::read_object(&env.region(&config, 1), &key).await;
    assert!(original == repaired, "repaired copy differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nightly_without_agents_stops_at_its_deadline_and_fails_with_the_reason() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env_with_tenants(&env, &["acme"], 10).await;
    let started = Instant::now();
    let output = env.lifeboat(
        &config_path,
        &[
            "nightly",
            "--no-agent",
            "--deadline-minutes",
            "0",
            "--run",
            "lonely",
        ],
    );
    assert!(!output.status.success(), "nobody did the work");
    let out = stdout(&output);
    assert!(
        out.contains("not finished when the nightly stopped waiting (still queued)"),
        "{out}"
    );
    assert!(out.contains("0 of 1 tenants backed up"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(30));
}
