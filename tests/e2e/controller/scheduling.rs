//! The scheduler: two controllers enqueue each slot once and catch up once; a nightly and
//! a scheduler on one catalog back each tenant up once a day.

use super::*;

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
