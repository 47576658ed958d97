//! lifeboat's shared vocabulary and data path.
//!
//! Everything that both writes and reads backups lives here, so that the agent, the
//! controller and the command line agree on names, formats and object layout:
//! - [`api`]: the controller's HTTP API between agents and the controller;
//! - [`ids`]: validated names and time-ordered backup ids, parsed once at the edge;
//! - [`backup_window`]: where default backup schedules fall in the day;
//! - [`config`]: the one typed configuration, from a TOML file and `LIFEBOAT_*` variables;
//! - [`keys`]: age recipients (public) and identities (private, restore side only);
//! - [`tenant_keys`]: per-tenant identities, wrapped to the organisation's recipients
//!   (crypto-shredding, break-glass with stock `age`);
//! - [`manifest`]: the versioned JSON that commits a backup, and the object keys;
//! - [`database_facts`]: owners, grants, extensions and large objects of a database, in
//!   the manifest, compared after a restore;
//! - [`region`]: one S3-compatible region, through aws-sdk-s3 (the storage seam: request
//!   policy, fault injection, the [`region::Regions`] set built once per process);
//! - [`postgres`]: pg_dump / pg_restore processes and the snapshot's row counts;
//! - [`backup`]: dump → zstd → age → every region (one PUT, or a multipart fan-out) →
//!   manifests;
//! - [`restore`]: region → SHA-256 + age → zstd → pg_restore, with region fallback;
//! - [`download`]: region → SHA-256 + age → zstd → a customer's file (custom format, or
//!   plain SQL through pg_restore and gzip; optionally age-encrypted to their key), streamed;
//! - [`copy`]: a backup's copy in one region: check it (scrub), copy it again (repair).

pub mod api;
pub mod backup;
pub mod backup_window;
pub mod config;
pub mod copy;
pub mod database_facts;
pub mod download;
pub mod ids;
pub mod keys;
pub mod logging;
pub mod manifest;
pub mod policy;
pub mod postgres;
pub mod progress;
pub mod recover;
pub mod region;
pub mod restore;
pub mod service_config;
pub(crate) mod stragglers;
pub mod tenant_keys;
