//! The controller: scheduler, job queue, agents over HTTP and the nightly, against a real
//! PostgreSQL (catalog and tenant databases) and real SeaweedFS regions.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeboat_controller::agents::{AgentScope, ClusterScope};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::dedup_key::{DedupKey, RunName};
use lifeboat_controller::nightly;
use lifeboat_controller::queue::{self, NewJob, QueuePolicy};
use lifeboat_controller::schedule;
use lifeboat_controller::scheduler::Scheduler;
use lifeboat_controller::server::{self, Controller, ControllerOptions, EmbeddedAgent};
use lifeboat_core::api::{
    ClaimRequest, ClaimedJob, ErrorBody, JobOutcome, JobReport, JobResult, JobWork,
};
use lifeboat_core::config::Config;
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::manifest::{BackupKind, listing_prefix};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, Settings, TestEnv, stderr, stdout};

const CATALOG_DATABASE: &str = "lifeboat_catalog";

fn catalog_settings() -> Settings {
    Settings {
        // A backup in one region is committed (and degraded); repair copies it later.
        min_regions: Some(1),
        extra: format!("[catalog]\ncluster = \"main\"\ndatabase = \"{CATALOG_DATABASE}\"\n"),
        ..Settings::default()
    }
}

/// Create the catalog database, migrate it and add `tenants` (each with its own database of
/// `rows` sample rows). Returns the config file.
async fn env_with_tenants(env: &TestEnv, tenants: &[&str], rows: u32) -> PathBuf {
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute(&format!("CREATE DATABASE {CATALOG_DATABASE}"))
        .await
        .expect("create catalog database");
    let config = env.config_file(&catalog_settings());
    let migrated = env.lifeboat(&config, &["controller", "migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    for tenant in tenants {
        env.create_tenant_database(tenant, rows).await;
        let added = env.lifeboat(&config, &["tenant", "add", tenant, "--cluster", "main"]);
        assert!(added.status.success(), "{}", stderr(&added));
    }
    config
}

async fn open_catalog(config: &Config) -> Catalog {
    let catalog = config.catalog.as_ref().expect("catalog configured");
    Catalog::connect(
        config.cluster(&catalog.cluster).expect("cluster"),
        &catalog.database,
    )
    .await
    .expect("connect catalog")
}

async fn scalar(catalog: &Catalog, sql: &str) -> i64 {
    catalog
        .connection()
        .await
        .expect("connection")
        .query_one(sql, &[])
        .await
        .expect(sql)
        .get(0)
}

/// Poll `condition` every 20 ms until it holds; fail after a minute, naming `what`.
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    while !condition().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn manifests_in(keys: &[String], tenant: &str) -> usize {
    keys.iter()
        .filter(|key| {
            key.starts_with(&format!("tenants/{tenant}/")) && key.ends_with(".manifest.json")
        })
        .count()
}

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
    // Recorded by the drill jobs' reports: verified, and their backups marked verified.
    assert_eq!(
        scalar(
            &catalog,
            "SELECT count(*) FROM drills WHERE outcome = 'verified' AND requested_by LIKE 'job:%'"
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
async fn two_controllers_on_one_catalog_enqueue_each_slot_once_and_catch_up_once() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env_with_tenants(&env, &[], 0).await;
    let config = env.config(&catalog_settings());
    for index in 0..20 {
        let name = format!("tenant-{index:02}");
        let added = env.lifeboat(
            &config_path,
            &[
                "tenant",
                "add",
                &name,
                "--cluster",
                "main",
                "--schedule",
                "0 0 * * * *",
            ],
        );
        assert!(added.status.success(), "{}", stderr(&added));
    }
    let catalog_a = open_catalog(&config).await;
    let catalog_b = open_catalog(&config).await;
    // Tenants were added just now; start the clock an hour later, on the half hour.
    let start: DateTime<Utc> = Utc::now()
        .date_naive()
        .and_hms_opt(0, 30, 0)
        .expect("time")
        .and_utc()
        + chrono::Duration::days(1);
    let mut a = Scheduler::new(schedule::DEFAULT_WINDOW);
    let mut b = Scheduler::new(schedule::DEFAULT_WINDOW);
    for hour in 0..12 {
        let now = start + chrono::Duration::hours(hour);
        let (left, right) = tokio::join!(a.tick(&catalog_a, now, 4), b.tick(&catalog_b, now, 4));
        let (left, right) = (left.expect("tick a"), right.expect("tick b"));
        // A controller that reads after the other committed finds nothing due: legitimate.
        assert_eq!(
            left.due.max(right.due),
            20,
            "hour {hour}: {left:?} {right:?}"
        );
        assert_eq!(
            left.enqueued + right.enqueued,
            20,
            "hour {hour}: {left:?} {right:?}"
        );
    }
    assert_eq!(scalar(&catalog_a, "SELECT count(*) FROM jobs").await, 240);

    // A restarted controller (a new scheduler) at the same time enqueues nothing.
    let now = start + chrono::Duration::hours(11);
    let report = Scheduler::new(schedule::DEFAULT_WINDOW)
        .tick(&catalog_a, now, 4)
        .await
        .expect("tick");
    assert_eq!((report.due, report.enqueued), (0, 0));

    // Down for five hours: each tenant's newest missed slot is caught up, once.
    let later = start + chrono::Duration::hours(16);
    let report = a.tick(&catalog_a, later, 4).await.expect("tick");
    assert_eq!(report.enqueued, 20);
    assert_eq!(scalar(&catalog_a, "SELECT count(*) FROM jobs").await, 260);
    let newest_slot = (later - chrono::Duration::minutes(30)).format("%Y-%m-%dT%H:%M:%SZ");
    assert_eq!(
        scalar(
            &catalog_a,
            &format!("SELECT count(*) FROM jobs WHERE dedup_key LIKE '%:{newest_slot}'")
        )
        .await,
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nightly_and_scheduler_on_one_catalog_back_each_tenant_up_once_a_day() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env_with_tenants(&env, &[], 0).await;
    let config = env.config(&catalog_settings());
    for (name, schedule) in [
        ("early", "0 0 3 * * *"),
        ("late-a", "0 0 23 * * *"),
        ("late-b", "0 0 23 * * *"),
        ("hourly", "0 0 * * * *"),
        ("twice", "0 0 6,18 * * *"),
    ] {
        let added = env.lifeboat(
            &config_path,
            &[
                "tenant",
                "add",
                name,
                "--cluster",
                "main",
                "--schedule",
                schedule,
            ],
        );
        assert!(added.status.success(), "{}", stderr(&added));
    }
    let catalog = open_catalog(&config).await;
    let sql = |statement: String| {
        let catalog = catalog.clone();
        async move {
            catalog
                .connection()
                .await
                .expect("connection")
                .execute(statement.as_str(), &[])
                .await
                .unwrap_or_else(|error| panic!("{statement}: {error}"))
        }
    };
    // Today, with tenants added three days ago: all existed before every slot below.
    sql("UPDATE tenants SET created_at = created_at - interval '3 days'".to_owned()).await;
    let day = Utc::now().date_naive();
    let run_name = RunName::for_date(day);
    let run = run_name.to_string();
    let nightly_key = |tenant: &str| {
        DedupKey::NightlyBackup {
            run: run_name.clone(),
            tenant: TenantName::parse(tenant).expect("tenant"),
        }
        .to_string()
    };
    let at = |hour: u32, minute: u32| -> DateTime<Utc> {
        day.and_hms_opt(hour, minute, 0).expect("time").and_utc()
    };
    let job_id = |key: String| {
        let catalog = catalog.clone();
        async move {
            catalog
                .connection()
                .await
                .expect("connection")
                .query_one("SELECT id FROM jobs WHERE dedup_key = $1", &[&key])
                .await
                .unwrap_or_else(|error| panic!("job {key}: {error}"))
                .get::<_, i64>(0)
        }
    };
    let mut scheduler = Scheduler::new(schedule::DEFAULT_WINDOW);
    async fn tick_at(
        scheduler: &mut Scheduler,
        catalog: &Catalog,
        now: DateTime<Utc>,
    ) -> (usize, usize, usize) {
        let report = scheduler.tick(catalog, now, 4).await.expect("tick");
        (report.due, report.enqueued, report.covered_by_nightly)
    }

    // 04:00: the controller enqueues early's 03:00 slot, hourly's 04:00, and the late
    // tenants' and twice's slots of the day before.
    assert_eq!(tick_at(&mut scheduler, &catalog, at(4, 0)).await, (5, 5, 0));
    let early_slot = job_id(format!("backup:early:{run}T03:00:00Z")).await;
    let hourly_slot = job_id(format!("backup:hourly:{run}T04:00:00Z")).await;

    // The nightly of that day adopts the jobs of today's slots and queues its own for the
    // late tenants: yesterday's slot does not count for today.
    let jobs = nightly::enqueue_backups(&catalog, &run_name, 4)
        .await
        .expect("nightly enqueue");
    assert_eq!(jobs["early"], early_slot, "early is not backed up twice");
    assert_eq!(jobs["hourly"], hourly_slot);
    for tenant in ["late-a", "late-b", "twice"] {
        assert_eq!(jobs[tenant], job_id(nightly_key(tenant)).await);
    }

    // A sub-daily schedule keeps its later slots.
    assert_eq!(
        tick_at(&mut scheduler, &catalog, at(5, 0)).await,
        (1, 1, 0),
        "hourly's 05:00"
    );
    // 06:30: twice's first slot of the day is covered by the nightly's queued job; at
    // 18:30, with that job still queued, its second slot is enqueued all the same.
    assert_eq!(
        tick_at(&mut scheduler, &catalog, at(6, 30)).await,
        (2, 1, 1)
    );
    assert_eq!(
        tick_at(&mut scheduler, &catalog, at(18, 30)).await,
        (2, 2, 0)
    );
    // 23:30: the late tenants' first slot of the day is covered by the nightly, whose jobs
    // are still queued; hourly's 23:00 is enqueued.
    assert_eq!(
        tick_at(&mut scheduler, &catalog, at(23, 30)).await,
        (3, 1, 2)
    );
    assert_eq!(
        tick_at(&mut scheduler, &catalog, at(23, 31)).await,
        (2, 0, 2),
        "asked again while under way"
    );
    // late-a's nightly backup succeeds: its slot is done. late-b's fails for good: the
    // scheduler enqueues its slot after all.
    sql(format!(
        "UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = {}",
        jobs["late-a"]
    ))
    .await;
    sql(format!(
        "UPDATE jobs SET state = 'failed', finished_at = now() WHERE id = {}",
        jobs["late-b"]
    ))
    .await;
    assert_eq!(
        tick_at(&mut scheduler, &catalog, at(23, 32)).await,
        (2, 1, 1)
    );
    assert_eq!(
        tick_at(&mut scheduler, &catalog, at(23, 33)).await,
        (0, 0, 0),
        "both slots remembered"
    );
    for tenant in ["early", "late-a", "late-b"] {
        assert_eq!(
            scalar(
                &catalog,
                &format!(
                    "SELECT count(*) FROM jobs WHERE tenant = '{tenant}' AND state <> 'failed'
                     AND (dedup_key LIKE 'backup:{tenant}:{run}T%' OR dedup_key = 'nightly:{run}:backup:{tenant}')"
                ),
            )
            .await,
            1,
            "{tenant}: one backup job for {run}"
        );
    }

    // Run again: early's scheduled job failed for good, so the nightly queues its own;
    // late-b adopts the slot job the scheduler queued after the nightly's failed.
    sql(format!(
        "UPDATE jobs SET state = 'failed', finished_at = now() WHERE id = {early_slot}"
    ))
    .await;
    let again = nightly::enqueue_backups(&catalog, &run_name, 4)
        .await
        .expect("nightly enqueue again");
    assert_eq!(again["early"], job_id(nightly_key("early")).await);
    assert_eq!(again["late-a"], jobs["late-a"]);
    assert_eq!(
        again["late-b"],
        job_id(format!("backup:late-b:{run}T23:00:00Z")).await
    );
    assert_eq!(again["hourly"], hourly_slot, "the earliest slot of the day");
}

/// Daily maintenance due at once (minute 0), over every configured region, with a trash
/// period of an hour.
fn maintenance_options(
    config: &Config,
    scrub_full_sample: usize,
    drill: bool,
) -> lifeboat_controller::maintenance::MaintenanceOptions {
    lifeboat_controller::maintenance::MaintenanceOptions {
        regions: config
            .regions
            .iter()
            .map(lifeboat_core::region::Region::new)
            .collect(),
        trash_period: Duration::from_secs(3600),
        scrub_full_sample,
        minute_of_day: 0,
        drill,
    }
}

/// A controller serving the API in this process, with no agent.
struct InProcessController {
    base: String,
    cancel: CancellationToken,
}

impl Drop for InProcessController {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn serve_in_process(
    catalog: &Catalog,
    config: &Config,
    policy: QueuePolicy,
) -> InProcessController {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let cancel = CancellationToken::new();
    tokio::spawn(server::serve(
        catalog.clone(),
        listener,
        ControllerOptions {
            policy,
            schedule: false,
            window: schedule::DEFAULT_WINDOW,
            tick_interval: Duration::from_secs(60),
            regions: lifeboat_core::region::Regions::from_config(config),
            maintenance: None,
        },
        Some(EmbeddedAgent {
            token: SecretString::from("lbt_embedded-test-token"),
            scope: AgentScope {
                clusters: ClusterScope::All,
                can_decrypt: true,
            },
        }),
        Controller {
            work_ready: Arc::default(),
        },
        cancel.clone(),
    ));
    InProcessController { base, cancel }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_api_refuses_bad_tokens_stale_leases_and_malformed_reports() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env_with_tenants(&env, &[], 0).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    let controller = serve_in_process(&catalog, &config, QueuePolicy::default()).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", controller.base);

    let created = env.lifeboat(
        &config_path,
        &["agent", "token", "create", "db-host-1", "--all-clusters"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let token = stdout(&created).trim().to_owned();
    assert!(token.starts_with("lbt_"), "{token}");
    let stored: i64 = scalar(
        &catalog,
        &format!(
            "SELECT count(*) FROM agent_tokens WHERE token_sha256::text LIKE '%{}%'",
            &token[4..20]
        ),
    )
    .await;
    assert_eq!(stored, 0, "the token itself is not stored");

    let claim = ClaimRequest {
        clusters: vec![],
        wait_seconds: 0,
        can_decrypt: false,
    };
    // No token, a wrong one: 401 with a message.
    let none = http
        .post(url("/api/v1/agent/claim"))
        .json(&claim)
        .send()
        .await
        .expect("send");
    assert_eq!(none.status(), 401);
    let wrong = http
        .post(url("/api/v1/agent/claim"))
        .bearer_auth("lbt_0000")
        .json(&claim)
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let body: ErrorBody = wrong.json().await.expect("error body");
    assert!(body.error.contains("unknown or revoked"), "{}", body.error);

    // A valid token with nothing to do: 204.
    let idle = http
        .post(url("/api/v1/agent/claim"))
        .bearer_auth(&token)
        .json(&claim)
        .send()
        .await
        .expect("send");
    assert_eq!(idle.status(), 204);

    // A job to work on.
    let client = catalog.connection().await.expect("connection");
    let tenant = TenantName::parse("acme").expect("tenant");
    queue::enqueue(
        &**client,
        &[NewJob {
            dedup_key: None,
            work: JobWork::Backup {
                tenant: tenant.clone(),
                cluster: ClusterName::parse("main").expect("cluster"),
                database: "acme".to_owned(),
                backup_kind: BackupKind::Scheduled,
            },
        }],
        4,
    )
    .await
    .expect("enqueue");
    // An agent for another cluster, or for none, is not offered it.
    for clusters in [vec![], vec![ClusterName::parse("other").expect("cluster")]] {
        let elsewhere = http
            .post(url("/api/v1/agent/claim"))
            .bearer_auth(&token)
            .json(&ClaimRequest {
                clusters,
                wait_seconds: 0,
                can_decrypt: false,
            })
            .send()
            .await
            .expect("send");
        assert_eq!(elsewhere.status(), 204);
    }
    let job: ClaimedJob = http
        .post(url("/api/v1/agent/claim"))
        .bearer_auth(&token)
        .json(&ClaimRequest {
            clusters: vec![ClusterName::parse("main").expect("cluster")],
            wait_seconds: 0,
            can_decrypt: false,
        })
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("claimed job");
    assert_eq!(job.attempt, 1);

    let report_url = url(&format!("/api/v1/jobs/{}/report", job.id));
    // Garbage, a result of the wrong kind, a stale lease: refused, the job still running.
    let garbage = http
        .post(&report_url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"lease_token\": 5}")
        .send()
        .await
        .expect("send");
    assert_eq!(garbage.status(), 422);
    let wrong_kind = http
        .post(&report_url)
        .bearer_auth(&token)
        .json(&JobReport {
            lease_token: job.lease_token,
            outcome: JobOutcome::Succeeded {
                result: JobResult::Delete { regions: vec![] },
            },
        })
        .send()
        .await
        .expect("send");
    assert_eq!(wrong_kind.status(), 422);
    let body: ErrorBody = wrong_kind.json().await.expect("error body");
    assert!(body.error.contains("backup job"), "{}", body.error);
    let stale = http
        .post(&report_url)
        .bearer_auth(&token)
        .json(&JobReport {
            lease_token: uuid::Uuid::new_v4(),
            outcome: JobOutcome::Failed {
                error: "x".to_owned(),
                retryable: true,
            },
        })
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), 409);
    assert_eq!(
        scalar(
            &catalog,
            &format!(
                "SELECT count(*) FROM jobs WHERE id = {} AND state = 'running'",
                job.id
            )
        )
        .await,
        1
    );

    // A revoked token is refused at once.
    let revoked = env.lifeboat(&config_path, &["agent", "token", "revoke", "db-host-1"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = http
        .post(url(&format!("/api/v1/jobs/{}/heartbeat", job.id)))
        .bearer_auth(&token)
        .json(&lifeboat_core::api::Heartbeat {
            lease_token: job.lease_token,
        })
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 401);

    // Health and metrics.
    let health = http.get(url("/healthz")).send().await.expect("send");
    assert_eq!(health.status(), 200);
    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("lifeboat_jobs_running{kind=\"backup\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lifeboat_region_copy_failures{region=\"eu\"} 0"),
        "{metrics}"
    );
}

/// A `lifeboat` process in the background, killed when dropped.
struct Background(Option<Child>);

impl Background {
    /// Take the process out, to wait for it; it is no longer killed on drop.
    fn into_child(mut self) -> Child {
        self.0.take().expect("child")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn spawn_lifeboat(config: &Path, arguments: &[&str]) -> Background {
    Background(Some(
        Command::new(env!("CARGO_BIN_EXE_lifeboat"))
            .arg("--config")
            .arg(config)
            .args(arguments)
            .env_remove("LIFEBOAT_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn lifeboat"),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_backup_loses_its_lease_and_another_agent_finishes_once() {
    let env = TestEnv::start(Backend::Seaweed, 2).await;
    let config_path = env_with_tenants(&env, &[], 0).await;
    let config = env.config(&catalog_settings());
    // Enough incompressible data that the backup is still uploading when the agent dies.
    env.create_tenant_database("acme", 100).await;
    let tenant_db = env.postgres.connect("acme").await.expect("connect");
    tenant_db
        .batch_execute(
            "CREATE TABLE blobs AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS a, \
             md5(random()::text) || md5(random()::text) AS b FROM generate_series(1, 600000) g",
        )
        .await
        .expect("fill");
    let added = env.lifeboat(
        &config_path,
        &["tenant", "add", "acme", "--cluster", "main"],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let token = stdout(&env.lifeboat(
        &config_path,
        &["agent", "token", "create", "a1", "--all-clusters"],
    ))
    .trim()
    .to_owned();
    let token_file = env.dir.path().join("agent-token");
    std::fs::write(&token_file, &token).expect("token file");
    let token_file = token_file.display().to_string();

    let port = lifeboat_sandbox::ports::free_loopback_port().expect("port");
    let listen = format!("127.0.0.1:{port}");
    let controller_url = format!("http://{listen}");
    let _controller = spawn_lifeboat(
        &config_path,
        &[
            "controller",
            "--listen",
            &listen,
            "--no-agent",
            "--lease-seconds",
            "2",
            "--retry-base-seconds",
            "1",
        ],
    );
    let nightly = spawn_lifeboat(
        &config_path,
        &["nightly", "--no-agent", "--json", "--run", "k1"],
    );
    let first_agent = spawn_lifeboat(
        &config_path,
        &[
            "agent",
            "--controller",
            &controller_url,
            "--token-file",
            &token_file,
        ],
    );

    // Kill the agent once its upload is open in a region.
    let region = env.region(&config, 0);
    let prefix = listing_prefix(Some(&TenantName::parse("acme").expect("tenant")));
    wait_until("the backup to start uploading", || async {
        let open = region
            .list_open_uploads(&prefix)
            .await
            .expect("list uploads");
        open.is_some_and(|uploads| !uploads.is_empty())
    })
    .await;
    drop(first_agent);

    let _second_agent = spawn_lifeboat(
        &config_path,
        &[
            "agent",
            "--controller",
            &controller_url,
            "--token-file",
            &token_file,
        ],
    );
    let mut nightly_child = nightly.into_child();
    let finished = tokio::task::spawn_blocking(move || {
        let status = nightly_child.wait();
        let mut out = String::new();
        if let Some(mut stdout) = nightly_child.stdout.take() {
            use std::io::Read;
            let _ = stdout.read_to_string(&mut out);
        }
        (status, out)
    });
    let (status, out) = tokio::time::timeout(Duration::from_secs(120), finished)
        .await
        .expect("the nightly finished")
        .expect("join");
    assert!(status.expect("wait").success(), "{out}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("json summary");
    assert_eq!(summary["outcomes"][0]["attempts"], 2, "{summary}");

    let catalog = open_catalog(&config).await;
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 1);
    for index in 0..2 {
        let region = env.region(&config, index);
        let keys = crate::harness::all_keys(&region).await;
        assert_eq!(manifests_in(&keys, "acme"), 1, "{keys:?}");
        crate::harness::assert_no_open_uploads(&region, &prefix, "after the killed agent").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_committed_but_never_reported_is_adopted_by_the_next_attempt() {
    let (statuses, committed) = committed_but_never_reported(false).await;
    let result = statuses[0].result.as_ref().expect("result");
    assert_eq!(
        result["backup_id"],
        committed.manifest.backup_id.to_string(),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_in_fewer_than_min_regions_is_not_adopted() {
    let (statuses, committed) = committed_but_never_reported(true).await;
    let result = statuses[0].result.as_ref().expect("result");
    assert_ne!(
        result["backup_id"],
        committed.manifest.backup_id.to_string(),
        "a manifest left in one region of two is not a committed backup: {result}"
    );
}

/// An agent claims acme's backup job, commits the backup with the id it was given, and
/// dies before reporting; with `lose_second_manifest`, the manifest is then lost in the
/// second of the two regions, and the next attempt's agent needs both (min_regions 2). A
/// real agent runs the next attempt.
async fn committed_but_never_reported(
    lose_second_manifest: bool,
) -> (Vec<queue::JobStatus>, lifeboat_core::backup::BackupReport) {
    let env = TestEnv::start(Backend::Seaweed, 2).await;
    let config_path = env_with_tenants(&env, &["acme"], 200).await;
    let config = Arc::new(env.config(&catalog_settings()));
    let catalog = open_catalog(&config).await;
    let policy = QueuePolicy {
        lease: Duration::from_secs(1),
        retry_base: Duration::from_millis(100),
        ..QueuePolicy::default()
    };
    let controller = serve_in_process(&catalog, &config, policy.clone()).await;
    let reaper = {
        let (catalog, policy) = (catalog.clone(), policy.clone());
        tokio::spawn(async move {
            loop {
                let _ = queue::reap_expired_leases(&catalog, &policy).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let run = nightly::enqueue_backups(&catalog, &RunName::parse("adopt").expect("run"), 4)
        .await
        .expect("enqueue");
    let job_id = run["acme"];

    // An agent claims the job, commits the backup with the id it was given, and dies
    // before reporting.
    let http = reqwest::Client::new();
    let job: ClaimedJob = http
        .post(format!("{}/api/v1/agent/claim", controller.base))
        .bearer_auth("lbt_embedded-test-token")
        .json(&ClaimRequest {
            clusters: vec![ClusterName::parse("main").expect("cluster")],
            wait_seconds: 5,
            can_decrypt: false,
        })
        .send()
        .await
        .expect("claim")
        .json()
        .await
        .expect("claimed job");
    let committed = lifeboat_agent::backup_job::backup_tenant(
        &config,
        &lifeboat_core::region::Regions::from_config(&config),
        config
            .tenant(&TenantName::parse("acme").expect("tenant"))
            .expect("tenant"),
        BackupKind::Scheduled,
        job.backup_id,
        Arc::new(lifeboat_core::progress::Silent),
        CancellationToken::new(),
    )
    .await
    .expect("backup");
    assert_eq!(Some(committed.manifest.backup_id), job.backup_id);
    if lose_second_manifest {
        env.region(&config, 1)
            .delete_object(
                &lifeboat_core::manifest::ObjectKey::Manifest(
                    &committed.manifest.tenant,
                    committed.manifest.backup_id,
                )
                .to_key(),
            )
            .await
            .expect("lose the manifest in us");
    }

    // The next attempt, by a real agent, adopts it instead of taking another.
    let cancel = CancellationToken::new();
    // Where a backup must reach both regions to be committed.
    let agent_config = if lose_second_manifest {
        Arc::new(env.config(&Settings {
            min_regions: Some(2),
            ..catalog_settings()
        }))
    } else {
        config.clone()
    };
    let agent_regions = lifeboat_core::region::Regions::from_config(&agent_config);
    let agent = tokio::spawn(lifeboat_agent::worker::run_agent(
        agent_config,
        agent_regions,
        lifeboat_agent::worker::AgentOptions {
            controller: controller.base.clone(),
            token: SecretString::from("lbt_embedded-test-token"),
            clusters: vec![],
            concurrency: 1,
            claim_wait: Duration::from_secs(1),
        },
        cancel.clone(),
    ));
    let (job_ids, never) = ([job_id], CancellationToken::new());
    let statuses = nightly::wait_for_jobs(&catalog, &job_ids, Duration::from_millis(100), &never);
    let statuses = tokio::time::timeout(Duration::from_secs(60), statuses)
        .await
        .expect("the job finished")
        .expect("statuses");
    cancel.cancel();
    let _ = agent.await;
    reaper.abort();
    assert_eq!(
        statuses[0].state,
        queue::JobState::Succeeded,
        "{statuses:?}"
    );
    assert_eq!(statuses[0].attempts, 2, "{statuses:?}");
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 1);
    if !lose_second_manifest {
        for index in 0..2 {
            let keys = crate::harness::all_keys(&env.region(&config, index)).await;
            assert_eq!(
                manifests_in(&keys, "acme"),
                1,
                "one backup, not two: {keys:?}"
            );
        }
    }
    drop(config_path);
    (statuses, committed)
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
async fn concurrent_claims_respect_the_cluster_region_and_tenant_limits() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env_with_tenants(&env, &[], 0).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    let backup = |tenant: &str, cluster: &str| NewJob {
        dedup_key: None,
        work: JobWork::Backup {
            tenant: TenantName::parse(tenant).expect("tenant"),
            cluster: ClusterName::parse(cluster).expect("cluster"),
            database: tenant.to_owned(),
            backup_kind: BackupKind::Scheduled,
        },
    };
    let mut jobs: Vec<NewJob> = (0..6)
        .map(|index| backup(&format!("tenant-{index}"), "main"))
        .collect();
    jobs.push(backup("solo", "other"));
    jobs.push(backup("solo", "other"));
    for _ in 0..5 {
        jobs.push(NewJob {
            dedup_key: None,
            work: JobWork::Scrub {
                region: lifeboat_core::ids::RegionName::parse("eu").expect("region"),
                copies: vec![],
                keep: vec![],
            },
        });
    }
    queue::enqueue(&**catalog.connection().await.expect("connection"), &jobs, 4)
        .await
        .expect("enqueue");
    let policy = QueuePolicy {
        max_per_cluster: 2,
        max_per_region: 3,
        ..QueuePolicy::default()
    };
    let clusters: Vec<ClusterName> = ["main", "other", "third"]
        .iter()
        .map(|name| ClusterName::parse(name).expect("cluster"))
        .collect();

    // Eight claimers at once, until a few rounds in a row claim nothing.
    let mut idle_rounds = 0;
    while idle_rounds < 3 {
        let claims = futures::future::join_all((0..8).map(|agent| {
            let (catalog, policy, clusters) = (catalog.clone(), policy.clone(), clusters.clone());
            async move {
                queue::claim(
                    &catalog,
                    &format!("agent-{agent}"),
                    &clusters,
                    false,
                    &policy,
                )
                .await
                .expect("claim")
            }
        }))
        .await;
        if claims.iter().all(Option::is_none) {
            idle_rounds += 1;
        } else {
            idle_rounds = 0;
        }
    }
    let running = |filter: &str| {
        let catalog = catalog.clone();
        let sql = format!("SELECT count(*) FROM jobs WHERE state = 'running' AND {filter}");
        async move { scalar(&catalog, &sql).await }
    };
    assert_eq!(running("cluster = 'main'").await, 2, "cluster limit");
    assert_eq!(running("tenant = 'solo'").await, 1, "one job per tenant");
    assert_eq!(running("region = 'eu'").await, 3, "region limit");

    // Finishing one frees its place, and only its place.
    let connection = catalog.connection().await.expect("connection");
    let (finished, lease, owner): (i64, uuid::Uuid, String) = connection
        .query_one(
            "SELECT id, lease_token, lease_owner FROM jobs WHERE state = 'running' AND cluster = 'main' LIMIT 1",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .expect("a running job");
    queue::lock_running(&**connection, finished, lease, &owner)
        .await
        .expect("held");
    queue::mark_succeeded(&**connection, finished, &serde_json::json!({}))
        .await
        .expect("succeeded");
    let next = queue::claim(&catalog, "agent-0", &clusters, false, &policy)
        .await
        .expect("claim")
        .expect("a place was freed");
    assert!(
        matches!(&next.work, JobWork::Backup { cluster, .. } if cluster.as_str() == "main"),
        "{next:?}"
    );
    assert!(
        queue::claim(&catalog, "agent-0", &clusters, false, &policy)
            .await
            .expect("claim")
            .is_none()
    );

    // A busy cluster does not hold back the jobs queued behind its own: a job on another
    // cluster, enqueued last, is claimed next.
    let mut blocked_then_free: Vec<NewJob> = (6..10)
        .map(|index| backup(&format!("tenant-{index}"), "main"))
        .collect();
    blocked_then_free.push(backup("elsewhere", "third"));
    queue::enqueue(&**connection, &blocked_then_free, 4)
        .await
        .expect("enqueue");
    let behind = queue::claim(&catalog, "agent-0", &clusters, false, &policy)
        .await
        .expect("claim")
        .expect("the other cluster's job");
    assert!(
        matches!(&behind.work, JobWork::Backup { cluster, .. } if cluster.as_str() == "third"),
        "{behind:?}"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_kinds_deadline_is_ended_however_faithful_its_heartbeats() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env_with_tenants(&env, &["acme"], 10).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    let policy = QueuePolicy::default();
    let cluster = ClusterName::parse("main").expect("cluster");
    let job = NewJob {
        dedup_key: None,
        work: JobWork::Backup {
            tenant: TenantName::parse("acme").expect("tenant"),
            cluster: cluster.clone(),
            database: "acme".to_owned(),
            backup_kind: BackupKind::Scheduled,
        },
    };
    queue::enqueue(
        &**catalog.connection().await.expect("connection"),
        &[job],
        4,
    )
    .await
    .expect("enqueue");
    let claimed = queue::claim(&catalog, "agent-1", &[cluster], false, &policy)
        .await
        .expect("claim")
        .expect("the job");
    queue::heartbeat(
        &catalog,
        claimed.id,
        claimed.lease_token,
        "agent-1",
        &policy,
    )
    .await
    .expect("a heartbeat within the deadline");
    assert_eq!(
        queue::reap_expired_leases(&catalog, &policy)
            .await
            .expect("reap"),
        0,
        "a job within its deadline and lease is left alone"
    );
    // The attempt started longer ago than a backup may run; its lease is still fresh.
    let hours = i64::try_from(policy.deadlines.backup.as_secs() / 3600).expect("hours") + 1;
    scalar(
        &catalog,
        &format!(
            "WITH aged AS (UPDATE jobs SET started_at = now() - interval '{hours} hours' RETURNING 1)
             SELECT count(*) FROM aged"
        ),
    )
    .await;
    assert_eq!(
        queue::reap_expired_leases(&catalog, &policy)
            .await
            .expect("reap"),
        1
    );
    let statuses = queue::job_statuses(&catalog, &[claimed.id])
        .await
        .expect("status");
    assert_eq!(
        statuses[0].state,
        queue::JobState::Queued,
        "retried: {statuses:?}"
    );
    assert!(
        statuses[0]
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("deadline passed")),
        "{statuses:?}"
    );
    assert!(
        queue::heartbeat(
            &catalog,
            claimed.id,
            claimed.lease_token,
            "agent-1",
            &policy
        )
        .await
        .is_err(),
        "the hung attempt's agent is told to stop"
    );
    drop(config_path);
}
