//! The one authentication extractor: who is calling.
//!
//! [`Principal`] is taken from the request's head (`FromRequestParts`), so a handler that
//! lists it before its body authenticates the caller before a byte of the body is read.
//! Callers are:
//! - agents, with `Authorization: Bearer lbt_…` (the catalog's tokens, or the embedded
//!   agent's in-memory one);
//! - people, with the panel's session cookie ([`SESSION_COOKIE`]); a request that changes
//!   something (any method but GET and HEAD) must also carry the session's CSRF token in
//!   [`CSRF_HEADER`], so a page on another site cannot act with the cookie;
//! - automation, with `Authorization: Bearer lbu_…` (a tenant's API token: an owner or a
//!   viewer of that one tenant, no CSRF since nothing sends it by itself).
//!
//! A handler says at its top which callers it accepts (`principal.require_agent()?`,
//! `principal.require_user()?` then `user.tenant(&name, Access::View)?`), so adding a role
//! never touches the handlers that exist. A customer naming another tenant gets the same 404
//! as for a tenant that does not exist, so names cannot be probed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum_extra::extract::cookie::CookieJar;
use chrono::Utc;
use lifeboat_core::ids::TenantName;

use super::{ApiError, AppState};
use crate::accounts::{Role, Session};
use crate::agents::{self, ClusterScope};
use crate::audit::Actor;

/// The session cookie: HttpOnly, Secure, SameSite=Strict, host-only.
pub const SESSION_COOKIE: &str = "lifeboat_session";
/// The header carrying the session's CSRF token on every change.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An agent running jobs.
    Agent(AgentPrincipal),
    /// A person (panel session) or a tenant's automation (API token).
    User(UserPrincipal),
}

/// An agent, as its token describes it.
#[derive(Debug, Clone)]
pub struct AgentPrincipal {
    /// The token's name: a claimed job's `lease_owner`.
    pub name: String,
    /// The clusters whose jobs it may claim.
    pub clusters: ClusterScope,
    /// Whether it may be given jobs that need the age identity (drills).
    pub can_decrypt: bool,
    /// The catalog token's row, checked again when a claim hands out a job; `None` for
    /// the embedded agent's in-memory token, which lives as long as the process.
    pub token_id: Option<i64>,
}

/// A user of the panel or the API.
#[derive(Debug, Clone)]
pub struct UserPrincipal {
    /// The login, or `token:<name>` for an API token.
    pub login: String,
    pub role: Role,
    /// The tenant of an owner or viewer; `None` for staff.
    pub tenant: Option<TenantName>,
    pub credential: Credential,
    /// Where the request came from (the TCP peer; forwarded headers are not trusted).
    pub address: IpAddr,
}

/// How a user proved who they are.
#[derive(Debug, Clone)]
pub enum Credential {
    Session { session_id: i64, user_id: i64 },
    ApiToken { token_id: i64 },
}

/// What a caller wants to do with a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// See its backups, drills, restores.
    View,
    /// Change something (manual backup, download): owners and staff.
    Manage,
}

impl Principal {
    /// The agent behind this request, or 403 for any other caller.
    pub fn require_agent(self) -> Result<AgentPrincipal, ApiError> {
        match self {
            Principal::Agent(agent) => Ok(agent),
            Principal::User(_) => Err(ApiError::forbidden("this route is for agents")),
        }
    }

    /// The user behind this request, or 403 for an agent.
    pub fn require_user(self) -> Result<UserPrincipal, ApiError> {
        match self {
            Principal::User(user) => Ok(user),
            Principal::Agent(_) => Err(ApiError::forbidden("this route is for users")),
        }
    }
}

impl UserPrincipal {
    /// The user as the audit log names them.
    pub fn actor(&self) -> Actor {
        Actor {
            name: self.login.clone(),
            role: self.role.actor_role(),
            address: Some(self.address),
        }
    }

    /// Staff (helpdesk or admin), or 403.
    pub fn require_staff(&self) -> Result<(), ApiError> {
        if self.role.is_staff() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this needs a helpdesk or admin account",
            ))
        }
    }

    /// An admin, or 403.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(ApiError::forbidden("this needs an admin account"))
        }
    }

    /// A person signed in to the panel (not an API token), or 403: what needs a fresh
    /// second factor cannot be done by automation.
    pub fn require_session(&self) -> Result<(), ApiError> {
        match self.credential {
            Credential::Session { .. } => Ok(()),
            Credential::ApiToken { .. } => Err(ApiError::forbidden(
                "this needs a person signed in to the panel, not an API token",
            )),
        }
    }

    /// The tenant `name` if this user may have `access` to it. A customer naming any tenant
    /// but their own, and anyone naming a malformed one, gets the 404 of a tenant that does
    /// not exist; a viewer asking to change something gets 403. Whether the tenant exists
    /// is for the operation to say (staff see every tenant).
    pub fn tenant(&self, name: &str, access: Access) -> Result<TenantName, ApiError> {
        let unknown = || ApiError::not_found(format!("tenant {name:?} does not exist"));
        let tenant = TenantName::parse(name).map_err(|_| unknown())?;
        if self.role.is_staff() {
            return Ok(tenant);
        }
        if self.tenant.as_ref() != Some(&tenant) {
            return Err(unknown());
        }
        if access == Access::Manage && self.role != Role::Owner {
            return Err(ApiError::forbidden("a viewer can look, not change"));
        }
        Ok(tenant)
    }
}

impl UserPrincipal {
    /// [`UserPrincipal::tenant`], then the tenant must exist (404 otherwise): the one pair
    /// of checks every handler that names a tenant starts with.
    ///
    /// A customer's own tenant is not looked up again: their session or token was just
    /// found through a user or token row, which cannot outlive its tenant (a foreign key
    /// with `ON DELETE CASCADE`, and both lookups join the tenant row for its freeze).
    /// Staff name any tenant, so theirs is looked up.
    pub async fn existing_tenant(
        &self,
        state: &AppState,
        name: &str,
        access: Access,
    ) -> Result<TenantName, ApiError> {
        let tenant = self.tenant(name, access)?;
        if self.tenant.as_ref() != Some(&tenant) {
            crate::tenants::show_tenant(&state.catalog, &tenant).await?;
        }
        Ok(tenant)
    }
}

/// The TCP peer of a request.
pub fn client_address(parts: &Parts) -> IpAddr {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |ConnectInfo(peer)| {
            peer.ip()
        })
}

fn changes_something(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let address = client_address(parts);
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|value| value.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    ApiError::unauthorized("the Authorization header must be Bearer <token>")
                })?;
            if token.starts_with(crate::accounts::api_tokens::API_TOKEN_PREFIX) {
                return api_token_principal(state, token, address).await;
            }
            return agent_principal(state, token).await;
        }
        let (user, session) = session_principal(parts, state).await?;
        if changes_something(&parts.method) {
            let presented = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            if !session.csrf_matches(presented) {
                return Err(ApiError::forbidden(format!(
                    "missing or wrong {CSRF_HEADER} header: send the CSRF token given at sign-in"
                ))
                .with_code("csrf"));
            }
        }
        Ok(Principal::User(user))
    }
}

/// The user whose session cookie this request carries, and the session (whose CSRF token
/// the caller must check on a change: the API in a header, the panel in the form).
pub async fn session_principal(
    parts: &Parts,
    state: &AppState,
) -> Result<(UserPrincipal, Session), ApiError> {
    let jar = CookieJar::from_headers(&parts.headers);
    let Some(cookie) = jar.get(SESSION_COOKIE) else {
        return Err(ApiError::unauthorized(
            "sign in first (no session cookie and no Authorization: Bearer token)",
        ));
    };
    let portal = state.portal()?;
    let session = portal
        .accounts
        .session_from_token(cookie.value(), Utc::now())
        .await?
        .ok_or_else(|| {
            ApiError::unauthorized("the session has ended; sign in again")
                .with_code("session_ended")
        })?;
    let user = UserPrincipal {
        login: session.login.clone(),
        role: session.role,
        tenant: session.tenant.clone(),
        credential: Credential::Session {
            session_id: session.id,
            user_id: session.user_id,
        },
        address: client_address(parts),
    };
    Ok((user, session))
}

async fn api_token_principal(
    state: &AppState,
    token: &str,
    address: IpAddr,
) -> Result<Principal, ApiError> {
    let portal = state.portal()?;
    let found = portal
        .accounts
        .api_token_principal(token, Utc::now())
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown, revoked or expired API token"))?;
    Ok(Principal::User(UserPrincipal {
        login: format!("token:{}", found.name),
        role: found.role,
        tenant: Some(found.tenant),
        credential: Credential::ApiToken {
            token_id: found.token_id,
        },
        address,
    }))
}

async fn agent_principal(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    // Compared as hashes, so the comparison's timing says nothing about the token.
    if let Some(embedded) = &state.embedded
        && embedded.token_sha256 == agents::token_hash(token)
    {
        return Ok(Principal::Agent(AgentPrincipal {
            name: agents::EMBEDDED_AGENT_NAME.to_owned(),
            clusters: embedded.scope.clusters.clone(),
            can_decrypt: embedded.scope.can_decrypt,
            token_id: None,
        }));
    }
    let agent = agents::authenticate(&state.catalog, token)
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or revoked agent token"))?;
    Ok(Principal::Agent(AgentPrincipal {
        name: agent.name,
        clusters: agent.scope.clusters,
        can_decrypt: agent.scope.can_decrypt,
        token_id: Some(agent.id),
    }))
}
