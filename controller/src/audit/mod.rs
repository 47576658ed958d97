//! The audit log: who did what to which tenant, why, from where and when, as a keyed hash
//! chain that `lifeboat audit verify` checks end to end.
//!
//! - [`record`] appends one entry in the caller's transaction, so a change and its record
//!   commit together (or not at all). Appends are serialised by the row lock on
//!   `audit_chain_head`, so two transactions never chain onto the same predecessor.
//! - [`Actor`] is the authenticated caller: a panel user with their role, the command line
//!   as the PostgreSQL role its catalog connection logged in as ([`Actor::catalog_operator`]),
//!   an agent by its token's name, or the controller's own loops (`system`). Never an
//!   environment variable.
//! - [`chain`] is the hashing and the key; [`verify`] walks the chain; [`read`] exports it
//!   and pages a tenant's entries for its owners.
//!
//! The threat model (what is detected, by whom, with which key) is in ARCHITECTURE.md,
//! "The audit log".

pub mod chain;
pub mod read;
pub mod verify;

use std::fmt;
use std::net::IpAddr;

use tokio_postgres::GenericClient;

use crate::catalog::{Catalog, CatalogError, query_error};
use chain::EntryFields;

pub use chain::{AuditKey, AuditKeyError, generate_key_file, use_key_for_writing};
pub use read::{AuditEntry, ExportFilter, Page, entries_for_tenant, export};
pub use verify::{ChainBreak, VerifyReport, verify};

/// What an actor is to lifeboat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorRole {
    /// Staff: everything.
    Admin,
    /// Staff: restores for customers.
    Helpdesk,
    /// A customer managing its tenant.
    Owner,
    /// A customer who only looks.
    Viewer,
    /// The command line, acting with the catalog's credentials.
    Operator,
    /// An agent, by its token.
    Agent,
    /// The controller's own loops (maintenance, purge).
    System,
}

impl ActorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorRole::Admin => "admin",
            ActorRole::Helpdesk => "helpdesk",
            ActorRole::Owner => "owner",
            ActorRole::Viewer => "viewer",
            ActorRole::Operator => "operator",
            ActorRole::Agent => "agent",
            ActorRole::System => "system",
        }
    }
}

impl fmt::Display for ActorRole {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Who acts, as authenticated by the door they came through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub name: String,
    pub role: ActorRole,
    /// The address a request came from (panel and API callers).
    pub address: Option<IpAddr>,
}

impl Actor {
    /// The controller's own work, e.g. `maintenance:<run>`.
    pub fn system(name: impl Into<String>) -> Actor {
        Actor {
            name: name.into(),
            role: ActorRole::System,
            address: None,
        }
    }

    /// An agent, by the name of the token it authenticated with.
    pub fn agent(token_name: impl Into<String>) -> Actor {
        Actor {
            name: token_name.into(),
            role: ActorRole::Agent,
            address: None,
        }
    }

    /// The command line: the PostgreSQL role the catalog's connections authenticated as
    /// (`session_user`), which is what the catalog itself vouches for.
    pub async fn catalog_operator(catalog: &Catalog) -> Result<Actor, CatalogError> {
        let connection = catalog.connection().await?;
        let name: String = connection
            .query_one("SELECT session_user::text", &[])
            .await
            .map_err(query_error("ask the catalog who we are"))?
            .get(0);
        Ok(Actor {
            name,
            role: ActorRole::Operator,
            address: None,
        })
    }
}

impl fmt::Display for Actor {
    /// `role:name`, as `drills.requested_by` and `restores.requested_by` keep it.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.role, self.name)
    }
}

/// How often an append is tried when another transaction moved the head between reading
/// and writing it (only possible outside a transaction: inside one, the row lock holds).
const APPEND_ATTEMPTS: usize = 5;

/// Append an entry to the audit log, in the caller's transaction so that the change and its
/// record commit together. `details` is free-form JSON; never put a secret in it. Returns
/// the entry's id.
pub async fn record<C: GenericClient>(
    client: &C,
    actor: &Actor,
    action: &str,
    tenant: Option<&str>,
    reason: Option<&str>,
    details: serde_json::Value,
) -> Result<i64, CatalogError> {
    let key = chain::writer_key();
    for _ in 0..APPEND_ATTEMPTS {
        // The row lock serialises appends until the caller's transaction ends.
        let head = client
            .query_opt(
                "SELECT legacy_last_id, last_id, last_hash, entries, now(), $1::jsonb::text
                 FROM audit_chain_head FOR UPDATE",
                &[&details],
            )
            .await
            .map_err(query_error("lock the audit chain's head"))?
            .ok_or_else(|| {
                CatalogError::Audit(
                    "the audit chain's head row is missing: run `lifeboat audit verify`".into(),
                )
            })?;
        let legacy_last_id: i64 = head.get(0);
        let last_id: i64 = head.get(1);
        let last_hash: Option<Vec<u8>> = head.get(2);
        let entries: i64 = head.get(3);
        let at: chrono::DateTime<chrono::Utc> = head.get(4);
        let details_text: String = head.get(5);
        if entries > 0 {
            // A statement of its own: it sees the head's last entry even when the lock above
            // waited for the transaction that wrote it.
            let last_key_id: Option<String> = client
                .query_opt("SELECT key_id FROM audit_log WHERE id = $1", &[&last_id])
                .await
                .map_err(query_error("read the audit chain's newest entry"))?
                .and_then(|row| row.get(0));
            refuse_key_change(last_key_id.as_deref(), key.as_deref())?;
        }
        let prev_hash = match last_hash {
            Some(hash) => hash,
            None => chain::genesis(legacy_last_id).to_vec(),
        };
        let id = last_id + 1;
        let key_id = key.as_deref().map(AuditKey::id);
        let fields = EntryFields {
            id,
            at,
            actor: &actor.name,
            role: actor.role.as_str(),
            tenant,
            action,
            reason,
            address: actor.address,
            details: &details_text,
            key_id,
            prev_hash: &prev_hash,
        };
        let entry_hash = fields.hash(key.as_deref()).to_vec();
        // Compare and swap: the head moves only from the state read above.
        let appended = client
            .execute(
                "WITH moved AS (
                     UPDATE audit_chain_head
                     SET last_id = $1::bigint, last_hash = $12, entries = entries + 1
                     WHERE last_id = $1::bigint - 1
                     RETURNING last_id)
                 INSERT INTO audit_log (id, at, actor, actor_role, tenant, action, reason,
                                        address, details, key_id, prev_hash, entry_hash)
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9::text::jsonb, $10, $11, $12
                 FROM moved",
                &[
                    &id,
                    &at,
                    &actor.name,
                    &actor.role.as_str(),
                    &tenant,
                    &action,
                    &reason,
                    &actor.address,
                    &details_text,
                    &key_id,
                    &prev_hash,
                    &entry_hash,
                ],
            )
            .await
            .map_err(query_error("write the audit log"))?;
        if appended == 1 {
            return Ok(id);
        }
    }
    Err(CatalogError::Audit(format!(
        "the audit chain's head kept moving during {APPEND_ATTEMPTS} attempts to append; record entries inside a transaction"
    )))
}

/// A process must not chain onto entries keyed differently: without a key (a downgrade
/// anyone could forge) or with another key (entries `verify` could not vouch for).
fn refuse_key_change(last: Option<&str>, ours: Option<&AuditKey>) -> Result<(), CatalogError> {
    match (last, ours) {
        (Some(last), None) => Err(CatalogError::Audit(format!(
            "the audit log is chained with key {last}; set audit_key_file to that key before changing anything"
        ))),
        (Some(last), Some(ours)) if last != ours.id() => Err(CatalogError::Audit(format!(
            "the audit log is chained with key {last}, but audit_key_file holds key {}; use the same key everywhere",
            ours.id()
        ))),
        _ => Ok(()),
    }
}
