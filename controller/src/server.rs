//! The controller process: [`serve`] runs the HTTP API ([`crate::api`]) and the background
//! loops ([`crate::background`]) until cancelled, then stops both.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_core::config::Config;
use lifeboat_core::keys::Identities;
use lifeboat_core::region::Regions;
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::accounts::Accounts;
use crate::agents::{self, AgentScope};
use crate::api::{AppState, EmbeddedCredential, Portal, router};
use crate::background;
use crate::catalog::Catalog;
use crate::maintenance::MaintenanceOptions;
use crate::queue::QueuePolicy;
use crate::schedule::BackupWindow;
use crate::tls::ApiListener;
use axum::serve::ListenerExt as _;

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    pub policy: QueuePolicy,
    /// Run the scheduler (off for `lifeboat nightly`, which enqueues its own work).
    pub schedule: bool,
    pub window: BackupWindow,
    pub tick_interval: Duration,
    /// The configured regions, shared with the rest of the process: reports naming others
    /// are refused, and the copies a backup report claims are asked for (HEAD) in them.
    pub regions: Regions,
    /// Daily scrub, retention, purge and repairs (`None` for `lifeboat nightly`, which
    /// runs them itself).
    pub maintenance: Option<MaintenanceOptions>,
    /// The bearer token `/metrics` asks for; `None`: it answers loopback clients only.
    pub metrics_token: Option<SecretString>,
    /// The configuration users act under (tenants' clusters, panel settings); `None`
    /// serves agents only (the user routes answer 503).
    pub config: Option<Arc<Config>>,
    /// The org's age identities (the config's `identity_file`), to decrypt downloads;
    /// `None`: downloads are refused (503).
    pub identities: Option<Arc<Identities>>,
}

/// A running controller's handles.
#[derive(Debug, Clone)]
pub struct Controller {
    pub work_ready: Arc<Notify>,
}

/// The token of an agent running in the same process, held only in memory, and what it
/// may do: the agent's own configuration decides (its clusters, and whether it holds the
/// identity), since nobody else can hold this token.
#[derive(Debug)]
pub struct EmbeddedAgent {
    pub token: SecretString,
    pub scope: AgentScope,
}

/// Run the controller on `listener` until `cancel`: the API, the lease reaper and, if
/// enabled, the scheduler and maintenance. `embedded_agent`'s token is accepted besides
/// the catalog's tokens, under the name [`agents::EMBEDDED_AGENT_NAME`].
pub async fn serve(
    catalog: Catalog,
    listener: impl Into<ApiListener>,
    options: ControllerOptions,
    embedded_agent: Option<EmbeddedAgent>,
    controller: Controller,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let options = Arc::new(options);
    let embedded = embedded_agent.map(|agent| EmbeddedCredential {
        token_sha256: agents::token_hash(agent.token.expose_secret()),
        scope: agent.scope,
    });
    let portal = match &options.config {
        Some(config) => Some(Portal {
            accounts: Accounts::new(catalog.clone(), config.panel)
                .map_err(std::io::Error::other)?,
            config: config.clone(),
        }),
        None => None,
    };
    let state = AppState::new(
        catalog.clone(),
        options.clone(),
        controller.work_ready.clone(),
        embedded,
        portal,
    );
    let maintenance = options.maintenance.clone().map(|maintenance| {
        tokio::spawn(background::maintenance_loop(
            catalog.clone(),
            maintenance,
            options.policy.max_attempts,
            controller.work_ready.clone(),
            cancel.clone(),
        ))
    });
    let background = tokio::spawn(background::background_loops(
        catalog,
        options,
        controller.work_ready.clone(),
        cancel.clone(),
    ));
    // `tap_io` gives any listener axum's `ConnectInfo<SocketAddr>`: handlers see the
    // client's address (the metrics rule, the audit log, login throttling).
    let listener = listener.into().tap_io(|_| {});
    let served = axum::serve(
        listener,
        router::router(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(cancel.clone().cancelled_owned())
    .await;
    cancel.cancel();
    let _ = background.await;
    if let Some(maintenance) = maintenance {
        let _ = maintenance.await;
    }
    served
}
