//! Agent tokens: agents authenticate to the API with a bearer token.
//!
//! A token is 244 random bits (two UUIDv4s) shown once when created; the catalog keeps only its SHA-256
//! (a token is random and long, so a fast hash is the right one — unlike a password, it
//! cannot be guessed from a dictionary). Revoking a token takes effect at the next request.

use sha2::{Digest, Sha256};

use crate::catalog::{self, Catalog, CatalogError, query_error};

/// Every token starts with this, so a leaked one is easy to recognise (and to scan for).
pub const TOKEN_PREFIX: &str = "lbt_";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "agent name {0:?} is not valid: lowercase letters, digits and '-', at most 63 characters"
    )]
    InvalidName(String),
    #[error("an agent token named {0:?} already exists; revoke it or choose another name")]
    Exists(String),
    #[error("no active agent token named {0:?}")]
    NotFound(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A new random token.
pub fn generate_token() -> String {
    let random = [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()];
    format!("{TOKEN_PREFIX}{}{}", random[0].simple(), random[1].simple())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Create a token for agent `name`; returns the token, which is not stored.
pub async fn create_token(
    catalog: &Catalog,
    name: &str,
    actor: &str,
) -> Result<String, TokenError> {
    if !valid_name(name) {
        return Err(TokenError::InvalidName(name.to_owned()));
    }
    let token = generate_token();
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let inserted = transaction
        .execute(
            "INSERT INTO agent_tokens (name, token_sha256) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
            &[&name, &token_hash(&token)],
        )
        .await
        .map_err(query_error("insert agent token"))?;
    if inserted == 0 {
        return Err(TokenError::Exists(name.to_owned()));
    }
    catalog::audit(
        &*transaction,
        actor,
        "agent-token.create",
        None,
        serde_json::json!({ "agent": name }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(token)
}

/// Revoke agent `name`'s token. The row stays (revoked), so the name cannot be reused by
/// accident and the audit trail keeps its meaning.
pub async fn revoke_token(catalog: &Catalog, name: &str, actor: &str) -> Result<(), TokenError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let revoked = transaction
        .execute(
            "UPDATE agent_tokens SET revoked_at = now() WHERE name = $1 AND revoked_at IS NULL",
            &[&name],
        )
        .await
        .map_err(query_error("revoke agent token"))?;
    if revoked == 0 {
        return Err(TokenError::NotFound(name.to_owned()));
    }
    catalog::audit(
        &*transaction,
        actor,
        "agent-token.revoke",
        None,
        serde_json::json!({ "agent": name }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(())
}

/// The agent a token belongs to, if it is known and not revoked.
pub async fn authenticate(catalog: &Catalog, token: &str) -> Result<Option<String>, CatalogError> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let connection = catalog.connection().await?;
    // last_seen_at is written at most once a minute per agent, not on every request.
    let row = connection
        .query_opt(
            "WITH found AS (
                 SELECT id, name, last_seen_at FROM agent_tokens
                 WHERE token_sha256 = $1 AND revoked_at IS NULL
             ), touched AS (
                 UPDATE agent_tokens SET last_seen_at = now()
                 WHERE id IN (SELECT id FROM found
                              WHERE last_seen_at IS NULL OR last_seen_at < now() - interval '1 minute')
             )
             SELECT name FROM found",
            &[&token_hash(token)],
        )
        .await
        .map_err(query_error("authenticate agent"))?;
    Ok(row.map(|row| row.get(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let first = generate_token();
        let second = generate_token();
        assert_ne!(first, second);
        assert!(first.starts_with(TOKEN_PREFIX));
        assert_eq!(first.len(), TOKEN_PREFIX.len() + 64);
        assert!(valid_name("db-host-1"));
        assert!(!valid_name("Agent One"));
    }
}
