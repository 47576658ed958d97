//! `POST /api/v1/jobs/{id}/report`: `JobReport` → 200; 404 unknown job, 403 leased to
//! another agent, 409 lease lost, 422 a report the controller refuses
//! ([`crate::reports::apply_report`] checks it, or the catalog's constraints do).
//!
//! The one route with a large body limit (a scrub report lists every copy it checked).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use lifeboat_core::api::JobReport;

use crate::api::body::JsonBody;
use crate::api::{ApiError, AppState, Principal};
use crate::reports;

#[utoipa::path(post, path = "/api/v1/jobs/{id}/report", tag = "agents",
    params(("id" = i64, Path, description = "The job's id")),
    request_body(content = Object, description = "lifeboat_core::api::JobReport"),
    responses(
        (status = 204, description = "Recorded"),
        (status = 409, description = "The lease was lost", body = crate::api::openapi::ErrorSchema),
        (status = 422, description = "The report is refused", body = crate::api::openapi::ErrorSchema),
    ))]
pub async fn report(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    principal: Principal,
    JsonBody(report): JsonBody<JobReport>,
) -> Result<StatusCode, ApiError> {
    let agent = principal.require_agent()?;
    reports::apply_report(
        &state.catalog,
        id,
        &agent.name,
        &report,
        &state.options.regions,
        &state.options.policy,
    )
    .await?;
    tracing::info!(job = id, agent = agent.name, "job reported");
    // A finished job frees a place under the limits, and a failed one may be retried.
    state.work_ready.notify_waiters();
    Ok(StatusCode::OK)
}
