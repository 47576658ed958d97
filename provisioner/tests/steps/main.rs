//! The provisioner's steps against a real PostgreSQL cluster (one per test).

mod common;
mod facts;
mod isolation;
mod swap;
