//! The one authentication extractor: who is calling.
//!
//! [`Principal`] is taken from the request's head (`FromRequestParts`), so a handler that
//! lists it before its body authenticates the caller before a byte of the body is read.
//! Today the callers are agents, with a bearer token (`Authorization: Bearer lbt_…`) from
//! the catalog or the embedded agent's in-memory one. Customers, helpdesk staff and admins
//! join as new variants; a handler says at its top which it accepts
//! (`principal.require_agent()?`), so adding a role never touches the handlers that exist:
//! the others are refused with 403.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::agents::{self, ClusterScope};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub enum Principal {
    /// An agent running jobs.
    Agent(AgentPrincipal),
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

impl Principal {
    /// The agent behind this request, or 403 for any other caller (once customers and
    /// staff exist; agents are the only principal today).
    pub fn require_agent(self) -> Result<AgentPrincipal, ApiError> {
        match self {
            Principal::Agent(agent) => Ok(agent),
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <agent token>"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError::unauthorized("the Authorization header must be Bearer <agent token>")
            })?;
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
}
