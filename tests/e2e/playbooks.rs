//! Playbooks on real servers: a live restore and its rollback, a fault injected after every
//! step of every playbook, an agent that dies after every step, a session held open through
//! the swap, a dump from a newer PostgreSQL refused, a copy with its own role, drills, and a
//! tenant whose database name needs quoting through all of them.
//!
//! Faults are injected by wrapping the real cluster executor ([`Faulty`]): after the real
//! step has run, the wrapper reports a failure (the runner must undo) or cancels the run
//! (as a dying agent: nothing is undone, and the next attempt must finish or undo).

use std::sync::atomic::{AtomicUsize, Ordering};

use lifeboat_agent::playbook_job::{self, AgentHooks, RunContext};
use lifeboat_core::api::{ClaimedJob, JobOutcome, JobResult, JobWork, RestoreResult};
use lifeboat_core::config::Config;
use lifeboat_core::ids::{BackupId, ClusterName, TenantName};
use lifeboat_core::manifest::{BackupKind, ObjectKey};
use lifeboat_core::region::Regions;
use lifeboat_provisioner::playbook::{
    Action, Bindings, ClusterExecutor, Executor, NoObserver, PlaybookSource, StepFailure, Variable,
    names, run_playbook,
};
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, Settings, TestEnv, backup, stderr, stdout};

/// A tenant database name that needs quoting everywhere: quotes, spaces, non-ASCII.
const ODD_DATABASE: &str = "Ünïcode \"odd\" tenant";

fn odd_settings() -> Settings {
    Settings {
        tenants: vec![("odd".to_owned(), ODD_DATABASE.to_owned())],
        ..Settings::default()
    }
}

/// What a fault does after the real step `after_step` (from 1) has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The step reports a failure: the run undoes.
    Fail,
    /// The agent dies: the run stops, nothing is undone.
    Crash,
}

struct Faulty<'a, E> {
    inner: &'a E,
    after_step: usize,
    fault: Fault,
    cancel: CancellationToken,
    executed: AtomicUsize,
}

impl<E: Executor> Executor for Faulty<'_, E> {
    async fn preflight(&self, actions: &[Action]) -> Result<(), StepFailure> {
        self.inner.preflight(actions).await
    }

    async fn execute(&self, action: &Action) -> Result<Option<String>, StepFailure> {
        let detail = self.inner.execute(action).await?;
        let number = self.executed.fetch_add(1, Ordering::SeqCst) + 1;
        if number == self.after_step {
            match self.fault {
                Fault::Fail => return Err(StepFailure::transient("injected fault")),
                Fault::Crash => self.cancel.cancel(),
            }
        }
        Ok(detail)
    }

    async fn undo(&self, action: &Action) -> Result<Option<String>, StepFailure> {
        self.inner.undo(action).await
    }

    async fn committed(&self, action: &Action) -> Result<bool, StepFailure> {
        self.inner.committed(action).await
    }
}

fn tenant() -> TenantName {
    TenantName::parse("odd").expect("tenant")
}

fn main_cluster() -> ClusterName {
    ClusterName::parse("main").expect("cluster")
}

fn live_restore_bindings(run_tag: &str, previous: &str) -> Bindings {
    Bindings::from([
        (Variable::Tenant, "odd".to_owned()),
        (Variable::Database, ODD_DATABASE.to_owned()),
        (Variable::Role, "postgres".to_owned()),
        (
            Variable::Shadow,
            playbook_job::shadow_database_name(run_tag),
        ),
        (Variable::Previous, previous.to_owned()),
        (Variable::Run, run_tag.to_owned()),
    ])
}

async fn databases_named(env: &TestEnv, prefix: &str) -> Vec<String> {
    let client = env.postgres.connect("postgres").await.expect("connect");
    client
        .query(
            "SELECT datname FROM pg_database WHERE left(datname, length($1)) = $1",
            &[&prefix],
        )
        .await
        .expect("list databases")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn allows_connections(env: &TestEnv, database: &str) -> bool {
    let client = env.postgres.connect("postgres").await.expect("connect");
    client
        .query_one(
            "SELECT datallowconn FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .expect("datallowconn")
        .get(0)
}

/// The fingerprints of a kept (connection-blocked) database: let the test in, read, block.
async fn kept_fingerprints(
    env: &TestEnv,
    database: &str,
) -> std::collections::BTreeMap<String, (i64, String)> {
    let admin = env.postgres.connect("postgres").await.expect("connect");
    let quoted = lifeboat_core::postgres::quote_identifier(database);
    admin
        .batch_execute(&format!("ALTER DATABASE {quoted} ALLOW_CONNECTIONS true"))
        .await
        .expect("let the test in");
    let fingerprints = env.table_fingerprints(database).await;
    admin
        .batch_execute(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'; ALTER DATABASE {quoted} ALLOW_CONNECTIONS false",
            database.replace('\'', "''")
        ))
        .await
        .expect("block it again");
    fingerprints
}

/// Change the tenant's data after its backup: the state a helpdesk restore undoes.
async fn change_data(env: &TestEnv) {
    let client = env.postgres.connect(ODD_DATABASE).await.expect("connect");
    client
        .batch_execute(
            "DELETE FROM events WHERE id % 3 = 0; UPDATE customers SET name = 'changed ' || name WHERE id % 2 = 0",
        )
        .await
        .expect("change data");
}

/// A restore-live job as the controller hands it out.
fn live_restore_job(id: i64, attempt: u32, backup_id: BackupId, previous: &str) -> ClaimedJob {
    ClaimedJob {
        id,
        lease_token: uuid::Uuid::new_v4(),
        lease_seconds: 60,
        attempt,
        work: JobWork::RestoreLive {
            tenant: tenant(),
            cluster: main_cluster(),
            database: ODD_DATABASE.to_owned(),
            backup_id,
            sha256: None,
            previous_database: previous.to_owned(),
        },
        backup_id: None,
        earlier_backup_ids: Vec::new(),
        tenant_keys: None,
    }
}

fn restore_result(outcome: JobOutcome) -> RestoreResult {
    match outcome {
        JobOutcome::Succeeded {
            result: JobResult::Restore(result),
        } => result,
        other => panic!("the job did not succeed: {other:?}"),
    }
}

async fn run_job(config: &Config, regions: &Regions, job: &ClaimedJob) -> JobOutcome {
    playbook_job::run_playbook_job(config, regions, job, &NoObserver, &CancellationToken::new())
        .await
}

#[tokio::test]
async fn a_live_restore_brings_the_backup_back_keeps_the_changed_state_and_rolls_back_twice() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database(ODD_DATABASE, 300).await;
    let config = env.config(&odd_settings());
    let regions = Regions::from_config(&config);
    let backed_up = backup(&config, "odd").await.expect("backup");
    let at_backup = env.table_fingerprints(ODD_DATABASE).await;
    change_data(&env).await;
    let changed = env.table_fingerprints(ODD_DATABASE).await;
    assert_ne!(at_backup, changed);

    let previous = "lifeboat_prev_1_Ünïcode \"odd\" tenant";
    let result = restore_result(
        run_job(
            &config,
            &regions,
            &live_restore_job(7, 1, backed_up.manifest.backup_id, previous),
        )
        .await,
    );
    assert_eq!(
        env.table_fingerprints(ODD_DATABASE).await,
        at_backup,
        "live is the backup again"
    );
    assert_eq!(
        kept_fingerprints(&env, previous).await,
        changed,
        "the previous database is kept"
    );
    assert!(allows_connections(&env, ODD_DATABASE).await);
    assert!(
        !allows_connections(&env, previous).await,
        "nobody writes to the kept database"
    );
    assert_eq!(result.previous_database.as_deref(), Some(previous));
    assert!(
        result.offline_ms.is_some_and(|offline| offline < 5_000),
        "{result:?}"
    );
    assert!(databases_named(&env, "lifeboat_shadow_").await.is_empty());
    // The safety backup holds the changed state, and restores it.
    let safety = result.safety_backup.expect("a safety backup");
    assert_eq!(safety.manifest.kind, BackupKind::PreRestore);
    crate::harness::restore(
        &config,
        "odd",
        lifeboat_core::restore::BackupSelector::Id(safety.manifest.backup_id),
        "safety check",
    )
    .await
    .expect("the safety backup restores");
    assert_eq!(env.table_fingerprints("safety check").await, changed);

    // Rollback: the kept database is live again, the restored one kept in its turn.
    let rollback = |id: i64, revive: &str, keep: &str| ClaimedJob {
        id,
        lease_token: uuid::Uuid::new_v4(),
        lease_seconds: 60,
        attempt: 1,
        work: JobWork::Rollback {
            tenant: tenant(),
            cluster: main_cluster(),
            database: ODD_DATABASE.to_owned(),
            restore_database: revive.to_owned(),
            previous_database: keep.to_owned(),
        },
        backup_id: None,
        earlier_backup_ids: Vec::new(),
        tenant_keys: None,
    };
    restore_result(run_job(&config, &regions, &rollback(8, previous, "lifeboat_prev_2")).await);
    assert_eq!(env.table_fingerprints(ODD_DATABASE).await, changed);
    assert_eq!(kept_fingerprints(&env, "lifeboat_prev_2").await, at_backup);
    assert!(!env.database_exists(previous).await);
    // And back again.
    restore_result(
        run_job(
            &config,
            &regions,
            &rollback(9, "lifeboat_prev_2", "lifeboat_prev_3"),
        )
        .await,
    );
    assert_eq!(env.table_fingerprints(ODD_DATABASE).await, at_backup);
    assert_eq!(kept_fingerprints(&env, "lifeboat_prev_3").await, changed);
    assert!(allows_connections(&env, ODD_DATABASE).await);
}

#[tokio::test]
async fn a_fault_after_any_step_of_a_live_restore_leaves_live_untouched_and_nothing_behind() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database(ODD_DATABASE, 100).await;
    let config = env.config(&odd_settings());
    let regions = Regions::from_config(&config);
    let backed_up = backup(&config, "odd").await.expect("backup");
    change_data(&env).await;
    let changed = env.table_fingerprints(ODD_DATABASE).await;
    let cluster = config.cluster(&main_cluster()).expect("cluster");
    let playbook = PlaybookSource { dir: None }
        .load(names::RESTORE_LIVE)
        .expect("playbook");
    for after_step in 1..=playbook.steps.len() {
        let run_tag = format!("job-{}", 100 + after_step);
        let previous = format!("lifeboat_prev_fault_{after_step}");
        let (tenant_name, cluster_name, cancel) =
            (tenant(), main_cluster(), CancellationToken::new());
        let hooks = AgentHooks::new(
            &config,
            &regions,
            &tenant_name,
            &cluster_name,
            cluster,
            &cancel,
        )
        .restoring(backed_up.manifest.backup_id, None);
        let executor = ClusterExecutor::new(cluster, &run_tag, &hooks);
        let faulty = Faulty {
            inner: &executor,
            after_step,
            fault: Fault::Fail,
            cancel: CancellationToken::new(),
            executed: AtomicUsize::new(0),
        };
        let failure = run_playbook(
            &faulty,
            &playbook,
            &live_restore_bindings(&run_tag, &previous),
            false,
            &NoObserver,
            &CancellationToken::new(),
        )
        .await
        .expect_err("the injected fault fails the run");
        assert!(
            failure.undo_errors.is_empty(),
            "step {after_step}: {failure}"
        );
        assert_eq!(
            env.table_fingerprints(ODD_DATABASE).await,
            changed,
            "step {after_step}: live was touched"
        );
        assert!(
            allows_connections(&env, ODD_DATABASE).await,
            "step {after_step}: live left blocked"
        );
        assert!(
            !env.database_exists(&previous).await,
            "step {after_step}: previous left"
        );
        assert_eq!(
            databases_named(&env, "lifeboat_shadow_").await,
            Vec::<String>::new(),
            "step {after_step}: shadow left"
        );
    }
}

#[tokio::test]
async fn a_live_restore_whose_agent_died_after_any_step_is_completed_by_the_next_attempt() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database(ODD_DATABASE, 100).await;
    let config = env.config(&odd_settings());
    let regions = Regions::from_config(&config);
    let backed_up = backup(&config, "odd").await.expect("backup");
    let at_backup = env.table_fingerprints(ODD_DATABASE).await;
    change_data(&env).await;
    let changed = env.table_fingerprints(ODD_DATABASE).await;
    let cluster = config.cluster(&main_cluster()).expect("cluster");
    let playbook = PlaybookSource { dir: None }
        .load(names::RESTORE_LIVE)
        .expect("playbook");
    let admin = env.postgres.connect("postgres").await.expect("connect");
    for after_step in 1..=playbook.steps.len() {
        let run_tag = format!("job-{}", 200 + after_step);
        let previous = format!("lifeboat_prev_crash_{after_step}");
        let bindings = live_restore_bindings(&run_tag, &previous);
        let (tenant_name, cluster_name, cancel) =
            (tenant(), main_cluster(), CancellationToken::new());
        let hooks = AgentHooks::new(
            &config,
            &regions,
            &tenant_name,
            &cluster_name,
            cluster,
            &cancel,
        )
        .restoring(backed_up.manifest.backup_id, None);
        let dying = CancellationToken::new();
        let first_attempt = ClusterExecutor::new(cluster, &run_tag, &hooks);
        let faulty = Faulty {
            inner: &first_attempt,
            after_step,
            fault: Fault::Crash,
            cancel: dying.clone(),
            executed: AtomicUsize::new(0),
        };
        let died = run_playbook(&faulty, &playbook, &bindings, false, &NoObserver, &dying).await;
        if after_step < playbook.steps.len() {
            assert!(
                died.is_err(),
                "step {after_step}: the run went on after its agent died"
            );
        }
        let second_attempt = ClusterExecutor::new(cluster, &run_tag, &hooks);
        run_playbook(
            &second_attempt,
            &playbook,
            &bindings,
            true,
            &NoObserver,
            &CancellationToken::new(),
        )
        .await
        .unwrap_or_else(|failure| panic!("step {after_step}: the next attempt failed: {failure}"));
        assert_eq!(
            env.table_fingerprints(ODD_DATABASE).await,
            at_backup,
            "step {after_step}"
        );
        assert_eq!(
            kept_fingerprints(&env, &previous).await,
            changed,
            "step {after_step}"
        );
        assert!(
            allows_connections(&env, ODD_DATABASE).await,
            "step {after_step}"
        );
        assert!(
            databases_named(&env, "lifeboat_shadow_").await.is_empty(),
            "step {after_step}"
        );
        // Back to the changed state for the next round.
        let live = lifeboat_core::postgres::quote_identifier(ODD_DATABASE);
        let kept = lifeboat_core::postgres::quote_identifier(&previous);
        for statement in [
            format!("DROP DATABASE {live} WITH (FORCE)"),
            format!("ALTER DATABASE {kept} RENAME TO {live}"),
            format!("ALTER DATABASE {live} ALLOW_CONNECTIONS true"),
        ] {
            admin.batch_execute(&statement).await.expect("reset");
        }
    }
}

#[tokio::test]
async fn the_swap_ends_sessions_held_open_on_live() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database(ODD_DATABASE, 50).await;
    let config = env.config(&odd_settings());
    let regions = Regions::from_config(&config);
    let backed_up = backup(&config, "odd").await.expect("backup");
    change_data(&env).await;
    let idle = env
        .postgres
        .connect(ODD_DATABASE)
        .await
        .expect("idle session");
    let in_transaction = env.postgres.connect(ODD_DATABASE).await.expect("session");
    in_transaction
        .batch_execute("BEGIN; SELECT count(*) FROM customers")
        .await
        .expect("open a transaction");
    let result = restore_result(
        run_job(
            &config,
            &regions,
            &live_restore_job(
                11,
                1,
                backed_up.manifest.backup_id,
                "lifeboat_prev_sessions",
            ),
        )
        .await,
    );
    assert!(
        result.steps.iter().any(|step| step.step == "swap_databases"
            && step
                .detail
                .as_deref()
                .is_some_and(|detail| !detail.contains(" 0 session"))),
        "{:?}",
        result.steps
    );
    assert!(
        idle.simple_query("SELECT 1").await.is_err(),
        "the idle session survived the swap"
    );
    assert!(in_transaction.simple_query("SELECT 1").await.is_err());
    let fresh = env
        .postgres
        .connect(ODD_DATABASE)
        .await
        .expect("reconnect after the swap");
    fresh.simple_query("SELECT 1").await.expect("live answers");
}

#[tokio::test]
async fn a_dump_from_a_newer_postgresql_is_refused_before_anything_is_made() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database(ODD_DATABASE, 20).await;
    let config = env.config(&odd_settings());
    let regions = Regions::from_config(&config);
    let backed_up = backup(&config, "odd").await.expect("backup");
    // A manifest that says the dump came from PostgreSQL 99, in every region.
    let key = ObjectKey::Manifest(&tenant(), backed_up.manifest.backup_id).to_key();
    let mut manifest = backed_up.manifest.clone();
    manifest.source.server_version = "99.1 (Debian 99.1-1)".to_owned();
    for region in regions.iter() {
        region
            .put_object(&key, bytes::Bytes::from(manifest.to_json()))
            .await
            .expect("rewrite manifest");
    }
    let cancel = CancellationToken::new();
    let drilled = playbook_job::drill(
        &config,
        &regions,
        &tenant(),
        &main_cluster(),
        backed_up.manifest.backup_id,
        None,
        RunContext {
            run_tag: "job-99",
            resume: false,
            observer: &NoObserver,
            cancel: &cancel,
            tenant_keys: None,
        },
    )
    .await;
    let message = match drilled {
        Err(not_run) => {
            // Not the backup's fault, and no later attempt on this cluster can do better.
            assert_eq!(not_run.1, playbook_job::DrillRetry::Never, "{not_run}");
            not_run.to_string()
        }
        Ok(run) => panic!("a drill was recorded: {:?}", run.result.outcome),
    };
    assert!(
        message.contains("PostgreSQL 99") && message.contains("PostgreSQL 15"),
        "{message}"
    );
    assert!(
        databases_named(&env, "lifeboat_drill_").await.is_empty(),
        "a scratch database was made"
    );
}

#[tokio::test]
async fn a_drill_runs_the_drill_playbook_and_times_each_step() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database(ODD_DATABASE, 100).await;
    let config = env.config(&odd_settings());
    let regions = Regions::from_config(&config);
    let backed_up = backup(&config, "odd").await.expect("backup");
    let cancel = CancellationToken::new();
    let run = playbook_job::drill(
        &config,
        &regions,
        &tenant(),
        &main_cluster(),
        backed_up.manifest.backup_id,
        Some(&backed_up.manifest.object.sha256),
        RunContext {
            run_tag: "job-5",
            resume: false,
            observer: &NoObserver,
            cancel: &cancel,
            tenant_keys: None,
        },
    )
    .await
    .expect("the drill ran");
    assert!(
        matches!(
            run.result.outcome,
            lifeboat_core::api::DrillOutcome::Verified { .. }
        ),
        "{:?}",
        run.result.outcome
    );
    let steps: Vec<&str> = run
        .result
        .steps
        .iter()
        .map(|step| step.step.as_str())
        .collect();
    assert_eq!(
        steps,
        [
            "ensure_role",
            "create_database",
            "restore_backup",
            "verify",
            "drop_database",
            "drop_role"
        ]
    );
    assert!(
        run.result
            .steps
            .iter()
            .all(|step| step.duration_ms.is_some())
    );
    assert!(databases_named(&env, "lifeboat_drill_").await.is_empty());
    // The role the drill made for the tenant (it had none: the superuser owns its
    // database) is gone with it.
    let admin = env.postgres.connect("postgres").await.expect("connect");
    let role_left: bool = admin
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'odd')",
            &[],
        )
        .await
        .expect("roles")
        .get(0);
    assert!(!role_left);
}

#[tokio::test]
async fn a_copy_gets_its_own_role_and_is_neutralised() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database(ODD_DATABASE, 50).await;
    {
        let client = env.postgres.connect(ODD_DATABASE).await.expect("connect");
        client
            .batch_execute(
                "CREATE TABLE scheduled_jobs (id int PRIMARY KEY, enabled bool NOT NULL); INSERT INTO scheduled_jobs VALUES (1, true), (2, true)",
            )
            .await
            .expect("scheduled jobs");
    }
    let config = env.config(&odd_settings());
    let regions = Regions::from_config(&config);
    let backed_up = backup(&config, "odd").await.expect("backup");
    let password = "copy-password-8f2k1";
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    let job = ClaimedJob {
        id: 31,
        lease_token: uuid::Uuid::new_v4(),
        lease_seconds: 60,
        attempt: 1,
        work: JobWork::RestoreCopy {
            tenant: tenant(),
            cluster: main_cluster(),
            backup_id: backed_up.manifest.backup_id,
            sha256: None,
            into_database: "staging copy é".to_owned(),
            role: "staging_copy_owner".to_owned(),
            role_password_verifier: verifier,
        },
        backup_id: None,
        earlier_backup_ids: Vec::new(),
        tenant_keys: None,
    };
    let result = restore_result(run_job(&config, &regions, &job).await);
    assert_eq!(result.database, "staging copy é");
    // The copy's role connects with the password the requester was shown, and owns the data.
    let connection_string = format!(
        "host=127.0.0.1 port={} user=staging_copy_owner password={password} dbname='staging copy é'",
        env.postgres.port()
    );
    let (client, connection) = tokio_postgres::connect(&connection_string, tokio_postgres::NoTls)
        .await
        .expect("the copy's role connects");
    tokio::spawn(connection);
    let enabled: i64 = client
        .query_one("SELECT count(*) FROM scheduled_jobs WHERE enabled", &[])
        .await
        .expect("read")
        .get(0);
    assert_eq!(
        enabled, 0,
        "the copy's scheduled jobs were not switched off"
    );
    client
        .batch_execute(
            "INSERT INTO customers (name, profile, created_at) VALUES ('x', '{}', now())",
        )
        .await
        .expect("the copy's role writes to its tables");
    // Copying into an existing database is refused and leaves it alone.
    let again = run_job(
        &config,
        &regions,
        &ClaimedJob {
            id: 32,
            ..job.clone()
        },
    )
    .await;
    let JobOutcome::Failed { error, retryable } = again else {
        panic!("a copy into an existing database succeeded");
    };
    assert!(!retryable && error.contains("already exists"), "{error}");
    assert!(env.database_exists("staging copy é").await);
}

#[tokio::test]
async fn a_malformed_playbook_is_refused_with_its_file_and_line() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env.config_file(&Settings::default());
    let file = env.dir.path().join("restore-live.toml");
    std::fs::write(
        &file,
        "description = \"mine\"\n\n[[steps]]\nstep = \"create_database\"\ndatabase = \"{shadow}\"\nowner = \"{role}\"\n\n[[steps]]\nstep = \"swap_database\"\n",
    )
    .expect("write playbook");
    let checked = env.lifeboat(
        &config_path,
        &["playbook", "check", file.to_str().expect("utf-8")],
    );
    assert!(!checked.status.success());
    let message = stderr(&checked);
    assert!(
        message.contains("restore-live.toml:8: unknown step \"swap_database\""),
        "{message}"
    );
    // The same file in `playbook_dir` makes `playbook list` say so, and the job refuse.
    let with_dir = env.config_file(&Settings {
        extra: format!(
            "playbook_dir = {:?}\n",
            env.dir.path().display().to_string()
        ),
        ..Settings::default()
    });
    let listed = env.lifeboat(&with_dir, &["playbook", "list"]);
    assert!(!listed.status.success());
    assert!(stdout(&listed).contains("INVALID"), "{}", stdout(&listed));
    let unknown = env.lifeboat(&config_path, &["playbook", "show", "restore-everything"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains(
            "no playbook named \"restore-everything\" (known: deprovision-tenant, drill-tenant,"
        ),
        "{}",
        stderr(&unknown)
    );
    let nobody = env.lifeboat(
        &config_path,
        &[
            "playbook",
            "run",
            "drill-tenant",
            "--tenant",
            "nobody",
            "--dry-run",
        ],
    );
    assert!(!nobody.status.success());
    assert!(
        stderr(&nobody).contains("unknown tenant \"nobody\""),
        "{}",
        stderr(&nobody)
    );
    let guarded = env.lifeboat(
        &config_path,
        &["playbook", "run", "restore-live", "--tenant", "acme"],
    );
    assert!(!guarded.status.success());
    assert!(
        stderr(&guarded).contains("runs only through `lifeboat restore live`"),
        "{}",
        stderr(&guarded)
    );
    let shown = env.lifeboat(&config_path, &["playbook", "show", "drill-tenant"]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert!(
        stdout(&shown).contains("restore_backup"),
        "{}",
        stdout(&shown)
    );
}

#[tokio::test]
async fn the_sweep_drops_what_crashed_runs_left_and_nothing_else() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database(ODD_DATABASE, 20).await;
    let config = env.config(&odd_settings());
    let regions = Regions::from_config(&config);
    let backed_up = backup(&config, "odd").await.expect("backup");
    let cluster = config.cluster(&main_cluster()).expect("cluster");
    let playbook = PlaybookSource { dir: None }
        .load(names::DRILL_TENANT)
        .expect("playbook");
    // A drill whose agent died after restoring: its scratch database holds decrypted data.
    let run_tag = "job-77";
    let (tenant_name, cluster_name, cancel) = (tenant(), main_cluster(), CancellationToken::new());
    let hooks = AgentHooks::new(
        &config,
        &regions,
        &tenant_name,
        &cluster_name,
        cluster,
        &cancel,
    )
    .restoring(backed_up.manifest.backup_id, None);
    let executor = ClusterExecutor::new(cluster, run_tag, &hooks);
    let dying = CancellationToken::new();
    let faulty = Faulty {
        inner: &executor,
        after_step: 3,
        fault: Fault::Crash,
        cancel: dying.clone(),
        executed: AtomicUsize::new(0),
    };
    let bindings = Bindings::from([
        (Variable::Tenant, "odd".to_owned()),
        (Variable::Role, "odd".to_owned()),
        (
            Variable::Scratch,
            playbook_job::scratch_database_name(run_tag, &tenant()),
        ),
        (Variable::Run, run_tag.to_owned()),
    ]);
    run_playbook(&faulty, &playbook, &bindings, false, &NoObserver, &dying)
        .await
        .expect_err("the agent died");
    let left = databases_named(&env, "lifeboat_drill_").await;
    assert_eq!(left.len(), 1, "{left:?}");
    // A database that merely looks like one is not lifeboat's: no run tag.
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE lifeboat_drill_not_ours")
        .await
        .expect("create");

    let clusters = [main_cluster()];
    let too_young =
        playbook_job::sweep_leftovers(&config, &clusters, std::time::Duration::from_secs(3600))
            .await;
    assert!(
        too_young.is_empty(),
        "a job could still be using it: {too_young:?}"
    );
    let swept = playbook_job::sweep_leftovers(&config, &clusters, std::time::Duration::ZERO).await;
    assert_eq!(swept.len(), 1, "{swept:?}");
    assert_eq!(swept[0].database, left[0]);
    assert!(swept[0].made_by.contains("job-77"), "{swept:?}");
    assert!(swept[0].dropped.is_ok(), "{swept:?}");
    assert_eq!(
        databases_named(&env, "lifeboat_drill_").await,
        ["lifeboat_drill_not_ours"]
    );
}
