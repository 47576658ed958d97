//! The controller: catalog, scheduler, job queue, retention, scrub and repair, HTTP API.
//!
//! Built up issue by issue. Today: the catalog in PostgreSQL ([`catalog`]: pool and
//! embedded migrations), tenants in it ([`tenants`]) and their schedules ([`schedule`]).
//! The controller depends on core only; agents will reach it over HTTP.

pub mod agents;
pub mod backups;
pub mod catalog;
pub mod maintenance;
pub mod metrics;
pub mod nightly;
pub mod queue;
pub mod rebuild;
pub mod reports;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod scrub;
pub mod server;
pub mod tenants;
