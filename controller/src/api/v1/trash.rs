//! `/api/v1/trash`: admins see the backups retention trashed and bring one back before it
//! is purged ([`crate::retention`], audited as `trash.restore`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use lifeboat_core::ids::{BackupId, TenantName};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::openapi::ErrorSchema;
use crate::api::{ApiError, AppState, Principal, UserPrincipal};
use crate::retention::{self, RetentionError, TrashedBackup};

impl From<RetentionError> for ApiError {
    fn from(error: RetentionError) -> ApiError {
        match error {
            RetentionError::Catalog(error) => error.into(),
            RetentionError::Tenant(error) => error.into(),
            RetentionError::BackupNotFound(_) => ApiError::not_found(error.to_string()),
            RetentionError::NotInTrash(_) => ApiError::new(StatusCode::CONFLICT, error.to_string()),
            other => {
                tracing::error!(error = %other, "retention error while serving a request");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the catalog is unavailable",
                )
            }
        }
    }
}

#[utoipa::path(get, path = "/api/v1/trash", tag = "admin",
    responses(
        (status = 200, description = "Every trashed backup, soonest purge first", body = Vec<TrashedBackup>),
        (status = 403, description = "Not an admin", body = ErrorSchema),
    ))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<TrashedBackup>>, ApiError> {
    let user = principal.require_user()?;
    user.require_admin()?;
    Ok(Json(retention::list_trash(&state.catalog).await?))
}

/// A backup brought back.
#[derive(Debug, Serialize, ToSchema)]
pub struct Untrashed {
    pub tenant: String,
}

#[utoipa::path(post, path = "/api/v1/trash/{backup}/restore", tag = "admin",
    params(("backup" = String, Path, description = "The backup's id")),
    responses(
        (status = 200, description = "Out of the trash (retention may trash it again unless it is held)", body = Untrashed),
        (status = 403, description = "Not an admin, or an API token", body = ErrorSchema),
        (status = 404, description = "No such backup", body = ErrorSchema),
        (status = 409, description = "Not in the trash", body = ErrorSchema),
    ))]
pub async fn restore(
    State(state): State<AppState>,
    principal: Principal,
    Path(backup): Path<String>,
) -> Result<Json<Untrashed>, ApiError> {
    let user = principal.require_user()?;
    let tenant = untrash(&state, &user, &backup).await?;
    Ok(Json(Untrashed {
        tenant: tenant.to_string(),
    }))
}

/// Bring `backup` back from the trash: an admin, signed in (the API and the panel).
pub(crate) async fn untrash(
    state: &AppState,
    user: &UserPrincipal,
    backup: &str,
) -> Result<TenantName, ApiError> {
    user.require_admin()?;
    user.require_session()?;
    let backup: BackupId = backup
        .parse()
        .map_err(|_| ApiError::not_found(format!("no backup {backup:?}")))?;
    Ok(retention::restore_from_trash(&state.catalog, backup, &user.actor()).await?)
}
