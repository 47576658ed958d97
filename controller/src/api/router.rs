//! Every route of the controller's HTTP API, and how large a body each accepts.
//!
//! ```text
//! GET    /healthz                                   health::healthz
//! GET    /metrics                                   metrics::metrics_page
//! GET    /api/v1/openapi.json                       the OpenAPI document
//! POST   /api/v1/agent/claim                        agent::claim         (agent)
//! POST   /api/v1/jobs/{id}/heartbeat                jobs::heartbeat      (agent holding the lease)
//! POST   /api/v1/jobs/{id}/report                   jobs::report         (agent holding the lease; large body)
//! POST   /api/v1/session                            v1::session::login
//! GET    /api/v1/session                            v1::session::whoami
//! DELETE /api/v1/session                            v1::session::logout
//! GET    /api/v1/tenants                            v1::tenants::list
//! GET    /api/v1/tenants/{tenant}/backups           v1::tenants::backups
//! POST   /api/v1/tenants/{tenant}/backups           v1::tenants::take_backup   (owner, staff)
//! GET    /api/v1/tenants/{tenant}/drills            v1::tenants::drills
//! GET    /api/v1/tenants/{tenant}/audit             v1::tenants::audit_log     (owner, staff)
//! POST   /api/v1/tenants/{tenant}/freeze            v1::tenants::freeze        (admin)
//! DELETE /api/v1/tenants/{tenant}/freeze            v1::tenants::unfreeze      (admin)
//! GET    /api/v1/tenants/{tenant}/restores          v1::restores::list
//! POST   /api/v1/tenants/{tenant}/restores          v1::restores::request      (staff + TOTP)
//! GET    /api/v1/tenants/{tenant}/restores/plan     v1::restores::plan         (staff)
//! GET    /api/v1/tenants/{tenant}/restores/{job}    v1::restores::status
//! POST   /api/v1/tenants/{tenant}/rollback          v1::restores::rollback     (staff + TOTP)
//! GET    /api/v1/tenants/{tenant}/restore-asks      v1::asks::list             (owner, staff)
//! POST   /api/v1/tenants/{tenant}/restore-asks      v1::asks::ask              (owner)
//! POST   /api/v1/tenants/{tenant}/restore-asks/{ask}/close  v1::asks::close    (owner, staff)
//! GET    /api/v1/restore-asks                       v1::asks::queue            (staff)
//! GET    /api/v1/tenants/{tenant}/users             v1::users::tenant_users    (owner, staff)
//! POST   /api/v1/tenants/{tenant}/users             v1::users::add_tenant_user (owner, admin; signed in)
//! POST   /api/v1/tenants/{tenant}/users/{login}/disable|enable                  (owner, admin; signed in)
//! GET    /api/v1/users                              v1::users::list_users      (admin)
//! POST   /api/v1/users                              v1::users::add_user        (admin; signed in)
//! GET    /api/v1/tenants/{tenant}/tokens            v1::users::list_tokens     (owner, staff)
//! POST   /api/v1/tenants/{tenant}/tokens            v1::users::issue_token     (owner, admin; signed in)
//! DELETE /api/v1/tenants/{tenant}/tokens/{name}     v1::users::revoke_token    (owner, admin)
//! POST   /api/v1/session/totp                       v1::users::begin_totp      (signed in)
//! POST   /api/v1/session/totp/confirm               v1::users::confirm_totp    (signed in)
//! POST   /api/v1/password-strength                  v1::users::strength
//! GET    /api/v1/trash                              v1::trash::list            (admin)
//! POST   /api/v1/trash/{backup}/restore             v1::trash::restore         (admin; signed in)
//! POST   /api/v1/tenants/{tenant}/backups/{backup}/download-link  downloads::issue_link (owner, staff)
//! GET    /api/v1/downloads/{token}                  downloads::download        (the link is the credential)
//! ```
//!
//! The `/api/v1` routes are registered through utoipa-axum, which builds the router and
//! the OpenAPI document ([`super::openapi`]) from the same list. An unknown route is a
//! JSON 404 and a known route with the wrong method a JSON 405; axum's own rejections (a
//! path segment or query that does not parse) are turned into JSON errors too.

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::openapi::ApiDoc;
use super::v1::{asks, restores, session, tenants, trash, users};
use super::{ApiError, AppState, agent, health, jobs, metrics};

/// The largest body of every route but the report: a claim, a heartbeat, a login or a
/// restore request is at most a few kilobytes, so a larger one is refused (413) before it
/// costs memory.
pub const BODY_LIMIT_BYTES: usize = 16 * 1024;

/// The largest report body: a scrub report of about 800,000 copies (about 80 bytes each).
pub const REPORT_BODY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// The `/api/v1` routes and their OpenAPI document.
pub fn api_v1() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(agent::claim::claim))
        .routes(routes!(jobs::heartbeat::heartbeat))
        // The route's own limit, set closer to the handler, wins over the default below.
        .routes(routes!(jobs::report::report).layer(DefaultBodyLimit::max(REPORT_BODY_LIMIT_BYTES)))
        .routes(routes!(session::login, session::whoami, session::logout))
        .routes(routes!(tenants::list))
        .routes(routes!(tenants::backups, tenants::take_backup))
        .routes(routes!(tenants::drills))
        .routes(routes!(tenants::audit_log))
        .routes(routes!(tenants::freeze, tenants::unfreeze))
        .routes(routes!(restores::list, restores::request))
        .routes(routes!(restores::plan))
        .routes(routes!(restores::status))
        .routes(routes!(restores::rollback))
        .routes(routes!(asks::list, asks::ask))
        .routes(routes!(asks::close))
        .routes(routes!(asks::queue))
        .routes(routes!(users::tenant_users, users::add_tenant_user))
        .routes(routes!(users::disable_user))
        .routes(routes!(users::enable_user))
        .routes(routes!(users::list_users, users::add_user))
        .routes(routes!(users::list_tokens, users::issue_token))
        .routes(routes!(users::revoke_token))
        .routes(routes!(users::begin_totp))
        .routes(routes!(users::confirm_totp))
        .routes(routes!(users::strength))
        .routes(routes!(trash::list))
        .routes(routes!(trash::restore))
        .routes(routes!(super::downloads::download))
        .routes(routes!(super::downloads::issue_link))
        .split_for_parts()
}

/// The router, with its state.
pub fn router(state: AppState) -> Router {
    let (api, document) = api_v1();
    let document = std::sync::Arc::new(document);
    api.merge(crate::panel::routes())
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(metrics::metrics_page))
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let document = document.clone();
                async move { Json(document.as_ref().clone()) }
            }),
        )
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT_BYTES))
        .layer(axum::middleware::map_response(super::error::json_errors))
        .with_state(state)
}
