//! `lifeboat audit verify`: walk the whole chain, in id order and in pages (memory bounded
//! by one page), in one read-only snapshot, and name the first entry that breaks it.
//!
//! What each check catches, for someone who edits the catalog without the audit key:
//! - an entry's hash not matching its fields: the entry was changed (or another's
//!   content moved into it);
//! - a gap in the ids (they are dense): entries were deleted;
//! - an entry not pointing at its predecessor's hash: something before it was changed and
//!   rehashed, or entries were moved;
//! - fewer entries than the head records: the newest were deleted, or the whole log emptied;
//! - an entry without a key after keyed ones, or with a key this verifier does not hold.

use std::fmt;

use tokio_postgres::Row;

use super::chain::{self, AuditKey, EntryFields};
use crate::catalog::{Catalog, CatalogError, query_error};

/// Entries read per query.
const PAGE_ENTRIES: i64 = 1000;

/// The first thing found wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainBreak {
    /// `audit_chain_head` has no row.
    HeadMissing,
    /// Entries are chained although they lie before the chain's recorded start.
    ChainedBeforeStart { id: i64 },
    /// Entry `expected` should come next; the next one present is `found`.
    Missing { expected: i64, found: i64 },
    /// The entry has no hash.
    Unhashed { id: i64 },
    /// The entry was chained with a key the verifier does not hold.
    UnknownKey { id: i64, key_id: String },
    /// The entry was chained without a key, after entries chained with one.
    Downgraded { id: i64 },
    /// The entry's fields do not give its hash.
    Changed { id: i64 },
    /// The entry's hash is its own, but it does not point at the entry before it.
    Unlinked { id: i64 },
    /// An entry beyond what the head records.
    BeyondHead { id: i64, head_last_id: i64 },
    /// The log ends before the head says it does.
    NewestRemoved {
        last_present: i64,
        head_last_id: i64,
    },
    /// No chained entry is left, but the head records some.
    Emptied { head_entries: i64 },
    /// The head's count or hash disagrees with the last entry.
    HeadMismatch { detail: String },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainBreak::HeadMissing => write!(
                formatter,
                "the chain's head (audit_chain_head) is missing: it was deleted or truncated"
            ),
            ChainBreak::ChainedBeforeStart { id } => write!(
                formatter,
                "entry {id} is chained but lies before the chain's start: the head's start was moved"
            ),
            ChainBreak::Missing { expected, found } => write!(
                formatter,
                "entry {expected} is missing (the next entry is {found}): deleted"
            ),
            ChainBreak::Unhashed { id } => {
                write!(
                    formatter,
                    "entry {id} has no hash: written outside lifeboat"
                )
            }
            ChainBreak::UnknownKey { id, key_id } => write!(
                formatter,
                "entry {id} is chained with key {key_id}, which this verifier does not hold (audit_key_file): it cannot be vouched for"
            ),
            ChainBreak::Downgraded { id } => write!(
                formatter,
                "entry {id} is chained without a key after entries chained with one: forged or rewritten"
            ),
            ChainBreak::Changed { id } => write!(
                formatter,
                "entry {id} does not match its hash: changed (or another entry's content moved into it)"
            ),
            ChainBreak::Unlinked { id } => write!(
                formatter,
                "entry {id} does not point at the entry before it: an earlier entry was changed and rehashed, or entries were reordered"
            ),
            ChainBreak::BeyondHead { id, head_last_id } => write!(
                formatter,
                "entry {id} lies beyond the chain's head (entry {head_last_id}): written outside lifeboat"
            ),
            ChainBreak::NewestRemoved {
                last_present,
                head_last_id,
            } => write!(
                formatter,
                "the log ends at entry {last_present} but the head records entry {head_last_id}: the newest entries were deleted"
            ),
            ChainBreak::Emptied { head_entries } => write!(
                formatter,
                "no chained entry is left but the head records {head_entries}: the log was emptied (TRUNCATE or DELETE)"
            ),
            ChainBreak::HeadMismatch { detail } => {
                write!(
                    formatter,
                    "the chain's head disagrees with the log: {detail}"
                )
            }
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Entries from before the chain (V11): counted, not vouched for.
    pub legacy_entries: i64,
    /// Chained entries checked before the walk stopped (all of them when intact).
    pub chained_entries: i64,
    /// Of those, the ones chained without a key (before a key was configured).
    pub unkeyed_entries: i64,
    /// The last chained entry's id and hash (hex) when intact: keep them elsewhere to detect
    /// a later rollback of the whole log to an earlier state.
    pub head_id: Option<i64>,
    pub head_hash: Option<String>,
    #[serde(serialize_with = "serialize_break")]
    pub problem: Option<ChainBreak>,
}

fn serialize_break<S: serde::Serializer>(
    problem: &Option<ChainBreak>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match problem {
        Some(problem) => serializer.serialize_some(&problem.to_string()),
        None => serializer.serialize_none(),
    }
}

impl VerifyReport {
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// The walk's state between entries.
struct Walk<'a> {
    key: Option<&'a AuditKey>,
    head_last_id: i64,
    expected_id: i64,
    prev_hash: Vec<u8>,
    seen_keyed: bool,
}

impl Walk<'_> {
    /// Check one entry; on success it becomes the predecessor of the next.
    fn check(&mut self, row: &Row) -> Result<bool, ChainBreak> {
        let id: i64 = row.get("id");
        if id > self.head_last_id {
            return Err(ChainBreak::BeyondHead {
                id,
                head_last_id: self.head_last_id,
            });
        }
        if id != self.expected_id {
            return Err(ChainBreak::Missing {
                expected: self.expected_id,
                found: id,
            });
        }
        let entry_hash: Option<Vec<u8>> = row.get("entry_hash");
        let prev_hash: Option<Vec<u8>> = row.get("prev_hash");
        let role: Option<String> = row.get("actor_role");
        let (Some(entry_hash), Some(prev_hash), Some(role)) = (entry_hash, prev_hash, role) else {
            return Err(ChainBreak::Unhashed { id });
        };
        let key_id: Option<String> = row.get("key_id");
        let key = match (&key_id, self.key) {
            (Some(key_id), Some(key)) if key_id == key.id() => Some(key),
            (Some(key_id), _) => {
                return Err(ChainBreak::UnknownKey {
                    id,
                    key_id: key_id.clone(),
                });
            }
            (None, _) if self.seen_keyed => return Err(ChainBreak::Downgraded { id }),
            (None, _) => None,
        };
        let fields = EntryFields {
            id,
            at: row.get("at"),
            actor: row.get("actor"),
            role: &role,
            tenant: row.get("tenant"),
            action: row.get("action"),
            reason: row.get("reason"),
            address: row.get("address"),
            details: row.get("details"),
            key_id: key_id.as_deref(),
            prev_hash: &prev_hash,
        };
        if fields.hash(key).as_slice() != entry_hash.as_slice() {
            return Err(ChainBreak::Changed { id });
        }
        if prev_hash != self.prev_hash {
            return Err(ChainBreak::Unlinked { id });
        }
        self.seen_keyed |= key.is_some();
        self.expected_id = id + 1;
        self.prev_hash = entry_hash;
        Ok(key.is_none())
    }
}

/// Walk the whole chain with `key` (None: a verifier without the key, which can vouch only
/// for entries chained without one).
pub async fn verify(
    catalog: &Catalog,
    key: Option<&AuditKey>,
) -> Result<VerifyReport, CatalogError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(query_error("begin"))?;
    let mut report = VerifyReport::default();
    let Some(head) = transaction
        .query_opt(
            "SELECT legacy_last_id, last_id, last_hash, entries FROM audit_chain_head",
            &[],
        )
        .await
        .map_err(query_error("read the audit chain's head"))?
    else {
        report.problem = Some(ChainBreak::HeadMissing);
        return Ok(report);
    };
    let legacy_last_id: i64 = head.get(0);
    let head_last_id: i64 = head.get(1);
    let head_last_hash: Option<Vec<u8>> = head.get(2);
    let head_entries: i64 = head.get(3);

    let legacy = transaction
        .query_one(
            "SELECT count(*), min(id) FILTER (WHERE entry_hash IS NOT NULL)
             FROM audit_log WHERE id <= $1",
            &[&legacy_last_id],
        )
        .await
        .map_err(query_error("count the entries from before the chain"))?;
    report.legacy_entries = legacy.get(0);
    if let Some(id) = legacy.get::<_, Option<i64>>(1) {
        report.problem = Some(ChainBreak::ChainedBeforeStart { id });
        return Ok(report);
    }

    let mut walk = Walk {
        key,
        head_last_id,
        expected_id: legacy_last_id + 1,
        prev_hash: chain::genesis(legacy_last_id).to_vec(),
        seen_keyed: false,
    };
    let mut after_id = legacy_last_id;
    loop {
        let rows = transaction
            .query(
                "SELECT id, at, actor, actor_role, tenant, action, reason, address,
                        details::text AS details, key_id, prev_hash, entry_hash
                 FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after_id, &PAGE_ENTRIES],
            )
            .await
            .map_err(query_error("read the audit log"))?;
        let Some(last) = rows.last() else { break };
        after_id = last.get("id");
        for row in &rows {
            match walk.check(row) {
                Ok(unkeyed) => {
                    report.chained_entries += 1;
                    report.unkeyed_entries += i64::from(unkeyed);
                }
                Err(problem) => {
                    report.problem = Some(problem);
                    return Ok(report);
                }
            }
        }
    }
    let last_present = walk.expected_id - 1;
    report.problem = if report.chained_entries == 0 && head_entries > 0 {
        Some(ChainBreak::Emptied { head_entries })
    } else if last_present < head_last_id {
        Some(ChainBreak::NewestRemoved {
            last_present,
            head_last_id,
        })
    } else if report.chained_entries != head_entries {
        Some(ChainBreak::HeadMismatch {
            detail: format!(
                "it counts {head_entries} entries, the log holds {}",
                report.chained_entries
            ),
        })
    } else if report.chained_entries > 0
        && head_last_hash.as_deref() != Some(walk.prev_hash.as_slice())
    {
        Some(ChainBreak::HeadMismatch {
            detail: format!("its hash is not entry {last_present}'s"),
        })
    } else {
        None
    };
    if report.problem.is_none() && report.chained_entries > 0 {
        report.head_id = Some(last_present);
        report.head_hash = Some(hex::encode(&walk.prev_hash));
    }
    Ok(report)
}
