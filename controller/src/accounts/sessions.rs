//! Sessions of the panel, kept server-side in the catalog.
//!
//! [`Accounts::start_session`] makes a new random token at every login (a token from
//! before the login never becomes a session: no fixation), returns it once, and keeps its
//! SHA-256. Each session has its own CSRF token, which every form sends back and
//! [`Session::csrf_matches`] checks. [`Accounts::session_from_token`] refuses a session
//! that is ended, idle longer than `[panel] session_idle_minutes`, older than
//! `session_max_hours`, whose user is disabled or whose tenant is frozen — read from the
//! catalog at every call, never cached — and writes `last_seen_at` at most once per
//! [`TOUCH_INTERVAL`].

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_core::ids::TenantName;
use secrecy::{ExposeSecret, SecretString};

use super::login::AuthenticatedUser;
use super::users::end_sessions_of;
use super::{AccountError, Accounts, Role};
use crate::catalog::query_error;
use crate::secret_tokens::{generate_token, token_sha256};

/// Every session token starts with this.
pub const SESSION_TOKEN_PREFIX: &str = "lbs_";
/// `last_seen_at` is written at most this often per session.
pub const TOUCH_INTERVAL: Duration = Duration::from_secs(60);

/// A session just started: its token (for the cookie) and CSRF token, shown once.
#[derive(Debug)]
pub struct NewSession {
    pub id: i64,
    pub token: SecretString,
    pub csrf_token: SecretString,
}

/// A live session, as a request presents it.
#[derive(Debug)]
pub struct Session {
    pub id: i64,
    pub user_id: i64,
    pub login: String,
    pub role: Role,
    pub tenant: Option<TenantName>,
    pub csrf_token: SecretString,
}

impl Session {
    /// Whether a form's CSRF token is this session's; compared as hashes, so the time the
    /// comparison takes says nothing about the token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        token_sha256(presented) == token_sha256(self.csrf_token.expose_secret())
    }
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

impl Accounts {
    /// Start a session for `user`, who just logged in. With `[panel] single_session`, the
    /// user's other sessions end.
    pub async fn start_session(
        &self,
        user: &AuthenticatedUser,
        client_address: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<NewSession, AccountError> {
        let token = generate_token(SESSION_TOKEN_PREFIX);
        let csrf_token = generate_token("");
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        if self.panel.single_session {
            end_sessions_of(&*transaction, user.user_id).await?;
        }
        let address = tokio_postgres_inet(client_address);
        let id: i64 = transaction
            .query_one(
                "INSERT INTO sessions (token_sha256, user_id, csrf_token, client_address, created_at, last_seen_at)
                 VALUES ($1, $2, $3, $4::text::inet, $5, $5) RETURNING id",
                &[&token_sha256(&token), &user.user_id, &csrf_token, &address, &now],
            )
            .await
            .map_err(query_error("start a session"))?
            .get(0);
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(NewSession {
            id,
            token: SecretString::from(token),
            csrf_token: SecretString::from(csrf_token),
        })
    }

    /// The live session `token` names at `now`, or `None` (unknown, ended, idle, too old,
    /// user disabled, tenant frozen). An expired session is ended on the way.
    pub async fn session_from_token(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Session>, AccountError> {
        if !token.starts_with(SESSION_TOKEN_PREFIX) {
            return Ok(None);
        }
        let connection = self.catalog.connection().await?;
        let row = connection
            .query_opt(
                "SELECT s.id, s.csrf_token, s.created_at, s.last_seen_at, u.id, u.login, u.role, u.tenant
                 FROM sessions s
                 JOIN users u ON u.id = s.user_id
                 LEFT JOIN tenants t ON t.name = u.tenant
                 WHERE s.token_sha256 = $1 AND s.ended_at IS NULL
                   AND u.disabled_at IS NULL AND t.frozen_at IS NULL",
                &[&token_sha256(token)],
            )
            .await
            .map_err(query_error("find the session"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let id: i64 = row.get(0);
        let created_at: DateTime<Utc> = row.get(2);
        let last_seen_at: DateTime<Utc> = row.get(3);
        if now - last_seen_at > chrono_duration(self.panel.session_idle)
            || now - created_at > chrono_duration(self.panel.session_max)
        {
            connection
                .execute(
                    "UPDATE sessions SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL",
                    &[&id, &now],
                )
                .await
                .map_err(query_error("end an expired session"))?;
            return Ok(None);
        }
        if now - last_seen_at >= chrono_duration(TOUCH_INTERVAL) {
            connection
                .execute(
                    "UPDATE sessions SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2",
                    &[&id, &now],
                )
                .await
                .map_err(query_error("touch the session"))?;
        }
        let role_text: String = row.get(6);
        let role = Role::parse(&role_text)
            .map_err(|_| AccountError::Inconsistent(format!("user role {role_text:?}")))?;
        let tenant = row
            .get::<_, Option<String>>(7)
            .map(|name| {
                TenantName::parse(&name)
                    .map_err(|_| AccountError::Inconsistent(format!("user tenant {name:?}")))
            })
            .transpose()?;
        Ok(Some(Session {
            id,
            user_id: row.get(4),
            login: row.get(5),
            role,
            tenant,
            csrf_token: SecretString::from(row.get::<_, String>(1)),
        }))
    }

    /// End the session `token` names (logout); true if it was open.
    pub async fn end_session(&self, token: &str) -> Result<bool, AccountError> {
        let connection = self.catalog.connection().await?;
        Ok(connection
            .execute(
                "UPDATE sessions SET ended_at = now() WHERE token_sha256 = $1 AND ended_at IS NULL",
                &[&token_sha256(token)],
            )
            .await
            .map_err(query_error("end the session"))?
            == 1)
    }

    /// End every session of user `user_id`; how many were open.
    pub async fn end_all_sessions_of(&self, user_id: i64) -> Result<u64, AccountError> {
        let connection = self.catalog.connection().await?;
        end_sessions_of(&**connection, user_id).await
    }
}

/// An address as text for an `inet` column (tokio-postgres has no `IpAddr` mapping to
/// `inet` without an extra crate).
fn tokio_postgres_inet(address: IpAddr) -> String {
    address.to_string()
}
