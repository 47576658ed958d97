//! The controller: catalog, scheduler, job queue, agents' API, retention, scrub and repair.
//!
//! - [`accounts`]: users, passwords, TOTP, login throttling, sessions, API tokens and
//!   tenant freezes — the one home the CLI, the API and the panel call;
//!   [`secret_tokens`] makes and hashes every random bearer secret;
//! - [`catalog`]: the PostgreSQL pool and embedded migrations; [`tenants`], [`backups`]
//!   and [`agents`] (tokens) are its tables as the rest of the code sees them;
//! - [`schedule`] and [`scheduler`]: when each tenant's backup is due, enqueued once per slot;
//! - [`queue`]: claims with `FOR UPDATE SKIP LOCKED`, leases, limits, retries;
//! - [`server`] runs the controller: the HTTP API ([`api`]: `api/router.rs` lists every
//!   route, handlers by resource and verb, one authentication extractor) and the
//!   [`background`] loops (scheduler, lease reaper, maintenance); [`reports`] applies what
//!   agents report, [`metrics`] computes `/metrics`;
//! - [`nightly`], [`maintenance`], [`retention`], [`scrub`], [`rebuild`]: the night's work,
//!   keeping what the policy keeps, checking and repairing copies, and rebuilding the
//!   catalog from a region's manifests;
//! - [`audit`]: the audit log, a keyed hash chain: append, verify, export;
//! - [`drills`]: restores proven in scratch databases, which mark backups verified;
//! - [`restores`]: helpdesk restores onto the live database, rollbacks and copies, and the
//!   databases they keep for a while;
//! - [`downloads`]: single-use download links for a backup, issued and redeemed (the bytes
//!   come from `lifeboat_core::download`);
//! - [`tenant_keys`]: per-tenant age keys, wrapped to the organisation's recipients:
//!   generation, the `identity.age` object in every region, what jobs carry, rotation and
//!   crypto-shredding.
//!
//! The controller depends on core only; agents reach it over HTTP (`lifeboat_core::api`).

pub mod accounts;
pub mod agents;
pub mod api;
pub mod audit;
pub mod background;
pub mod backups;
pub mod catalog;
pub mod dedup_key;
pub mod downloads;
pub mod drills;
pub mod evidence;
pub mod job_summary;
pub mod keys;
pub mod maintenance;
pub mod manual_backups;
pub mod metrics;
pub mod nightly;
pub mod panel;
pub mod queue;
pub mod rebuild;
pub mod reports;
pub mod restores;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod scrub;
pub mod secret_tokens;
pub mod server;
pub mod tenant_keys;
pub mod tenants;
pub mod tls;
