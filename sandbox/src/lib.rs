//! Throwaway servers on loopback for `lifeboat demo` and the integration tests.
//!
//! Each server belongs to the value that started it: dropping the value stops the server and
//! removes its temporary directory, so a panicking test leaves nothing running behind it.
//!
//! - [`PostgresCluster`]: a PostgreSQL cluster from the local install (`initdb` + `postgres`),
//!   optionally serving TLS with a certificate from a [`TestCertificateAuthority`].
//! - [`SeaweedRegion`]: one SeaweedFS S3 server (`weed mini`) per region, so a test can kill one.
//! - [`EmbeddedRegion`]: an S3 server inside this process (s3s-fs over a directory), for the
//!   demo, with nothing to install.

pub mod embedded_s3;
pub mod ports;
pub mod postgres;
pub mod postgres_tls;
pub mod seaweed;

mod server_process;

pub use embedded_s3::EmbeddedRegion;
pub use postgres::{PostgresCluster, PostgresOptions, postgres_bin_dir};
pub use postgres_tls::{ServerTls, TestCertificateAuthority};
pub use seaweed::{SeaweedRegion, WriterKey, weed_binary, writer_policy};
