//! `GET /api/v1/downloads/{token}`: a download link redeemed, the backup streamed.
//!
//! No other authentication: the link is the credential (a browser follows it, with no
//! header of ours), short-lived and single-use (`crate::downloads`). The response is
//! `Content-Disposition: attachment`, never cached (`Cache-Control: no-store`) and never
//! named to another site (`Referrer-Policy: no-referrer`). The body is decrypted on the fly
//! (`lifeboat_core::download`); if the backup fails its check after the first bytes, the
//! transfer is cut rather than ended, so the client never holds a complete-looking file.
//!
//! The token is in the path, so the path is a secret: nothing here logs it, and any
//! request logging must pass paths through [`redact_download_token`].

use std::borrow::Cow;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use lifeboat_core::download::{DownloadError, DownloadFormat, open_download};
use lifeboat_core::postgres::PgTools;
use secrecy::SecretString;

use super::{ApiError, AppState};
use crate::downloads::{self, DownloadLinkError};
use crate::tenant_keys;

/// Where download links live; the rest of such a path is a token.
pub const DOWNLOADS_PATH: &str = "/api/v1/downloads/";

/// `path` with a download link's token replaced by `[redacted]`, for request logs.
pub fn redact_download_token(path: &str) -> Cow<'_, str> {
    match path.strip_prefix(DOWNLOADS_PATH) {
        Some(rest) if !rest.is_empty() => Cow::Owned(format!("{DOWNLOADS_PATH}[redacted]")),
        _ => Cow::Borrowed(path),
    }
}

impl From<DownloadLinkError> for ApiError {
    fn from(error: DownloadLinkError) -> ApiError {
        match error {
            DownloadLinkError::Catalog(error) => error.into(),
            DownloadLinkError::LinkRefused | DownloadLinkError::NoSuchBackup { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, error.to_string())
            }
            DownloadLinkError::Trashed(_) => ApiError::new(StatusCode::GONE, error.to_string()),
            DownloadLinkError::TenantFrozen(_) => ApiError::forbidden(error.to_string()),
            DownloadLinkError::InvalidRecipient(_) => ApiError::unprocessable(error.to_string()),
        }
    }
}

#[utoipa::path(get, path = "/api/v1/downloads/{token}", tag = "backups",
    params(("token" = String, Path, description = "The link's token (the credential)")),
    responses(
        (status = 200, description = "The backup, decrypted on the fly (custom format, or plain SQL gzip, optionally age-encrypted)", content_type = "application/octet-stream"),
        (status = 403, description = "The tenant is frozen", body = crate::api::openapi::ErrorSchema),
        (status = 404, description = "Unknown, used or expired link", body = crate::api::openapi::ErrorSchema),
        (status = 410, description = "The backup went to the trash", body = crate::api::openapi::ErrorSchema),
    ))]
pub async fn download(
    State(state): State<AppState>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Result<Response, ApiError> {
    let token = SecretString::from(token);
    // Checked before the link is used, so a link is not spent on a controller that
    // cannot serve it.
    let Some(identities) = state.options.identities.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "downloads are not available on this controller: it has no identity_file to decrypt backups with",
        ));
    };
    let redeemed = downloads::redeem_download_link(&state.catalog, &token, client.ip()).await?;
    let format = redeemed.request.format;
    let encrypted = redeemed.request.recipient.is_some();
    let pg_bin_dir = state
        .options
        .config
        .as_ref()
        .and_then(|config| config.pg_bin_dir.clone());
    let tools = PgTools::locate(pg_bin_dir.as_deref()).await;
    // The tenant's own identities, unwrapped in memory with the organisation's.
    let identities = tenant_keys::identities_for_tenant(&state.catalog, identities, &redeemed.tenant)
        .await
        .map_err(|error| {
            tracing::error!(tenant = %redeemed.tenant, backup = %redeemed.backup, %error, "the tenant's keys could not be unwrapped for a download");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the backup could not be prepared for download",
            )
        })?;
    let download = open_download(&state.options.regions, identities, &tools, redeemed.request)
        .await
        .map_err(|error| {
            tracing::error!(tenant = %redeemed.tenant, backup = %redeemed.backup, %error, "download failed before its first byte");
            match error {
                DownloadError::NoRegionServed { .. } => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "the backup could not be read from any region; ask for a new link later",
                ),
                _ => ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the backup could not be prepared for download",
                ),
            }
        })?;
    tracing::info!(tenant = %redeemed.tenant, backup = %redeemed.backup, region = %download.region, %format, encrypted, "download started");
    let content_type = match (encrypted, format) {
        (true, _) | (false, DownloadFormat::Custom) => "application/octet-stream",
        (false, DownloadFormat::PlainSqlGzip) => "application/gzip",
    };
    let mut response = Response::new(Body::from_stream(download.body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The name is a slug, a timestamp, a UUID and an extension: nothing to quote.
    if let Ok(disposition) =
        HeaderValue::from_str(&format!("attachment; filename=\"{}\"", download.file_name))
    {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    if let Some(length) = download.content_length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn download_paths_lose_their_token_and_others_stay() {
        assert_eq!(
            redact_download_token("/api/v1/downloads/lbd_0123abcd"),
            "/api/v1/downloads/[redacted]"
        );
        assert_eq!(
            redact_download_token("/api/v1/agent/claim"),
            "/api/v1/agent/claim"
        );
        assert_eq!(
            redact_download_token("/api/v1/downloads/"),
            "/api/v1/downloads/"
        );
    }
}

/// A link asked for.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// `custom` (pg_restore) or `plain-sql-gzip` (gunzip | psql); default `custom`.
    #[schema(value_type = Option<String>)]
    pub format: Option<DownloadFormat>,
    /// An age recipient (`age1…`): the file is encrypted to it, never in the clear outside
    /// the customer's machine.
    pub recipient: Option<String>,
}

/// A link, shown once: follow `url` within `expires_at`, once.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct IssuedLink {
    pub url: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub file_name: String,
}

/// Issue a link for `backup` of `tenant` on behalf of `user` (owner or staff): the one
/// path from an authenticated caller to a link, for the API and the panel.
pub(crate) async fn issue_link_for(
    state: &AppState,
    user: &super::UserPrincipal,
    tenant: &str,
    backup: &str,
    request: LinkRequest,
) -> Result<IssuedLink, ApiError> {
    let tenant = user.tenant(tenant, super::Access::Manage)?;
    let backup_id: lifeboat_core::ids::BackupId = backup
        .parse()
        .map_err(|_| ApiError::not_found(format!("tenant {tenant} has no backup {backup:?}")))?;
    let recipient = request
        .recipient
        .as_deref()
        .map(str::trim)
        .filter(|text| !text.is_empty());
    let issued = downloads::issue_download_link(
        &state.catalog,
        &user.actor(),
        &tenant,
        backup_id,
        request.format.unwrap_or(DownloadFormat::Custom),
        recipient,
    )
    .await?;
    use secrecy::ExposeSecret;
    Ok(IssuedLink {
        url: format!("{DOWNLOADS_PATH}{}", issued.token.expose_secret()),
        expires_at: issued.expires_at,
        file_name: issued.file_name,
    })
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/backups/{backup}/download-link", tag = "backups",
    params(("tenant" = String, Path, description = "The tenant's name"), ("backup" = String, Path, description = "The backup's id")),
    request_body = LinkRequest,
    responses(
        (status = 201, description = "A single-use link, valid a few minutes", body = IssuedLink),
        (status = 403, description = "A viewer, or the tenant is frozen", body = crate::api::openapi::ErrorSchema),
        (status = 404, description = "No such backup of this tenant (or not yours)", body = crate::api::openapi::ErrorSchema),
        (status = 410, description = "The backup is in the trash", body = crate::api::openapi::ErrorSchema),
        (status = 422, description = "An invalid recipient or format", body = crate::api::openapi::ErrorSchema),
    ))]
pub async fn issue_link(
    State(state): State<AppState>,
    principal: super::Principal,
    Path((tenant, backup)): Path<(String, String)>,
    super::body::JsonBody(request): super::body::JsonBody<LinkRequest>,
) -> Result<(StatusCode, axum::Json<IssuedLink>), ApiError> {
    let user = principal.require_user()?;
    let issued = issue_link_for(&state, &user, &tenant, &backup, request).await?;
    Ok((StatusCode::CREATED, axum::Json(issued)))
}
