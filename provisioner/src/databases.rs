//! Tenant databases: created owned by the tenant's role and closed to everyone else,
//! marked with the run that made them, listed for the sweep of leftovers; and the
//! server's version, to refuse a dump from a newer major.
//!
//! What a freshly created tenant role can reach by default in PostgreSQL 15, and what
//! [`isolate_database`] does about it (checked against the 15 documentation and the
//! sandbox cluster):
//! - `CONNECT` and `TEMPORARY` on every new database are granted to `PUBLIC`: revoked, and
//!   granted to the tenant's role only. Without `CONNECT` nothing inside is reachable:
//!   tables, functions (`EXECUTE` to `PUBLIC` by default), large objects and the `public`
//!   schema all sit behind it.
//! - The `public` schema is owned by `pg_database_owner` with `USAGE` for `PUBLIC` (15 no
//!   longer grants `CREATE`): given to the tenant's role, `PUBLIC` revoked.
//! - Shared catalogs stay readable by everyone connected anywhere: another tenant sees
//!   database and role names and comments in `pg_database` / `pg_roles`, and in
//!   `pg_stat_activity` the database and user of other sessions (not their queries,
//!   addresses or states). Closing that would mean revoking `SELECT` on catalogs, which
//!   breaks clients; names are not data.
//! - The cluster's `postgres` and `template1` databases keep `CONNECT` for `PUBLIC` by
//!   default, so a tenant role can connect there (and create temporary tables); nothing of
//!   another tenant is there. Revoking it is a cluster-wide decision for the operator, not
//!   a per-tenant step.
//! - Reading files, running programs, `dblink`/`postgres_fdw` and untrusted extensions need
//!   superuser or predefined roles a tenant role never gets (`NOSUPERUSER`, no
//!   memberships); the trusted extensions a database owner may create reach only their own
//!   database.

use lifeboat_core::config::ClusterConfig;
use lifeboat_core::postgres::{self, quote_identifier, quote_literal};
use tokio_postgres::error::SqlState;

use crate::roles::{Made, run_comment};
use crate::{ProvisionError, maintenance_client, statement_error};

/// Step `create_database`: a new database from `template0` owned by `owner`, closed to
/// `PUBLIC` before anyone can connect, and marked with `run_tag`. It is created with
/// connections refused, then marked and closed, then opened: a database of this run
/// never accepts a connection while `PUBLIC` may still connect. An existing database
/// marked by this run is adopted (and its closing finished again, idempotently); any other
/// existing one is refused with [`ProvisionError::DatabaseExists`]. A crash between the
/// `CREATE` and the comment (which `CREATE DATABASE` cannot share a transaction with)
/// leaves an unmarked, connection-refusing database the next attempt refuses; the sweep
/// of leftovers does not see it either, so it is named in the error for an operator.
pub async fn create_database_owned(
    cluster: &ClusterConfig,
    database: &str,
    owner: &str,
    run_tag: &str,
) -> Result<Made, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let quoted_database = quote_identifier(database);
    let statement = format!(
        "CREATE DATABASE {quoted_database} TEMPLATE template0 OWNER {} ALLOW_CONNECTIONS false",
        quote_identifier(owner)
    );
    let made = match client.batch_execute(&statement).await {
        Ok(()) => Made::Now,
        Err(error) if error.code() == Some(&SqlState::DUPLICATE_DATABASE) => {
            if comment_with(cluster, &client, database).await? != Some(run_comment(run_tag)) {
                return Err(ProvisionError::DatabaseExists {
                    cluster: cluster.name.to_string(),
                    database: database.to_owned(),
                });
            }
            Made::EarlierByThisRun
        }
        Err(error) => {
            return Err(statement_error(
                cluster,
                format!("create database {database:?} owned by {owner:?}"),
            )(error));
        }
    };
    let close_and_open = format!(
        "COMMENT ON DATABASE {quoted_database} IS {};
         REVOKE ALL ON DATABASE {quoted_database} FROM PUBLIC;
         ALTER DATABASE {quoted_database} WITH ALLOW_CONNECTIONS true",
        quote_literal(&run_comment(run_tag))
    );
    client
        .batch_execute(&close_and_open)
        .await
        .map_err(statement_error(
            cluster,
            format!("close database {database:?} to PUBLIC and mark it"),
        ))?;
    tracing::info!(cluster = %cluster.name, database, owner, ?made, "database ready");
    Ok(made)
}

/// The database's comment; `None` without one or without the database.
pub async fn database_comment(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<Option<String>, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    comment_with(cluster, &client, database).await
}

pub(crate) async fn comment_with(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    database: &str,
) -> Result<Option<String>, ProvisionError> {
    let row = client
        .query_opt(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(statement_error(
            cluster,
            format!("read the comment of database {database:?}"),
        ))?;
    Ok(row.and_then(|row| row.get(0)))
}

/// Step `isolate_database` (idempotent): only `role` may connect to `database` or use its
/// `public` schema. See the module documentation for what else was checked.
pub async fn isolate_database(
    cluster: &ClusterConfig,
    database: &str,
    role: &str,
) -> Result<(), ProvisionError> {
    let quoted_database = quote_identifier(database);
    let quoted_role = quote_identifier(role);
    let client = maintenance_client(cluster).await?;
    let database_level = format!(
        "REVOKE ALL ON DATABASE {quoted_database} FROM PUBLIC;
         GRANT CONNECT, TEMPORARY ON DATABASE {quoted_database} TO {quoted_role}"
    );
    client
        .batch_execute(&database_level)
        .await
        .map_err(statement_error(
            cluster,
            format!("give database {database:?} to role {role:?} only"),
        ))?;
    drop(client);
    let inside = postgres::connect(cluster, database).await?;
    let schema_level = format!(
        "ALTER SCHEMA public OWNER TO {quoted_role};
         REVOKE ALL ON SCHEMA public FROM PUBLIC;
         GRANT USAGE, CREATE ON SCHEMA public TO {quoted_role}"
    );
    inside
        .batch_execute(&schema_level)
        .await
        .map_err(statement_error(
            cluster,
            format!("give schema public of database {database:?} to role {role:?} only"),
        ))
}

/// Step `block_connections` and its undo: `ALLOW_CONNECTIONS` on `database`. Sessions
/// already connected stay; [`crate::swap`] terminates them when it must.
pub async fn set_allow_connections(
    cluster: &ClusterConfig,
    database: &str,
    allow: bool,
) -> Result<(), ProvisionError> {
    let client = maintenance_client(cluster).await?;
    set_allow_connections_with(cluster, &client, database, allow).await
}

pub(crate) async fn set_allow_connections_with(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    database: &str,
    allow: bool,
) -> Result<(), ProvisionError> {
    let statement = format!(
        "ALTER DATABASE {} WITH ALLOW_CONNECTIONS {allow}",
        quote_identifier(database)
    );
    client
        .batch_execute(&statement)
        .await
        .map_err(statement_error(
            cluster,
            format!("set ALLOW_CONNECTIONS {allow} on database {database:?}"),
        ))
}

/// The server's `server_version_num`, e.g. 150010 for 15.10 (major = value / 10000 from
/// 10 on).
pub async fn server_version_num(cluster: &ClusterConfig) -> Result<u32, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let row = client
        .query_one("SHOW server_version_num", &[])
        .await
        .map_err(statement_error(
            cluster,
            "read server_version_num".to_owned(),
        ))?;
    let text: String = row.get(0);
    text.trim()
        .parse()
        .map_err(|_| ProvisionError::UnexpectedAnswer {
            cluster: cluster.name.to_string(),
            what: "SHOW server_version_num".to_owned(),
            answer: text,
        })
}

/// The major version in a `server_version` text as a manifest records it: "15.10 (Debian
/// 15.10-1)" → 15, "16beta2" → 16, "9.6.24" → 9 (before 10 the major was two numbers;
/// the first one is enough to compare with 10 and later). `None` without leading digits.
pub fn major_of_version_text(text: &str) -> Option<u32> {
    let digits: String = text
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Databases whose name starts with `prefix`, with their comments (the sweep of leftovers
/// reads the run that made each). The prefix is compared in Rust: no `LIKE` pattern is
/// built from it.
pub async fn list_databases_with_prefix(
    cluster: &ClusterConfig,
    prefix: &str,
) -> Result<Vec<(String, Option<String>)>, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let rows = client
        .query(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database ORDER BY datname",
            &[],
        )
        .await
        .map_err(statement_error(cluster, "list databases".to_owned()))?;
    Ok(rows
        .into_iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, Option<String>>(1)))
        .filter(|(name, _)| name.starts_with(prefix))
        .collect())
}

/// When `database` was made, as its directory's `PG_VERSION` file says (PostgreSQL keeps no
/// creation time). Needs superuser or `pg_read_server_files` (or EXECUTE on
/// `pg_stat_file`); `None` without the database.
pub async fn created_at(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<Option<chrono::DateTime<chrono::Utc>>, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let row = client
        .query_opt(
            "SELECT (pg_stat_file('base/' || oid || '/PG_VERSION')).modification
             FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(statement_error(
            cluster,
            format!("read when database {database:?} was made"),
        ))?;
    Ok(row.map(|row| row.get(0)))
}

/// What every comment lifeboat puts on a database or role it made starts with.
pub const RUN_COMMENT_PREFIX: &str = "lifeboat run ";

/// Set `database`'s comment (a swapped-back database is marked as its run's again).
pub async fn set_database_comment(
    cluster: &ClusterConfig,
    database: &str,
    comment: &str,
) -> Result<(), ProvisionError> {
    let client = maintenance_client(cluster).await?;
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {} IS {}",
            quote_identifier(database),
            quote_literal(comment)
        ))
        .await
        .map_err(statement_error(
            cluster,
            format!("set the comment of database {database:?}"),
        ))
}

/// The role that owns `database`; `None` without the database.
pub async fn database_owner(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<Option<String>, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let row = client
        .query_opt(
            "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(statement_error(
            cluster,
            format!("look up the owner of database {database:?}"),
        ))?;
    Ok(row.map(|row| row.get(0)))
}

/// Whether `database` accepts connections (`false` also without the database).
pub async fn allows_connections(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<bool, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let row = client
        .query_opt(
            "SELECT datallowconn FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(statement_error(
            cluster,
            format!("look up ALLOW_CONNECTIONS of database {database:?}"),
        ))?;
    Ok(row.is_some_and(|row| row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_are_read_from_version_texts() {
        assert_eq!(major_of_version_text("15.10 (Debian 15.10-1)"), Some(15));
        assert_eq!(major_of_version_text("9.6.24"), Some(9));
        assert_eq!(major_of_version_text("16beta2"), Some(16));
        assert_eq!(major_of_version_text("17.2"), Some(17));
        assert_eq!(major_of_version_text("devel"), None);
        assert_eq!(major_of_version_text(""), None);
    }
}
