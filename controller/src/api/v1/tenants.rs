//! `/api/v1/tenants…`: what customers and staff see and do about tenants.
//!
//! Every route under `/api/v1/tenants/{tenant}` starts with
//! [`UserPrincipal::tenant`](crate::api::UserPrincipal::tenant), which gives a customer
//! naming anyone else's tenant the 404 of a tenant that does not exist.

#![expect(
    unused_qualifications,
    reason = "utoipa's IntoParams expansion names the query types with their module"
)]

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use lifeboat_core::ids::TenantName;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::body::JsonBody;
use crate::api::openapi::ErrorSchema;
use crate::api::{Access, ApiError, AppState, Principal, UserPrincipal};
use crate::audit::{self, AuditEntry};
use crate::drills;
use crate::evidence::{self, BackupView};
use crate::manual_backups::{self, ManualBackupRequested};
use crate::tenants;

/// A tenant, as the list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantSummary {
    pub name: String,
    /// Staff only: where its database lives.
    pub cluster: Option<String>,
    pub database: Option<String>,
    pub legal_hold: bool,
    /// Its users and tokens are locked out.
    pub frozen: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TenantSearch {
    /// Part of a tenant's name (staff).
    pub q: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", params(TenantSearch),
    responses(
        (status = 200, description = "Staff: every tenant (matching `q`); a customer: their own", body = Vec<TenantSummary>),
        (status = 401, description = "Not signed in", body = ErrorSchema),
    ))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Query(search): Query<TenantSearch>,
) -> Result<Json<Vec<TenantSummary>>, ApiError> {
    let user = principal.require_user()?;
    let staff = user.role.is_staff();
    let needle = search.q.unwrap_or_default().to_lowercase();
    let tenants = tenants::list_tenants(&state.catalog).await?;
    Ok(Json(
        tenants
            .into_iter()
            .filter(|tenant| {
                if staff {
                    tenant.name.as_str().contains(&needle)
                } else {
                    user.tenant.as_ref() == Some(&tenant.name)
                }
            })
            .map(|tenant| TenantSummary {
                name: tenant.name.to_string(),
                cluster: staff.then_some(tenant.cluster),
                database: staff.then_some(tenant.database),
                legal_hold: tenant.legal_hold,
                frozen: tenant.frozen,
                created_at: tenant.created_at,
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/backups", tag = "backups",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The tenant's backups, newest first, with the evidence that each restores", body = Vec<BackupView>),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
    ))]
pub async fn backups(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<BackupView>>, ApiError> {
    let user = principal.require_user()?;
    let tenant = user.existing_tenant(&state, &tenant, Access::View).await?;
    let connection = state.catalog.connection().await?;
    Ok(Json(evidence::tenant_backups(&connection, &tenant).await?))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/backups", tag = "backups",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 202, description = "A backup job was queued", body = ManualBackupRequested),
        (status = 403, description = "A viewer, or no CSRF token", body = ErrorSchema),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
        (status = 429, description = "The tenant's manual backups for today are used up", body = ErrorSchema),
    ))]
pub async fn take_backup(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<(StatusCode, Json<ManualBackupRequested>), ApiError> {
    let user = principal.require_user()?;
    let tenant = user.tenant(&tenant, Access::Manage)?;
    let requested = manual_backups::request_manual_backup(
        &state.catalog,
        &tenant,
        manual_backups::DEFAULT_DAILY_LIMIT,
        state.options.policy.max_attempts,
        &user.actor(),
        Utc::now(),
    )
    .await?;
    state.work_ready.notify_waiters();
    Ok((StatusCode::ACCEPTED, Json(requested)))
}

/// One drill: a backup restored into a scratch database and checked.
#[derive(Debug, Serialize, ToSchema)]
pub struct DrillView {
    pub backup_id: String,
    pub region: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    /// The recovery time: restore and checks, in milliseconds.
    pub duration_ms: i64,
    pub verified: bool,
    pub tables_verified: Option<u64>,
    pub rows_verified: Option<u64>,
    pub error: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/drills", tag = "backups",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The newest drills (restore tests), newest first", body = Vec<DrillView>),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
    ))]
pub async fn drills(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<DrillView>>, ApiError> {
    let user = principal.require_user()?;
    let tenant = user.existing_tenant(&state, &tenant, Access::View).await?;
    let connection = state.catalog.connection().await?;
    let listed = drills::list_drills(&**connection, Some(&tenant), 100).await?;
    Ok(Json(
        listed
            .into_iter()
            .map(|drill| {
                let record = drill.record;
                let (verified, tables_verified, rows_verified, error) = match record.outcome {
                    lifeboat_core::api::DrillOutcome::Verified {
                        tables_verified,
                        rows_verified,
                    } => (true, Some(tables_verified), Some(rows_verified), None),
                    lifeboat_core::api::DrillOutcome::Failed { error } => {
                        (false, None, None, Some(error))
                    }
                };
                DrillView {
                    backup_id: record.backup_id.to_string(),
                    region: record.region.map(|region| region.to_string()),
                    started_at: record.started_at,
                    finished_at: record.finished_at,
                    duration_ms: (record.finished_at - record.started_at)
                        .num_milliseconds()
                        .max(0),
                    verified,
                    tables_verified,
                    rows_verified,
                    error,
                }
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditPage {
    /// Entries older than this id.
    pub before: Option<i64>,
    /// At most this many (default 100).
    pub limit: Option<i64>,
}

/// One audit log entry about the tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntryView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub actor_role: Option<String>,
    pub action: String,
    pub reason: Option<String>,
    pub address: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditEntry> for AuditEntryView {
    fn from(entry: AuditEntry) -> Self {
        AuditEntryView {
            id: entry.id,
            at: entry.at,
            actor: entry.actor,
            actor_role: entry.actor_role,
            action: entry.action,
            reason: entry.reason,
            address: entry.address.map(|address| address.to_string()),
            details: serde_json::from_str(entry.details.get()).unwrap_or_default(),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/audit", tag = "audit",
    params(("tenant" = String, Path, description = "The tenant's name"), AuditPage),
    responses(
        (status = 200, description = "Audit entries about the tenant, newest first (owners and staff)", body = Vec<AuditEntryView>),
        (status = 403, description = "A viewer", body = ErrorSchema),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
    ))]
pub async fn audit_log(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    Query(page): Query<AuditPage>,
) -> Result<Json<Vec<AuditEntryView>>, ApiError> {
    let user = principal.require_user()?;
    let tenant = user
        .existing_tenant(&state, &tenant, Access::Manage)
        .await?;
    let entries = audit::entries_for_tenant(
        &state.catalog,
        &tenant,
        audit::Page {
            before_id: page.before,
            limit: page.limit.unwrap_or(100),
        },
    )
    .await?;
    Ok(Json(entries.into_iter().map(Into::into).collect()))
}

/// A reason, for the audit log.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeRequest {
    pub reason: String,
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/freeze", tag = "admin",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = FreezeRequest,
    responses(
        (status = 204, description = "Frozen: every session and token of its users is refused from now on"),
        (status = 403, description = "Not an admin", body = ErrorSchema),
        (status = 404, description = "No such tenant", body = ErrorSchema),
        (status = 409, description = "Already frozen", body = ErrorSchema),
    ))]
pub async fn freeze(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    JsonBody(request): JsonBody<FreezeRequest>,
) -> Result<StatusCode, ApiError> {
    let user = principal.require_user()?;
    set_frozen(&state, &user, &tenant, &request.reason, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Freeze (`frozen`) or unfreeze `tenant` as `user`, an admin: the one path from a caller
/// to a freeze, for the API and the panel.
pub(crate) async fn set_frozen(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
    reason: &str,
    frozen: bool,
) -> Result<TenantName, ApiError> {
    user.require_admin()?;
    let tenant = user.existing_tenant(state, tenant, Access::Manage).await?;
    let accounts = &state.portal()?.accounts;
    if frozen {
        accounts
            .freeze_tenant(&tenant, &user.actor(), reason)
            .await?;
    } else {
        accounts
            .unfreeze_tenant(&tenant, &user.actor(), reason)
            .await?;
    }
    Ok(tenant)
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/freeze", tag = "admin",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = FreezeRequest,
    responses(
        (status = 204, description = "Unfrozen"),
        (status = 403, description = "Not an admin", body = ErrorSchema),
        (status = 404, description = "No such tenant", body = ErrorSchema),
        (status = 409, description = "Not frozen", body = ErrorSchema),
    ))]
pub async fn unfreeze(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    JsonBody(request): JsonBody<FreezeRequest>,
) -> Result<StatusCode, ApiError> {
    let user = principal.require_user()?;
    set_frozen(&state, &user, &tenant, &request.reason, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
