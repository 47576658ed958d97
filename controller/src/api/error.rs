//! [`ApiError`]: every error the API answers with, as a status and a JSON [`ErrorBody`].
//!
//! Domain errors map to 4xx when the caller can fix them (401 bad token, 403 not allowed,
//! 404 unknown job, 409 lease lost, 413 body too large, 422 malformed body or report, 429
//! rate-limited) and to 503 when the catalog fails; a 5xx is logged here, once, with its
//! cause, and the caller gets a message that says nothing about our internals. Every body
//! carries a stable `code` besides its message: by default the status's, or a more precise
//! one given with [`ApiError::with_code`].

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
    code: &'static str,
    message: String,
}

/// The code of an error that gave none of its own.
fn status_code_name(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::GONE => "gone",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        _ if status.is_server_error() => "internal",
        _ => "error",
    }
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: status_code_name(status),
            message: message.into(),
        }
    }

    /// The same error with a more precise stable code.
    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = code;
        self
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
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
                code: self.code.to_owned(),
                error: self.message,
            }),
        )
            .into_response()
    }
}

/// Answers that are errors but not JSON (axum's own rejections of a path or a query that
/// does not parse) become [`ErrorBody`]s with the same status, so every error a client gets
/// has the same shape.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    // JSON already, or a page of the panel (its errors are pages).
    let shaped = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.starts_with("application/json") || value.starts_with("text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || shaped {
        return response;
    }
    let text = match axum::body::to_bytes(response.into_body(), 4096).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    };
    ApiError::new(status, message).into_response()
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

impl From<crate::accounts::AccountError> for ApiError {
    fn from(error: crate::accounts::AccountError) -> ApiError {
        use crate::accounts::AccountError as E;
        match error {
            E::Catalog(error) => error.into(),
            E::UnknownUser(_) | E::UnknownTenant(_) | E::UnknownToken { .. } => {
                ApiError::not_found(error.to_string())
            }
            E::LoginTaken(_) | E::TokenNameTaken { .. } | E::AlreadyFrozen(_) | E::NotFrozen(_) => {
                ApiError::new(StatusCode::CONFLICT, error.to_string())
            }
            E::Inconsistent(_) | E::Hashing(_) => {
                tracing::error!(error = %error, "account error while serving a request");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
            E::WrongTotpCode => ApiError::unprocessable(error.to_string()).with_code("wrong_code"),
            E::TotpActive(_) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            E::WeakPassword(_) => {
                ApiError::unprocessable(error.to_string()).with_code("weak_password")
            }
            _ => ApiError::unprocessable(error.to_string()),
        }
    }
}

impl From<crate::accounts::LoginError> for ApiError {
    fn from(error: crate::accounts::LoginError) -> ApiError {
        use crate::accounts::LoginError as E;
        match error {
            // One message whatever was wrong: the precise reason is in the controller's log.
            E::Refused(_) => ApiError::unauthorized(error.to_string()).with_code("login_refused"),
            E::Delayed(_) | E::Locked(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, error.to_string())
                    .with_code("login_throttled")
            }
            E::Account(error) => error.into(),
        }
    }
}

impl From<crate::tenants::TenantError> for ApiError {
    fn from(error: crate::tenants::TenantError) -> ApiError {
        use crate::tenants::TenantError as E;
        match error {
            E::Catalog(error) => error.into(),
            E::NotFound(_) | E::Unknown(_) => ApiError::not_found(error.to_string()),
            E::Query { .. } | E::InvalidStoredName(_) => {
                tracing::error!(error = %error, "tenant error while serving a request");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the catalog is unavailable",
                )
            }
            E::BackupRunning { .. } | E::Exists(_) | E::UnderLegalHold(_) => {
                ApiError::new(StatusCode::CONFLICT, error.to_string())
            }
            _ => ApiError::unprocessable(error.to_string()),
        }
    }
}

impl From<crate::restores::RestoreError> for ApiError {
    fn from(error: crate::restores::RestoreError) -> ApiError {
        use crate::restores::RestoreError as E;
        match error {
            E::Catalog(error) => error.into(),
            E::Tenant(error) => error.into(),
            E::UnknownBackup(_) | E::NoOpenAsk { .. } => ApiError::not_found(error.to_string()),
            E::AlreadyUnderway { .. }
            | E::SameMinute(_)
            | E::KeptNameTaken { .. }
            | E::AlreadyAsked { .. } => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            _ => ApiError::unprocessable(error.to_string()),
        }
    }
}

impl From<crate::manual_backups::ManualBackupError> for ApiError {
    fn from(error: crate::manual_backups::ManualBackupError) -> ApiError {
        use crate::manual_backups::ManualBackupError as E;
        match error {
            E::Catalog(error) => error.into(),
            E::UnknownTenant(_) => ApiError::not_found(error.to_string()),
            E::RateLimited { .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, error.to_string())
            }
        }
    }
}
