//! The user-facing routes of `/api/v1`: sessions, tenants, backups, drills, audit,
//! restores, freeze. Each handler authenticates with [`super::Principal`], checks the
//! caller's access to the tenant it names, calls one library operation and returns its
//! result as JSON.

pub mod asks;
pub mod restores;
pub mod session;
pub mod tenants;
pub mod trash;
pub mod users;
