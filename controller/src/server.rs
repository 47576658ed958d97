//! The controller process: the HTTP API (axum), the scheduler loop and the lease reaper.
//!
//! Routes (see `lifeboat_core::api` for the bodies):
//! - `GET /healthz`: 200 when the catalog answers, 503 otherwise;
//! - `GET /metrics`: Prometheus text format ([`crate::metrics`]);
//! - `POST /api/v1/agent/claim`, `POST /api/v1/jobs/{id}/heartbeat`,
//!   `POST /api/v1/jobs/{id}/report`: agents, with `Authorization: Bearer <token>`.
//!
//! Every error is a JSON [`ErrorBody`] with a 4xx status for the caller's mistakes (401 bad
//! token, 409 lease lost, 422 malformed report) and 5xx for ours.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use lifeboat_core::api::{
    ClaimRequest, ErrorBody, Heartbeat, JobReport, LeaseRenewed, MAX_CLAIM_WAIT_SECONDS,
};
use lifeboat_core::ids::RegionName;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::agents;
use crate::catalog::{Catalog, CatalogError};
use crate::dedup_key::RunName;
use crate::maintenance::{self, MaintenanceOptions};
use crate::metrics;
use crate::queue::{self, QueueError, QueuePolicy};
use crate::reports;
use crate::schedule::BackupWindow;
use crate::scheduler::Scheduler;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub policy: QueuePolicy,
    /// Run the scheduler (off for `lifeboat nightly`, which enqueues its own work).
    pub schedule: bool,
    pub window: BackupWindow,
    pub tick_interval: Duration,
    /// The configured regions; reports naming others are refused.
    pub regions: Vec<RegionName>,
    /// Daily scrub, retention, purge and repairs (`None` for `lifeboat nightly`, which
    /// runs them itself).
    pub maintenance: Option<MaintenanceOptions>,
}

/// Shared by every request.
#[derive(Clone)]
struct AppState {
    catalog: Catalog,
    options: Arc<ControllerOptions>,
    /// Woken when work may have become claimable.
    work_ready: Arc<Notify>,
    /// A token accepted besides the catalog's: the embedded agent's, held only in memory.
    embedded_token: Option<Arc<SecretString>>,
}

/// A running controller's handles.
#[derive(Debug, Clone)]
pub struct Controller {
    pub work_ready: Arc<Notify>,
}

/// An API error: a status and one clear message.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> ApiError {
        tracing::error!(error = %error, "catalog error while serving a request");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the catalog is unavailable",
        )
    }
}

impl From<QueueError> for ApiError {
    fn from(error: QueueError) -> ApiError {
        match error {
            QueueError::Catalog(error) => error.into(),
            QueueError::NoSuchJob(_) => ApiError::new(StatusCode::NOT_FOUND, error.to_string()),
            QueueError::LeaseLost(_) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            QueueError::InvalidReport { .. } => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, error.to_string())
            }
        }
    }
}

fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(value)| value).map_err(|rejection| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("malformed request body: {}", rejection.body_text()),
        )
    })
}

/// The agent behind the request's bearer token.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let unauthorized = |message: &str| ApiError::new(StatusCode::UNAUTHORIZED, message);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing Authorization: Bearer <agent token>"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be Bearer <agent token>"))?;
    // Compared as hashes, so the comparison's timing says nothing about the token.
    if let Some(embedded) = &state.embedded_token
        && agents::token_hash(embedded.expose_secret()) == agents::token_hash(token)
    {
        return Ok("embedded".to_owned());
    }
    agents::authenticate(&state.catalog, token)
        .await?
        .ok_or_else(|| unauthorized("unknown or revoked agent token"))
}

async fn healthz(State(state): State<AppState>) -> Response {
    match state.catalog.connection().await {
        Ok(connection) => match connection.query_one("SELECT 1", &[]).await {
            Ok(_) => (StatusCode::OK, "ok\n").into_response(),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "catalog query failed\n").into_response(),
        },
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "catalog unreachable\n").into_response(),
    }
}

async fn metrics_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = metrics::render(&state.catalog, &state.options.regions).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn claim(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ClaimRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let agent = authenticate(&state, &headers).await?;
    let request = json_body(body)?;
    if request.wait_seconds > MAX_CLAIM_WAIT_SECONDS {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("wait_seconds must be at most {MAX_CLAIM_WAIT_SECONDS}"),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(request.wait_seconds);
    loop {
        // Register for a wakeup before looking, so work enqueued in between is not missed.
        let notified = state.work_ready.notified();
        if let Some(job) = queue::claim(
            &state.catalog,
            &agent,
            &request.clusters,
            request.can_decrypt,
            &state.options.policy,
        )
        .await?
        {
            tracing::info!(job = job.id, kind = %job.work.kind(), agent, attempt = job.attempt, "job claimed");
            return Ok(Json(job).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // Work can also appear through another controller or a passing run_after: look
        // again at least every 250 ms.
        let _ = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + Duration::from_millis(250)),
            notified,
        )
        .await;
    }
}

async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Json<Heartbeat>, JsonRejection>,
) -> Result<Json<LeaseRenewed>, ApiError> {
    authenticate(&state, &headers).await?;
    let request = json_body(body)?;
    queue::heartbeat(
        &state.catalog,
        id,
        request.lease_token,
        &state.options.policy,
    )
    .await?;
    Ok(Json(LeaseRenewed {
        lease_seconds: state.options.policy.lease.as_secs().max(1),
    }))
}

async fn report(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Json<JobReport>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let agent = authenticate(&state, &headers).await?;
    let report = json_body(body)?;
    reports::apply_report(
        &state.catalog,
        id,
        &report,
        &state.options.regions,
        &state.options.policy,
    )
    .await?;
    tracing::info!(job = id, agent, "job reported");
    // A finished job frees a place under the limits, and a failed one may be retried.
    state.work_ready.notify_waiters();
    Ok(StatusCode::OK)
}

/// The largest request body accepted: a scrub report of about 800,000 copies.
const REPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;

/// The router, for serving and for tests.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_page))
        .route("/api/v1/agent/claim", post(claim))
        .route("/api/v1/jobs/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/jobs/{id}/report", post(report))
        // A scrub report lists every copy it checked in a region: allow far more than
        // axum's 2 MiB default (about 80 bytes a copy), but still a bound.
        .layer(DefaultBodyLimit::max(REPORT_BODY_LIMIT))
        .with_state(state)
}

/// Run the controller on `listener` until `cancel`: the API, the lease reaper and, if
/// enabled, the scheduler. `embedded_token` is accepted besides the catalog's tokens.
pub async fn serve(
    catalog: Catalog,
    listener: tokio::net::TcpListener,
    options: ControllerOptions,
    embedded_token: Option<SecretString>,
    controller: Controller,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let options = Arc::new(options);
    let state = AppState {
        catalog: catalog.clone(),
        options: options.clone(),
        work_ready: controller.work_ready.clone(),
        embedded_token: embedded_token.map(Arc::new),
    };
    let maintenance = options.maintenance.clone().map(|maintenance| {
        tokio::spawn(maintenance_loop(
            catalog.clone(),
            maintenance,
            options.policy.max_attempts,
            controller.work_ready.clone(),
            cancel.clone(),
        ))
    });
    let background = tokio::spawn(background_loops(
        catalog,
        options,
        controller.work_ready.clone(),
        cancel.clone(),
    ));
    let served = axum::serve(listener, router(state))
        .with_graceful_shutdown(cancel.clone().cancelled_owned())
        .await;
    cancel.cancel();
    let _ = background.await;
    if let Some(maintenance) = maintenance {
        let _ = maintenance.await;
    }
    served
}

/// The scheduler tick and the lease reaper, until `cancel`.
async fn background_loops(
    catalog: Catalog,
    options: Arc<ControllerOptions>,
    work_ready: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut scheduler = Scheduler::new(options.window);
    let reap_every = (options.policy.lease / 4).max(Duration::from_millis(200));
    let mut reap = tokio::time::interval(reap_every);
    let mut tick = tokio::time::interval(options.tick_interval);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = reap.tick() => {
                match queue::reap_expired_leases(&catalog, &options.policy).await {
                    Ok(0) => {}
                    Ok(reaped) => {
                        tracing::warn!(reaped, "requeued jobs whose agents stopped sending heartbeats");
                        work_ready.notify_waiters();
                    }
                    Err(error) => tracing::error!(error = %error, "reaping expired leases failed"),
                }
            }
            _ = tick.tick(), if options.schedule => {
                match scheduler.tick(&catalog, Utc::now(), options.policy.max_attempts).await {
                    Ok(report) if report.enqueued > 0 => work_ready.notify_waiters(),
                    Ok(_) => {}
                    Err(error) => tracing::error!(error = %error, "scheduler tick failed"),
                }
            }
        }
    }
}

/// Daily maintenance and repairs, in a task of their own: a purge stuck on a dead region
/// must not hold back the scheduler or the reaper.
async fn maintenance_loop(
    catalog: Catalog,
    maintenance: MaintenanceOptions,
    max_attempts: i32,
    work_ready: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut daily = maintenance::Daily::default();
    let mut tick = tokio::time::interval(MAINTENANCE_TICK);
    let mut repair = tokio::time::interval(REPAIR_INTERVAL);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = tick.tick() => {
                if let Some(report) = daily.run(&catalog, &maintenance, Utc::now(), max_attempts).await {
                    if report.problems.is_empty() {
                        tracing::info!(?report, "daily maintenance done");
                    } else {
                        tracing::warn!(?report, "daily maintenance done with problems");
                    }
                    work_ready.notify_waiters();
                }
            }
            _ = repair.tick() => {
                let run = RunName::for_date(Utc::now().date_naive());
                let report = maintenance::enqueue_repairs(&catalog, &maintenance, &run, max_attempts.min(2), None).await;
                for problem in &report.problems {
                    tracing::error!(problem, "planning repairs failed");
                }
                if report.repair_jobs > 0 {
                    tracing::info!(repair_jobs = report.repair_jobs, "repairs enqueued");
                    work_ready.notify_waiters();
                }
            }
        }
    }
}

/// How often daily maintenance checks whether its time has come.
const MAINTENANCE_TICK: Duration = Duration::from_secs(60);

/// How often a running controller looks for copies to repair.
const REPAIR_INTERVAL: Duration = Duration::from_secs(5 * 60);
