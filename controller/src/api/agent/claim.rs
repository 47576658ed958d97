//! `POST /api/v1/agent/claim`: `ClaimRequest` → 200 `ClaimedJob`, or 204 when nothing came
//! within `wait_seconds` (a long poll of at most `MAX_CLAIM_WAIT_SECONDS`).
//!
//! The agent is offered jobs on the clusters its token allows, narrowed to those it asks
//! for, and drills only if both its token and its request say it can decrypt. The token is
//! checked again in the transaction that hands out a job, so a claim that waited through a
//! revocation gets 401, not a job. A job about a tenant carries the tenant's keys
//! (`tenant_keys::grant_for_claim`).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lifeboat_core::api::{ClaimRequest, MAX_CLAIM_WAIT_SECONDS};
use lifeboat_core::ids::ClusterName;

use crate::api::body::JsonBody;
use crate::api::{AgentPrincipal, ApiError, AppState, Principal};
use crate::queue::{self, Claimer};
use crate::tenant_keys;

/// How often a waiting claim looks again for work that no wakeup announced (another
/// controller's, or a passing `run_after`).
const LOOK_AGAIN_EVERY: Duration = Duration::from_millis(250);

#[utoipa::path(post, path = "/api/v1/agent/claim", tag = "agents",
    request_body(content = Object, description = "lifeboat_core::api::ClaimRequest"),
    responses(
        (status = 200, description = "A job (lifeboat_core::api::ClaimedJob)", body = Object),
        (status = 204, description = "No work came within wait_seconds"),
        (status = 401, description = "Unknown or revoked agent token", body = crate::api::openapi::ErrorSchema),
    ))]
pub async fn claim(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(request): JsonBody<ClaimRequest>,
) -> Result<Response, ApiError> {
    let agent = principal.require_agent()?;
    if request.wait_seconds > MAX_CLAIM_WAIT_SECONDS {
        return Err(ApiError::unprocessable(format!(
            "wait_seconds must be at most {MAX_CLAIM_WAIT_SECONDS}"
        )));
    }
    let clusters = agent.clusters.narrow(&request.clusters);
    warn_about_narrowing(&state, &agent, &request, &clusters);
    let claimer = Claimer {
        agent: &agent.name,
        clusters: &clusters,
        can_decrypt: request.can_decrypt && agent.can_decrypt,
        token_id: agent.token_id,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(request.wait_seconds);
    loop {
        // Register for a wakeup before looking, so work enqueued in between is not missed.
        let notified = state.work_ready.notified();
        if let Some(mut job) =
            queue::claim_for(&state.catalog, &claimer, &state.options.policy).await?
        {
            // The tenant's keys, from the catalog: its recipient for a backup, its wrapped
            // identities for a restore. A controller serving agents only (no
            // configuration, so no organisation recipients) hands out none.
            if let Some(config) = &state.options.config {
                job.tenant_keys = tenant_keys::grant_for_claim(
                    &state.catalog,
                    &state.options.regions,
                    &config.recipients,
                    &job,
                )
                .await
                .map_err(keys_not_prepared)?;
            }
            tracing::info!(job = job.id, kind = %job.work.kind(), agent = agent.name, attempt = job.attempt, "job claimed");
            return Ok(Json(job).into_response());
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        let _ = tokio::time::timeout_at(
            deadline.min(tokio::time::Instant::now() + LOOK_AGAIN_EVERY),
            notified,
        )
        .await;
    }
}

/// The claimed job stays running without an agent and is handed out again when its lease
/// ends; the error is logged here, once, and the agent told only that.
fn keys_not_prepared(error: tenant_keys::TenantKeysError) -> ApiError {
    match error {
        tenant_keys::TenantKeysError::Catalog(error) => error.into(),
        other => {
            tracing::error!(error = %other, "the tenant's keys for a claimed job could not be prepared");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the tenant's keys could not be prepared",
            )
        }
    }
}

/// Tell the operator, once per agent, when its token leaves out what it asks for: an agent
/// whose token predates scopes, say, is no longer given drills.
fn warn_about_narrowing(
    state: &AppState,
    agent: &AgentPrincipal,
    request: &ClaimRequest,
    clusters: &[ClusterName],
) {
    if request.can_decrypt
        && !agent.can_decrypt
        && state.first_warning(format!("decrypt:{}", agent.name))
    {
        tracing::warn!(
            agent = agent.name,
            "the agent holds the age identity but its token does not allow drills; it gets none (create its token with --can-decrypt)"
        );
    }
    if clusters.len() < request.clusters.len()
        && state.first_warning(format!("clusters:{}", agent.name))
    {
        let left_out: Vec<&str> = request
            .clusters
            .iter()
            .filter(|cluster| !clusters.contains(cluster))
            .map(ClusterName::as_str)
            .collect();
        tracing::warn!(
            agent = agent.name,
            left_out = left_out.join(","),
            "the agent asks for clusters its token does not allow; it gets no jobs on them"
        );
    }
}
