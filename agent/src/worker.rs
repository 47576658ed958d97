//! The agent's loop: claim a job from the controller's API, keep its lease alive, do it,
//! report. `concurrency` loops run side by side.
//!
//! - A claim is a long poll, so an idle agent costs one request per `claim_wait`.
//! - While a job runs, a heartbeat renews its lease every third of the lease. If the
//!   controller answers that the lease is lost (it expired and the job moved on), the job
//!   is cancelled: its partial work is cleaned up and nothing is reported.
//! - Before a backup, multipart uploads left by earlier attempts of the same job (an agent
//!   killed mid-backup) are aborted; the controller hands each attempt its backup id, so
//!   their keys are known. A committed but unreported earlier attempt is adopted instead.
//! - The controller unreachable: the loop retries with a capped backoff. A refused token
//!   stops the agent with an error, since retrying cannot fix it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeboat_core::api::{
    API_PREFIX, ClaimRequest, ClaimedJob, ErrorBody, Heartbeat, JobOutcome, JobReport, JobResult,
    JobWork, StepReport,
};
use lifeboat_core::backup::RegionResult;
use lifeboat_core::config::{Config, TenantConfig};
use lifeboat_core::ids::{BackupId, ClusterName, TenantName};
use lifeboat_core::manifest::ObjectKey;
use lifeboat_core::progress::Silent;
use lifeboat_core::region::Regions;
use lifeboat_core::restore;
use lifeboat_provisioner::playbook::StepObserver;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::playbook_job::{self, RunContext};
use crate::{backup_job, maintenance};

/// How an agent reaches its controller and what it serves.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// The controller's base URL, e.g. `http://127.0.0.1:7070`.
    pub controller: String,
    pub token: SecretString,
    /// Clusters this agent can reach; empty: all configured clusters.
    pub clusters: Vec<ClusterName>,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How long one claim request waits for work.
    pub claim_wait: Duration,
    /// Trust this CA (PEM) for the controller's certificate, besides the system's roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Allow `http://` to a controller that is not on loopback (the token crosses the
    /// network in the clear).
    pub insecure_http: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("the controller at {controller} refused this agent's token: {message}")]
    Unauthorized { controller: String, message: String },
    #[error("the controller at {controller} refused the request: {status}: {message}")]
    Refused {
        controller: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach the controller at {controller}: {message}")]
    Unreachable { controller: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error(
        "refusing to send this agent's token in the clear to {0}: use an https:// URL (with --ca-file for a private CA), or pass --insecure-http if this network is trusted"
    )]
    PlainHttp(String),
    #[error("the controller sent a job this agent cannot read: {message}")]
    UnreadableJob {
        id: Option<i64>,
        lease_token: Option<uuid::Uuid>,
        message: String,
    },
}

impl AgentError {
    /// Retrying later may help.
    fn is_transient(&self) -> bool {
        match self {
            AgentError::Unreachable { .. } => true,
            AgentError::Refused { status, .. } => *status >= 500,
            AgentError::UnreadableJob { .. } => true,
            AgentError::Unauthorized { .. } | AgentError::Client(_) | AgentError::PlainHttp(_) => {
                false
            }
        }
    }
}

/// The controller's API, from the agent's side.
#[derive(Debug, Clone)]
pub struct ControllerClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
}

/// What the controller answered to a heartbeat or a report.
enum Answer {
    Ok,
    /// 404 / 409: the job is gone or no longer ours.
    LeaseLost(String),
}

impl ControllerClient {
    /// A client of the controller at `base`, trusting `ca_file` besides the system's roots.
    /// `http://` is refused unless the host is loopback or `insecure_http`.
    pub fn new(
        base: &str,
        token: SecretString,
        ca_file: Option<&std::path::Path>,
        insecure_http: bool,
    ) -> Result<ControllerClient, AgentError> {
        let url = reqwest::Url::parse(base)
            .map_err(|error| AgentError::Client(format!("controller URL {base:?}: {error}")))?;
        let host = url.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|address| address.is_loopback());
        match url.scheme() {
            "https" => {}
            "http" if loopback || insecure_http => {}
            "http" => return Err(AgentError::PlainHttp(base.to_owned())),
            other => {
                return Err(AgentError::Client(format!(
                    "controller URL {base:?}: scheme {other:?} is neither https nor http"
                )));
            }
        }
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
        if let Some(ca_file) = ca_file {
            let pem = std::fs::read(ca_file).map_err(|error| {
                AgentError::Client(format!(
                    "cannot read the CA file {}: {error}",
                    ca_file.display()
                ))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
                AgentError::Client(format!(
                    "the CA file {} holds no PEM certificate: {error}",
                    ca_file.display()
                ))
            })?;
            if certificates.is_empty() {
                return Err(AgentError::Client(format!(
                    "the CA file {} holds no PEM certificate",
                    ca_file.display()
                )));
            }
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|error| AgentError::Client(error.to_string()))?;
        Ok(ControllerClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn unreachable(&self, error: &reqwest::Error) -> AgentError {
        AgentError::Unreachable {
            controller: self.base.clone(),
            message: error_chain(error),
        }
    }

    async fn post<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
        timeout: Duration,
    ) -> Result<reqwest::Response, AgentError> {
        let response = self
            .http
            .post(format!("{}{API_PREFIX}{path}", self.base))
            .bearer_auth(self.token.expose_secret())
            .timeout(timeout)
            .json(body)
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        if response.status() == StatusCode::UNAUTHORIZED {
            return Err(AgentError::Unauthorized {
                controller: self.base.clone(),
                message: error_message(response).await,
            });
        }
        Ok(response)
    }

    /// `GET /healthz`: whether the controller answers and can query its catalog (an
    /// agent's first check that the URL, the certificate and the CA file fit together).
    pub async fn healthz(&self) -> Result<(), AgentError> {
        let response = self
            .http
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .map_err(|error| self.unreachable(&error))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.refused(response.status(), response).await)
        }
    }

    /// Claim a job, waiting up to `wait` for one.
    /// `can_decrypt`: this agent holds the age identity and may be given drills.
    pub async fn claim(
        &self,
        clusters: &[ClusterName],
        can_decrypt: bool,
        wait: Duration,
    ) -> Result<Option<ClaimedJob>, AgentError> {
        let request = ClaimRequest {
            clusters: clusters.to_vec(),
            wait_seconds: wait.as_secs(),
            can_decrypt,
        };
        let response = self
            .post("/agent/claim", &request, wait + Duration::from_secs(10))
            .await?;
        match response.status() {
            StatusCode::NO_CONTENT => Ok(None),
            StatusCode::OK => {
                let body = response
                    .bytes()
                    .await
                    .map_err(|error| self.unreachable(&error))?;
                match serde_json::from_slice::<ClaimedJob>(&body) {
                    Ok(job) => Ok(Some(job)),
                    Err(error) => Err(self.unreadable_job(&body, &error)),
                }
            }
            status => Err(self.refused(status, response).await),
        }
    }

    /// A claimed job this agent cannot read (a newer controller?): keep its id and lease so
    /// the claim loop can hand it back with a failure report.
    fn unreadable_job(&self, body: &[u8], error: &serde_json::Error) -> AgentError {
        let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        AgentError::UnreadableJob {
            id: value.get("id").and_then(serde_json::Value::as_i64),
            lease_token: value
                .get("lease_token")
                .and_then(|token| serde_json::from_value(token.clone()).ok()),
            message: error.to_string(),
        }
    }

    /// Hand back a job this agent could not read.
    async fn report_unreadable(&self, id: i64, lease_token: uuid::Uuid, message: &str) {
        let report = JobReport {
            lease_token,
            outcome: JobOutcome::Failed {
                error: format!(
                    "an agent could not read the job (is it older than the controller?): {message}"
                ),
                retryable: true,
            },
        };
        match self
            .post(
                &format!("/jobs/{id}/report"),
                &report,
                Duration::from_secs(30),
            )
            .await
        {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::error!(job = id, status = %response.status(), "could not hand back an unreadable job");
            }
            Err(error) => {
                tracing::error!(job = id, %error, "could not hand back an unreadable job")
            }
        }
    }

    async fn refused(&self, status: StatusCode, response: reqwest::Response) -> AgentError {
        AgentError::Refused {
            controller: self.base.clone(),
            status: status.as_u16(),
            message: error_message(response).await,
        }
    }

    async fn answer(&self, response: reqwest::Response) -> Result<Answer, AgentError> {
        match response.status() {
            status if status.is_success() => Ok(Answer::Ok),
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => {
                Ok(Answer::LeaseLost(error_message(response).await))
            }
            status => Err(self.refused(status, response).await),
        }
    }

    async fn heartbeat(
        &self,
        job: &ClaimedJob,
        steps: Vec<StepReport>,
    ) -> Result<Answer, AgentError> {
        let response = self
            .post(
                &format!("/jobs/{}/heartbeat", job.id),
                &Heartbeat {
                    lease_token: job.lease_token,
                    steps,
                },
                Duration::from_secs(10),
            )
            .await?;
        self.answer(response).await
    }

    async fn report(&self, job: &ClaimedJob, outcome: JobOutcome) -> Result<Answer, AgentError> {
        let response = self
            .post(
                &format!("/jobs/{}/report", job.id),
                &JobReport {
                    lease_token: job.lease_token,
                    outcome,
                },
                Duration::from_secs(30),
            )
            .await?;
        self.answer(response).await
    }
}

/// An error with its causes: reqwest's own message alone rarely says what went wrong.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

async fn error_message(response: reqwest::Response) -> String {
    let status = response.status();
    match response.json::<ErrorBody>().await {
        Ok(body) => body.error,
        Err(_) => status.to_string(),
    }
}

/// Serve jobs until `cancel`, or until the controller refuses the token. `regions` are
/// the process's clients of `config`'s regions, shared by every job.
pub async fn run_agent(
    config: Arc<Config>,
    regions: Regions,
    options: AgentOptions,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let client = ControllerClient::new(
        &options.controller,
        options.token.clone(),
        options.ca_file.as_deref(),
        options.insecure_http,
    )?;
    let clusters = if options.clusters.is_empty() {
        config.clusters.keys().cloned().collect()
    } else {
        options.clusters.clone()
    };
    let mut loops = tokio::task::JoinSet::new();
    // At start and daily: drop what crashed drills and restores left (decrypted data),
    // once no attempt of their jobs can still be running.
    if config.identity_file.is_some() {
        let (config, clusters, cancel) = (config.clone(), clusters.clone(), cancel.clone());
        let older_than = config
            .queue
            .deadlines
            .drill
            .max(config.queue.deadlines.restore);
        tokio::spawn(async move {
            loop {
                playbook_job::sweep_leftovers(&config, &clusters, older_than).await;
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
                }
            }
        });
    }
    for slot in 0..options.concurrency.max(1) {
        let (config, regions, client, clusters, cancel) = (
            config.clone(),
            regions.clone(),
            client.clone(),
            clusters.clone(),
            cancel.clone(),
        );
        let wait = options.claim_wait;
        loops.spawn(async move {
            claim_loop(config, regions, client, clusters, wait, cancel)
                .instrument(tracing::info_span!("agent", slot))
                .await
        });
    }
    let mut outcome = Ok(());
    while let Some(joined) = loops.join_next().await {
        if let Ok(Err(error)) = joined {
            // A fatal error in one loop stops them all.
            cancel.cancel();
            outcome = Err(error);
        }
    }
    outcome
}

async fn claim_loop(
    config: Arc<Config>,
    regions: Regions,
    client: ControllerClient,
    clusters: Vec<ClusterName>,
    wait: Duration,
    cancel: CancellationToken,
) -> Result<(), AgentError> {
    let mut retry_delay = Duration::from_millis(250);
    // Only an agent configured with the identity can restore, so only it is given drills.
    let can_decrypt = config.identity_file.is_some();
    while !cancel.is_cancelled() {
        let claimed = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            claimed = client.claim(&clusters, can_decrypt, wait) => claimed,
        };
        match claimed {
            Ok(Some(job)) => {
                retry_delay = Duration::from_millis(250);
                let span = job_span(&job);
                run_claimed(
                    config.clone(),
                    regions.clone(),
                    client.clone(),
                    job,
                    cancel.clone(),
                )
                .instrument(span)
                .await?;
            }
            Ok(None) => retry_delay = Duration::from_millis(250),
            Err(AgentError::UnreadableJob {
                id: Some(id),
                lease_token: Some(lease_token),
                message,
            }) => {
                tracing::error!(job = id, %message, "cannot read the claimed job; handing it back");
                client.report_unreadable(id, lease_token, &message).await;
            }
            Err(error) if error.is_transient() => {
                tracing::warn!(error = %error, retry_in_ms = retry_delay.as_millis() as u64, "claim failed; retrying");
                tokio::select! {
                    () = cancel.cancelled() => return Ok(()),
                    () = tokio::time::sleep(retry_delay) => {}
                }
                retry_delay = (retry_delay * 2).min(Duration::from_secs(10));
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// A span per job, with the fields an operator greps for.
fn job_span(job: &ClaimedJob) -> tracing::Span {
    let (tenant, backup, region) = match &job.work {
        JobWork::Backup { tenant, .. } => (
            Some(tenant.to_string()),
            job.backup_id.map(|backup_id| backup_id.to_string()),
            None,
        ),
        JobWork::Replicate {
            tenant,
            backup_id,
            to,
            ..
        } => (
            Some(tenant.to_string()),
            Some(backup_id.to_string()),
            Some(to.to_string()),
        ),
        JobWork::Scrub { region, .. } => (None, None, Some(region.to_string())),
        JobWork::Delete {
            tenant, backup_id, ..
        }
        | JobWork::Drill {
            tenant, backup_id, ..
        }
        | JobWork::RestoreLive {
            tenant, backup_id, ..
        }
        | JobWork::RestoreCopy {
            tenant, backup_id, ..
        } => (Some(tenant.to_string()), Some(backup_id.to_string()), None),
        JobWork::Rollback { tenant, .. } | JobWork::DropDatabase { tenant, .. } => {
            (Some(tenant.to_string()), None, None)
        }
    };
    tracing::info_span!(
        "job",
        job = job.id,
        kind = %job.work.kind(),
        attempt = job.attempt,
        tenant = tenant.as_deref(),
        backup = backup.as_deref(),
        region = region.as_deref(),
    )
}

/// Do one claimed job with its heartbeat running beside it, then report.
async fn run_claimed(
    config: Arc<Config>,
    regions: Regions,
    client: ControllerClient,
    job: ClaimedJob,
    agent_cancel: CancellationToken,
) -> Result<(), AgentError> {
    let job_cancel = agent_cancel.child_token();
    // A playbook job's steps, sent with the next heartbeat (at once when they change).
    let (steps_sender, steps_receiver) = tokio::sync::watch::channel(Vec::new());
    let heartbeat = {
        let (client, job, job_cancel) = (client.clone(), job.clone(), job_cancel.clone());
        tokio::spawn(async move { keep_lease(&client, &job, &job_cancel, steps_receiver).await })
    };
    let started = Instant::now();
    // The work runs as its own task: owned data, so its future is plainly Send.
    let outcome = {
        let (config, regions, job, job_cancel) = (
            config.clone(),
            regions.clone(),
            job.clone(),
            job_cancel.clone(),
        );
        let steps = StepsToHeartbeat(steps_sender);
        match tokio::spawn(
            async move { execute(&config, &regions, &job, &steps, job_cancel).await },
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(error) => JobOutcome::Failed {
                error: format!("the job's task failed: {error}"),
                retryable: true,
            },
        }
    };
    heartbeat.abort();
    if job_cancel.is_cancelled() {
        // Lease lost or the agent is stopping: someone else will (re)do the job.
        tracing::warn!("job abandoned: its lease was lost or the agent is stopping");
        return Ok(());
    }
    let mut outcome = outcome;
    if let JobOutcome::Failed { error, .. } = &outcome {
        tracing::warn!(error = %error, "job failed");
    }
    // The report is retried while the lease may still be ours.
    let deadline = Instant::now() + Duration::from_secs(job.lease_seconds);
    loop {
        match client.report(&job, outcome.clone()).await {
            Ok(Answer::Ok) => {
                tracing::info!(
                    succeeded = succeeded_report(&outcome),
                    seconds = started.elapsed().as_secs_f64(),
                    "job reported"
                );
                return Ok(());
            }
            Ok(Answer::LeaseLost(message)) => {
                tracing::warn!(%message, "report refused: the lease was lost");
                return Ok(());
            }
            Err(error) if error.is_transient() && Instant::now() < deadline => {
                tracing::warn!(error = %error, "report failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) if error.is_transient() => {
                tracing::error!(error = %error, "report failed; the lease will expire and the job will be retried");
                return Ok(());
            }
            // The controller refused this report (e.g. it names a region the controller does
            // not know): say so in a failure report, so the job ends with the reason instead
            // of waiting for its lease to expire. Only a refused token stops the agent.
            Err(AgentError::Refused { message, .. }) if succeeded_report(&outcome) => {
                tracing::error!(%message, "the controller refused the result; reporting the job as failed");
                outcome = JobOutcome::Failed {
                    error: format!("the controller refused the agent's result: {message}"),
                    retryable: false,
                };
            }
            Err(AgentError::Refused { message, .. }) => {
                tracing::error!(%message, "the controller refused the failure report; the lease will expire");
                return Ok(());
            }
            Err(error) => return Err(error),
        }
    }
}

fn succeeded_report(outcome: &JobOutcome) -> bool {
    matches!(outcome, JobOutcome::Succeeded { .. })
}

/// Hands a playbook job's step reports to its heartbeat.
#[derive(Debug)]
struct StepsToHeartbeat(tokio::sync::watch::Sender<Vec<StepReport>>);

impl StepObserver for StepsToHeartbeat {
    fn steps_changed(&self, steps: &[StepReport]) {
        self.0.send_replace(steps.to_vec());
    }
}

/// Renew the lease every third of it, and as soon as a playbook job's steps change (so
/// `lifeboat restore status` follows them); cancel the job if the lease is lost, or if the
/// controller cannot be reached for longer than the lease.
async fn keep_lease(
    client: &ControllerClient,
    job: &ClaimedJob,
    job_cancel: &CancellationToken,
    mut steps: tokio::sync::watch::Receiver<Vec<StepReport>>,
) {
    let lease = Duration::from_secs(job.lease_seconds.max(1));
    let mut last_renewed = Instant::now();
    let mut steps_open = true;
    loop {
        tokio::select! {
            () = tokio::time::sleep(lease / 3) => {}
            changed = steps.changed(), if steps_open => {
                if changed.is_err() {
                    steps_open = false;
                    continue;
                }
            }
        }
        let current_steps = steps.borrow_and_update().clone();
        match client.heartbeat(job, current_steps).await {
            Ok(Answer::Ok) => last_renewed = Instant::now(),
            Ok(Answer::LeaseLost(message)) => {
                tracing::warn!(%message, "lease lost; cancelling the job");
                job_cancel.cancel();
                return;
            }
            Err(error) => {
                tracing::warn!(error = %error, "heartbeat failed");
                if last_renewed.elapsed() > lease {
                    tracing::warn!("lease expired without a heartbeat; cancelling the job");
                    job_cancel.cancel();
                    return;
                }
            }
        }
    }
}

fn maintenance_outcome(result: Result<JobResult, maintenance::MaintenanceError>) -> JobOutcome {
    match result {
        Ok(result) => JobOutcome::Succeeded { result },
        Err(error) => JobOutcome::Failed {
            retryable: !error.is_permanent(),
            error: error.to_string(),
        },
    }
}

/// Abort the multipart uploads an earlier attempt of this job left open (its agent died
/// mid-backup). Only those attempts' own keys: a backup of the same tenant taken outside
/// the queue (`lifeboat backup`) is left alone, and scrub aborts anything older than a day.
async fn abort_earlier_uploads(regions: &Regions, tenant: &TenantName, earlier: &[BackupId]) {
    for backup_id in earlier {
        let key = ObjectKey::Dump(tenant, *backup_id).to_key();
        for region in regions.iter() {
            let uploads = match region.list_open_uploads(&key).await {
                Ok(Some(uploads)) => uploads,
                Ok(None) => continue,
                Err(error) => {
                    tracing::warn!(region = %region.name(), %error, "cannot list an earlier attempt's uploads; scrub will abort them");
                    continue;
                }
            };
            for upload in uploads.iter().filter(|upload| upload.key == key) {
                match region
                    .abort_multipart_upload(&upload.key, &upload.upload_id)
                    .await
                {
                    Ok(()) => {
                        tracing::info!(region = %region.name(), backup = %backup_id, "aborted an upload left by an earlier attempt");
                    }
                    Err(error) => {
                        tracing::warn!(region = %region.name(), %error, "cannot abort an earlier attempt's upload; scrub will");
                    }
                }
            }
        }
    }
}

/// If an earlier attempt of this job committed its backup (a manifest exists) but never
/// reported it, report that backup rather than take another: the job is done once.
async fn adopt_earlier_attempt(
    config: &Config,
    regions: &Regions,
    tenant: &TenantName,
    earlier: &[BackupId],
) -> Option<JobOutcome> {
    for backup_id in earlier.iter().rev() {
        let reads = futures::future::join_all(
            regions
                .iter()
                .map(|region| restore::read_manifest(region, tenant, *backup_id)),
        )
        .await;
        let mut found = None;
        let mut results = Vec::new();
        for (region, read) in regions.iter().zip(reads) {
            match read {
                Ok(manifest) => {
                    results.push(RegionResult {
                        region: region.name().clone(),
                        stored: true,
                        error: None,
                    });
                    found.get_or_insert(manifest);
                }
                Err(error) => results.push(RegionResult {
                    region: region.name().clone(),
                    stored: false,
                    error: Some(format!("not found after an interrupted attempt: {error}")),
                }),
            }
        }
        let Some(mut manifest) = found else { continue };
        // Committed means in at least `min_regions`: a manifest found in fewer regions (the
        // others lost it, or someone wrote it into one bucket) is not adopted; this attempt
        // backs up again, and scrub settles the stray copy.
        let holding = results.iter().filter(|result| result.stored).count();
        if holding < config.min_regions {
            tracing::warn!(backup = %backup_id, holding, min_regions = config.min_regions, "an earlier attempt's manifest is in too few regions to adopt");
            continue;
        }
        tracing::info!(backup = %backup_id, "an earlier attempt committed this backup; reporting it instead of taking another");
        manifest.regions.retain(|region| {
            results
                .iter()
                .any(|result| result.stored && &result.region == region)
        });
        let duration_ms = (manifest.finished_at - manifest.started_at)
            .num_milliseconds()
            .max(0);
        return Some(JobOutcome::Succeeded {
            result: JobResult::Backup {
                manifest: Box::new(manifest),
                regions: results,
                duration_ms: u64::try_from(duration_ms).unwrap_or(0),
            },
        });
    }
    None
}

/// A retryable failure when this agent has no credentials for `cluster` (another agent may).
fn without_credentials_for(config: &Config, cluster: &ClusterName) -> Option<JobOutcome> {
    config
        .cluster(cluster)
        .is_err()
        .then(|| JobOutcome::Failed {
            error: format!("this agent has no credentials for cluster {cluster}"),
            retryable: true,
        })
}

/// Do the work; every error becomes a failed outcome with its message.
async fn execute(
    config: &Config,
    regions: &Regions,
    job: &ClaimedJob,
    steps: &dyn StepObserver,
    cancel: CancellationToken,
) -> JobOutcome {
    match &job.work {
        JobWork::Backup {
            tenant,
            cluster,
            database,
            backup_kind,
        } => {
            if let Some(refused) = without_credentials_for(config, cluster) {
                return refused;
            }
            if let Some(adopted) =
                adopt_earlier_attempt(config, regions, tenant, &job.earlier_backup_ids).await
            {
                return adopted;
            }
            abort_earlier_uploads(regions, tenant, &job.earlier_backup_ids).await;
            let tenant_config = TenantConfig {
                name: tenant.clone(),
                cluster: cluster.clone(),
                database: database.clone(),
            };
            let tenant_recipient = match backup_job::granted_recipient(job.tenant_keys.as_ref()) {
                Ok(recipient) => recipient,
                Err(error) => {
                    return JobOutcome::Failed {
                        error: format!("the job's tenant recipient: {error}"),
                        retryable: false,
                    };
                }
            };
            match backup_job::backup_tenant_to(
                config,
                regions,
                &tenant_config,
                *backup_kind,
                job.backup_id,
                tenant_recipient,
                Arc::new(Silent),
                cancel,
            )
            .await
            {
                Ok(report) => JobOutcome::Succeeded {
                    result: JobResult::Backup {
                        duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
                        manifest: Box::new(report.manifest),
                        regions: report.regions,
                    },
                },
                Err(error) => JobOutcome::Failed {
                    retryable: !error.is_permanent(),
                    error: format!("{error:#}"),
                },
            }
        }
        JobWork::Scrub {
            region,
            copies,
            keep,
        } => maintenance_outcome(maintenance::run_scrub(regions, region, copies, keep).await),
        JobWork::Replicate {
            tenant,
            backup_id,
            sources,
            to,
            stored_bytes,
            sha256,
        } => maintenance_outcome(
            maintenance::run_replicate(
                config,
                regions,
                tenant,
                *backup_id,
                sources,
                to,
                *stored_bytes,
                sha256,
            )
            .await,
        ),
        JobWork::Delete { .. } => JobOutcome::Failed {
            error: "this agent does not run delete jobs; the controller purges the trash itself"
                .to_owned(),
            retryable: false,
        },
        JobWork::Drill {
            tenant,
            cluster,
            backup_id,
            sha256,
        } => {
            if let Some(refused) = without_credentials_for(config, cluster) {
                return refused;
            }
            let run_tag = format!("job-{}", job.id);
            match playbook_job::drill(
                config,
                regions,
                tenant,
                cluster,
                *backup_id,
                sha256.as_deref(),
                RunContext {
                    run_tag: &run_tag,
                    resume: job.attempt > 1,
                    observer: steps,
                    cancel: &cancel,
                    tenant_keys: job.tenant_keys.as_ref(),
                },
            )
            .await
            {
                Ok(run) => JobOutcome::Succeeded {
                    result: JobResult::Drill(run.result),
                },
                // Not the backup's fault: try again if this agent, the cluster or a region
                // may do better later; not if the cluster cannot restore it at all.
                Err(not_run) => JobOutcome::Failed {
                    error: not_run.to_string(),
                    retryable: not_run.1 == playbook_job::DrillRetry::Later,
                },
            }
        }
        JobWork::RestoreLive { cluster, .. }
        | JobWork::Rollback { cluster, .. }
        | JobWork::RestoreCopy { cluster, .. }
        | JobWork::DropDatabase { cluster, .. } => {
            if let Some(refused) = without_credentials_for(config, cluster) {
                return refused;
            }
            playbook_job::run_playbook_job(config, regions, job, steps, &cancel).await
        }
    }
}
