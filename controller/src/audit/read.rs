//! Reading the audit log: `lifeboat audit export` (JSON lines, every field and both hashes,
//! so whoever holds the key can check the chain away from the catalog) and a tenant's
//! entries a page at a time, for its owners in the panel.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_postgres::Row;

use crate::catalog::{Catalog, CatalogError, query_error};

/// Entries read per query while exporting.
const EXPORT_PAGE_ENTRIES: i64 = 1000;

/// The most entries one page of [`entries_for_tenant`] returns.
pub const MAX_PAGE_ENTRIES: i64 = 200;

/// One entry as exported and shown. `details` is the catalog's jsonb text verbatim: the
/// exact bytes `entry_hash` covers. Entries from before the chain (V11) have no role,
/// reason, address or hashes.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub actor_role: Option<String>,
    pub tenant: Option<String>,
    pub action: String,
    pub reason: Option<String>,
    pub address: Option<IpAddr>,
    pub details: Box<RawValue>,
    pub key_id: Option<String>,
    pub prev_hash: Option<String>,
    pub entry_hash: Option<String>,
}

const ENTRY_COLUMNS: &str = "id, at, actor, actor_role, tenant, action, reason, address, \
                             details::text AS details, key_id, prev_hash, entry_hash";

impl AuditEntry {
    fn from_row(row: &Row) -> Result<AuditEntry, CatalogError> {
        let details: String = row.get("details");
        let details = RawValue::from_string(details).map_err(|error| {
            CatalogError::Inconsistent(format!("audit details are not JSON: {error}"))
        })?;
        let hex_of = |column: &str| row.get::<_, Option<Vec<u8>>>(column).map(hex::encode);
        Ok(AuditEntry {
            id: row.get("id"),
            at: row.get("at"),
            actor: row.get("actor"),
            actor_role: row.get("actor_role"),
            tenant: row.get("tenant"),
            action: row.get("action"),
            reason: row.get("reason"),
            address: row.get("address"),
            details,
            key_id: row.get("key_id"),
            prev_hash: hex_of("prev_hash"),
            entry_hash: hex_of("entry_hash"),
        })
    }
}

/// Which entries `export` writes.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub tenant: Option<String>,
    pub since: Option<DateTime<Utc>>,
}

/// Write the entries `filter` selects to `out` as JSON lines, oldest first, a page at a time
/// from one snapshot. Returns how many were written.
pub async fn export<W: AsyncWrite + Unpin>(
    catalog: &Catalog,
    filter: &ExportFilter,
    out: &mut W,
) -> Result<u64, ExportError> {
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(query_error("begin"))?;
    let query = format!(
        "SELECT {ENTRY_COLUMNS} FROM audit_log
         WHERE id > $1 AND ($2::text IS NULL OR tenant = $2)
           AND ($3::timestamptz IS NULL OR at >= $3)
         ORDER BY id LIMIT $4"
    );
    let mut after_id = i64::MIN;
    let mut written = 0;
    loop {
        let rows = transaction
            .query(
                &query,
                &[
                    &after_id,
                    &filter.tenant,
                    &filter.since,
                    &EXPORT_PAGE_ENTRIES,
                ],
            )
            .await
            .map_err(query_error("read the audit log"))?;
        let Some(last) = rows.last() else { break };
        after_id = last.get("id");
        for row in &rows {
            let entry = AuditEntry::from_row(row)?;
            let mut line = serde_json::to_vec(&entry)
                .map_err(|error| CatalogError::Inconsistent(error.to_string()))?;
            line.push(b'\n');
            out.write_all(&line).await.map_err(ExportError::Write)?;
            written += 1;
        }
    }
    out.flush().await.map_err(ExportError::Write)?;
    Ok(written)
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("writing the export failed: {0}")]
    Write(std::io::Error),
}

/// Where a page of [`entries_for_tenant`] starts.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Entries older than this id (None: from the newest).
    pub before_id: Option<i64>,
    /// At most this many (capped at [`MAX_PAGE_ENTRIES`]).
    pub limit: i64,
}

/// The entries about `tenant`, newest first: what its owners see. Only entries naming this
/// tenant are read; the caller has checked that the viewer owns it.
pub async fn entries_for_tenant(
    catalog: &Catalog,
    tenant: &lifeboat_core::ids::TenantName,
    page: Page,
) -> Result<Vec<AuditEntry>, CatalogError> {
    let connection = catalog.connection().await?;
    let limit = page.limit.clamp(1, MAX_PAGE_ENTRIES);
    let rows = connection
        .query(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM audit_log
                 WHERE tenant = $1 AND ($2::bigint IS NULL OR id < $2)
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&tenant.as_str(), &page.before_id, &limit],
        )
        .await
        .map_err(query_error("read the tenant's audit entries"))?;
    rows.iter().map(AuditEntry::from_row).collect()
}
