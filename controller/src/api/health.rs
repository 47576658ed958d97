//! `GET /healthz`: 200 when the catalog answers `SELECT 1`, 503 otherwise. No
//! authentication: load balancers and probes call it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;

pub async fn healthz(State(state): State<AppState>) -> Response {
    match state.catalog.connection().await {
        Ok(connection) => match connection.query_one("SELECT 1", &[]).await {
            Ok(_) => (StatusCode::OK, "ok\n").into_response(),
            Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "catalog query failed\n").into_response(),
        },
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "catalog unreachable\n").into_response(),
    }
}
