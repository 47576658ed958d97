//! The catalog: lifeboat's own PostgreSQL database.
//!
//! It stores tenants, backups and their copies, jobs, agent tokens and the audit log
//! (written and checked by [`crate::audit`]). It is a
//! cache of the buckets as far as backups go (manifests are the truth); tenants and the audit
//! log live only here. Migrations are embedded SQL files (`controller/migrations/`), applied
//! by `lifeboat controller migrate` and at controller start, recorded by refinery in
//! `refinery_schema_history`.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use lifeboat_core::config::{ClusterConfig, Config};
use lifeboat_core::postgres::TlsFailure;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Connections the controller keeps open to its catalog.
const POOL_SIZE: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(
        "no [catalog] in the configuration: set catalog.cluster (and catalog.database, default \"lifeboat\")"
    )]
    NotConfigured,
    #[error(transparent)]
    UnknownCluster(#[from] lifeboat_core::config::UnknownName),
    #[error(
        "catalog database {database:?} does not exist on cluster {cluster}; create it first (CREATE DATABASE)"
    )]
    DatabaseMissing { cluster: String, database: String },
    #[error(
        "cannot reach the catalog on cluster {cluster} ({host}:{port}) database {database:?}: {message}"
    )]
    Unreachable {
        cluster: String,
        host: String,
        port: u16,
        database: String,
        message: String,
    },
    /// TLS to the catalog's cluster could not be set up or was refused.
    #[error("catalog: {0}")]
    Tls(#[from] TlsFailure),
    #[error("cannot set up the catalog connection pool: {0}")]
    Pool(String),
    #[error("applying catalog migrations failed: {0}")]
    Migration(String),
    #[error("the catalog holds something this lifeboat cannot read: {0}")]
    Inconsistent(String),
    #[error("audit log: {0}")]
    Audit(String),
    #[error(transparent)]
    AuditKey(#[from] crate::audit::AuditKeyError),
    #[error("catalog query failed: {action}: {source}")]
    Query {
        action: String,
        source: tokio_postgres::Error,
    },
}

/// Name a failed catalog query by what it was doing.
pub(crate) fn query_error(action: &str) -> impl FnOnce(tokio_postgres::Error) -> CatalogError + '_ {
    move |source| CatalogError::Query {
        action: action.to_owned(),
        source,
    }
}

/// A pool of connections to the catalog database.
#[derive(Clone)]
pub struct Catalog {
    pool: Pool,
    cluster: ClusterConfig,
    database: String,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Catalog").finish_non_exhaustive()
    }
}

/// The applied migration versions, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub applied_now: Vec<String>,
    pub latest_version: Option<i32>,
}

impl Catalog {
    /// Connect to the catalog the configuration's `[catalog]` names, and chain this
    /// process's audit entries with the configuration's `audit_key_file` (none: unkeyed).
    pub async fn open(config: &Config) -> Result<Catalog, CatalogError> {
        let catalog = config.catalog.as_ref().ok_or(CatalogError::NotConfigured)?;
        let cluster = config.cluster(&catalog.cluster)?;
        let audit_key = config
            .audit_key_file
            .as_deref()
            .map(crate::audit::AuditKey::load)
            .transpose()?;
        crate::audit::use_key_for_writing(audit_key);
        Catalog::connect(cluster, &catalog.database).await
    }

    /// Connect to `database` on `cluster`; the first connection is made now so that a
    /// missing database or a dead server is reported at once.
    pub async fn connect(cluster: &ClusterConfig, database: &str) -> Result<Catalog, CatalogError> {
        let mut config =
            lifeboat_core::postgres::client_config(cluster, database, "lifeboat-controller");
        config.options(format!(
            "-c statement_timeout={}",
            lifeboat_core::policy::CATALOG_STATEMENT_TIMEOUT.as_millis()
        ));
        let manager = Manager::from_config(
            config,
            lifeboat_core::postgres::tls_connector(cluster)?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|error| CatalogError::Pool(error.to_string()))?;
        let catalog = Catalog {
            pool,
            cluster: cluster.clone(),
            database: database.to_owned(),
        };
        // Connect once now: a missing database or a dead server is reported at start.
        drop(catalog.connection().await?);
        Ok(catalog)
    }

    /// A pooled connection.
    pub async fn connection(&self) -> Result<deadpool_postgres::Object, CatalogError> {
        let cluster = &self.cluster;
        let database = &self.database;
        self.pool.get().await.map_err(|error| {
            let backend = match &error {
                deadpool_postgres::PoolError::Backend(backend) => Some(backend),
                _ => None,
            };
            if let Some(failure) = backend
                .and_then(|backend| lifeboat_core::postgres::tls::tls_failure(cluster, backend))
            {
                return CatalogError::Tls(failure);
            }
            let missing = backend.is_some_and(|backend| {
                backend.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
            });
            if missing {
                CatalogError::DatabaseMissing {
                    cluster: cluster.name.to_string(),
                    database: database.to_owned(),
                }
            } else {
                CatalogError::Unreachable {
                    cluster: cluster.name.to_string(),
                    host: cluster.host.clone(),
                    port: cluster.port,
                    database: database.to_owned(),
                    message: error.to_string(),
                }
            }
        })
    }

    /// Apply every embedded migration not applied yet. Safe to run again.
    pub async fn migrate(&self) -> Result<MigrationReport, CatalogError> {
        let mut connection = self.connection().await?;
        let client: &mut tokio_postgres::Client = &mut connection;
        let report = embedded::migrations::runner()
            .run_async(client)
            .await
            .map_err(|error| CatalogError::Migration(error.to_string()))?;
        let applied_now: Vec<String> = report
            .applied_migrations()
            .iter()
            .map(ToString::to_string)
            .collect();
        let latest_version = embedded::migrations::runner()
            .get_migrations()
            .iter()
            .map(|migration| migration.version())
            .max();
        Ok(MigrationReport {
            applied_now,
            latest_version,
        })
    }
}
