//! The controller's HTTP API, laid out by resource and verb.
//!
//! - [`router`] lists every route and its body limit;
//! - [`auth`] is the one authentication extractor: every handler that needs a caller takes
//!   a [`Principal`] and says at its top which kind it accepts;
//! - [`error`] is [`ApiError`], which maps domain errors to statuses and logs a 5xx once;
//! - [`openapi`] is the OpenAPI document, generated from the same registrations;
//! - handlers: [`health`], [`metrics`], `agent/claim.rs`, `jobs/heartbeat.rs`,
//!   `jobs/report.rs` for agents; [`v1`] for people and their automation; [`downloads`]
//!   (a download link redeemed: the link is the credential).
//!
//! Request and response bodies are `lifeboat_core::api`'s, shared with the agent.

mod agent;
pub mod auth;
mod body;
pub mod downloads;
pub mod error;
mod health;
mod jobs;
mod metrics;
pub mod openapi;
pub mod router;
pub mod v1;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub use auth::{Access, AgentPrincipal, Principal, UserPrincipal};
pub use error::ApiError;

use lifeboat_core::config::Config;

use crate::accounts::Accounts;
use crate::agents::AgentScope;
use crate::catalog::Catalog;
use crate::server::ControllerOptions;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub(crate) catalog: Catalog,
    pub(crate) options: Arc<ControllerOptions>,
    /// Woken when work may have become claimable.
    pub(crate) work_ready: Arc<Notify>,
    /// A token accepted besides the catalog's: the embedded agent's, held only in memory.
    pub(crate) embedded: Option<Arc<EmbeddedCredential>>,
    /// What the user-facing API works with; `None` serves agents only.
    pub(crate) portal: Option<Arc<Portal>>,
    /// Warnings already logged, so that one a long-polling agent triggers at every claim
    /// is logged once per controller process.
    warned: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AppState").finish_non_exhaustive()
    }
}

/// What the user-facing routes (panel sessions, API tokens) work with.
#[derive(Debug)]
pub struct Portal {
    pub accounts: Accounts,
    /// Tenants' clusters (for restores) and limits.
    pub config: Arc<Config>,
}

/// The embedded agent's token, as the API checks it.
pub(crate) struct EmbeddedCredential {
    /// Compared as hashes, so the comparison's timing says nothing about the token.
    pub(crate) token_sha256: Vec<u8>,
    pub(crate) scope: AgentScope,
}

impl AppState {
    pub(crate) fn new(
        catalog: Catalog,
        options: Arc<ControllerOptions>,
        work_ready: Arc<Notify>,
        embedded: Option<EmbeddedCredential>,
        portal: Option<Portal>,
    ) -> AppState {
        AppState {
            catalog,
            options,
            work_ready,
            embedded: embedded.map(Arc::new),
            portal: portal.map(Arc::new),
            warned: Arc::default(),
        }
    }

    /// The user-facing API's parts, or 503 when this controller serves agents only.
    pub(crate) fn portal(&self) -> Result<&Portal, ApiError> {
        self.portal.as_deref().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "this controller serves agents only: users and the panel are not enabled",
            )
        })
    }

    /// Whether `key` is new, i.e. its warning should be logged now.
    pub(crate) fn first_warning(&self, key: String) -> bool {
        match self.warned.lock() {
            Ok(mut warned) => warned.insert(key),
            // A panic elsewhere while holding the set: warn again rather than never.
            Err(_) => true,
        }
    }
}
