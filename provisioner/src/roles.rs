//! Tenant roles: created with the fewest rights a tenant needs, their passwords stored in
//! the cluster only as SCRAM-SHA-256 verifiers.
//!
//! The verifier is computed here (`postgres_protocol::password::scram_sha_256`, what libpq's
//! `PQencryptPasswordConn` does), so the plaintext never crosses the wire and never reaches
//! the server's log or `pg_stat_activity`, even with `log_statement = all`.
//!
//! Every role lifeboat makes carries the comment `lifeboat run <run tag>`: a retried job
//! recognises what its previous attempt made and adopts it ([`Made::EarlierByThisRun`]),
//! and anything else of that name is refused, never taken over.

use lifeboat_core::config::ClusterConfig;
use lifeboat_core::postgres::{quote_identifier, quote_literal};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::error::SqlState;

use crate::{ProvisionError, maintenance_client, statement_error};

/// Whether a step made its object now or adopted what an earlier attempt of the same run
/// made (the comment says so). The undo of a step drops the object in both cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    Now,
    EarlierByThisRun,
}

/// The comment that marks an object as made by run `run_tag`.
pub fn run_comment(run_tag: &str) -> String {
    format!("lifeboat run {run_tag}")
}

/// A new password of 244 random bits (two UUIDv4, from the operating system's generator
/// through `getrandom`), as 64 lowercase hex characters: nothing a shell, a URL or a
/// connection string needs to escape.
pub fn generate_password() -> SecretString {
    let first = uuid::Uuid::new_v4();
    let second = uuid::Uuid::new_v4();
    SecretString::from(format!("{}{}", first.simple(), second.simple()))
}

/// `PASSWORD '<verifier>'` for `password`: the SCRAM-SHA-256 verifier with a fresh salt.
fn password_clause(password: &SecretString) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.expose_secret().as_bytes());
    format!("PASSWORD {}", quote_literal(&verifier))
}

/// Step `create_role`: a role that may not create databases or roles, replicate or bypass
/// row security; `LOGIN` with `login_password` (stored as SCRAM only), else `NOLOGIN`.
/// The role and its comment are made in one transaction, so a crash never leaves an
/// unmarked role. An existing role made by this run is adopted (its password set to
/// `login_password`, since a retry hands out the password of this attempt); any other
/// existing role is refused with [`ProvisionError::RoleExists`].
pub async fn create_role(
    cluster: &ClusterConfig,
    role: &str,
    login_password: Option<&SecretString>,
    run_tag: &str,
) -> Result<Made, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let login = match login_password {
        Some(password) => format!("LOGIN {}", password_clause(password)),
        None => "NOLOGIN".to_owned(),
    };
    let quoted_role = quote_identifier(role);
    let statement = format!(
        "BEGIN;
         CREATE ROLE {quoted_role} NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT {login};
         COMMENT ON ROLE {quoted_role} IS {};
         COMMIT",
        quote_literal(&run_comment(run_tag))
    );
    match client.batch_execute(&statement).await {
        Ok(()) => {
            tracing::info!(cluster = %cluster.name, role, "role created");
            Ok(Made::Now)
        }
        Err(error) if error.code() == Some(&SqlState::DUPLICATE_OBJECT) => {
            client
                .batch_execute("ROLLBACK")
                .await
                .map_err(statement_error(
                    cluster,
                    format!("roll back creating role {role:?}"),
                ))?;
            if role_comment(cluster, &client, role).await? != Some(run_comment(run_tag)) {
                return Err(ProvisionError::RoleExists {
                    cluster: cluster.name.to_string(),
                    role: role.to_owned(),
                });
            }
            if let Some(password) = login_password {
                set_password_with(cluster, &client, role, password).await?;
            }
            tracing::info!(cluster = %cluster.name, role, "role adopted from an earlier attempt of this run");
            Ok(Made::EarlierByThisRun)
        }
        Err(error) => {
            // The error may have come from inside the transaction block: end it, so the
            // connection is clean (it is dropped anyway).
            let _ = client.batch_execute("ROLLBACK").await;
            Err(statement_error(cluster, format!("create role {role:?}"))(
                error,
            ))
        }
    }
}

async fn role_comment(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    role: &str,
) -> Result<Option<String>, ProvisionError> {
    let row = client
        .query_opt(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await
        .map_err(statement_error(
            cluster,
            format!("read the comment of role {role:?}"),
        ))?;
    Ok(row.and_then(|row| row.get(0)))
}

pub async fn role_exists(cluster: &ClusterConfig, role: &str) -> Result<bool, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let row = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .map_err(statement_error(cluster, format!("look up role {role:?}")))?;
    Ok(row.get(0))
}

/// Step `drop_role` (and the undo of `create_role`): drop it if it exists. A role that
/// still owns objects or holds privileges (SQLSTATE 2BP01: drop the tenant's databases
/// first) is refused with [`ProvisionError::RoleStillOwns`], naming them as PostgreSQL
/// does.
pub async fn drop_role(cluster: &ClusterConfig, role: &str) -> Result<(), ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let statement = format!("DROP ROLE IF EXISTS {}", quote_identifier(role));
    match client.batch_execute(&statement).await {
        Ok(()) => Ok(()),
        Err(error) if error.code() == Some(&SqlState::DEPENDENT_OBJECTS_STILL_EXIST) => {
            let detail = error
                .as_db_error()
                .map(|db_error| {
                    db_error
                        .detail()
                        .unwrap_or_else(|| db_error.message())
                        .replace('\n', "; ")
                })
                .unwrap_or_else(|| error.to_string());
            Err(ProvisionError::RoleStillOwns {
                cluster: cluster.name.to_string(),
                role: role.to_owned(),
                detail,
            })
        }
        Err(error) => Err(statement_error(cluster, format!("drop role {role:?}"))(
            error,
        )),
    }
}

/// Give `role` the password `password` (a restored copy's own role), stored as SCRAM.
pub async fn set_role_password(
    cluster: &ClusterConfig,
    role: &str,
    password: &SecretString,
) -> Result<(), ProvisionError> {
    let client = maintenance_client(cluster).await?;
    set_password_with(cluster, &client, role, password).await
}

async fn set_password_with(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    role: &str,
    password: &SecretString,
) -> Result<(), ProvisionError> {
    let statement = format!(
        "ALTER ROLE {} LOGIN {}",
        quote_identifier(role),
        password_clause(password)
    );
    // The error never carries the statement, so the verifier stays out of it too.
    client
        .batch_execute(&statement)
        .await
        .map_err(statement_error(
            cluster,
            format!("set the password of role {role:?}"),
        ))
}

/// The role's comment (`lifeboat run <tag>` for a role lifeboat made); `None` without one
/// or without the role.
pub async fn comment_of_role(
    cluster: &ClusterConfig,
    role: &str,
) -> Result<Option<String>, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    role_comment(cluster, &client, role).await
}

/// Give `role` LOGIN with a password that arrives as a SCRAM-SHA-256 verifier (a copy's
/// role: the plain password was shown to whoever asked for the copy and is stored nowhere).
/// Anything but a SCRAM verifier is refused, so a plain password is never sent.
pub async fn set_role_password_verifier(
    cluster: &ClusterConfig,
    role: &str,
    verifier: &str,
) -> Result<(), ProvisionError> {
    if !verifier.starts_with("SCRAM-SHA-256$") {
        return Err(ProvisionError::UnexpectedAnswer {
            cluster: cluster.name.to_string(),
            what: format!("the password of role {role:?}"),
            answer: "something that is not a SCRAM-SHA-256 verifier".to_owned(),
        });
    }
    let client = maintenance_client(cluster).await?;
    client
        .batch_execute(&format!(
            "ALTER ROLE {} LOGIN PASSWORD {}",
            quote_identifier(role),
            quote_literal(verifier)
        ))
        .await
        .map_err(statement_error(
            cluster,
            format!("set the password of role {role:?}"),
        ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_distinct_and_plain_hex() {
        let first = generate_password();
        let second = generate_password();
        assert_eq!(first.expose_secret().len(), 64);
        assert!(
            first
                .expose_secret()
                .chars()
                .all(|character| character.is_ascii_hexdigit())
        );
        assert_ne!(first.expose_secret(), second.expose_secret());
    }

    #[test]
    fn the_password_clause_carries_a_verifier_not_the_password() {
        let password = SecretString::from("correct horse".to_owned());
        let clause = password_clause(&password);
        assert!(
            clause.starts_with("PASSWORD 'SCRAM-SHA-256$4096:"),
            "{clause}"
        );
        assert!(!clause.contains("correct horse"));
    }
}
