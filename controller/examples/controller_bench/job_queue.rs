//! The job queue: agents over the HTTP API, and the same work through the library.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use lifeboat_controller::agents::{AgentScope, ClusterScope};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::queue::{self, NewJob, QueuePolicy};
use lifeboat_controller::schedule;
use lifeboat_controller::server::{self, Controller, ControllerOptions, EmbeddedAgent};
use lifeboat_core::api::{ClaimRequest, ClaimedJob, JobOutcome, JobReport, JobResult, JobWork};
use lifeboat_core::config::RegionConfig;
use lifeboat_core::ids::{BackupId, RegionName, TenantName};
use lifeboat_core::region::Region;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::measure::{SUMMARY_HEADER, Summary, cpu_note, cpu_sample};
use crate::{
    AGENT_TOKEN, Args, BenchJobKind, Environment, QUEUE_RUN_TIMEOUT, ReportMode, top_statements,
};

// ------------------------------------------------------------------------ job queue --

pub(crate) fn region_name(index: usize) -> anyhow::Result<RegionName> {
    Ok(RegionName::parse(&format!("r{:02}", index + 1))?)
}

pub(crate) fn bench_policy() -> QueuePolicy {
    QueuePolicy {
        // High enough that the limits never hold a job back: this measures the queue.
        max_per_cluster: 1_000_000,
        max_per_region: 1_000_000,
        ..QueuePolicy::default()
    }
}

pub(crate) fn make_jobs(
    kind: BenchJobKind,
    count: usize,
    regions: &[RegionName],
    offset: usize,
) -> anyhow::Result<Vec<NewJob>> {
    (0..count)
        .map(|index| {
            let region = regions[index % regions.len()].clone();
            let work = match kind {
                BenchJobKind::Scrub => JobWork::Scrub {
                    region,
                    copies: vec![],
                    keep: vec![],
                },
                BenchJobKind::Delete => JobWork::Delete {
                    tenant: TenantName::parse(&format!("d-{:06}", offset + index))?,
                    backup_id: BackupId::new(),
                    regions: vec![region],
                },
            };
            Ok(NewJob {
                work,
                dedup_key: None,
            })
        })
        .collect()
}

pub(crate) async fn enqueue_all(catalog: &Catalog, jobs: &[NewJob]) -> anyhow::Result<Vec<i64>> {
    let connection = catalog.connection().await?;
    let mut ids = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(5000) {
        ids.extend(queue::enqueue(&**connection, chunk, 4).await?);
    }
    ensure!(
        ids.len() == jobs.len(),
        "enqueued {} of {} jobs",
        ids.len(),
        jobs.len()
    );
    Ok(ids)
}

/// The report an agent sends for `job`.
pub(crate) fn outcome_for(job: &ClaimedJob, succeed: bool) -> JobOutcome {
    if !succeed {
        return JobOutcome::Failed {
            error: "controller_bench: reported as failed (non-retryable)".to_owned(),
            retryable: false,
        };
    }
    let result = match &job.work {
        JobWork::Scrub { region, .. } => JobResult::Scrub {
            region: region.clone(),
            copies: vec![],
        },
        JobWork::Delete { regions, .. } => JobResult::Delete {
            regions: regions.clone(),
        },
        JobWork::Replicate { to, .. } => JobResult::Replicate { region: to.clone() },
        JobWork::Backup { .. }
        | JobWork::Drill { .. }
        | JobWork::RestoreLive { .. }
        | JobWork::Rollback { .. }
        | JobWork::RestoreCopy { .. }
        | JobWork::DropDatabase { .. } => {
            return JobOutcome::Failed {
                error: "controller_bench: backups, drills and restores are not benchmarked"
                    .to_owned(),
                retryable: false,
            };
        }
    };
    JobOutcome::Succeeded { result }
}

/// One agent's view of the run.
#[derive(Debug, Default)]
pub(crate) struct AgentRun {
    claim_latencies: Vec<Duration>,
    report_latencies: Vec<Duration>,
    claimed_ids: Vec<i64>,
    empty_claims: usize,
}

pub(crate) struct HttpAgent {
    http: reqwest::Client,
    base: String,
}

impl HttpAgent {
    fn new(base: &str) -> anyhow::Result<HttpAgent> {
        Ok(HttpAgent {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(60))
                .build()
                .context("build an HTTP client")?,
            base: base.to_owned(),
        })
    }

    async fn claim(&self) -> anyhow::Result<Option<ClaimedJob>> {
        let response = self
            .http
            .post(format!("{}/api/v1/agent/claim", self.base))
            .bearer_auth(AGENT_TOKEN)
            .json(&ClaimRequest {
                clusters: vec![],
                wait_seconds: 0,
                can_decrypt: false,
            })
            .send()
            .await
            .context("send a claim")?;
        match response.status().as_u16() {
            204 => Ok(None),
            200 => Ok(Some(response.json().await.context("read a claimed job")?)),
            status => bail!(
                "claim answered {status}: {}",
                response.text().await.unwrap_or_default()
            ),
        }
    }

    /// Sends the report; returns the status and body.
    async fn report(&self, job: &ClaimedJob, outcome: JobOutcome) -> anyhow::Result<(u16, String)> {
        let response = self
            .http
            .post(format!("{}/api/v1/jobs/{}/report", self.base, job.id))
            .bearer_auth(AGENT_TOKEN)
            .json(&JobReport {
                lease_token: job.lease_token,
                outcome,
            })
            .send()
            .await
            .context("send a report")?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Ok((status, body))
    }
}

pub(crate) async fn http_agent_loop(
    base: String,
    succeed: bool,
    total: usize,
    done: Arc<AtomicUsize>,
    deadline: Instant,
) -> anyhow::Result<AgentRun> {
    let agent = HttpAgent::new(&base)?;
    let mut run = AgentRun::default();
    while done.load(Ordering::SeqCst) < total {
        ensure!(
            Instant::now() < deadline,
            "the queue run did not finish in time"
        );
        let started = Instant::now();
        let Some(job) = agent.claim().await? else {
            // Nothing claimable right now (the rest is running elsewhere): look again soon.
            run.empty_claims += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        run.claim_latencies.push(started.elapsed());
        run.claimed_ids.push(job.id);
        let started = Instant::now();
        let (status, body) = agent.report(&job, outcome_for(&job, succeed)).await?;
        ensure!(
            status == 200,
            "report of job {} answered {status}: {body}",
            job.id
        );
        run.report_latencies.push(started.elapsed());
        done.fetch_add(1, Ordering::SeqCst);
    }
    Ok(run)
}

pub(crate) async fn library_worker_loop(
    catalog: Catalog,
    name: String,
    policy: QueuePolicy,
    total: usize,
    done: Arc<AtomicUsize>,
    deadline: Instant,
) -> anyhow::Result<AgentRun> {
    let mut run = AgentRun::default();
    while done.load(Ordering::SeqCst) < total {
        ensure!(
            Instant::now() < deadline,
            "the library run did not finish in time"
        );
        let started = Instant::now();
        let Some(job) = queue::claim(&catalog, &name, &[], false, &policy).await? else {
            run.empty_claims += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        run.claim_latencies.push(started.elapsed());
        run.claimed_ids.push(job.id);
        let started = Instant::now();
        let mut connection = catalog.connection().await?;
        let transaction = connection.transaction().await?;
        queue::lock_running(&*transaction, job.id, job.lease_token, &name).await?;
        queue::mark_succeeded(&*transaction, job.id, &serde_json::json!({"bench": true})).await?;
        transaction.commit().await?;
        run.report_latencies.push(started.elapsed());
        done.fetch_add(1, Ordering::SeqCst);
    }
    Ok(run)
}

/// What a queue run measured, merged over its workers.
pub(crate) struct QueueRun {
    wall: Duration,
    runs: Vec<AgentRun>,
    cpu: String,
}

impl QueueRun {
    fn jobs(&self) -> usize {
        self.runs.iter().map(|run| run.claimed_ids.len()).sum()
    }

    fn claims(&self) -> Vec<Duration> {
        self.runs
            .iter()
            .flat_map(|run| run.claim_latencies.iter().copied())
            .collect()
    }

    fn reports(&self) -> Vec<Duration> {
        self.runs
            .iter()
            .flat_map(|run| run.report_latencies.iter().copied())
            .collect()
    }

    fn empty_claims(&self) -> usize {
        self.runs.iter().map(|run| run.empty_claims).sum()
    }

    fn per_second(&self) -> f64 {
        self.jobs() as f64 / self.wall.as_secs_f64()
    }
}

/// Checks that every job in `ids` was claimed exactly once and ended in `final_state`
/// after one attempt; returns the count by state as text.
pub(crate) async fn check_final_states(
    sql: &tokio_postgres::Client,
    ids: &[i64],
    run: &QueueRun,
    final_state: &str,
) -> anyhow::Result<String> {
    let mut seen = HashSet::new();
    for id in run.runs.iter().flat_map(|run| run.claimed_ids.iter()) {
        ensure!(seen.insert(*id), "job {id} was claimed twice");
    }
    let expected: HashSet<i64> = ids.iter().copied().collect();
    ensure!(
        seen == expected,
        "claimed {} distinct jobs, expected exactly the {} enqueued",
        seen.len(),
        expected.len()
    );
    let rows = sql
        .query(
            "SELECT state, count(*), min(attempts), max(attempts) FROM jobs WHERE id = ANY($1)
             GROUP BY state ORDER BY state",
            &[&ids],
        )
        .await
        .context("count jobs by state")?;
    let mut by_state = BTreeMap::new();
    for row in &rows {
        let state: String = row.get(0);
        let count: i64 = row.get(1);
        let min_attempts: i32 = row.get(2);
        let max_attempts: i32 = row.get(3);
        ensure!(
            min_attempts == 1 && max_attempts == 1,
            "jobs in state {state} took {min_attempts}–{max_attempts} attempts, expected exactly 1"
        );
        by_state.insert(state, count);
    }
    ensure!(
        by_state.len() == 1
            && by_state.get(final_state).copied() == Some(i64::try_from(ids.len())?),
        "expected all {} jobs {final_state}, found {by_state:?}",
        ids.len()
    );
    Ok(by_state
        .iter()
        .map(|(state, count)| format!("{state}: {count}"))
        .collect::<Vec<_>>()
        .join(", "))
}

/// Finds out whether the controller accepts a success of this job kind: claims the probe
/// job, reports success, and if that is refused as malformed reports a failure instead.
pub(crate) async fn probe_report_mode(
    base: &str,
    mode: ReportMode,
) -> anyhow::Result<(bool, String)> {
    let agent = HttpAgent::new(base)?;
    let job = agent.claim().await?.context("the probe job is claimable")?;
    let wanted_success = mode != ReportMode::Failed;
    let (status, body) = agent
        .report(&job, outcome_for(&job, wanted_success))
        .await?;
    match (mode, status) {
        (_, 200) => Ok((
            wanted_success,
            if wanted_success {
                "accepted".to_owned()
            } else {
                "failure reports requested".to_owned()
            },
        )),
        (ReportMode::Auto, 422) => {
            let (status, second) = agent.report(&job, outcome_for(&job, false)).await?;
            ensure!(
                status == 200,
                "the probe's failure report answered {status}: {second}"
            );
            Ok((false, format!("refused with 422: {body}")))
        }
        _ => bail!("the probe report answered {status}: {body}"),
    }
}

pub(crate) async fn queue_benchmark(
    environment: &Environment,
    args: &Args,
    out: &mut String,
) -> anyhow::Result<()> {
    let catalog = &environment.catalog;
    let sql = &environment.sql;
    sql.batch_execute("TRUNCATE jobs")
        .await
        .context("empty the queue")?;
    let regions: Vec<RegionName> = (0..args.regions.max(1))
        .map(region_name)
        .collect::<anyhow::Result<_>>()?;
    let policy = bench_policy();

    // The controller's API in this process, as `lifeboat controller` serves it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the API")?;
    let base = format!("http://{}", listener.local_addr()?);
    let cancel = CancellationToken::new();
    let serving = tokio::spawn(server::serve(
        catalog.clone(),
        listener,
        ControllerOptions {
            policy: policy.clone(),
            schedule: false,
            window: schedule::DEFAULT_WINDOW,
            tick_interval: Duration::from_secs(60),
            // Clients for the named regions; scrub and replicate reports ask nothing of them.
            regions: regions
                .iter()
                .map(|name| {
                    Region::new(&RegionConfig {
                        name: name.clone(),
                        endpoint: "http://127.0.0.1:9".to_owned(),
                        bucket: "unused".to_owned(),
                        s3_region: "us-east-1".to_owned(),
                        access_key_id: "unused".to_owned(),
                        secret_access_key: SecretString::from("unused"),
                        manager: None,
                        object_lock: None,
                        require_lock: false,
                        path_style: true,
                        priority: 0,
                    })
                })
                .collect::<Vec<_>>()
                .into(),
            maintenance: None,
            metrics_token: None,
            config: None,
            identities: None,
        },
        Some(EmbeddedAgent {
            token: SecretString::from(AGENT_TOKEN),
            scope: AgentScope {
                clusters: ClusterScope::All,
                can_decrypt: false,
            },
        }),
        Controller {
            work_ready: Arc::default(),
        },
        cancel.clone(),
    ));

    // One probe job first: which report does the controller accept for this kind?
    let probe = make_jobs(args.job_kind, 1, &regions, 999_999)?;
    enqueue_all(catalog, &probe).await?;
    let (succeed, probe_note) = probe_report_mode(&base, args.report).await?;
    let final_state = if succeed { "succeeded" } else { "failed" };

    let jobs = make_jobs(args.job_kind, args.jobs, &regions, 0)?;
    let ids = enqueue_all(catalog, &jobs).await?;
    sql.batch_execute("VACUUM ANALYZE jobs")
        .await
        .context("vacuum jobs")?;
    if args.pg_stat_statements {
        sql.batch_execute("SELECT pg_stat_statements_reset()")
            .await?;
    }

    let done = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + QUEUE_RUN_TIMEOUT;
    let cpu_before = cpu_sample(environment.postmaster, environment.ticks_per_second);
    let started = Instant::now();
    let agents: Vec<_> = (0..args.agents)
        .map(|_| {
            tokio::spawn(http_agent_loop(
                base.clone(),
                succeed,
                args.jobs,
                done.clone(),
                deadline,
            ))
        })
        .collect();
    let mut runs = Vec::new();
    for agent in agents {
        runs.push(agent.await.context("join an agent")??);
    }
    let wall = started.elapsed();
    let cpu_after = cpu_sample(environment.postmaster, environment.ticks_per_second);
    let http_run = QueueRun {
        wall,
        runs,
        cpu: cpu_note(cpu_before, cpu_after, wall),
    };
    let http_states = check_final_states(sql, &ids, &http_run, final_state).await?;
    let statements = if args.pg_stat_statements {
        top_statements(sql, "the HTTP queue run", "job", http_run.jobs()).await?
    } else {
        String::new()
    };
    cancel.cancel();
    serving.await.context("join the API server")??;

    // The same claims and completions through the library, no HTTP in between.
    let library_runs = if args.library_jobs > 0 {
        let mut results = Vec::new();
        for workers in [args.agents, 1] {
            let count = if workers == 1 {
                args.library_jobs / 4
            } else {
                args.library_jobs
            };
            let jobs = make_jobs(
                args.job_kind,
                count,
                &regions,
                1_000_000 + results.len() * 100_000,
            )?;
            let ids = enqueue_all(catalog, &jobs).await?;
            sql.batch_execute("VACUUM ANALYZE jobs")
                .await
                .context("vacuum jobs")?;
            let done = Arc::new(AtomicUsize::new(0));
            let deadline = Instant::now() + QUEUE_RUN_TIMEOUT;
            let cpu_before = cpu_sample(environment.postmaster, environment.ticks_per_second);
            let started = Instant::now();
            let tasks: Vec<_> = (0..workers)
                .map(|index| {
                    tokio::spawn(library_worker_loop(
                        catalog.clone(),
                        format!("library-{index}"),
                        policy.clone(),
                        count,
                        done.clone(),
                        deadline,
                    ))
                })
                .collect();
            let mut runs = Vec::new();
            for task in tasks {
                runs.push(task.await.context("join a library worker")??);
            }
            let wall = started.elapsed();
            let cpu_after = cpu_sample(environment.postmaster, environment.ticks_per_second);
            let run = QueueRun {
                wall,
                runs,
                cpu: cpu_note(cpu_before, cpu_after, wall),
            };
            let states = check_final_states(sql, &ids, &run, "succeeded").await?;
            results.push((workers, run, states));
        }
        results
    } else {
        Vec::new()
    };

    let kind_note = match args.job_kind {
        BenchJobKind::Scrub => format!(
            "`scrub` jobs (no copies) round-robin over {} regions: a scrub job is limited per region only, \
             so with max_per_region = 1,000,000 no limit holds one back and neither tenant nor cluster \
             locks are taken",
            regions.len()
        ),
        BenchJobKind::Delete => {
            "`delete` jobs, one distinct tenant each: limited per tenant only (one running \
             job per tenant), which never binds with distinct tenants"
                .to_owned()
        }
    };
    let report_note = if succeed {
        format!(
            "agents report success with an empty {} result (probe: {probe_note})",
            args.job_kind_name()
        )
    } else {
        format!(
            "agents report `Failed {{ retryable: false }}`: the controller does not take a {} success yet \
             (probe: {probe_note}); a failure runs the same claim and report transaction (lock_running + one \
             UPDATE by id + commit)",
            args.job_kind_name()
        )
    };
    writeln!(out, "## Job queue\n")?;
    writeln!(
        out,
        "{} jobs, {} agents (tokio tasks in this process, each with its own reqwest client and \
         keep-alive connection) against the controller API served in-process on 127.0.0.1 \
         (`server::serve`, scheduler off; catalog pool of 16 connections). Each agent loops: \
         `POST /api/v1/agent/claim` (wait_seconds 0; on 204 sleep 2 ms and retry) then \
         `POST /api/v1/jobs/{{id}}/report`. Work: {kind_note}; {report_note}.\n",
        args.jobs, args.agents
    )?;
    writeln!(
        out,
        "| run | jobs | wall s | jobs/s | empty claims | final states | CPU |"
    )?;
    writeln!(out, "|---|---|---|---|---|---|---|")?;
    writeln!(
        out,
        "| HTTP, {} agents | {} | {:.2} | **{:.0}** | {} | {http_states} | {} |",
        args.agents,
        http_run.jobs(),
        http_run.wall.as_secs_f64(),
        http_run.per_second(),
        http_run.empty_claims(),
        http_run.cpu
    )?;
    for (workers, run, states) in &library_runs {
        writeln!(
            out,
            "| library, {workers} worker{} | {} | {:.2} | {:.0} | {} | {states} | {} |",
            if *workers == 1 { "" } else { "s" },
            run.jobs(),
            run.wall.as_secs_f64(),
            run.per_second(),
            run.empty_claims(),
            run.cpu
        )?;
    }
    writeln!(out)?;
    writeln!(out, "{SUMMARY_HEADER}")?;
    writeln!(
        out,
        "{}",
        Summary::of(&http_run.claims()).row(
            "HTTP claim (request → ClaimedJob)",
            "claims that returned a job"
        )
    )?;
    writeln!(
        out,
        "{}",
        Summary::of(&http_run.reports()).row("HTTP report (request → 200)", "")
    )?;
    for (workers, run, _) in &library_runs {
        writeln!(
            out,
            "{}",
            Summary::of(&run.claims())
                .row(&format!("library queue::claim, {workers} worker(s)"), "")
        )?;
        writeln!(
            out,
            "{}",
            Summary::of(&run.reports()).row(
                &format!("library lock_running + mark_succeeded + commit, {workers} worker(s)"),
                ""
            )
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "Every run checks that each enqueued job was claimed by exactly one agent, exactly once \
         (attempts = 1), and ended in the final state; a double claim fails the benchmark.\n"
    )?;
    if !statements.is_empty() {
        writeln!(out, "{statements}")?;
    }
    Ok(())
}
