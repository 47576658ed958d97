//! The swap: a restored database takes the live name in one short step, and the live one
//! is kept under another name; a rollback is the same call with the names permuted.
//!
//! In order:
//! 1. live's database-level settings are read: owner, grants (`datacl`), `ALTER DATABASE
//!    … SET` values, comment, connection limit;
//! 2. live refuses new connections (`ALLOW_CONNECTIONS false`): the tenant is offline from
//!    here;
//! 3. every session on live and on the incoming database is terminated and waited for;
//!    then one transaction blocks the incoming database and renames live to the kept name
//!    and the incoming one to live. Renames are transactional: there is never a moment
//!    without a database called live, and a crash cannot leave live renamed away. A
//!    session that slipped in makes the rename fail (SQLSTATE 55006): roll back, pause,
//!    terminate again, until the patience runs out;
//! 4. without a rename in time, live is as before;
//! 5. after the rename the settings read in 1 are applied to the new live.
//!
//! Whatever happens after 2, the database called live (the old one or the new one: the
//! rename is atomic) accepts connections again before the call returns, even when
//! applying a setting failed; should the future be dropped midway, a guard does it from a
//! spawned task. Only a crash of this process between 2 and the end leaves live refusing
//! connections: a retried job finds out with [`swap_state`] and either swaps again (which
//! re-allows) or calls [`crate::set_allow_connections`]. The kept database keeps refusing
//! connections: nobody should write to the old data.

use std::time::{Duration, Instant};

use lifeboat_core::config::ClusterConfig;
use lifeboat_core::postgres::{quote_identifier, quote_literal};
use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::databases::{comment_with, set_allow_connections_with};
use crate::{ProvisionError, maintenance_client, statement_error};

/// How long to wait between two looks at `pg_stat_activity` after terminating sessions.
const SESSION_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// The pause after a rename that failed because a session slipped in.
const RENAME_RETRY_PAUSE: Duration = Duration::from_millis(20);

/// The least time one rename transaction gets, even when the patience is nearly spent:
/// PostgreSQL itself waits up to 5 s for sessions to leave before it fails a rename, and
/// the `statement_timeout` bounds that wait.
const MINIMUM_RENAME_TIMEOUT: Duration = Duration::from_millis(100);

/// What to swap: `shadow` takes the name `live`, and live's database is kept as `kept`.
#[derive(Debug, Clone, Copy)]
pub struct SwapRequest<'a> {
    pub live: &'a str,
    pub shadow: &'a str,
    pub kept: &'a str,
    /// How long sessions may keep the rename from happening before the swap gives up.
    pub rename_patience: Duration,
}

/// What a swap measured.
#[derive(Debug, Clone, Serialize)]
pub struct SwapReport {
    /// From blocking connections to live until the new live accepted them.
    pub offline: Duration,
    pub rename_attempts: u32,
    pub sessions_terminated: u64,
}

/// Where a swap stands, from the names that exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwapState {
    /// Live and shadow exist, kept does not.
    NotSwapped,
    /// Live and kept exist, shadow does not.
    Swapped,
    /// Anything else, described.
    Unexpected(String),
}

/// One grant on a database; `grantee` is `None` for `PUBLIC`.
#[derive(Debug, Clone)]
struct DatabaseGrant {
    grantee: Option<String>,
    privilege: String,
    grantable: bool,
}

/// The database-level settings that belong to the name live rather than to its data.
#[derive(Debug, Clone)]
struct DatabaseSettings {
    owner: String,
    grants: Vec<DatabaseGrant>,
    /// `name=value` as `pg_db_role_setting` stores them (`setrole = 0`).
    settings: Vec<String>,
    comment: Option<String>,
    connection_limit: i32,
}

/// Step `swap_databases`: see the module documentation.
pub async fn swap_databases(
    cluster: &ClusterConfig,
    request: SwapRequest<'_>,
) -> Result<SwapReport, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    check_names(cluster, &client, &request).await?;
    let captured = capture_settings(cluster, &client, request.live).await?;

    set_allow_connections_with(cluster, &client, request.live, false).await?;
    let offline_started = Instant::now();
    let mut reallow_guard = ReallowOnDrop {
        cluster: cluster.clone(),
        live: request.live.to_owned(),
        armed: true,
    };
    let renamed = rename_with_patience(cluster, &client, &request).await;
    let reapplied = match &renamed {
        Ok(RenameOutcome::Renamed { .. }) => {
            apply_settings(cluster, &client, request.live, &captured).await
        }
        Ok(RenameOutcome::OutOfPatience { .. }) | Err(_) => Ok(()),
    };
    let reallowed = match set_allow_connections_with(cluster, &client, request.live, true).await {
        Ok(()) => Ok(()),
        // The connection may be what failed: one more try on a fresh one.
        Err(_) => crate::set_allow_connections(cluster, request.live, true).await,
    };
    let offline = offline_started.elapsed();
    if reallowed.is_ok() {
        reallow_guard.armed = false;
    }

    let (rename_attempts, sessions_terminated) = match renamed? {
        RenameOutcome::Renamed {
            attempts,
            sessions_terminated,
        } => (attempts, sessions_terminated),
        RenameOutcome::OutOfPatience {
            attempts,
            last_failure,
        } => {
            reallowed?;
            return Err(ProvisionError::SwapTimedOut {
                cluster: cluster.name.to_string(),
                live: request.live.to_owned(),
                shadow: request.shadow.to_owned(),
                attempts,
                patience_milliseconds: u64::try_from(request.rename_patience.as_millis())
                    .unwrap_or(u64::MAX),
                last_failure,
            });
        }
    };
    reapplied?;
    reallowed?;
    tracing::info!(
        cluster = %cluster.name,
        live = request.live,
        kept = request.kept,
        offline_milliseconds = offline.as_millis(),
        rename_attempts,
        sessions_terminated,
        "swapped"
    );
    Ok(SwapReport {
        offline,
        rename_attempts,
        sessions_terminated,
    })
}

/// Where the swap of `shadow` onto `live` (keeping `kept`) stands.
pub async fn swap_state(
    cluster: &ClusterConfig,
    live: &str,
    shadow: &str,
    kept: &str,
) -> Result<SwapState, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    let existing = existing_databases(cluster, &client, &[live, shadow, kept]).await?;
    let [live_exists, shadow_exists, kept_exists] = existing;
    Ok(match (live_exists, shadow_exists, kept_exists) {
        (true, true, false) => SwapState::NotSwapped,
        (true, false, true) => SwapState::Swapped,
        _ => SwapState::Unexpected(format!(
            "{live:?} {}, {shadow:?} {}, {kept:?} {}",
            exists_word(live_exists),
            exists_word(shadow_exists),
            exists_word(kept_exists)
        )),
    })
}

fn exists_word(exists: bool) -> &'static str {
    if exists { "exists" } else { "is missing" }
}

async fn existing_databases(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    names: &[&str; 3],
) -> Result<[bool; 3], ProvisionError> {
    let rows = client
        .query(
            "SELECT datname FROM pg_database WHERE datname = ANY($1)",
            &[&names.as_slice()],
        )
        .await
        .map_err(statement_error(
            cluster,
            "look up the databases of a swap".to_owned(),
        ))?;
    let found: Vec<String> = rows.into_iter().map(|row| row.get(0)).collect();
    Ok(names.map(|name| found.iter().any(|existing| existing == name)))
}

/// Live and the incoming database exist, the kept name is free, and the three differ.
async fn check_names(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    request: &SwapRequest<'_>,
) -> Result<(), ProvisionError> {
    let refuse = |reason: String| ProvisionError::SwapRefused {
        cluster: cluster.name.to_string(),
        live: request.live.to_owned(),
        reason,
    };
    if request.live == request.shadow
        || request.live == request.kept
        || request.shadow == request.kept
    {
        return Err(refuse(format!(
            "the names must differ: live {:?}, incoming {:?}, kept {:?}",
            request.live, request.shadow, request.kept
        )));
    }
    let [live_exists, shadow_exists, kept_exists] = existing_databases(
        cluster,
        client,
        &[request.live, request.shadow, request.kept],
    )
    .await?;
    if !live_exists {
        return Err(refuse("it does not exist".to_owned()));
    }
    if !shadow_exists {
        return Err(refuse(format!(
            "the incoming database {:?} does not exist",
            request.shadow
        )));
    }
    if kept_exists {
        return Err(refuse(format!(
            "the name {:?} for the previous database is taken",
            request.kept
        )));
    }
    Ok(())
}

async fn capture_settings(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    database: &str,
) -> Result<DatabaseSettings, ProvisionError> {
    let read_error = || {
        statement_error(
            cluster,
            format!("read the settings of database {database:?}"),
        )
    };
    let row = client
        .query_one(
            "SELECT pg_get_userbyid(datdba), datconnlimit FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(read_error())?;
    let owner: String = row.get(0);
    let connection_limit: i32 = row.get(1);
    let grants = database_grants(cluster, client, database)
        .await?
        .into_iter()
        .collect();
    let settings = client
        .query(
            "SELECT unnest(s.setconfig)
             FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
             WHERE d.datname = $1 AND s.setrole = 0",
            &[&database],
        )
        .await
        .map_err(read_error())?
        .into_iter()
        .map(|row| row.get(0))
        .collect();
    let comment = comment_with(cluster, client, database).await?;
    Ok(DatabaseSettings {
        owner,
        grants,
        settings,
        comment,
        connection_limit,
    })
}

/// The database's grants, the defaults spelt out when `datacl` is null.
async fn database_grants(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    database: &str,
) -> Result<Vec<DatabaseGrant>, ProvisionError> {
    let rows = client
        .query(
            "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,
                    a.privilege_type, a.is_grantable
             FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
             WHERE d.datname = $1",
            &[&database],
        )
        .await
        .map_err(statement_error(
            cluster,
            format!("read the grants on database {database:?}"),
        ))?;
    Ok(rows
        .into_iter()
        .map(|row| DatabaseGrant {
            grantee: row.get(0),
            privilege: row.get(1),
            grantable: row.get(2),
        })
        .collect())
}

fn grantee_sql(grantee: Option<&str>) -> String {
    grantee.map_or_else(|| "PUBLIC".to_owned(), quote_identifier)
}

/// A setting's name for `ALTER DATABASE … SET`: each dotted part quoted (`app.tenant` is
/// a custom setting); PostgreSQL compares setting names case-insensitively.
fn setting_name_sql(name: &str) -> String {
    name.split('.')
        .map(quote_identifier)
        .collect::<Vec<_>>()
        .join(".")
}

/// Make `database` carry `settings`: its own grants and `SET` values are replaced, not
/// merged.
async fn apply_settings(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    database: &str,
    settings: &DatabaseSettings,
) -> Result<(), ProvisionError> {
    let quoted_database = quote_identifier(database);
    let apply_error = |what: &str| {
        statement_error(
            cluster,
            format!("apply the previous {what} to database {database:?}"),
        )
    };
    client
        .batch_execute(&format!(
            "ALTER DATABASE {quoted_database} OWNER TO {}",
            quote_identifier(&settings.owner)
        ))
        .await
        .map_err(apply_error("owner"))?;

    // The incoming database's own grants go, every grantee's (the owner's included: the
    // captured grants spell the owner's out).
    let mut replace_grants = Vec::new();
    let mut current_grantees: Vec<Option<String>> = database_grants(cluster, client, database)
        .await?
        .into_iter()
        .map(|grant| grant.grantee)
        .collect();
    current_grantees.sort();
    current_grantees.dedup();
    for grantee in &current_grantees {
        replace_grants.push(format!(
            "REVOKE ALL ON DATABASE {quoted_database} FROM {} CASCADE",
            grantee_sql(grantee.as_deref())
        ));
    }
    for grant in &settings.grants {
        let privilege =
            privilege_sql(&grant.privilege).ok_or_else(|| ProvisionError::UnexpectedAnswer {
                cluster: cluster.name.to_string(),
                what: format!("the grants on database {database:?}"),
                answer: grant.privilege.clone(),
            })?;
        replace_grants.push(format!(
            "GRANT {privilege} ON DATABASE {quoted_database} TO {}{}",
            grantee_sql(grant.grantee.as_deref()),
            if grant.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    client
        .batch_execute(&format!("BEGIN; {}; COMMIT", replace_grants.join("; ")))
        .await
        .map_err(apply_error("grants"))?;

    client
        .batch_execute(&format!("ALTER DATABASE {quoted_database} RESET ALL"))
        .await
        .map_err(apply_error("settings"))?;
    for setting in &settings.settings {
        apply_one_setting(cluster, client, database, setting).await?;
    }

    let comment = settings
        .comment
        .as_deref()
        .map_or_else(|| "NULL".to_owned(), quote_literal);
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {quoted_database} IS {comment};
             ALTER DATABASE {quoted_database} WITH CONNECTION LIMIT {}",
            settings.connection_limit
        ))
        .await
        .map_err(apply_error("comment and connection limit"))
}

/// Database privileges as `aclexplode` names them are SQL keywords; anything else is
/// refused rather than pasted.
fn privilege_sql(privilege: &str) -> Option<&'static str> {
    match privilege {
        "CREATE" => Some("CREATE"),
        "CONNECT" => Some("CONNECT"),
        "TEMPORARY" => Some("TEMPORARY"),
        _ => None,
    }
}

/// One `name=value` of `pg_db_role_setting` onto `database`. The value is the server's
/// own flattened text, which `set_config` reads back exactly (list settings such as
/// `search_path` included), so it goes through `set_config` (bound) and `SET … FROM
/// CURRENT`. A setting the maintenance database cannot take (one checked against objects
/// of the tenant's database, e.g. a text search configuration) falls back to a quoted
/// literal, exact for every setting that is not a quoted list.
async fn apply_one_setting(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    database: &str,
    setting: &str,
) -> Result<(), ProvisionError> {
    let Some((name, value)) = setting.split_once('=') else {
        return Err(ProvisionError::UnexpectedAnswer {
            cluster: cluster.name.to_string(),
            what: format!("the settings of database {database:?}"),
            answer: setting.to_owned(),
        });
    };
    let quoted_database = quote_identifier(database);
    let quoted_name = setting_name_sql(name);
    let through_current = async {
        client.batch_execute("BEGIN").await?;
        client
            .execute("SELECT set_config($1, $2, true)", &[&name, &value])
            .await?;
        client
            .batch_execute(&format!(
                "ALTER DATABASE {quoted_database} SET {quoted_name} FROM CURRENT; COMMIT"
            ))
            .await
    };
    if through_current.await.is_ok() {
        return Ok(());
    }
    client
        .batch_execute("ROLLBACK")
        .await
        .map_err(statement_error(cluster, "roll back a setting".to_owned()))?;
    client
        .batch_execute(&format!(
            "ALTER DATABASE {quoted_database} SET {quoted_name} TO {}",
            quote_literal(value)
        ))
        .await
        .map_err(statement_error(
            cluster,
            format!("apply the previous setting {name:?} to database {database:?}"),
        ))
}

enum RenameOutcome {
    Renamed {
        attempts: u32,
        sessions_terminated: u64,
    },
    OutOfPatience {
        attempts: u32,
        last_failure: String,
    },
}

/// Step 3: terminate, wait, rename in one transaction; again after a pause while a session
/// slips in, until the patience is spent (at least one attempt is made).
async fn rename_with_patience(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    request: &SwapRequest<'_>,
) -> Result<RenameOutcome, ProvisionError> {
    let deadline = Instant::now() + request.rename_patience;
    let watched = [request.live, request.shadow];
    let mut attempts = 0u32;
    let mut sessions_terminated = 0u64;
    loop {
        attempts += 1;
        sessions_terminated += terminate_sessions(cluster, client, &watched).await?;
        let remaining_sessions =
            wait_for_sessions_to_end(cluster, client, &watched, deadline).await?;
        let last_failure;
        if remaining_sessions == 0 {
            let rename_timeout = deadline
                .saturating_duration_since(Instant::now())
                .max(MINIMUM_RENAME_TIMEOUT);
            match rename_in_one_transaction(client, request, rename_timeout).await {
                Ok(()) => {
                    return Ok(RenameOutcome::Renamed {
                        attempts,
                        sessions_terminated,
                    });
                }
                Err(error) if rename_may_succeed_later(&error) => {
                    client
                        .batch_execute("ROLLBACK")
                        .await
                        .map_err(statement_error(cluster, "roll back the rename".to_owned()))?;
                    last_failure = error
                        .as_db_error()
                        .map(|db_error| db_error.message().to_owned())
                        .unwrap_or_else(|| error.to_string());
                }
                Err(error) => {
                    let _ = client.batch_execute("ROLLBACK").await;
                    return Err(statement_error(
                        cluster,
                        format!(
                            "rename database {:?} to {:?} and {:?} to {:?}",
                            request.live, request.kept, request.shadow, request.live
                        ),
                    )(error));
                }
            }
        } else {
            last_failure = format!("{remaining_sessions} session(s) still connected");
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(RenameOutcome::OutOfPatience {
                attempts,
                last_failure,
            });
        }
        tokio::time::sleep(RENAME_RETRY_PAUSE.min(deadline - now)).await;
    }
}

/// A session in the way (55006), a lock not granted in time (55P03) or the statement
/// timeout that bounds the server's own wait for sessions (57014).
fn rename_may_succeed_later(error: &tokio_postgres::Error) -> bool {
    [
        SqlState::OBJECT_IN_USE,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::QUERY_CANCELED,
    ]
    .iter()
    .any(|state| error.code() == Some(state))
}

async fn rename_in_one_transaction(
    client: &tokio_postgres::Client,
    request: &SwapRequest<'_>,
    timeout: Duration,
) -> Result<(), tokio_postgres::Error> {
    let live = quote_identifier(request.live);
    let shadow = quote_identifier(request.shadow);
    let kept = quote_identifier(request.kept);
    client
        .batch_execute(&format!(
            "BEGIN;
             SET LOCAL statement_timeout = '{}ms';
             ALTER DATABASE {shadow} WITH ALLOW_CONNECTIONS false;
             ALTER DATABASE {live} RENAME TO {kept};
             ALTER DATABASE {shadow} RENAME TO {live};
             COMMIT",
            timeout.as_millis()
        ))
        .await
}

/// Terminate every other session on `databases`; how many were signalled.
async fn terminate_sessions(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    databases: &[&str],
) -> Result<u64, ProvisionError> {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
             FROM pg_stat_activity
             WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
            &[&databases],
        )
        .await
        .map_err(statement_error(
            cluster,
            format!("terminate the sessions on {databases:?}"),
        ))?;
    let terminated: i64 = row.get(0);
    Ok(u64::try_from(terminated).unwrap_or(0))
}

/// Poll until no other session is on `databases` or `deadline` passes (one look at
/// least); how many remain.
async fn wait_for_sessions_to_end(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
    databases: &[&str],
    deadline: Instant,
) -> Result<i64, ProvisionError> {
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
                &[&databases],
            )
            .await
            .map_err(statement_error(
                cluster,
                format!("count the sessions on {databases:?}"),
            ))?;
        let remaining: i64 = row.get(0);
        if remaining == 0 || Instant::now() >= deadline {
            return Ok(remaining);
        }
        tokio::time::sleep(SESSION_POLL_INTERVAL).await;
    }
}

/// Lets live accept connections again if the swap's future is dropped between blocking
/// and re-allowing; disarmed once that happened.
struct ReallowOnDrop {
    cluster: ClusterConfig,
    live: String,
    armed: bool,
}

impl Drop for ReallowOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(cluster = %self.cluster.name, live = self.live, "swap abandoned with connections to live blocked, and no runtime to re-allow them");
            return;
        };
        let cluster = self.cluster.clone();
        let live = std::mem::take(&mut self.live);
        runtime.spawn(async move {
            match crate::set_allow_connections(&cluster, &live, true).await {
                Ok(()) => tracing::warn!(cluster = %cluster.name, live, "swap abandoned: live accepts connections again"),
                Err(error) => tracing::error!(cluster = %cluster.name, live, %error, "swap abandoned: live still refuses connections"),
            }
        });
    }
}

/// Step `block_connections`'s second half: end every other session on `database` (after
/// `ALLOW_CONNECTIONS false`, none comes back); how many were signalled.
pub async fn end_sessions(cluster: &ClusterConfig, database: &str) -> Result<u64, ProvisionError> {
    let client = maintenance_client(cluster).await?;
    terminate_sessions(cluster, &client, &[database]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setting_names_are_quoted_part_by_part() {
        assert_eq!(setting_name_sql("work_mem"), "\"work_mem\"");
        assert_eq!(setting_name_sql("app.tenant"), "\"app\".\"tenant\"");
        assert_eq!(setting_name_sql("we\"ird"), "\"we\"\"ird\"");
    }
}
