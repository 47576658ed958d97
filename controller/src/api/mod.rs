//! The controller's HTTP API, laid out by resource and verb.
//!
//! - [`router`] lists every route and its body limit;
//! - [`auth`] is the one authentication extractor: every handler that needs a caller takes
//!   a [`Principal`] and says at its top which kind it accepts;
//! - [`error`] is [`ApiError`], which maps domain errors to statuses and logs a 5xx once;
//! - handlers: [`health`], [`metrics`], `agent/claim.rs`, `jobs/heartbeat.rs`,
//!   `jobs/report.rs`.
//!
//! Request and response bodies are `lifeboat_core::api`'s, shared with the agent.

mod agent;
pub mod auth;
mod body;
pub mod error;
mod health;
mod jobs;
mod metrics;
pub mod router;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub use auth::{AgentPrincipal, Principal};
pub use error::ApiError;

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
    /// Warnings already logged, so that one a long-polling agent triggers at every claim
    /// is logged once per controller process.
    warned: Arc<Mutex<HashSet<String>>>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("AppState").finish_non_exhaustive()
    }
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
    ) -> AppState {
        AppState {
            catalog,
            options,
            work_ready,
            embedded: embedded.map(Arc::new),
            warned: Arc::default(),
        }
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
