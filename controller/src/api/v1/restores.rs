//! `/api/v1/tenants/{tenant}/restores…`: helpdesk restores a tenant onto its live database
//! or into a copy, and rolls a live restore back, through the playbooks' jobs
//! ([`crate::restores`]).
//!
//! Staff only, signed in to the panel (never an API token), and each request proves
//! intent three ways: a reason for the audit log, the tenant's name typed again, and a
//! fresh TOTP code ([`crate::accounts::Accounts::confirm_second_factor`]), checked in that
//! order before anything is enqueued. Every request is audited by the restore library with
//! the staff member as actor and their address.

#![expect(
    unused_qualifications,
    reason = "utoipa's IntoParams expansion names the query types with their module"
)]

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::Utc;
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::restore::BackupSelector;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::body::JsonBody;
use crate::api::openapi::ErrorSchema;
use crate::api::{Access, ApiError, AppState, Principal, UserPrincipal};
use crate::restores::{
    self, CopyRequest, LiveRestorePlan, RestoreMode, RestoreRequested, RestoreStatus,
};

/// A restore asked for by staff.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    /// `live` (swap in for the tenant's database) or `copy` (a new database beside it).
    pub mode: RestoreMode,
    /// The backup's id; the newest restorable one when left out.
    pub backup: Option<String>,
    /// Why: goes into the audit log.
    pub reason: String,
    /// The tenant's name typed again.
    pub confirm_tenant: String,
    /// A fresh code from the staff member's authenticator.
    #[schema(value_type = String)]
    pub code: SecretString,
    /// `copy`: the new database's name.
    pub into: Option<String>,
    /// `copy`: drop it after this many days (kept until dropped by hand when left out).
    pub expires_days: Option<u32>,
}

impl std::fmt::Debug for RestoreRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RestoreRequest")
            .field("mode", &self.mode)
            .field("backup", &self.backup)
            .finish_non_exhaustive()
    }
}

/// A restore queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct RestoreAccepted {
    #[serde(flatten)]
    pub requested: RestoreRequested,
    /// `copy`: the role the copy belongs to, and its password, shown this once.
    pub copy_role: Option<String>,
    pub copy_password: Option<String>,
}

pub(crate) fn selector(backup: Option<&str>) -> Result<BackupSelector, ApiError> {
    match backup {
        None => Ok(BackupSelector::Latest),
        Some(text) => text
            .parse::<BackupId>()
            .map(BackupSelector::Id)
            .map_err(|_| ApiError::unprocessable(format!("backup {text:?} is not a backup id"))),
    }
}

/// The checks every restore and rollback passes before anything is enqueued.
pub(crate) async fn confirm_intent(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &TenantName,
    confirm_tenant: &str,
    reason: &str,
    code: &SecretString,
) -> Result<(), ApiError> {
    if reason.trim().is_empty() {
        return Err(
            ApiError::unprocessable("say why in `reason`: it goes into the audit log")
                .with_code("reason_required"),
        );
    }
    if confirm_tenant != tenant.as_str() {
        return Err(ApiError::unprocessable(format!(
            "confirm_tenant must be the tenant's name, {tenant}, typed again"
        ))
        .with_code("confirmation_mismatch"));
    }
    state
        .portal()?
        .accounts
        .confirm_second_factor(&user.login, code, user.address, Utc::now())
        .await
        .map_err(|error| match error {
            crate::accounts::LoginError::Refused(_) => ApiError::forbidden(
                "the authenticator code is wrong or was already used; enter the next one",
            )
            .with_code("second_factor_refused"),
            other => other.into(),
        })
}

/// Staff, signed in, and the tenant exists.
pub(crate) async fn staff_on(
    state: &AppState,
    principal: Principal,
    tenant: &str,
) -> Result<(UserPrincipal, TenantName), ApiError> {
    let user = principal.require_user()?;
    user.require_staff()?;
    let tenant = user.existing_tenant(state, tenant, Access::Manage).await?;
    Ok((user, tenant))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PlanQuery {
    /// The backup's id; the newest restorable one when left out.
    pub backup: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/restores/plan", tag = "restores",
    params(("tenant" = String, Path, description = "The tenant's name"), PlanQuery),
    responses(
        (status = 200, description = "What a live restore would do, and the expected offline time", body = LiveRestorePlan),
        (status = 403, description = "Not staff", body = ErrorSchema),
        (status = 404, description = "No such tenant or backup", body = ErrorSchema),
        (status = 409, description = "A restore is already underway", body = ErrorSchema),
    ))]
pub async fn plan(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    Query(query): Query<PlanQuery>,
) -> Result<Json<LiveRestorePlan>, ApiError> {
    let (_, tenant) = staff_on(&state, principal, &tenant).await?;
    let config = &state.portal()?.config;
    let plan = restores::plan_live_restore(
        &state.catalog,
        config,
        &tenant,
        selector(query.backup.as_deref())?,
    )
    .await?;
    Ok(Json(plan))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/restores", tag = "restores",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = RestoreRequest,
    responses(
        (status = 202, description = "The restore job is queued; follow it at /restores/{job_id}", body = RestoreAccepted),
        (status = 403, description = "Not staff, an API token, no CSRF token, or a wrong authenticator code", body = ErrorSchema),
        (status = 404, description = "No such tenant or backup", body = ErrorSchema),
        (status = 409, description = "A restore is already underway", body = ErrorSchema),
        (status = 422, description = "No reason, the tenant's name not typed again, a bad backup id or copy name", body = ErrorSchema),
    ))]
pub async fn request(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    JsonBody(request): JsonBody<RestoreRequest>,
) -> Result<(StatusCode, Json<RestoreAccepted>), ApiError> {
    let (user, tenant) = staff_on(&state, principal, &tenant).await?;
    user.require_session()?;
    let selector = selector(request.backup.as_deref())?;
    let into = match request.mode {
        RestoreMode::Live => None,
        RestoreMode::Copy => Some(request.into.as_deref().ok_or_else(|| {
            ApiError::unprocessable("a copy needs `into`: the new database's name")
        })?),
        RestoreMode::Rollback => {
            return Err(ApiError::unprocessable(
                "mode must be live or copy; a rollback is POST /api/v1/tenants/{tenant}/rollback",
            ));
        }
    };
    confirm_intent(
        &state,
        &user,
        &tenant,
        &request.confirm_tenant,
        &request.reason,
        &request.code,
    )
    .await?;
    let portal = state.portal()?;
    let actor = user.actor();
    let accepted = match into {
        None => RestoreAccepted {
            requested: restores::request_live_restore(
                &state.catalog,
                &portal.config,
                &tenant,
                selector,
                &request.reason,
                &actor,
            )
            .await?,
            copy_role: None,
            copy_password: None,
        },
        Some(into) => {
            let copy = restores::request_copy(
                &state.catalog,
                &portal.config,
                CopyRequest {
                    tenant: &tenant,
                    selector,
                    into,
                    expires_days: request.expires_days,
                    actor: &actor,
                },
            )
            .await?;
            RestoreAccepted {
                requested: copy.requested,
                copy_role: Some(copy.role),
                copy_password: Some(copy.password.expose_secret().to_owned()),
            }
        }
    };
    state.work_ready.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}

/// A rollback asked for by staff.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub reason: String,
    pub confirm_tenant: String,
    #[schema(value_type = String)]
    pub code: SecretString,
}

impl std::fmt::Debug for RollbackRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RollbackRequest")
            .finish_non_exhaustive()
    }
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/rollback", tag = "restores",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = RollbackRequest,
    responses(
        (status = 202, description = "The rollback job is queued", body = RestoreRequested),
        (status = 403, description = "Not staff, an API token, no CSRF token, or a wrong authenticator code", body = ErrorSchema),
        (status = 404, description = "No such tenant", body = ErrorSchema),
        (status = 409, description = "A restore is already underway", body = ErrorSchema),
        (status = 422, description = "Nothing to roll back, no reason, or the name not typed again", body = ErrorSchema),
    ))]
pub async fn rollback(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    JsonBody(request): JsonBody<RollbackRequest>,
) -> Result<(StatusCode, Json<RestoreRequested>), ApiError> {
    let (user, tenant) = staff_on(&state, principal, &tenant).await?;
    user.require_session()?;
    confirm_intent(
        &state,
        &user,
        &tenant,
        &request.confirm_tenant,
        &request.reason,
        &request.code,
    )
    .await?;
    let requested = restores::request_rollback(
        &state.catalog,
        &state.portal()?.config,
        &tenant,
        Some(&request.reason),
        &user.actor(),
    )
    .await?;
    state.work_ready.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(requested)))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/restores", tag = "restores",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The tenant's newest restores with their steps (customers see their own tenant's)", body = Vec<RestoreStatus>),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
    ))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<RestoreStatus>>, ApiError> {
    let user = principal.require_user()?;
    let tenant = user.existing_tenant(&state, &tenant, Access::View).await?;
    Ok(Json(
        restores::restore_status(&state.catalog, Some(&tenant), 50).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/restores/{job}", tag = "restores",
    params(("tenant" = String, Path, description = "The tenant's name"),
           ("job" = i64, Path, description = "The restore's job id")),
    responses(
        (status = 200, description = "The restore with its steps, as they happen", body = RestoreStatus),
        (status = 404, description = "No such restore of this tenant (or not yours)", body = ErrorSchema),
    ))]
pub async fn status(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant, job)): Path<(String, i64)>,
) -> Result<Json<RestoreStatus>, ApiError> {
    let user = principal.require_user()?;
    let tenant = user.tenant(&tenant, Access::View)?;
    restores::restore_job_status(&state.catalog, job)
        .await?
        .filter(|status| status.tenant == tenant.as_str())
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant} has no restore {job}")))
}
