//! Integration tests of the sandbox servers: each test starts real servers and drops them.
//!
//! One test binary (with a module per server) keeps link time down; nextest still runs every
//! test in its own process.

mod embedded_region;
mod postgres_cluster;
mod s3_round_trip;
mod seaweed_region;
