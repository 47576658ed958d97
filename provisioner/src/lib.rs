//! The provisioner: the steps that create, restore into, verify and drop tenant
//! databases.
//!
//! Each step is small, idempotent where it can be, and quotes every identifier; nothing
//! from a request is pasted into SQL. Restores, drills and provisioning are sequences of
//! these steps:
//! - this file: plain databases (create, drop, size) and row-count verification;
//! - [`roles`]: tenant roles with SCRAM passwords computed here, never sent in the clear;
//! - [`databases`]: databases owned by a tenant role, isolated from every other tenant,
//!   marked with the run that made them, and the server's version;
//! - [`swap`]: the helpdesk swap of a restored database onto the live name (and its
//!   rollback, the same call with the names permuted).

pub mod databases;
pub mod roles;
pub mod swap;

pub mod playbook;

use std::collections::BTreeMap;

use lifeboat_core::config::ClusterConfig;
use lifeboat_core::manifest::TableRowCount;
use lifeboat_core::postgres::{self, PostgresError, quote_identifier};
use tokio_postgres::error::SqlState;

pub use databases::{
    create_database_owned, database_comment, isolate_database, list_databases_with_prefix,
    major_of_version_text, server_version_num, set_allow_connections,
};
pub use roles::{Made, create_role, drop_role, generate_password, role_exists, set_role_password};
pub use swap::{SwapReport, SwapRequest, SwapState, swap_databases, swap_state};

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error(
        "database {database:?} already exists on cluster {cluster}; restore needs a new name and never touches an existing database"
    )]
    DatabaseExists { cluster: String, database: String },
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error("{action} on cluster {cluster} failed: {source}")]
    Statement {
        cluster: String,
        action: String,
        source: tokio_postgres::Error,
    },
    #[error("row counts differ from the manifest in {} table(s): {}", .0.len(), .0.join("; "))]
    RowCountMismatch(Vec<String>),
    #[error(
        "role {role:?} already exists on cluster {cluster} and was not made by this run; a tenant role is never taken over"
    )]
    RoleExists { cluster: String, role: String },
    #[error(
        "role {role:?} on cluster {cluster} cannot be dropped: it still owns or holds rights on objects: {detail}"
    )]
    RoleStillOwns {
        cluster: String,
        role: String,
        detail: String,
    },
    #[error(
        "swap of {shadow:?} onto {live:?} on cluster {cluster} gave up after {attempts} rename attempt(s) in {patience_milliseconds} ms (last: {last_failure}); {live:?} is as before and accepts connections again"
    )]
    SwapTimedOut {
        cluster: String,
        live: String,
        shadow: String,
        attempts: u32,
        patience_milliseconds: u64,
        last_failure: String,
    },
    #[error("swap onto {live:?} on cluster {cluster} cannot start: {reason}")]
    SwapRefused {
        cluster: String,
        live: String,
        reason: String,
    },
    #[error("cluster {cluster}: {what} does not exist")]
    Missing { cluster: String, what: String },
    #[error(
        "database {database:?} on cluster {cluster} accepts connections and carries no lifeboat run tag, so it is not a database lifeboat kept; not dropped"
    )]
    NotKept { cluster: String, database: String },
    #[error("cluster {cluster} answered {what} with {answer:?}, which lifeboat cannot read")]
    UnexpectedAnswer {
        cluster: String,
        what: String,
        answer: String,
    },
}

impl ProvisionError {
    /// Whether trying again cannot help: a name taken, something missing, a refusal. A
    /// statement that failed, a cluster that did not answer, a swap that ran out of
    /// patience may go through another time.
    pub fn is_permanent(&self) -> bool {
        match self {
            ProvisionError::DatabaseExists { .. }
            | ProvisionError::RoleExists { .. }
            | ProvisionError::RoleStillOwns { .. }
            | ProvisionError::SwapRefused { .. }
            | ProvisionError::Missing { .. }
            | ProvisionError::NotKept { .. }
            | ProvisionError::UnexpectedAnswer { .. } => true,
            ProvisionError::RowCountMismatch(_) => true,
            ProvisionError::Postgres(error) => error.is_permanent(),
            ProvisionError::Statement { .. } | ProvisionError::SwapTimedOut { .. } => false,
        }
    }
}

pub(crate) fn statement_error(
    cluster: &ClusterConfig,
    action: String,
) -> impl FnOnce(tokio_postgres::Error) -> ProvisionError {
    let cluster = cluster.name.to_string();
    move |source| ProvisionError::Statement {
        cluster,
        action,
        source,
    }
}

pub(crate) async fn maintenance_client(
    cluster: &ClusterConfig,
) -> Result<tokio_postgres::Client, ProvisionError> {
    Ok(postgres::connect(cluster, &cluster.maintenance_database).await?)
}

pub async fn database_exists(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<bool, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)",
            &[&database],
        )
        .await
        .map_err(statement_error(
            cluster,
            format!("look up database {database:?}"),
        ))?;
    Ok(row.get(0))
}

/// Step `create-database`: a new, empty database from `template0`. Fails with
/// [`ProvisionError::DatabaseExists`] rather than touch an existing one.
pub async fn create_database(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<(), ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let statement = format!(
        "CREATE DATABASE {} TEMPLATE template0",
        quote_identifier(database)
    );
    match client.batch_execute(&statement).await {
        Ok(()) => Ok(()),
        Err(error) if error.code() == Some(&SqlState::DUPLICATE_DATABASE) => {
            Err(ProvisionError::DatabaseExists {
                cluster: cluster.name.to_string(),
                database: database.to_owned(),
            })
        }
        Err(error) => Err(statement_error(
            cluster,
            format!("create database {database:?}"),
        )(error)),
    }
}

/// Step `drop-database`: drop it if it exists, disconnecting its sessions.
pub async fn drop_database(cluster: &ClusterConfig, database: &str) -> Result<(), ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let statement = format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        quote_identifier(database)
    );
    client
        .batch_execute(&statement)
        .await
        .map_err(statement_error(
            cluster,
            format!("drop database {database:?}"),
        ))
}

/// The database's size on disk in bytes.
pub async fn database_size_bytes(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<u64, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let row = client
        .query_one("SELECT pg_database_size($1)", &[&database])
        .await
        .map_err(statement_error(
            cluster,
            format!("measure database {database:?}"),
        ))?;
    let size: i64 = row.get(0);
    Ok(u64::try_from(size).unwrap_or(0))
}

/// What verification checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedCounts {
    pub tables: usize,
    pub rows: u64,
}

/// Step `verify`: every table of the manifest is there with exactly its rows, and no other.
pub async fn verify_row_counts(
    cluster: &ClusterConfig,
    database: &str,
    expected: &[TableRowCount],
) -> Result<VerifiedCounts, ProvisionError> {
    let client = postgres::connect(cluster, database).await?;
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(statement_error(cluster, "begin verification".to_owned()))?;
    let actual = postgres::count_rows(cluster, &client).await?;
    let actual: BTreeMap<(String, String), u64> = actual
        .into_iter()
        .map(|count| ((count.schema, count.table), count.rows))
        .collect();
    let mut differences = Vec::new();
    for count in expected {
        let name = format!("{}.{}", count.schema, count.table);
        match actual.get(&(count.schema.clone(), count.table.clone())) {
            Some(rows) if *rows == count.rows => {}
            Some(rows) => {
                differences.push(format!("{name}: {rows} rows, manifest says {}", count.rows))
            }
            None => differences.push(format!("{name}: missing")),
        }
    }
    for (schema, table) in actual.keys() {
        if !expected
            .iter()
            .any(|count| &count.schema == schema && &count.table == table)
        {
            differences.push(format!("{schema}.{table}: not in the manifest"));
        }
    }
    if !differences.is_empty() {
        return Err(ProvisionError::RowCountMismatch(differences));
    }
    Ok(VerifiedCounts {
        tables: expected.len(),
        rows: expected.iter().map(|count| count.rows).sum(),
    })
}
