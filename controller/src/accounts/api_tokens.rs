//! API tokens for a customer's automation: scoped to one tenant and a customer role,
//! shown once (`lbu_…`), stored as SHA-256, listable without their secret, revocable, and
//! expiring. [`Accounts::api_token_principal`] refuses an unknown, revoked or expired token,
//! and any token of a frozen tenant, reading the catalog at every call.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_core::ids::TenantName;
use secrecy::SecretString;
use serde::Serialize;
use tokio_postgres::error::SqlState;

use super::{AccountError, Accounts, Role};
use crate::audit::{self, Actor};
use crate::catalog::query_error;
use crate::secret_tokens::{generate_token, token_sha256};

/// Every API token starts with this.
pub const API_TOKEN_PREFIX: &str = "lbu_";
/// The shortest and longest lifetimes of a token.
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// A token as listed: everything but its secret.
#[derive(Debug, Clone, Serialize)]
pub struct ApiTokenInfo {
    pub id: i64,
    pub tenant: TenantName,
    pub role: Role,
    pub name: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A token just issued: its secret, shown once, and what it is.
#[derive(Debug)]
pub struct IssuedApiToken {
    pub token: SecretString,
    pub info: ApiTokenInfo,
}

/// Who a valid API token speaks for.
#[derive(Debug, Clone)]
pub struct ApiTokenPrincipal {
    pub token_id: i64,
    pub tenant: TenantName,
    pub role: Role,
    pub name: String,
}

fn valid_token_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

/// The principal of an API token: `$1` its SHA-256, `$2` now. A read only, so that the
/// busiest statement of the API takes no row lock and writes nothing.
const FIND_API_TOKEN: &str = "SELECT k.id, k.tenant, k.role, k.name,
            k.last_used_at IS NULL OR k.last_used_at < $2::timestamptz - interval '1 minute'
     FROM api_tokens k JOIN tenants t ON t.name = k.tenant
     WHERE k.token_sha256 = $1 AND k.revoked_at IS NULL AND k.expires_at > $2
       AND t.frozen_at IS NULL";

/// `last_used_at` of token `$1` set to `$2`, unless another request did it this minute.
const TOUCH_API_TOKEN: &str = "UPDATE api_tokens SET last_used_at = $2
     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2::timestamptz - interval '1 minute')";

const SELECT_TOKENS: &str = "SELECT id, tenant, role, name, created_by, created_at, expires_at, revoked_at, last_used_at FROM api_tokens";

fn token_from_row(row: &tokio_postgres::Row) -> Result<ApiTokenInfo, AccountError> {
    let tenant: String = row.get(1);
    let role: String = row.get(2);
    Ok(ApiTokenInfo {
        id: row.get(0),
        tenant: TenantName::parse(&tenant)
            .map_err(|_| AccountError::Inconsistent(format!("API token tenant {tenant:?}")))?,
        role: Role::parse(&role)
            .map_err(|_| AccountError::Inconsistent(format!("API token role {role:?}")))?,
        name: row.get(3),
        created_by: row.get(4),
        created_at: row.get(5),
        expires_at: row.get(6),
        revoked_at: row.get(7),
        last_used_at: row.get(8),
    })
}

impl Accounts {
    /// Issue a token for `tenant` acting as `role` (owner or viewer), valid for
    /// `expires_in` from `now`.
    pub async fn issue_api_token(
        &self,
        tenant: &TenantName,
        role: Role,
        name: &str,
        expires_in: Duration,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<IssuedApiToken, AccountError> {
        if role.is_staff() {
            return Err(AccountError::StaffToken(role));
        }
        if !valid_token_name(name) {
            return Err(AccountError::InvalidTokenName(name.to_owned()));
        }
        if !(MIN_TOKEN_LIFETIME..=MAX_TOKEN_LIFETIME).contains(&expires_in) {
            return Err(AccountError::InvalidTokenLifetime);
        }
        let expires_at = now
            + chrono::Duration::from_std(expires_in)
                .map_err(|_| AccountError::InvalidTokenLifetime)?;
        let token = generate_token(API_TOKEN_PREFIX);
        let created_by = actor.to_string();
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        if !crate::tenants::tenant_held(&*transaction, tenant).await? {
            return Err(AccountError::UnknownTenant(tenant.clone()));
        }
        let inserted = transaction
            .query_one(
                &format!(
                    "WITH inserted AS (
                         INSERT INTO api_tokens (tenant, role, name, token_sha256, created_by, created_at, expires_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *
                     ) {} ",
                    SELECT_TOKENS.replace("FROM api_tokens", "FROM inserted")
                ),
                &[
                    &tenant.as_str(),
                    &role.as_str(),
                    &name,
                    &token_sha256(&token),
                    &created_by,
                    &now,
                    &expires_at,
                ],
            )
            .await;
        let row = match inserted {
            Err(error) if error.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Err(AccountError::TokenNameTaken {
                    tenant: tenant.clone(),
                    name: name.to_owned(),
                });
            }
            other => other.map_err(query_error("insert the API token"))?,
        };
        let info = token_from_row(&row)?;
        audit::record(
            &*transaction,
            actor,
            "api-token.issue",
            Some(tenant.as_str()),
            None,
            serde_json::json!({ "name": name, "role": role.as_str(), "expires_at": expires_at }),
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(IssuedApiToken {
            token: SecretString::from(token),
            info,
        })
    }

    /// `tenant`'s tokens, revoked and expired ones included, newest first.
    pub async fn list_api_tokens(
        &self,
        tenant: &TenantName,
    ) -> Result<Vec<ApiTokenInfo>, AccountError> {
        let connection = self.catalog.connection().await?;
        let rows = connection
            .query(
                &format!("{SELECT_TOKENS} WHERE tenant = $1 ORDER BY created_at DESC, id DESC"),
                &[&tenant.as_str()],
            )
            .await
            .map_err(query_error("list API tokens"))?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revoke `tenant`'s active token `name`; refused at its next use.
    pub async fn revoke_api_token(
        &self,
        tenant: &TenantName,
        name: &str,
        actor: &Actor,
    ) -> Result<(), AccountError> {
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let revoked = transaction
            .execute(
                "UPDATE api_tokens SET revoked_at = now()
                 WHERE tenant = $1 AND name = $2 AND revoked_at IS NULL",
                &[&tenant.as_str(), &name],
            )
            .await
            .map_err(query_error("revoke the API token"))?;
        if revoked == 0 {
            return Err(AccountError::UnknownToken {
                tenant: tenant.clone(),
                name: name.to_owned(),
            });
        }
        audit::record(
            &*transaction,
            actor,
            "api-token.revoke",
            Some(tenant.as_str()),
            None,
            serde_json::json!({ "name": name }),
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(())
    }

    /// Who `token` speaks for at `now`, if it is known, unrevoked, unexpired and its
    /// tenant is not frozen. `last_used_at` is written at most once a minute.
    pub async fn api_token_principal(
        &self,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiTokenPrincipal>, AccountError> {
        if !token.starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let connection = self.catalog.connection().await?;
        // Every API request with a token runs this: prepared once per pooled connection.
        let statement = connection
            .prepare_cached(FIND_API_TOKEN)
            .await
            .map_err(query_error("prepare the API token's lookup"))?;
        let row = connection
            .query_opt(&statement, &[&token_sha256(token), &now])
            .await
            .map_err(query_error("find the API token"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token_id: i64 = row.get(0);
        let touch_due: bool = row.get(4);
        if touch_due {
            connection
                .execute(TOUCH_API_TOKEN, &[&token_id, &now])
                .await
                .map_err(query_error("record the API token's use"))?;
        }
        let tenant: String = row.get(1);
        let role: String = row.get(2);
        Ok(Some(ApiTokenPrincipal {
            token_id,
            tenant: TenantName::parse(&tenant)
                .map_err(|_| AccountError::Inconsistent(format!("API token tenant {tenant:?}")))?,
            role: Role::parse(&role)
                .map_err(|_| AccountError::Inconsistent(format!("API token role {role:?}")))?,
            name: row.get(3),
        }))
    }
}
