//! Every route of the controller's HTTP API, and how large a body each accepts.
//!
//! ```text
//! GET  /healthz                      health::healthz
//! GET  /metrics                      metrics::metrics_page
//! POST /api/v1/agent/claim           agent::claim         (agent)
//! POST /api/v1/jobs/{id}/heartbeat   jobs::heartbeat      (agent holding the lease)
//! POST /api/v1/jobs/{id}/report      jobs::report         (agent holding the lease; large body)
//! ```

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use super::{AppState, agent, health, jobs, metrics};

/// The largest body of every route but the report: a claim or a heartbeat is a few hundred
/// bytes, so a larger one is refused (413) before it costs memory.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The largest report body: a scrub report of about 800,000 copies (about 80 bytes each).
pub const REPORT_BODY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// The router, with its state.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics_page))
        .route("/api/v1/agent/claim", post(agent::claim::claim))
        .route(
            "/api/v1/jobs/{id}/heartbeat",
            post(jobs::heartbeat::heartbeat),
        )
        .route(
            "/api/v1/jobs/{id}/report",
            // The route's own limit, set closer to the handler, wins over the default below.
            post(jobs::report::report).layer(DefaultBodyLimit::max(REPORT_BODY_LIMIT_BYTES)),
        )
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .with_state(state)
}
