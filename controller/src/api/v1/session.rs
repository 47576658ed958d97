//! `/api/v1/session`: sign in (POST), who am I (GET), sign out (DELETE).
//!
//! Signing in sets the session cookie (HttpOnly, Secure, SameSite=Strict, a new token at
//! every login so a planted one is useless) and returns the session's CSRF token, which
//! every later change must carry in `x-csrf-token`.

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use chrono::Utc;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use utoipa::ToSchema;

use crate::accounts::{AuthenticatedUser, LoginAttempt, NewSession};
use crate::api::auth::{Credential, SESSION_COOKIE};
use crate::api::body::JsonBody;
use crate::api::{ApiError, AppState, Principal};

/// What a person types to sign in.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub login: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// A 6-digit TOTP code or a recovery code (required for staff, and for customers who
    /// enrolled).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub code: Option<SecretString>,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LoginRequest")
            .field("login", &self.login)
            .finish_non_exhaustive()
    }
}

/// Who is signed in.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionInfo {
    pub login: String,
    /// `admin`, `helpdesk`, `owner` or `viewer`.
    pub role: String,
    /// The tenant of an owner or viewer.
    pub tenant: Option<String>,
}

/// A session just started.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionStarted {
    #[serde(flatten)]
    pub user: SessionInfo,
    /// Send it back in `x-csrf-token` with every change.
    pub csrf_token: String,
    /// A recovery code opened this session: enrol a new authenticator soon.
    pub used_recovery_code: bool,
    /// This sign-in confirmed a TOTP enrolment: recovery codes, shown this once.
    pub recovery_codes: Option<Vec<String>>,
}

#[utoipa::path(post, path = "/api/v1/session", tag = "session",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in; the session cookie is set", body = SessionStarted),
        (status = 401, description = "Wrong login, password or code (always the same answer)", body = crate::api::openapi::ErrorSchema),
        (status = 429, description = "Too many failures: wait, or ask an admin to unlock", body = crate::api::openapi::ErrorSchema),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    jar: CookieJar,
    JsonBody(request): JsonBody<LoginRequest>,
) -> Result<Response, ApiError> {
    let (jar, user, session) = sign_in(&state, peer, jar, &request).await?;
    let body = SessionStarted {
        user: SessionInfo {
            login: user.login,
            role: user.role.to_string(),
            tenant: user.tenant.map(|tenant| tenant.to_string()),
        },
        csrf_token: session.csrf_token.expose_secret().to_owned(),
        used_recovery_code: user.used_recovery_code,
        recovery_codes: user.new_recovery_codes.map(|codes| {
            codes
                .0
                .iter()
                .map(|code| code.expose_secret().to_owned())
                .collect()
        }),
    };
    Ok((jar, no_store(), Json(body)).into_response())
}

/// Check a sign-in and start its session: the one home of signing in, for the API and the
/// panel. A session the browser already had (perhaps planted by someone else) is ended,
/// never reused; the returned jar carries the new session's cookie.
pub(crate) async fn sign_in(
    state: &AppState,
    peer: SocketAddr,
    jar: CookieJar,
    request: &LoginRequest,
) -> Result<(CookieJar, AuthenticatedUser, NewSession), ApiError> {
    let portal = state.portal()?;
    let now = Utc::now();
    let user = portal
        .accounts
        .authenticate(LoginAttempt {
            login: &request.login,
            password: &request.password,
            second_factor: request.code.as_ref(),
            client_address: peer.ip(),
            now,
        })
        .await?;
    if let Some(old) = jar.get(SESSION_COOKIE) {
        portal.accounts.end_session(old.value()).await?;
    }
    let session = portal.accounts.start_session(&user, peer.ip(), now).await?;
    let cookie = Cookie::build((SESSION_COOKIE, session.token.expose_secret().to_owned()))
        .path("/")
        .http_only(true)
        .secure(true)
        .same_site(SameSite::Strict)
        .build();
    Ok((jar.add(cookie), user, session))
}

/// The jar without the session cookie, after ending its session.
pub(crate) async fn sign_out(state: &AppState, jar: CookieJar) -> Result<CookieJar, ApiError> {
    if let Some(cookie) = jar.get(SESSION_COOKIE) {
        state.portal()?.accounts.end_session(cookie.value()).await?;
    }
    Ok(jar.remove(Cookie::build(SESSION_COOKIE).path("/").build()))
}

/// Responses carrying secrets are never cached.
fn no_store() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    headers
}

#[utoipa::path(get, path = "/api/v1/session", tag = "session",
    responses(
        (status = 200, description = "The signed-in user", body = SessionInfo),
        (status = 401, description = "Not signed in", body = crate::api::openapi::ErrorSchema),
    ))]
pub async fn whoami(principal: Principal) -> Result<Json<SessionInfo>, ApiError> {
    let user = principal.require_user()?;
    Ok(Json(SessionInfo {
        login: user.login,
        role: user.role.to_string(),
        tenant: user.tenant.map(|tenant| tenant.to_string()),
    }))
}

#[utoipa::path(delete, path = "/api/v1/session", tag = "session",
    responses(
        (status = 204, description = "Signed out; the session is over everywhere it was used"),
        (status = 401, description = "Not signed in", body = crate::api::openapi::ErrorSchema),
        (status = 403, description = "Missing CSRF token", body = crate::api::openapi::ErrorSchema),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
    jar: CookieJar,
) -> Result<Response, ApiError> {
    let user = principal.require_user()?;
    let jar = match user.credential {
        Credential::Session { .. } => sign_out(&state, jar).await?,
        Credential::ApiToken { .. } => jar,
    };
    Ok((StatusCode::NO_CONTENT, jar).into_response())
}
