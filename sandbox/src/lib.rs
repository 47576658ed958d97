//! Throwaway servers on loopback for `lifeboat demo` and the integration tests.
//!
//! Each server belongs to the value that started it: dropping the value stops the server and
//! removes its temporary directory, so a panicking test leaves nothing running behind it.
//!
//! - [`PostgresCluster`]: a PostgreSQL cluster from the local install (`initdb` + `postgres`).
//! - [`SeaweedRegion`]: one SeaweedFS S3 server (`weed mini`) per region, so a test can kill one.
//! - [`EmbeddedRegion`]: an S3 server inside this process (s3s-fs over a directory), for the
//!   demo, with nothing to install.

pub mod embedded_s3;
pub mod ports;
pub mod postgres;
pub mod seaweed;

mod server_process;

pub use embedded_s3::EmbeddedRegion;
pub use postgres::{PostgresCluster, postgres_bin_dir};
pub use seaweed::{SeaweedRegion, weed_binary};
