//! `/api/v1/…/restore-asks`: a tenant's owner asks staff for a restore, with a note; staff
//! see every open ask and serve it (a restore of the tenant closes it) or decline it; the
//! owner may withdraw it ([`crate::restores::asks`], audited).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use lifeboat_core::ids::BackupId;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::accounts::Role;
use crate::api::body::JsonBody;
use crate::api::openapi::ErrorSchema;
use crate::api::{Access, ApiError, AppState, Principal, UserPrincipal};
use crate::restores::RestoreMode;
use crate::restores::asks::{self, AskClosing, NewRestoreAsk, RestoreAsk};

/// The most asks one listing returns.
const LISTED_ASKS: i64 = 50;

/// A restore an owner asks for.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    /// `live` (the tenant's database goes back to the backup) or `copy` (a new database).
    pub target: RestoreMode,
    /// The backup's id; the newest when left out.
    pub backup: Option<String>,
    /// What happened and what to restore (1 to 2000 characters).
    pub note: String,
}

/// Why an ask is closed.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CloseAsk {
    pub reason: String,
}

/// Ask for a restore of `tenant`: its owners only (staff restore directly). The API and
/// the panel.
pub(crate) async fn ask_as(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
    request: &AskRequest,
) -> Result<RestoreAsk, ApiError> {
    let tenant = user.existing_tenant(state, tenant, Access::Manage).await?;
    if user.role != Role::Owner {
        return Err(ApiError::forbidden(
            "only a tenant's owners ask for a restore; staff restore directly",
        ));
    }
    let backup =
        match request.backup.as_deref() {
            None => None,
            Some(text) => Some(text.parse::<BackupId>().map_err(|_| {
                ApiError::not_found(format!("tenant {tenant} has no backup {text:?}"))
            })?),
        };
    Ok(asks::ask_for_restore(
        &state.catalog,
        &tenant,
        NewRestoreAsk {
            backup,
            target: request.target,
            note: &request.note,
        },
        &user.actor(),
    )
    .await?)
}

/// Close `tenant`'s open ask: its owner withdraws it, staff decline it. The API and the
/// panel.
pub(crate) async fn close_as(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
    ask: i64,
    reason: &str,
) -> Result<RestoreAsk, ApiError> {
    let tenant = user.existing_tenant(state, tenant, Access::Manage).await?;
    let closing = match user.role {
        Role::Owner => AskClosing::Withdrawn,
        Role::Helpdesk | Role::Admin => {
            user.require_session()?;
            AskClosing::Declined
        }
        Role::Viewer => {
            return Err(ApiError::forbidden("viewers do not manage restore asks"));
        }
    };
    Ok(asks::close_ask(&state.catalog, &tenant, ask, closing, reason, &user.actor()).await?)
}

/// `tenant`'s newest asks (its owners and staff). The API and the panel.
pub(crate) async fn asks_of(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
) -> Result<Vec<RestoreAsk>, ApiError> {
    let tenant = user.existing_tenant(state, tenant, Access::Manage).await?;
    let connection = state.catalog.connection().await?;
    Ok(asks::list_asks(&**connection, Some(&tenant), LISTED_ASKS).await?)
}

/// Every tenant's open asks, oldest first: staff's queue. The API and the panel.
///
/// Not capped: a tenant has at most one open ask (`restore_asks_one_open_per_tenant`), so
/// the queue is bounded by the tenants, and a capped queue would hide the newest asks.
pub(crate) async fn open_asks(
    state: &AppState,
    user: &UserPrincipal,
) -> Result<Vec<RestoreAsk>, ApiError> {
    user.require_staff()?;
    let connection = state.catalog.connection().await?;
    Ok(asks::list_asks(&**connection, None, i64::MAX).await?)
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/restore-asks", tag = "restores",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The tenant's newest restore asks, at most 50", body = Vec<RestoreAsk>),
        (status = 403, description = "A viewer", body = ErrorSchema),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
    ))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<RestoreAsk>>, ApiError> {
    let user = principal.require_user()?;
    Ok(Json(asks_of(&state, &user, &tenant).await?))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/restore-asks", tag = "restores",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = AskRequest,
    responses(
        (status = 201, description = "Asked; staff see it in their queue", body = RestoreAsk),
        (status = 403, description = "Not an owner of the tenant", body = ErrorSchema),
        (status = 404, description = "No such tenant or backup (or not yours)", body = ErrorSchema),
        (status = 409, description = "An ask of this tenant is open already", body = ErrorSchema),
        (status = 422, description = "An empty or long note, or rollback asked for", body = ErrorSchema),
    ))]
pub async fn ask(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    JsonBody(request): JsonBody<AskRequest>,
) -> Result<(StatusCode, Json<RestoreAsk>), ApiError> {
    let user = principal.require_user()?;
    let asked = ask_as(&state, &user, &tenant, &request).await?;
    Ok((StatusCode::CREATED, Json(asked)))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/restore-asks/{ask}/close", tag = "restores",
    params(("tenant" = String, Path, description = "The tenant's name"), ("ask" = i64, Path, description = "The ask's id")),
    request_body = CloseAsk,
    responses(
        (status = 200, description = "Withdrawn (an owner) or declined (staff)", body = RestoreAsk),
        (status = 403, description = "A viewer", body = ErrorSchema),
        (status = 404, description = "No open ask of that id for this tenant", body = ErrorSchema),
        (status = 422, description = "An empty reason", body = ErrorSchema),
    ))]
pub async fn close(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant, ask)): Path<(String, i64)>,
    JsonBody(request): JsonBody<CloseAsk>,
) -> Result<Json<RestoreAsk>, ApiError> {
    let user = principal.require_user()?;
    Ok(Json(
        close_as(&state, &user, &tenant, ask, &request.reason).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/restore-asks", tag = "restores",
    responses(
        (status = 200, description = "Every tenant's open asks, oldest first", body = Vec<RestoreAsk>),
        (status = 403, description = "Not staff", body = ErrorSchema),
    ))]
pub async fn queue(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<RestoreAsk>>, ApiError> {
    let user = principal.require_user()?;
    Ok(Json(open_asks(&state, &user).await?))
}
