//! Agent tokens: agents authenticate to the API with a bearer token.
//!
//! A token is 256 random bits shown once when created; the catalog keeps only its SHA-256
//! (made and hashed by [`crate::secret_tokens`], like every other bearer secret). Revoking
//! a token takes effect at the next request, and a claim that was waiting when it happened
//! hands out nothing ([`lock_active_token`]).
//!
//! A token is scoped ([`AgentScope`]): the clusters whose jobs it may claim, and whether it
//! may be given jobs that need the age identity (drills). The controller filters claims by
//! the token's scope; an agent's request can narrow it, never widen it. Tokens made before
//! scopes existed (migration V7) serve every cluster and cannot decrypt.

use lifeboat_core::ids::ClusterName;
use tokio_postgres::GenericClient;

use crate::audit::{self, Actor};
use crate::catalog::{Catalog, CatalogError, query_error};

/// Every token starts with this, so a leaked one is easy to recognise (and to scan for).
pub const TOKEN_PREFIX: &str = "lbt_";

/// The agent name of the token a controller generates for its embedded agent. No catalog
/// token may take it, so a job leased to the embedded agent is never another agent's.
pub const EMBEDDED_AGENT_NAME: &str = "embedded";

/// The clusters a token may claim jobs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClusterScope {
    /// Every cluster: `--all-clusters`, and tokens made before scopes existed.
    All,
    /// Only these (at least one).
    Only(Vec<ClusterName>),
}

impl ClusterScope {
    /// The clusters an agent asking for `requested` may be offered: the request narrowed to
    /// this scope, never widened by it.
    pub fn narrow(&self, requested: &[ClusterName]) -> Vec<ClusterName> {
        match self {
            ClusterScope::All => requested.to_vec(),
            ClusterScope::Only(allowed) => requested
                .iter()
                .filter(|cluster| allowed.contains(cluster))
                .cloned()
                .collect(),
        }
    }
}

impl std::fmt::Display for ClusterScope {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClusterScope::All => formatter.write_str("all clusters"),
            ClusterScope::Only(clusters) => {
                let names: Vec<&str> = clusters.iter().map(ClusterName::as_str).collect();
                write!(formatter, "clusters {}", names.join(", "))
            }
        }
    }
}

/// What a token allows its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentScope {
    pub clusters: ClusterScope,
    /// May be given jobs that need the age identity (drills).
    pub can_decrypt: bool,
}

/// A known, unrevoked token, as [`authenticate`] finds it.
#[derive(Debug, Clone)]
pub struct AgentToken {
    /// The `agent_tokens` row, for [`lock_active_token`].
    pub id: i64,
    pub name: String,
    pub scope: AgentScope,
}

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
    #[error("the agent name {0:?} is reserved for a controller's embedded agent")]
    Reserved(String),
    #[error(
        "a token scoped to clusters must name at least one; pass --all-clusters for every cluster"
    )]
    NoClusters,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The SHA-256 of a token, as stored.
pub fn token_hash(token: &str) -> Vec<u8> {
    crate::secret_tokens::token_sha256(token)
}

/// A new random token.
pub fn generate_token() -> String {
    crate::secret_tokens::generate_token(TOKEN_PREFIX)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Create a token for agent `name` with `scope`; returns the token, which is not stored.
pub async fn create_token(
    catalog: &Catalog,
    name: &str,
    scope: &AgentScope,
    actor: &Actor,
) -> Result<String, TokenError> {
    if !valid_name(name) {
        return Err(TokenError::InvalidName(name.to_owned()));
    }
    if name == EMBEDDED_AGENT_NAME {
        return Err(TokenError::Reserved(name.to_owned()));
    }
    let clusters: Option<Vec<&str>> = match &scope.clusters {
        ClusterScope::All => None,
        ClusterScope::Only(clusters) if clusters.is_empty() => return Err(TokenError::NoClusters),
        ClusterScope::Only(clusters) => Some(clusters.iter().map(ClusterName::as_str).collect()),
    };
    let token = generate_token();
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let inserted = transaction
        .execute(
            "INSERT INTO agent_tokens (name, token_sha256, clusters, can_decrypt)
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
            &[&name, &token_hash(&token), &clusters, &scope.can_decrypt],
        )
        .await
        .map_err(query_error("insert agent token"))?;
    if inserted == 0 {
        return Err(TokenError::Exists(name.to_owned()));
    }
    audit::record(
        &*transaction,
        actor,
        "agent-token.create",
        None,
        None,
        serde_json::json!({
            "agent": name,
            "clusters": clusters,
            "can_decrypt": scope.can_decrypt,
        }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(token)
}

/// Revoke agent `name`'s token. The row stays (revoked), so the name cannot be reused by
/// accident and the audit trail keeps its meaning.
pub async fn revoke_token(catalog: &Catalog, name: &str, actor: &Actor) -> Result<(), TokenError> {
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
    audit::record(
        &*transaction,
        actor,
        "agent-token.revoke",
        None,
        None,
        serde_json::json!({ "agent": name }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(())
}

/// The token's row and scope, if it is known and not revoked.
pub async fn authenticate(
    catalog: &Catalog,
    token: &str,
) -> Result<Option<AgentToken>, CatalogError> {
    if !token.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    let connection = catalog.connection().await?;
    // last_seen_at is written at most once a minute per agent, not on every request.
    let row = connection
        .query_opt(
            "WITH found AS (
                 SELECT id, name, clusters, can_decrypt, last_seen_at FROM agent_tokens
                 WHERE token_sha256 = $1 AND revoked_at IS NULL
             ), touched AS (
                 UPDATE agent_tokens SET last_seen_at = now()
                 WHERE id IN (SELECT id FROM found
                              WHERE last_seen_at IS NULL OR last_seen_at < now() - interval '1 minute')
             )
             SELECT id, name, clusters, can_decrypt FROM found",
            &[&token_hash(token)],
        )
        .await
        .map_err(query_error("authenticate agent"))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let name: String = row.get(1);
    let clusters = match row.get::<_, Option<Vec<String>>>(2) {
        None => ClusterScope::All,
        Some(names) => ClusterScope::Only(
            names
                .iter()
                .map(|cluster| ClusterName::parse(cluster))
                .collect::<Result<_, _>>()
                .map_err(|error| {
                    CatalogError::Inconsistent(format!(
                        "agent token {name:?} names a cluster that is not a valid name: {error}"
                    ))
                })?,
        ),
    };
    Ok(Some(AgentToken {
        id: row.get(0),
        name,
        scope: AgentScope {
            clusters,
            can_decrypt: row.get(3),
        },
    }))
}

/// Whether token `id` is still unrevoked, keeping it so until the caller's transaction
/// ends: a revocation running meanwhile waits for that transaction, and one that committed
/// first is seen. A claim checks this in its own transaction, so a claim that waited
/// (long poll) through a revocation hands out nothing.
pub async fn lock_active_token<C: GenericClient>(
    client: &C,
    id: i64,
) -> Result<bool, CatalogError> {
    let row = client
        .query_opt(
            "SELECT 1 FROM agent_tokens WHERE id = $1 AND revoked_at IS NULL FOR SHARE",
            &[&id],
        )
        .await
        .map_err(query_error("check the agent token"))?;
    Ok(row.is_some())
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

    #[test]
    fn a_request_narrows_a_token_scope_and_never_widens_it() {
        let cluster = |name: &str| ClusterName::parse(name).expect("cluster name");
        let requested = [cluster("main"), cluster("other")];
        assert_eq!(ClusterScope::All.narrow(&requested), requested.to_vec());
        let only_main = ClusterScope::Only(vec![cluster("main"), cluster("third")]);
        assert_eq!(only_main.narrow(&requested), vec![cluster("main")]);
        assert!(only_main.narrow(&[]).is_empty());
    }
}
