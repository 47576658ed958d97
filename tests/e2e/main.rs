//! End-to-end tests of the data path against real servers: PostgreSQL clusters started
//! from the local install and S3-compatible regions, both SeaweedFS (`weed mini`, one
//! process per region so a region can be killed) and the embedded s3s-fs server.
//!
//! Each test starts its own servers through [`harness::TestEnv`]; dropping it stops them.

mod accounts;
mod api_trust;
mod api_v1;
mod audit;
mod bad_input;
mod break_glass;
mod catalog;
mod controller;
mod demo;
mod downloads;
mod evidence;
mod faults;
mod harness;
mod keys;
mod listing;
mod metrics;
mod object_lock;
mod panel;
mod playbooks;
mod postgres_tls;
mod provisioning;
mod rebuild;
mod region_errors;
mod restores;
mod retention;
mod round_trip;
mod scrub;
mod staged_restore;
mod stall_proxy;
mod storage_faults;
mod tenant_keys;
mod tls;
mod trust;
