//! `/metrics` as rendered from a real catalog: every metric has its HELP and TYPE lines, and
//! the count of bad copies found by scrub rises with each finding (a copy lost again after
//! repair counts again) and stays up after repair while the copy-failures gauge falls
//! back to 0, for this controller and for any other reading the same catalog.

use lifeboat_agent::maintenance::run_replicate;
use lifeboat_controller::audit::Actor;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::metrics::render;
use lifeboat_controller::scrub::{apply_replicate_result, plan_repairs};
use lifeboat_core::api::{JobResult, JobWork};
use lifeboat_core::ids::ClusterName;

use crate::harness::{Backend, TestEnv};
use crate::scrub::{
    BackedUp, CATALOG_DATABASE, back_up, catalog, corrupt_keeping_size, scrub_round,
};

/// Every metric `/metrics` shows, with its type, as the HELP and TYPE lines name it.
const EXPECTED_METRICS: [(&str, &str); 13] = [
    ("lifeboat_tenant_last_backup_timestamp_seconds", "gauge"),
    ("lifeboat_tenant_last_backup_duration_seconds", "gauge"),
    ("lifeboat_tenant_last_backup_stored_bytes", "gauge"),
    (
        "lifeboat_tenant_last_verified_backup_timestamp_seconds",
        "gauge",
    ),
    ("lifeboat_tenant_last_drill_duration_seconds", "gauge"),
    ("lifeboat_tenant_last_restorable_timestamp_seconds", "gauge"),
    ("lifeboat_tenant_drill_duration_median_seconds", "gauge"),
    ("lifeboat_tenant_drill_slow", "gauge"),
    ("lifeboat_region_copy_failures", "gauge"),
    ("lifeboat_scrub_bad_copies_total", "counter"),
    ("lifeboat_queue_depth", "gauge"),
    ("lifeboat_jobs_running", "gauge"),
    ("lifeboat_jobs_failed", "gauge"),
];

/// The value of the sample `series` (name and labels, as written) in `text`.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

/// `lifeboat_region_copy_failures` and `lifeboat_scrub_bad_copies_total` of `region`.
fn region_figures(text: &str, region: &str) -> (Option<f64>, Option<f64>) {
    (
        sample(
            text,
            &format!("lifeboat_region_copy_failures{{region=\"{region}\"}}"),
        ),
        sample(
            text,
            &format!("lifeboat_scrub_bad_copies_total{{region=\"{region}\"}}"),
        ),
    )
}

/// Repair every lacking copy as agents would, and record it.
async fn repair_all(backed_up: &BackedUp, catalog: &Catalog) {
    let repairs = plan_repairs(catalog, &backed_up.region_names)
        .await
        .expect("plan repairs");
    assert!(!repairs.is_empty(), "something to repair");
    for job in repairs {
        let JobWork::Replicate {
            tenant,
            backup_id,
            sources,
            to,
            stored_bytes,
            sha256,
        } = job
        else {
            panic!("not a replicate job: {job:?}");
        };
        let result = run_replicate(
            &backed_up.config,
            &lifeboat_core::region::Regions::from_config(&backed_up.config),
            &tenant,
            backup_id,
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
            backup_id,
            &to,
        )
        .await
        .expect("apply replicate result");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_has_help_and_type_and_scrub_findings_outlive_repair() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    let backed_up = back_up(&env, 500).await;
    let catalog = catalog(&env, &backed_up).await;
    let regions = &backed_up.region_names;

    let text = render(&catalog, regions).await.expect("render");
    for (name, kind) in EXPECTED_METRICS {
        assert!(
            text.lines()
                .any(|line| line.starts_with(&format!("# HELP {name} "))),
            "no HELP line for {name}:\n{text}"
        );
        assert!(
            text.lines()
                .any(|line| line == format!("# TYPE {name} {kind}")),
            "no `# TYPE {name} {kind}` line:\n{text}"
        );
    }
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').expect("a sample line");
        assert!(
            EXPECTED_METRICS
                .iter()
                .any(|(name, _)| series.starts_with(&format!("{name}{{"))),
            "an unexpected series: {line}"
        );
        value
            .parse::<f64>()
            .unwrap_or_else(|_| panic!("not a number: {line}"));
    }
    assert!(
        sample(
            &text,
            "lifeboat_tenant_last_backup_stored_bytes{tenant=\"acme\"}"
        )
        .is_some_and(|bytes| bytes > 0.0),
        "{text}"
    );
    assert_eq!(
        region_figures(&text, "eu"),
        (Some(0.0), Some(0.0)),
        "{text}"
    );
    assert_eq!(
        region_figures(&text, "us"),
        (Some(0.0), Some(0.0)),
        "{text}"
    );

    // A corrupt copy in us, found by a full read, counts once. The next scrub does not look
    // at a copy known to be bad, so it adds nothing.
    let object_key = backed_up.object_key();
    corrupt_keeping_size(
        &backed_up.regions[1],
        &object_key,
        backed_up.manifest.object.stored_bytes,
    )
    .await;
    scrub_round(&backed_up, &catalog, 10).await;
    let text = render(&catalog, regions).await.expect("render");
    assert_eq!(
        region_figures(&text, "us"),
        (Some(1.0), Some(1.0)),
        "{text}"
    );
    assert_eq!(
        region_figures(&text, "eu"),
        (Some(0.0), Some(0.0)),
        "{text}"
    );
    scrub_round(&backed_up, &catalog, 10).await;
    let text = render(&catalog, regions).await.expect("render");
    assert_eq!(
        region_figures(&text, "us"),
        (Some(1.0), Some(1.0)),
        "{text}"
    );

    // Repair marks the copy present: the gauge falls back to 0, the count does not, and a
    // scrub that finds the repaired copy good adds nothing.
    repair_all(&backed_up, &catalog).await;
    let text = render(&catalog, regions).await.expect("render");
    assert_eq!(
        region_figures(&text, "us"),
        (Some(0.0), Some(1.0)),
        "{text}"
    );
    scrub_round(&backed_up, &catalog, 10).await;
    let text = render(&catalog, regions).await.expect("render");
    assert_eq!(
        region_figures(&text, "us"),
        (Some(0.0), Some(1.0)),
        "{text}"
    );

    // The region loses the repaired copy: a second finding for the same copy, counted again,
    // and still counted once repaired. This is what the gauge alone never shows.
    backed_up.regions[1]
        .delete_object(&object_key)
        .await
        .expect("delete in us");
    scrub_round(&backed_up, &catalog, 10).await;
    let text = render(&catalog, regions).await.expect("render");
    assert_eq!(
        region_figures(&text, "us"),
        (Some(1.0), Some(2.0)),
        "{text}"
    );
    repair_all(&backed_up, &catalog).await;
    let text = render(&catalog, regions).await.expect("render");
    assert_eq!(
        region_figures(&text, "us"),
        (Some(0.0), Some(2.0)),
        "{text}"
    );
    assert_eq!(
        region_figures(&text, "eu"),
        (Some(0.0), Some(0.0)),
        "{text}"
    );

    // Another controller (or this one restarted) reads the same count from the catalog.
    let cluster = backed_up
        .config
        .cluster(&ClusterName::parse("main").expect("cluster"))
        .expect("cluster");
    let other_controller = Catalog::connect(cluster, CATALOG_DATABASE)
        .await
        .expect("catalog");
    let text = render(&other_controller, regions).await.expect("render");
    assert_eq!(
        region_figures(&text, "us"),
        (Some(0.0), Some(2.0)),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_half_again_slower_than_the_median_is_flagged() {
    use lifeboat_controller::drills::{DrillRecord, record_drill, recovery_health};
    use lifeboat_core::api::{DrillOutcome, DrillResult};

    let env = TestEnv::start(Backend::Embedded, 1).await;
    let backed_up = back_up(&env, 50).await;
    let catalog = catalog(&env, &backed_up).await;
    let regions = &backed_up.region_names;
    let tenant = lifeboat_core::ids::TenantName::parse("acme").expect("tenant");
    let record = |seconds: i64, days_ago: i64| {
        let finished_at = chrono::Utc::now() - chrono::TimeDelta::days(days_ago);
        DrillRecord::new(
            tenant.clone(),
            &DrillResult {
                backup_id: backed_up.manifest.backup_id,
                region: None,
                scratch_database: "scratch".to_owned(),
                started_at: finished_at - chrono::TimeDelta::seconds(seconds),
                finished_at,
                outcome: DrillOutcome::Verified {
                    tables_verified: 3,
                    rows_verified: 10,
                },
                steps: Vec::new(),
            },
        )
    };
    for (seconds, days_ago) in [(10, 4), (10, 3), (12, 2)] {
        record_drill(&catalog, &record(seconds, days_ago), &Actor::system("test"))
            .await
            .expect("record");
    }
    let connection = catalog.connection().await.expect("connect");
    let steady = recovery_health(&**connection, Some(&tenant))
        .await
        .expect("health");
    assert_eq!(steady.len(), 1);
    assert!(!steady[0].slow, "{steady:?}");
    assert!(
        (steady[0].recovery_seconds - 12.0).abs() < 0.01,
        "{steady:?}"
    );
    // 16 s is not 1.5× the median of 10, 10, 12 (10 s); 16 > 15 is.
    record_drill(&catalog, &record(16, 1), &Actor::system("test"))
        .await
        .expect("record");
    let slow = recovery_health(&**connection, Some(&tenant))
        .await
        .expect("health");
    assert!(slow[0].slow, "{slow:?}");
    assert_eq!(slow[0].earlier_median_seconds, Some(10.0));
    assert!((slow[0].median_seconds - 11.0).abs() < 0.01, "{slow:?}");
    let text = render(&catalog, regions).await.expect("render");
    assert_eq!(
        sample(&text, "lifeboat_tenant_drill_slow{tenant=\"acme\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "lifeboat_tenant_last_drill_duration_seconds{tenant=\"acme\"}"
        ),
        Some(16.0),
        "{text}"
    );

    // Sampling: with the backup unverified again (as a newer one would be), a tenant whose
    // last verified drill is a day old is due under drill_every_days = 1, not under 7; a
    // drill cluster takes the drill.
    connection
        .batch_execute(
            "INSERT INTO tenants (name, cluster, database_name) VALUES ('acme', 'main', 'acme');
             UPDATE backups SET verified_at = NULL",
        )
        .await
        .expect("register the tenant, unverify its backup");
    let weekly = lifeboat_controller::drills::plan_drills_of_newest(&catalog, None, 7)
        .await
        .expect("plan");
    assert!(weekly.is_empty(), "{weekly:?}");
    let drills_cluster = ClusterName::parse("drills").expect("cluster");
    let daily =
        lifeboat_controller::drills::plan_drills_of_newest(&catalog, Some(&drills_cluster), 1)
            .await
            .expect("plan");
    assert_eq!(daily.len(), 1, "{daily:?}");
    assert!(
        matches!(&daily[0], JobWork::Drill { cluster, .. } if *cluster == drills_cluster),
        "{daily:?}"
    );
}
