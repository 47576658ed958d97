//! Helpdesk restores, the controller's side: requests that cannot be served are refused with
//! one clear error and enqueue nothing; a live restore's result is recorded only once its
//! safety backup is in the regions (kind pre-restore, the previous database kept for the
//! grace period); heartbeats' steps show in `restore status`; daily maintenance drops a kept
//! database past its time once. Agents are played over the real HTTP API with a token, as
//! the agent's playbook runner will; the catalog, regions and PostgreSQL are real.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use lifeboat_controller::audit::Actor;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::dedup_key::RunName;
use lifeboat_controller::maintenance::{self, MaintenanceOptions};
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::restores::{self, CopyRequest, RestoreError};
use lifeboat_controller::server::{self, Controller};
use lifeboat_core::api::{
    ClaimRequest, ClaimedJob, ErrorBody, Heartbeat, JobOutcome, JobReport, JobResult, JobWork,
    RestoreResult, SafetyBackup, StepReport, StepState,
};
use lifeboat_core::config::Config;
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::manifest::BackupKind;
use lifeboat_core::region::Regions;
use lifeboat_core::restore::BackupSelector;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, api_options, stderr};

fn settings() -> Settings {
    Settings {
        min_regions: Some(1),
        tenants: vec![
            ("acme".to_owned(), "acme".to_owned()),
            ("globex".to_owned(), "globex".to_owned()),
        ],
        extra: CATALOG.to_owned(),
        ..Settings::default()
    }
}

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).expect("tenant")
}

/// A migrated catalog with one recorded backup of acme, the API in this process.
struct Desk {
    env: TestEnv,
    config_path: PathBuf,
    config: Config,
    catalog: Catalog,
    base: String,
    http: reqwest::Client,
    cancel: CancellationToken,
    acme_backup: BackupId,
}

impl Drop for Desk {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Desk {
    async fn start(with_globex: bool) -> Desk {
        let env = TestEnv::start(Backend::Embedded, 1).await;
        env.create_catalog().await;
        let config_path = env.config_file(&settings());
        let migrated = env.lifeboat(&config_path, &["controller", "migrate"]);
        assert!(migrated.status.success(), "{}", stderr(&migrated));
        let config = env.config(&settings());
        let catalog = Catalog::open(&config).await.expect("open catalog");
        let mut tenants = vec!["acme"];
        if with_globex {
            tenants.push("globex");
        }
        for name in tenants {
            env.create_tenant_database(name, 20).await;
            let backed_up = env.lifeboat(&config_path, &["backup", "--tenant", name]);
            assert!(backed_up.status.success(), "{}", stderr(&backed_up));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let cancel = CancellationToken::new();
        tokio::spawn(server::serve(
            catalog.clone(),
            listener,
            api_options(&config, QueuePolicy::default()),
            None,
            Controller {
                work_ready: Arc::default(),
            },
            cancel.clone(),
        ));
        let mut desk = Desk {
            env,
            config_path,
            config,
            catalog,
            base,
            http: reqwest::Client::new(),
            cancel,
            acme_backup: BackupId::new(),
        };
        desk.acme_backup = desk.newest_backup("acme").await;
        desk
    }

    async fn scalar(&self, sql: &str) -> i64 {
        let client = self.catalog.connection().await.expect("connection");
        client.query_one(sql, &[]).await.expect(sql).get(0)
    }

    async fn newest_backup(&self, tenant: &str) -> BackupId {
        let client = self.catalog.connection().await.expect("connection");
        let row = client
            .query_one(
                "SELECT id FROM backups WHERE tenant = $1 ORDER BY started_at DESC LIMIT 1",
                &[&tenant],
            )
            .await
            .expect("a backup");
        BackupId::from_uuid(row.get(0)).expect("backup id")
    }

    async fn jobs(&self) -> i64 {
        self.scalar("SELECT count(*) FROM jobs").await
    }

    fn token(&self, name: &str) -> String {
        let created = self.env.lifeboat(
            &self.config_path,
            &[
                "agent",
                "token",
                "create",
                name,
                "--all-clusters",
                "--can-decrypt",
            ],
        );
        assert!(created.status.success(), "{}", stderr(&created));
        String::from_utf8_lossy(&created.stdout).trim().to_owned()
    }

    async fn claim(&self, token: &str) -> ClaimedJob {
        let response = self
            .http
            .post(format!("{}/api/v1/agent/claim", self.base))
            .bearer_auth(token)
            .json(&ClaimRequest {
                clusters: vec![lifeboat_core::ids::ClusterName::parse("main").expect("cluster")],
                wait_seconds: 0,
                can_decrypt: true,
            })
            .send()
            .await
            .expect("claim");
        assert_eq!(response.status(), 200, "a job is handed out");
        response.json().await.expect("claimed job")
    }

    async fn post<T: serde::Serialize>(
        &self,
        token: &str,
        path: &str,
        body: &T,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .expect("send")
    }
}

fn step(number: u32, name: &str, state: StepState) -> StepReport {
    StepReport {
        number,
        step: name.to_owned(),
        state,
        duration_ms: Some(5),
        detail: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_requests_that_cannot_be_served_are_refused_and_enqueue_nothing() {
    let desk = Desk::start(true).await;
    let (config, catalog) = (&desk.config, &desk.catalog);
    let acme = tenant("acme");
    let live = |name: &str, selector, reason: &'static str| {
        let name = tenant(name);
        async move {
            restores::request_live_restore(
                catalog,
                config,
                &name,
                selector,
                reason,
                &Actor::system("test"),
            )
            .await
        }
    };
    let by_id = BackupSelector::Id(desk.acme_backup);

    // The CLI: a mistyped confirmation cancels before anything is enqueued.
    let mut typed = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .arg("--config")
        .arg(&desk.config_path)
        .args([
            "restore", "live", "--tenant", "acme", "--latest", "--reason", "ticket 7",
        ])
        .env_remove("LIFEBOAT_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lifeboat");
    typed
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"acm\n")
        .expect("type");
    let typed = typed.wait_with_output().expect("wait");
    assert_eq!(typed.status.code(), Some(1), "{}", stderr(&typed));
    assert!(stderr(&typed).contains("cancelled"), "{}", stderr(&typed));
    assert!(
        String::from_utf8_lossy(&typed.stdout).contains("no drill history"),
        "the estimate is shown first: {}",
        String::from_utf8_lossy(&typed.stdout)
    );
    assert_eq!(desk.jobs().await, 0, "a mismatched name enqueues nothing");

    let unknown_tenant = live("initech", by_id, "ticket 1")
        .await
        .expect_err("refused");
    assert!(
        unknown_tenant
            .to_string()
            .contains("unknown tenant initech"),
        "{unknown_tenant}"
    );
    let unknown_backup = live("acme", BackupSelector::Id(BackupId::new()), "ticket 2")
        .await
        .expect_err("refused");
    assert!(
        matches!(unknown_backup, RestoreError::UnknownBackup(_)),
        "{unknown_backup}"
    );
    let globex_backup = desk.newest_backup("globex").await;
    let others = live("acme", BackupSelector::Id(globex_backup), "ticket 3")
        .await
        .expect_err("refused");
    assert!(
        others.to_string().contains("belongs to tenant globex"),
        "{others}"
    );
    let no_reason = live("acme", by_id, "  ").await.expect_err("refused");
    assert!(
        matches!(no_reason, RestoreError::EmptyReason),
        "{no_reason}"
    );
    let nothing = restores::request_rollback(catalog, config, &acme, None, &Actor::system("test"))
        .await
        .expect_err("refused");
    assert!(
        nothing.to_string().contains("nothing to roll back"),
        "{nothing}"
    );
    let tester = Actor::system("test");
    let copy = |into: &'static str| CopyRequest {
        tenant: &acme,
        selector: BackupSelector::Latest,
        into,
        expires_days: Some(3),
        actor: &tester,
    };
    let taken = restores::request_copy(catalog, config, copy("globex"))
        .await
        .expect_err("refused");
    assert!(
        taken.to_string().contains("tenant globex's database"),
        "{taken}"
    );
    assert_eq!(desk.jobs().await, 0, "no refusal enqueued anything");
    assert_eq!(
        desk.scalar("SELECT count(*) FROM restores").await,
        0,
        "nor recorded a restore"
    );

    // One restore at a time per tenant, whatever its mode.
    let first = live("acme", BackupSelector::Latest, "ticket 4")
        .await
        .expect("enqueued");
    assert_eq!(
        first.backup.as_ref().map(|backup| backup.id),
        Some(desk.acme_backup)
    );
    let previous = first.previous_database.clone().expect("kept name");
    assert!(
        previous.starts_with("lifeboat_prev_") && previous.ends_with("_acme"),
        "{previous}"
    );
    let again = live("acme", by_id, "ticket 5").await.expect_err("refused");
    assert!(
        again
            .to_string()
            .contains(&format!("already queued (job {})", first.job_id)),
        "{again}"
    );
    let copy_meanwhile = restores::request_copy(catalog, config, copy("acme_staging"))
        .await
        .expect_err("refused");
    assert!(
        matches!(copy_meanwhile, RestoreError::AlreadyUnderway { .. }),
        "{copy_meanwhile}"
    );
    assert_eq!(desk.jobs().await, 1, "only the first restore is enqueued");
    let audited = desk
        .scalar("SELECT count(*) FROM audit_log WHERE action = 'restore.live.request' AND actor = 'test'")
        .await;
    assert_eq!(audited, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_restore_is_recorded_only_once_its_safety_backup_is_in_the_regions() {
    let desk = Desk::start(false).await;
    let acme = tenant("acme");
    let requested = restores::request_live_restore(
        &desk.catalog,
        &desk.config,
        &acme,
        BackupSelector::Id(desk.acme_backup),
        "customer deleted their invoices",
        &Actor::system("test"),
    )
    .await
    .expect("enqueued");
    let token = desk.token("restorer");
    let job = desk.claim(&token).await;
    assert_eq!(job.id, requested.job_id);
    let JobWork::RestoreLive {
        previous_database, ..
    } = &job.work
    else {
        panic!("a live restore: {:?}", job.work);
    };
    let safety_id = job.backup_id.expect("an id for the safety backup");

    // Progress, as the playbook runner will send it.
    let steps = vec![
        step(1, "take_backup", StepState::Done),
        step(2, "restore_backup", StepState::Running),
    ];
    let beat = desk
        .post(
            &token,
            &format!("/api/v1/jobs/{}/heartbeat", job.id),
            &Heartbeat {
                lease_token: job.lease_token,
                steps: steps.clone(),
            },
        )
        .await;
    assert_eq!(beat.status(), 200);
    let shown = restores::restore_status(&desk.catalog, Some(&acme), 20)
        .await
        .expect("status");
    assert_eq!(shown.len(), 1);
    assert_eq!(
        shown[0].steps, steps,
        "the heartbeat's steps are the job's progress"
    );
    assert_eq!(
        shown[0].reason.as_deref(),
        Some("customer deleted their invoices")
    );

    // The safety backup, really taken, under the id the claim handed out.
    let safety = lifeboat_agent::backup_job::backup_tenant_to(
        &desk.config,
        &Regions::from_config(&desk.config),
        desk.config.tenant(&acme).expect("configured"),
        BackupKind::PreRestore,
        Some(safety_id),
        lifeboat_agent::backup_job::granted_recipient(job.tenant_keys.as_ref()).expect("recipient"),
        Arc::new(lifeboat_core::progress::Silent),
        CancellationToken::new(),
    )
    .await
    .expect("safety backup");
    let report = |safety: SafetyBackup| JobReport {
        lease_token: job.lease_token,
        outcome: JobOutcome::Succeeded {
            result: JobResult::Restore(RestoreResult {
                backup_id: Some(desk.acme_backup),
                database: "acme".to_owned(),
                previous_database: Some(previous_database.clone()),
                safety_backup: Some(safety),
                offline_ms: Some(120),
                steps: vec![step(1, "take_backup", StepState::Done)],
                duration_ms: 900,
            }),
        },
    };
    let real = SafetyBackup {
        manifest: Box::new(safety.manifest.clone()),
        regions: safety.regions.clone(),
        duration_ms: 10,
    };
    // A safety backup the regions do not hold: nothing is recorded.
    let region = &Regions::from_config(&desk.config)[0];
    let object = crate::harness::read_object(region, &safety.manifest.object.key).await;
    region
        .delete_object(&safety.manifest.object.key)
        .await
        .expect("remove the object");
    let report_path = format!("/api/v1/jobs/{}/report", job.id);
    let refused = desk.post(&token, &report_path, &report(real.clone())).await;
    assert_eq!(refused.status(), 422);
    let body: ErrorBody = refused.json().await.expect("error body");
    assert!(body.error.contains("does not hold"), "{}", body.error);
    assert_eq!(
        desk.scalar("SELECT count(*) FROM backups WHERE kind = 'pre-restore'")
            .await,
        0
    );
    assert_eq!(desk.scalar("SELECT count(*) FROM kept_databases").await, 0);

    // The object back where the agent put it: recorded.
    region
        .put_object(&safety.manifest.object.key, object)
        .await
        .expect("put the object back");
    let accepted = desk.post(&token, &report_path, &report(real)).await;
    assert_eq!(accepted.status(), 200, "{:?}", accepted.text().await);
    let client = desk.catalog.connection().await.expect("connection");
    let kind: String = client
        .query_one(
            "SELECT kind FROM backups WHERE id = $1",
            &[&safety_id.as_uuid()],
        )
        .await
        .expect("the safety backup is recorded")
        .get(0);
    assert_eq!(kind, "pre-restore");
    let kept = client
        .query_one(
            "SELECT database_name, why, extract(epoch FROM keep_until - now())::bigint
             FROM kept_databases WHERE from_job = $1",
            &[&job.id],
        )
        .await
        .expect("the previous database is kept");
    assert_eq!(kept.get::<_, String>(0), *previous_database);
    assert_eq!(kept.get::<_, String>(1), "previous");
    let seconds_left: i64 = kept.get(2);
    assert!(
        (6 * 86_400..=7 * 86_400).contains(&seconds_left),
        "{seconds_left}"
    );
    let shown = restores::restore_job_status(&desk.catalog, job.id)
        .await
        .expect("status")
        .expect("the restore");
    assert_eq!(shown.offline_ms, Some(120));
    assert_eq!(shown.safety_backup_id, Some(safety_id));
    assert!(shown.keep_until.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_maintenance_drops_a_kept_database_past_its_time_once() {
    let desk = Desk::start(false).await;
    let acme = tenant("acme");
    // A rollback has something to swap back once a live restore kept a database.
    let requested = restores::request_live_restore(
        &desk.catalog,
        &desk.config,
        &acme,
        BackupSelector::Latest,
        "ticket 9",
        &Actor::system("test"),
    )
    .await
    .expect("enqueued");
    let client = desk.catalog.connection().await.expect("connection");
    for (name, keep_until) in [
        ("lifeboat_prev_old_acme", "now() - interval '1 hour'"),
        ("lifeboat_prev_new_acme", "now() + interval '1 day'"),
    ] {
        client
            .execute(
                &format!(
                    "INSERT INTO kept_databases (tenant, cluster, database_name, why, from_job, keep_until)
                     VALUES ('acme', 'main', $1, 'previous', $2, {keep_until})"
                ),
                &[&name, &requested.job_id],
            )
            .await
            .expect("keep");
    }
    let options = MaintenanceOptions {
        regions: Regions::from_config(&desk.config).to_vec(),
        trash_period: desk.config.trash_period,
        scrub_full_sample: 0,
        minute_of_day: 0,
        drill: false,
        drill_cluster: None,
        drill_every_days: 1,
    };
    let run = RunName::parse("2026-11-28").expect("run");
    let first =
        maintenance::run_maintenance(&desk.catalog, &options, &run, chrono::Utc::now(), 2, None)
            .await;
    assert_eq!(first.drop_jobs, 1, "{first:?}");
    let again =
        maintenance::run_maintenance(&desk.catalog, &options, &run, chrono::Utc::now(), 2, None)
            .await;
    assert_eq!(
        again.drop_jobs, 0,
        "the same pass enqueues it once: {again:?}"
    );
    let next_day = RunName::parse("2026-11-29").expect("run");
    let waiting = maintenance::run_maintenance(
        &desk.catalog,
        &options,
        &next_day,
        chrono::Utc::now(),
        2,
        None,
    )
    .await;
    assert_eq!(
        waiting.drop_jobs, 0,
        "not while a drop job is queued: {waiting:?}"
    );
    let drops = client
        .query(
            "SELECT params->>'database' FROM jobs WHERE kind = 'drop-database'",
            &[],
        )
        .await
        .expect("drop jobs");
    let dropped: Vec<String> = drops.iter().map(|row| row.get(0)).collect();
    assert_eq!(dropped, ["lifeboat_prev_old_acme"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_in_the_same_second_as_its_restore_keeps_under_a_name_of_its_own() {
    let desk = Desk::start(false).await;
    let acme = tenant("acme");
    let restore = restores::request_live_restore(
        &desk.catalog,
        &desk.config,
        &acme,
        BackupSelector::Latest,
        "ticket 10",
        &Actor::system("test"),
    )
    .await
    .expect("enqueued");
    let client = desk.catalog.connection().await.expect("connection");
    // The restore ran and kept live under its name; the cluster also keeps the names of
    // the next seconds, as when restores and rollbacks follow each other quickly.
    client
        .execute(
            "UPDATE jobs SET state = 'succeeded', finished_at = now() WHERE id = $1",
            &[&restore.job_id],
        )
        .await
        .expect("finish the restore");
    let now = chrono::Utc::now();
    let mut held = Vec::new();
    for offset in 0..3 {
        let name = restores::kept_database_name(now + chrono::TimeDelta::seconds(offset), "acme");
        client
            .execute(
                "INSERT INTO kept_databases (tenant, cluster, database_name, why, from_job, keep_until)
                 VALUES ('acme', 'main', $1, 'previous', $2, now() + interval '1 day')
                 ON CONFLICT DO NOTHING",
                &[&name, &restore.job_id],
            )
            .await
            .expect("keep");
        held.push(name);
    }
    let rollback = restores::request_rollback(
        &desk.catalog,
        &desk.config,
        &acme,
        Some("undo ticket 10"),
        &Actor::system("test"),
    )
    .await
    .expect("a rollback right after its restore is accepted");
    let kept = rollback.previous_database.expect("a kept name");
    assert!(kept.starts_with("lifeboat_prev_"), "{kept}");
    assert!(!held.contains(&kept), "{kept} is already kept: {held:?}");
}
