//! Which backups need which age identity: the one home of `lifeboat keys status`.
//!
//! Every manifest names the recipients its backup was encrypted to (by fingerprint,
//! `manifest.pipeline.recipient_fingerprints`), and any one of their identities opens it.
//! Rotating keys is done in the configuration: add the new recipient to `recipients` where
//! backups are written (new backups go to the whole set), later remove the old one. Old
//! backups stay readable with the identities that made them, so an identity file may hold
//! the old identity beside the new one. This view says, for each set of recipients the
//! catalog's backups (trash included: they can still be restored) were written to, how
//! many backups and tenants, whether a current recipient is among them, and whether this
//! host's identity file opens them; so an operator knows when an old identity is no longer
//! needed: when no backup needs it alone.
//!
//! Per-tenant keys (`tenant_keys`): a backup encrypted to a tenant's key is shown under
//! that key, named with its tenant and the organisation recipients its identity is wrapped
//! to; it opens here when this host's identity file unwraps it, and it needs those
//! organisation identities kept. A shredded tenant key opens nothing, by design.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use lifeboat_core::config::Config;
use lifeboat_core::keys::Identities;
use serde::Serialize;
use tokio_postgres::GenericClient;

use crate::catalog::{CatalogError, query_error};

/// A recipient's fingerprint, and whether the configuration still encrypts to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipientState {
    pub fingerprint: String,
    /// In this configuration's `recipients`: new backups are encrypted to it.
    pub current: bool,
    /// This host's identity file holds its identity, or unwraps it for a tenant key
    /// (`None`: no identity file here).
    pub identity_here: Option<bool>,
    /// A tenant's own key: its identity is in the catalog, wrapped to organisation
    /// recipients. `current` then means the tenant's new backups use it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_key: Option<TenantKeyState>,
}

/// What the catalog knows of a tenant key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantKeyState {
    pub tenant: String,
    /// Fingerprints of the organisation recipients its identity is wrapped to.
    pub wrapped_to: Vec<String>,
    pub retired: bool,
    /// Shredded: no key lifeboat holds opens its backups any more.
    pub shredded: bool,
}

/// Backups written to one set of recipients.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientSetBackups {
    /// The recipients, any one of whose identities opens these backups.
    pub recipients: Vec<RecipientState>,
    pub backups: i64,
    pub tenants: i64,
    /// Of `backups`, those in the trash (still restorable until purged).
    pub trashed: i64,
    pub oldest: DateTime<Utc>,
    pub newest: DateTime<Utc>,
    /// A current recipient is among them: the current identities open these backups.
    pub readable_with_current_keys: bool,
    /// This host's identity file opens them (`None`: no identity file here).
    pub readable_here: Option<bool>,
    /// Encrypted only to shredded tenant keys: unreadable by design.
    pub shredded: bool,
}

/// What `lifeboat keys status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct KeyStatus {
    /// The configured recipients (fingerprints), new backups' set.
    pub current: Vec<RecipientState>,
    /// The catalog's backups by the set of recipients they were written to, newest first.
    pub sets: Vec<RecipientSetBackups>,
}

impl KeyStatus {
    /// Fingerprints of recipients no longer configured that some backups need, because no
    /// current recipient opens them: keep those identities.
    /// For a tenant key, the organisation identities it is wrapped to are what must be
    /// kept; a shredded one needs nothing.
    pub fn retired_but_needed(&self) -> BTreeSet<String> {
        self.sets
            .iter()
            .filter(|set| !set.readable_with_current_keys && !set.shredded)
            .flat_map(|set| set.recipients.iter())
            .flat_map(|recipient| match &recipient.tenant_key {
                None => vec![recipient.fingerprint.clone()],
                Some(tenant_key) if tenant_key.shredded => Vec::new(),
                Some(tenant_key) => tenant_key.wrapped_to.clone(),
            })
            .collect()
    }
}

/// The key status of the catalog's backups against `config`'s recipients and, when given,
/// the identities of this host's identity file.
pub async fn key_status<C: GenericClient>(
    client: &C,
    config: &Config,
    identities: Option<&Identities>,
) -> Result<KeyStatus, CatalogError> {
    let current: BTreeSet<String> = config
        .recipients
        .iter()
        .map(lifeboat_core::keys::Recipient::fingerprint)
        .collect();
    let tenant_keys: HashMap<String, TenantKeyState> = client
        .query(
            "SELECT fingerprint, tenant, wrapped_to, retired_at IS NOT NULL, shredded_at IS NOT NULL
             FROM tenant_keys",
            &[],
        )
        .await
        .map_err(query_error("read the tenant keys"))?
        .iter()
        .map(|row| {
            (
                row.get(0),
                TenantKeyState {
                    tenant: row.get(1),
                    wrapped_to: row.get(2),
                    retired: row.get(3),
                    shredded: row.get(4),
                },
            )
        })
        .collect();
    let here = |fingerprint: &String| {
        identities.map(|identities| identities.recipient_fingerprints().contains(fingerprint))
    };
    let state = |fingerprint: String| match tenant_keys.get(&fingerprint) {
        None => RecipientState {
            current: current.contains(&fingerprint),
            identity_here: here(&fingerprint),
            fingerprint,
            tenant_key: None,
        },
        Some(tenant_key) => RecipientState {
            current: !tenant_key.retired && !tenant_key.shredded,
            identity_here: identities.map(|identities| {
                !tenant_key.shredded
                    && tenant_key
                        .wrapped_to
                        .iter()
                        .any(|org| identities.recipient_fingerprints().contains(org))
            }),
            fingerprint,
            tenant_key: Some(tenant_key.clone()),
        },
    };
    // A current organisation recipient opens it, or unwraps the tenant key that does.
    let opens_with_current_keys = |recipient: &RecipientState| match &recipient.tenant_key {
        None => recipient.current,
        Some(tenant_key) => {
            !tenant_key.shredded
                && tenant_key
                    .wrapped_to
                    .iter()
                    .any(|org| current.contains(org))
        }
    };
    let rows = client
        .query(
            "SELECT fingerprints, count(*), count(DISTINCT tenant),
                    count(*) FILTER (WHERE trashed_at IS NOT NULL),
                    min(started_at), max(started_at)
               FROM (SELECT ARRAY(SELECT jsonb_array_elements_text(
                                     manifest -> 'pipeline' -> 'recipient_fingerprints')
                                  ORDER BY 1) AS fingerprints,
                            tenant, trashed_at, started_at
                       FROM backups) AS keyed
              GROUP BY fingerprints
              ORDER BY max(started_at) DESC",
            &[],
        )
        .await
        .map_err(query_error("read the backups' recipients"))?;
    let sets = rows
        .into_iter()
        .map(|row| {
            let recipients: Vec<RecipientState> = row
                .get::<_, Vec<String>>(0)
                .into_iter()
                .map(state)
                .collect();
            let readable_with_current_keys = recipients.iter().any(opens_with_current_keys);
            let shredded = !recipients.is_empty()
                && recipients.iter().all(|recipient| {
                    recipient
                        .tenant_key
                        .as_ref()
                        .is_some_and(|tenant_key| tenant_key.shredded)
                });
            let readable_here = identities.map(|_| {
                recipients
                    .iter()
                    .any(|recipient| recipient.identity_here == Some(true))
            });
            RecipientSetBackups {
                recipients,
                backups: row.get(1),
                tenants: row.get(2),
                trashed: row.get(3),
                oldest: row.get(4),
                newest: row.get(5),
                readable_with_current_keys,
                readable_here,
                shredded,
            }
        })
        .collect();
    Ok(KeyStatus {
        current: current.iter().cloned().map(state).collect(),
        sets,
    })
}
