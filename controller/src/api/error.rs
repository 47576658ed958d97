//! [`ApiError`]: every error the API answers with, as a status and a JSON [`ErrorBody`].
//!
//! Domain errors map to 4xx when the caller can fix them (401 bad token, 403 not allowed,
//! 404 unknown job, 409 lease lost, 413 body too large, 422 malformed body or report) and
//! to 503 when the catalog fails; a 5xx is logged here, once, with its cause, and the
//! caller gets a message that says nothing about our internals.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use lifeboat_core::api::ErrorBody;

use crate::catalog::CatalogError;
use crate::queue::QueueError;

/// An API error: a status and one clear message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn status(&self) -> StatusCode {
        self.status
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

/// The PostgreSQL error behind a failed catalog query, when the server sent one.
fn database_error(error: &CatalogError) -> Option<&tokio_postgres::error::DbError> {
    match error {
        CatalogError::Query { source, .. } => source.as_db_error(),
        _ => None,
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> ApiError {
        // SQLSTATE class 23 (integrity constraint violation: CHECK, foreign key, unique, not
        // null): the request carried values the catalog refuses, not an outage. The message
        // names the constraint, which is schema, not data.
        if let Some(refused) = database_error(&error)
            && refused.code().code().starts_with("23")
        {
            let constraint = refused.constraint().unwrap_or("a catalog constraint");
            return ApiError::unprocessable(format!(
                "the catalog refuses this request: it breaks {constraint} ({})",
                refused.message()
            ));
        }
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
            QueueError::NotLeaseOwner { .. } => ApiError::forbidden(error.to_string()),
            QueueError::TokenRevoked(_) => ApiError::unauthorized("unknown or revoked agent token"),
            QueueError::InvalidReport { .. } => ApiError::unprocessable(error.to_string()),
            // The agent retries a report on a 5xx, for up to a lease.
            QueueError::Unconfirmed(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
            }
        }
    }
}
