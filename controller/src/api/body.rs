//! [`JsonBody`]: a JSON request body whose rejections are [`ApiError`]s.
//!
//! A handler takes it as its last argument, after [`super::Principal`], so the caller is
//! authenticated before the body is read. Its size is bounded by the route's
//! `DefaultBodyLimit` ([`super::router`]); a larger one is a 413, anything else unreadable
//! a 422.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::ApiError;

/// A request body parsed as JSON into `T`.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(JsonBody(value)),
            Err(rejection) => Err(refuse(&rejection)),
        }
    }
}

fn refuse(rejection: &JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than this route accepts",
        );
    }
    ApiError::unprocessable(format!("malformed request body: {}", rejection.body_text()))
}
