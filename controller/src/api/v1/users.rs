//! Users and API tokens: a tenant's owner manages its users and tokens, an admin manages
//! everyone; each person enrols their own second factor and checks a password's strength
//! as they type it.
//!
//! Every change is audited by [`crate::accounts`] with the caller as actor. A user or token
//! named under another tenant's path answers as one that does not exist.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::{ApiTokenInfo, NewUser, Role, User, password_strength};
use crate::api::body::JsonBody;
use crate::api::openapi::ErrorSchema;
use crate::api::{Access, ApiError, AppState, Principal, UserPrincipal};

/// A user, without any secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub login: String,
    pub role: String,
    pub tenant: Option<String>,
    pub disabled: bool,
    /// `none`, `pending` or `active`.
    pub totp: String,
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        UserView {
            login: user.login,
            role: user.role.to_string(),
            tenant: user.tenant.map(|tenant| tenant.to_string()),
            disabled: user.disabled,
            totp: serde_json::to_value(user.totp)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned))
                .unwrap_or_default(),
            created_at: user.created_at,
        }
    }
}

/// A user to add.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserRequest {
    pub login: String,
    /// Under a tenant: `owner` or `viewer`. At /api/v1/users (admins): any role.
    pub role: String,
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// At /api/v1/users only: the tenant of an owner or viewer.
    pub tenant: Option<String>,
}

impl std::fmt::Debug for NewUserRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("NewUserRequest")
            .field("login", &self.login)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Owners and admins manage a tenant's users; signed in, not with a token (a stolen token
/// must not be able to make itself a permanent account).
pub(crate) fn manager_of(
    user: &UserPrincipal,
    tenant: &str,
) -> Result<lifeboat_core::ids::TenantName, ApiError> {
    let tenant = user.tenant(tenant, Access::Manage)?;
    if user.role == Role::Helpdesk {
        return Err(ApiError::forbidden("helpdesk staff do not manage users"));
    }
    user.require_session()?;
    Ok(tenant)
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/users", tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The tenant's users (owners and staff)", body = Vec<UserView>),
        (status = 403, description = "A viewer", body = ErrorSchema),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
    ))]
pub async fn tenant_users(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let user = principal.require_user()?;
    let users = users_of(&state, &user, &tenant).await?;
    Ok(Json(users.into_iter().map(Into::into).collect()))
}

/// `tenant`'s users, for its owners and staff (the API and the panel).
pub(crate) async fn users_of(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
) -> Result<Vec<User>, ApiError> {
    let tenant = user.existing_tenant(state, tenant, Access::Manage).await?;
    Ok(state.portal()?.accounts.list_users(Some(&tenant)).await?)
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/users", tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Added", body = UserView),
        (status = 403, description = "Not the tenant's owner or an admin, or an API token", body = ErrorSchema),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
        (status = 409, description = "The login is taken", body = ErrorSchema),
        (status = 422, description = "A bad login or role, or a weak password (with the reason)", body = ErrorSchema),
    ))]
pub async fn add_tenant_user(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    JsonBody(request): JsonBody<NewUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user = principal.require_user()?;
    if request.tenant.is_some() {
        return Err(ApiError::unprocessable(
            "a tenant's users are owners or viewers of that tenant: no tenant field here",
        ));
    }
    let added = add_user_of(
        &state,
        &user,
        &tenant,
        request.login,
        &request.role,
        request.password,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(added.into())))
}

/// Add an owner or viewer of `tenant`, by its owner or an admin (the API and the panel).
pub(crate) async fn add_user_of(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
    login: String,
    role: &str,
    password: SecretString,
) -> Result<User, ApiError> {
    let tenant = manager_of(user, tenant)?;
    crate::tenants::show_tenant(&state.catalog, &tenant).await?;
    let role = Role::parse(role)?;
    if role.is_staff() {
        return Err(ApiError::unprocessable(
            "a tenant's users are owners or viewers of that tenant: role owner or viewer",
        ));
    }
    Ok(state
        .portal()?
        .accounts
        .add_user(
            NewUser {
                login,
                role,
                tenant: Some(tenant),
                password,
            },
            &user.actor(),
        )
        .await?)
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    request_body = NewUserRequest,
    responses(
        (status = 201, description = "Added (staff have no tenant; owners and viewers name one)", body = UserView),
        (status = 403, description = "Not an admin", body = ErrorSchema),
        (status = 409, description = "The login is taken", body = ErrorSchema),
        (status = 422, description = "A bad login, role or tenant, or a weak password", body = ErrorSchema),
    ))]
pub async fn add_user(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(request): JsonBody<NewUserRequest>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let user = principal.require_user()?;
    user.require_admin()?;
    user.require_session()?;
    let tenant = match request.tenant.as_deref() {
        None => None,
        Some(name) => Some(user.tenant(name, Access::Manage)?),
    };
    let added = state
        .portal()?
        .accounts
        .add_user(
            NewUser {
                login: request.login,
                role: Role::parse(&request.role)?,
                tenant,
                password: request.password,
            },
            &user.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(added.into())))
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    responses(
        (status = 200, description = "Every user", body = Vec<UserView>),
        (status = 403, description = "Not an admin", body = ErrorSchema),
    ))]
pub async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let user = principal.require_user()?;
    user.require_admin()?;
    let users = state.portal()?.accounts.list_users(None).await?;
    Ok(Json(users.into_iter().map(Into::into).collect()))
}

/// Enable or disable a user of `tenant`, by its owner or an admin (the API and the panel).
pub(crate) async fn set_disabled(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
    login: &str,
    disabled: bool,
) -> Result<User, ApiError> {
    let tenant = manager_of(user, tenant)?;
    let accounts = &state.portal()?.accounts;
    let target = accounts
        .user(login)
        .await
        .ok()
        .filter(|target| target.tenant.as_ref() == Some(&tenant))
        .ok_or_else(|| ApiError::not_found(format!("tenant {tenant} has no user {login:?}")))?;
    if target.login == user.login && disabled {
        return Err(ApiError::unprocessable(
            "you cannot disable yourself; ask another owner or an admin",
        ));
    }
    Ok(accounts
        .set_user_disabled(&target.login, disabled, &user.actor())
        .await?)
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/users/{login}/disable", tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name"), ("login" = String, Path, description = "The user's login")),
    responses(
        (status = 200, description = "Disabled: their sessions end and they cannot sign in", body = UserView),
        (status = 404, description = "No such user of this tenant", body = ErrorSchema),
    ))]
pub async fn disable_user(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant, login)): Path<(String, String)>,
) -> Result<Json<UserView>, ApiError> {
    let user = principal.require_user()?;
    Ok(Json(
        set_disabled(&state, &user, &tenant, &login, true)
            .await?
            .into(),
    ))
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/users/{login}/enable", tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name"), ("login" = String, Path, description = "The user's login")),
    responses(
        (status = 200, description = "Enabled", body = UserView),
        (status = 404, description = "No such user of this tenant", body = ErrorSchema),
    ))]
pub async fn enable_user(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant, login)): Path<(String, String)>,
) -> Result<Json<UserView>, ApiError> {
    let user = principal.require_user()?;
    Ok(Json(
        set_disabled(&state, &user, &tenant, &login, false)
            .await?
            .into(),
    ))
}

/// An API token as listed (never its secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    pub name: String,
    pub role: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<ApiTokenInfo> for TokenView {
    fn from(info: ApiTokenInfo) -> Self {
        TokenView {
            name: info.name,
            role: info.role.to_string(),
            created_by: info.created_by,
            created_at: info.created_at,
            expires_at: info.expires_at,
            revoked_at: info.revoked_at,
            last_used_at: info.last_used_at,
        }
    }
}

/// A token to issue.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenRequest {
    pub name: String,
    /// `owner` or `viewer`.
    pub role: String,
    /// Lifetime in days, 1 to 366 (default 90).
    pub days: Option<u32>,
}

/// A token just issued: its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenView,
}

#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/tokens", tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name")),
    responses(
        (status = 200, description = "The tenant's API tokens, revoked and expired ones included", body = Vec<TokenView>),
        (status = 403, description = "A viewer", body = ErrorSchema),
        (status = 404, description = "No such tenant (or not yours)", body = ErrorSchema),
    ))]
pub async fn list_tokens(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let user = principal.require_user()?;
    let tokens = tokens_of(&state, &user, &tenant).await?;
    Ok(Json(tokens.into_iter().map(Into::into).collect()))
}

/// `tenant`'s API tokens, for its owners and staff (the API and the panel).
pub(crate) async fn tokens_of(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
) -> Result<Vec<ApiTokenInfo>, ApiError> {
    let tenant = user.existing_tenant(state, tenant, Access::Manage).await?;
    Ok(state.portal()?.accounts.list_api_tokens(&tenant).await?)
}

#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/tokens", tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name")),
    request_body = NewTokenRequest,
    responses(
        (status = 201, description = "Issued; the token is shown this once", body = IssuedToken),
        (status = 403, description = "Not the tenant's owner or an admin, or an API token", body = ErrorSchema),
        (status = 409, description = "An active token has that name", body = ErrorSchema),
        (status = 422, description = "A bad name, role or lifetime", body = ErrorSchema),
    ))]
pub async fn issue_token(
    State(state): State<AppState>,
    principal: Principal,
    Path(tenant): Path<String>,
    JsonBody(request): JsonBody<NewTokenRequest>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let user = principal.require_user()?;
    let issued = issue_token_of(&state, &user, &tenant, &request).await?;
    Ok((
        StatusCode::CREATED,
        Json(IssuedToken {
            token: issued.token.expose_secret().to_owned(),
            info: issued.info.into(),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/tokens/{name}", tag = "users",
    params(("tenant" = String, Path, description = "The tenant's name"), ("name" = String, Path, description = "The token's name")),
    responses(
        (status = 204, description = "Revoked: refused from its next use"),
        (status = 404, description = "No active token of that name", body = ErrorSchema),
    ))]
pub async fn revoke_token(
    State(state): State<AppState>,
    principal: Principal,
    Path((tenant, name)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let user = principal.require_user()?;
    revoke_token_of(&state, &user, &tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issue an API token of `tenant`, by its owner or an admin (the API and the panel).
pub(crate) async fn issue_token_of(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
    request: &NewTokenRequest,
) -> Result<crate::accounts::IssuedApiToken, ApiError> {
    let tenant = manager_of(user, tenant)?;
    crate::tenants::show_tenant(&state.catalog, &tenant).await?;
    let days = request.days.unwrap_or(90);
    Ok(state
        .portal()?
        .accounts
        .issue_api_token(
            &tenant,
            Role::parse(&request.role)?,
            &request.name,
            std::time::Duration::from_secs(u64::from(days) * 24 * 3600),
            Utc::now(),
            &user.actor(),
        )
        .await?)
}

/// Revoke `tenant`'s active token `name`: its owner, an admin, or a token (that only takes
/// power away). The API and the panel.
pub(crate) async fn revoke_token_of(
    state: &AppState,
    user: &UserPrincipal,
    tenant: &str,
    name: &str,
) -> Result<(), ApiError> {
    let tenant = user.tenant(tenant, Access::Manage)?;
    if user.role == Role::Helpdesk {
        return Err(ApiError::forbidden("helpdesk staff do not manage tokens"));
    }
    Ok(state
        .portal()?
        .accounts
        .revoke_api_token(&tenant, name, &user.actor())
        .await?)
}

/// A TOTP enrolment begun: the secret, shown this once, three ways.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolmentView {
    pub secret: String,
    pub otpauth_url: String,
    /// A QR code of the URL, as SVG.
    pub qr_svg: String,
}

#[utoipa::path(post, path = "/api/v1/session/totp", tag = "session",
    responses(
        (status = 200, description = "A new secret, pending until confirmed with a code", body = TotpEnrolmentView),
        (status = 403, description = "An API token", body = ErrorSchema),
    ))]
pub async fn begin_totp(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<TotpEnrolmentView>, ApiError> {
    let user = principal.require_user()?;
    user.require_session()?;
    let enrolment = state
        .portal()?
        .accounts
        .begin_totp_enrolment(&user.login, &user.actor())
        .await?;
    Ok(Json(TotpEnrolmentView {
        secret: enrolment.secret_base32.expose_secret().to_owned(),
        otpauth_url: enrolment.otpauth_url.expose_secret().to_owned(),
        qr_svg: enrolment.qr_svg.expose_secret().to_owned(),
    }))
}

/// A code from the newly enrolled authenticator.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirmation {
    #[schema(value_type = String)]
    pub code: SecretString,
}

impl std::fmt::Debug for TotpConfirmation {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TotpConfirmation")
            .finish_non_exhaustive()
    }
}

#[utoipa::path(post, path = "/api/v1/session/totp/confirm", tag = "session",
    request_body = TotpConfirmation,
    responses(
        (status = 200, description = "Active; the recovery codes, shown this once", body = Vec<String>),
        (status = 422, description = "Nothing pending, or a wrong code", body = ErrorSchema),
    ))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    principal: Principal,
    JsonBody(request): JsonBody<TotpConfirmation>,
) -> Result<Json<Vec<String>>, ApiError> {
    let user = principal.require_user()?;
    user.require_session()?;
    let codes = state
        .portal()?
        .accounts
        .confirm_totp_enrolment(&user.login, &request.code, Utc::now(), &user.actor())
        .await?;
    Ok(Json(
        codes
            .0
            .iter()
            .map(|code| code.expose_secret().to_owned())
            .collect(),
    ))
}

/// A password being typed.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StrengthRequest {
    #[schema(value_type = String, format = Password)]
    pub password: SecretString,
    /// The login it is for (a password containing it is weaker).
    pub login: Option<String>,
}

impl std::fmt::Debug for StrengthRequest {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("StrengthRequest")
            .finish_non_exhaustive()
    }
}

/// How strong a password is, and whether the policy accepts it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StrengthView {
    /// 0 (guessed at once) to 4 (very hard).
    pub score: u8,
    pub acceptable: bool,
    pub feedback: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/password-strength", tag = "session",
    request_body = StrengthRequest,
    responses((status = 200, description = "The strength, as the policy judges it", body = StrengthView)))]
pub async fn strength(
    principal: Principal,
    JsonBody(request): JsonBody<StrengthRequest>,
) -> Result<Json<StrengthView>, ApiError> {
    let user = principal.require_user()?;
    let login = request.login.unwrap_or(user.login);
    let password = request.password.expose_secret();
    let measured = password_strength(password, &[&login]);
    let policy = crate::accounts::passwords::check_password_policy(&request.password, &[&login]);
    Ok(Json(StrengthView {
        score: measured.score,
        acceptable: policy.is_ok(),
        feedback: policy
            .err()
            .map(|refusal| refusal.to_string())
            .or(measured.feedback),
    }))
}
