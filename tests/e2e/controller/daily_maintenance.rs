//! A running controller's daily maintenance pass: drills of unverified newest backups,
//! scrub once a day across controllers, repairs, a region whose bucket is gone.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drilling_controller_drills_each_tenants_newest_unverified_backup_once_a_day() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env_with_tenants(&env, &["acme", "globex"], 100).await;
    let config = Arc::new(env.config(&catalog_settings()));
    let catalog = open_catalog(&config).await;
    for run in ["d1", "d2"] {
        let night = env.lifeboat(&config_path, &["nightly", "--backups-only", "--run", run]);
        assert!(night.status.success(), "{}", stderr(&night));
    }
    let newest = |tenant: &'static str| {
        let catalog = catalog.clone();
        async move {
            catalog
                .connection()
                .await
                .expect("connection")
                .query_one(
                    "SELECT id::text FROM backups WHERE tenant = $1 ORDER BY started_at DESC LIMIT 1",
                    &[&tenant],
                )
                .await
                .expect("newest backup")
                .get::<_, String>(0)
        }
    };
    // globex's newest backup is verified already: only acme's is drilled.
    catalog
        .connection()
        .await
        .expect("connection")
        .execute(
            "UPDATE backups SET verified_at = now() WHERE id = $1::text::uuid",
            &[&newest("globex").await],
        )
        .await
        .expect("verify globex");

    let options = maintenance_options(&config, 0, true);
    let now = Utc::now();
    let first = lifeboat_controller::maintenance::Daily::default()
        .run(&catalog, &options, now, 2)
        .await
        .expect("daily");
    assert_eq!(first.drill_jobs, 1, "{first:?}");
    let other = lifeboat_controller::maintenance::Daily::default()
        .run(&catalog, &options, now, 2)
        .await
        .expect("daily");
    assert_eq!(
        other.drill_jobs, 0,
        "once a day across controllers: {other:?}"
    );
    let acme_newest = newest("acme").await;
    let params: String = catalog
        .connection()
        .await
        .expect("connection")
        .query_one("SELECT params::text FROM jobs WHERE kind = 'drill'", &[])
        .await
        .expect("the drill job")
        .get(0);
    assert!(params.contains(&acme_newest), "{params}");

    // An agent holding the identity drills it; the backup is then verified.
    let controller = serve_in_process(&catalog, &config, QueuePolicy::default()).await;
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(lifeboat_agent::worker::run_agent(
        config.clone(),
        lifeboat_core::region::Regions::from_config(&config),
        lifeboat_agent::worker::AgentOptions {
            controller: controller.base.clone(),
            token: SecretString::from("lbt_embedded-test-token"),
            clusters: vec![ClusterName::parse("main").expect("cluster")],
            concurrency: 1,
            claim_wait: Duration::from_secs(1),
            ca_file: None,
            insecure_http: false,
        },
        cancel.clone(),
    ));
    wait_until("the drill to finish", || async {
        scalar(
            &catalog,
            "SELECT count(*) FROM jobs WHERE kind = 'drill' AND state = 'succeeded'",
        )
        .await
            == 1
    })
    .await;
    cancel.cancel();
    let _ = agent.await;
    assert_eq!(
        scalar(
            &catalog,
            &format!(
                "SELECT count(*) FROM backups WHERE id = '{acme_newest}'::uuid AND verified_at IS NOT NULL"
            ),
        )
        .await,
        1
    );
    let later = lifeboat_controller::maintenance::Daily::default()
        .run(&catalog, &options, now + chrono::Duration::days(1), 2)
        .await
        .expect("daily");
    assert_eq!(
        later.drill_jobs, 0,
        "every newest backup is verified: {later:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_controller_scrubs_once_a_day_and_repairs_what_scrub_finds() {
    let env = TestEnv::start(Backend::Seaweed, 2).await;
    let config_path = env_with_tenants(&env, &["acme"], 200).await;
    let config = Arc::new(env.config(&catalog_settings()));
    let catalog = open_catalog(&config).await;
    let night = env.lifeboat(&config_path, &["nightly", "--backups-only", "--run", "d1"]);
    assert!(night.status.success(), "{}", stderr(&night));
    // The copy in us disappears behind the catalog's back.
    let key: String = catalog
        .connection()
        .await
        .expect("connection")
        .query_one("SELECT object_key FROM backups", &[])
        .await
        .expect("backup")
        .get(0);
    env.region(&config, 1)
        .delete_object(&key)
        .await
        .expect("delete");

    let options = maintenance_options(&config, 5, false);
    let now = Utc::now();
    let mut daily = lifeboat_controller::maintenance::Daily::default();
    let first = daily.run(&catalog, &options, now, 2).await.expect("daily");
    assert_eq!(first.scrub_jobs, 2, "one scrub per region: {first:?}");
    let again = daily.run(&catalog, &options, now, 2).await;
    assert!(again.is_none(), "once a day: {again:?}");
    // A second controller on the same catalog does not scrub again today either.
    let other = lifeboat_controller::maintenance::Daily::default()
        .run(&catalog, &options, now, 2)
        .await
        .expect("daily");
    assert_eq!(
        other.scrub_jobs, 0,
        "once a day across controllers: {other:?}"
    );

    // An agent does the scrubs; then the repair planned from what they found.
    let controller = serve_in_process(&catalog, &config, QueuePolicy::default()).await;
    let cancel = CancellationToken::new();
    let agent = tokio::spawn(lifeboat_agent::worker::run_agent(
        config.clone(),
        lifeboat_core::region::Regions::from_config(&config),
        lifeboat_agent::worker::AgentOptions {
            controller: controller.base.clone(),
            token: SecretString::from("lbt_embedded-test-token"),
            clusters: vec![],
            concurrency: 2,
            claim_wait: Duration::from_secs(1),
            ca_file: None,
            insecure_http: false,
        },
        cancel.clone(),
    ));
    let wait_idle = || {
        wait_until("the jobs to finish", || async {
            scalar(
                &catalog,
                "SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')",
            )
            .await
                == 0
        })
    };
    wait_idle().await;
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backup_copies WHERE state = 'missing' AND region = 'us'"
        )
        .await,
        1,
        "scrub found the missing copy"
    );
    let repairs = lifeboat_controller::maintenance::enqueue_repairs(
        &catalog,
        &options,
        &RunName::for_date(now.date_naive()),
        2,
        None,
    )
    .await;
    assert!(repairs.problems.is_empty(), "{:?}", repairs.problems);
    assert_eq!(repairs.repair_jobs, 1);
    wait_idle().await;
    cancel.cancel();
    let _ = agent.await;
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM backup_copies WHERE state <> 'present'"
        )
        .await,
        0
    );
    assert_eq!(
        scalar(&catalog, "SELECT count(*) FROM jobs WHERE state = 'failed'").await,
        0
    );
    let original = crate::harness::read_object(&env.region(&config, 0), &key).await;
    let repaired = crate::harness::read_object(&env.region(&config, 1), &key).await;
    assert!(original == repaired, "the repaired copy is the same bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scrub_of_a_region_whose_bucket_is_gone_fails_instead_of_marking_copies_missing() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database("acme", 10).await;
    let mut config = env.config(&Settings::default());
    let report = crate::harness::backup(&config, "acme")
        .await
        .expect("backup");
    let target = lifeboat_core::api::ScrubTarget {
        tenant: report.manifest.tenant.clone(),
        backup_id: report.manifest.backup_id,
        stored_bytes: report.manifest.object.stored_bytes,
        sha256: report.manifest.object.sha256.clone(),
        full: true,
    };
    let region = config.regions[0].name.clone();
    let present = lifeboat_agent::maintenance::run_scrub(
        &lifeboat_core::region::Regions::from_config(&config),
        &region,
        std::slice::from_ref(&target),
        &[],
    )
    .await
    .expect("scrub");
    assert!(
        matches!(&present, JobResult::Scrub { copies, .. } if copies[0].state == lifeboat_core::api::CopyState::Present),
        "{present:?}"
    );
    // The bucket is misconfigured: every HEAD would answer 404, which must not read as
    // "every copy is missing".
    config.regions[0].bucket = "no-such-bucket".to_owned();
    let error = lifeboat_agent::maintenance::run_scrub(
        &lifeboat_core::region::Regions::from_config(&config),
        &region,
        &[target],
        &[],
    )
    .await
    .expect_err("a missing bucket fails the scrub");
    assert!(error.to_string().contains("bucket missing"), "{error}");
    assert!(!error.is_permanent(), "retried later: {error}");
}
