//! `POST /api/v1/jobs/{id}/heartbeat`: `Heartbeat` → 200 `LeaseRenewed`; 404 unknown job,
//! 403 the job is leased to another agent, 409 the lease moved on (stop working on it).
//! A playbook job's steps so far become the job's progress (`restore status`).

use axum::Json;
use axum::extract::{Path, State};
use lifeboat_core::api::{Heartbeat, LeaseRenewed};

use crate::api::body::JsonBody;
use crate::api::{ApiError, AppState, Principal};
use crate::queue;

#[utoipa::path(post, path = "/api/v1/jobs/{id}/heartbeat", tag = "agents",
    params(("id" = i64, Path, description = "The job's id")),
    request_body(content = Object, description = "lifeboat_core::api::Heartbeat"),
    responses(
        (status = 200, description = "The lease, renewed (lifeboat_core::api::LeaseRenewed)", body = Object),
        (status = 409, description = "The lease was lost", body = crate::api::openapi::ErrorSchema),
    ))]
pub async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    principal: Principal,
    JsonBody(request): JsonBody<Heartbeat>,
) -> Result<Json<LeaseRenewed>, ApiError> {
    let agent = principal.require_agent()?;
    let policy = &state.options.policy;
    queue::heartbeat(
        &state.catalog,
        id,
        request.lease_token,
        &agent.name,
        &request.steps,
        policy,
    )
    .await?;
    Ok(Json(LeaseRenewed {
        lease_seconds: policy.lease.as_secs().max(1),
    }))
}
