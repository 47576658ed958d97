//! `GET /metrics`: the Prometheus page, computed from the catalog at each scrape by
//! [`crate::metrics::render`]. No authentication, like most exporters: it holds counts and
//! names of regions and job kinds, no tenant data.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

pub async fn metrics_page(State(state): State<AppState>) -> Result<Response, ApiError> {
    let regions: Vec<_> = state
        .options
        .regions
        .iter()
        .map(|region| region.name().clone())
        .collect();
    let text = crate::metrics::render(&state.catalog, &regions).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
