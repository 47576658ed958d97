//! A tenant's owner asks staff for a restore (onto live, or into a copy), with a note; the
//! ask waits, one per tenant, until staff serve it (a restore of the tenant with the asked
//! target, and the asked backup if one was named, closes it with the job) or decline it, or the owner withdraws it. Customers never
//! restore themselves: a restore replaces the live database and needs staff's second
//! factor and name-typing (`api::v1::restores::confirm_intent`); asking needs neither.
//! Every ask and close is audited.

use chrono::{DateTime, Utc};
use lifeboat_core::ids::{BackupId, TenantName};
use serde::Serialize;
use tokio_postgres::GenericClient;

use super::{RestoreError, RestoreMode, query_error};
use crate::audit::{self, Actor};
use crate::catalog::Catalog;

/// The longest note an owner may write.
pub const MAX_NOTE_CHARS: usize = 2000;

/// An ask, as owners and staff see it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RestoreAsk {
    pub id: i64,
    pub tenant: String,
    /// The backup asked for; `None`: the newest.
    pub backup_id: Option<String>,
    /// `live` or `copy`.
    pub target: String,
    pub note: String,
    pub asked_by: String,
    pub asked_at: DateTime<Utc>,
    /// `open`, `served`, `declined` or `withdrawn`.
    pub state: String,
    pub closed_by: Option<String>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_reason: Option<String>,
    /// The restore job that served it.
    pub restore_job: Option<i64>,
}

const COLUMNS: &str = "id, tenant, backup_id::text, target, note, asked_by, asked_at, state,
                       closed_by, closed_at, close_reason, restore_job";

fn from_row(row: &tokio_postgres::Row) -> RestoreAsk {
    RestoreAsk {
        id: row.get(0),
        tenant: row.get(1),
        backup_id: row.get(2),
        target: row.get(3),
        note: row.get(4),
        asked_by: row.get(5),
        asked_at: row.get(6),
        state: row.get(7),
        closed_by: row.get(8),
        closed_at: row.get(9),
        close_reason: row.get(10),
        restore_job: row.get(11),
    }
}

/// What an owner asks for.
#[derive(Debug, Clone)]
pub struct NewRestoreAsk<'a> {
    pub backup: Option<BackupId>,
    /// [`RestoreMode::Live`] or [`RestoreMode::Copy`].
    pub target: RestoreMode,
    pub note: &'a str,
}

/// Record `tenant`'s ask. A backup of another tenant answers as one that does not exist.
pub async fn ask_for_restore(
    catalog: &Catalog,
    tenant: &TenantName,
    ask: NewRestoreAsk<'_>,
    actor: &Actor,
) -> Result<RestoreAsk, RestoreError> {
    let note = ask.note.trim();
    if note.is_empty() || note.chars().count() > MAX_NOTE_CHARS {
        return Err(RestoreError::AskNote);
    }
    if ask.target == RestoreMode::Rollback {
        return Err(RestoreError::AskTarget);
    }
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    super::request::lock_tenant_restores(&*transaction, tenant).await?;
    if let Some(backup) = ask.backup {
        let found = transaction
            .query_opt(
                "SELECT 1 FROM backups WHERE id = $1 AND tenant = $2 AND trashed_at IS NULL",
                &[&backup.as_uuid(), &tenant.as_str()],
            )
            .await
            .map_err(query_error("find the backup asked for"))?;
        if found.is_none() {
            return Err(RestoreError::UnknownBackup(backup));
        }
    }
    if let Some(open) = open_ask(&*transaction, tenant).await? {
        return Err(RestoreError::AlreadyAsked {
            tenant: tenant.clone(),
            ask: open.id,
        });
    }
    let row = transaction
        .query_one(
            &format!(
                "INSERT INTO restore_asks (tenant, backup_id, target, note, asked_by)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
            ),
            &[
                &tenant.as_str(),
                &ask.backup.map(|backup| backup.as_uuid()),
                &ask.target.as_str(),
                &note,
                &actor.to_string(),
            ],
        )
        .await
        .map_err(query_error("record the ask"))?;
    let recorded = from_row(&row);
    audit::record(
        &*transaction,
        actor,
        "restore.ask",
        Some(tenant.as_str()),
        Some(note),
        serde_json::json!({
            "ask": recorded.id,
            "backup": recorded.backup_id,
            "target": recorded.target,
        }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(recorded)
}

/// `tenant`'s open ask, if any.
pub async fn open_ask<C: GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<Option<RestoreAsk>, RestoreError> {
    let row = client
        .query_opt(
            &format!("SELECT {COLUMNS} FROM restore_asks WHERE tenant = $1 AND state = 'open'"),
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("read the open ask"))?;
    Ok(row.as_ref().map(from_row))
}

/// The newest asks: of `tenant`, or every tenant's open ones (staff's queue).
pub async fn list_asks<C: GenericClient>(
    client: &C,
    tenant: Option<&TenantName>,
    limit: i64,
) -> Result<Vec<RestoreAsk>, RestoreError> {
    let rows = match tenant {
        Some(tenant) => client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM restore_asks WHERE tenant = $1 ORDER BY id DESC LIMIT $2"
                ),
                &[&tenant.as_str(), &limit],
            )
            .await,
        None => client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM restore_asks WHERE state = 'open' ORDER BY id LIMIT $1"
                ),
                &[&limit],
            )
            .await,
    }
    .map_err(query_error("list the asks"))?;
    Ok(rows.iter().map(from_row).collect())
}

/// How an ask is closed by a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AskClosing {
    /// Staff will not do it.
    Declined,
    /// The owner no longer wants it.
    Withdrawn,
}

/// Close `tenant`'s open ask `id` as declined (staff) or withdrawn (its tenant's owner),
/// with a reason. An ask of another tenant, or not open, answers as not found.
pub async fn close_ask(
    catalog: &Catalog,
    tenant: &TenantName,
    id: i64,
    closing: AskClosing,
    reason: &str,
    actor: &Actor,
) -> Result<RestoreAsk, RestoreError> {
    let reason = super::request::check_reason(reason)?;
    let (state, action) = match closing {
        AskClosing::Declined => ("declined", "restore.ask.decline"),
        AskClosing::Withdrawn => ("withdrawn", "restore.ask.withdraw"),
    };
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let row = transaction
        .query_opt(
            &format!(
                "UPDATE restore_asks
                    SET state = $3, closed_by = $4, closed_at = now(), close_reason = $5
                  WHERE id = $1 AND tenant = $2 AND state = 'open'
              RETURNING {COLUMNS}"
            ),
            &[&id, &tenant.as_str(), &state, &actor.to_string(), &reason],
        )
        .await
        .map_err(query_error("close the ask"))?
        .ok_or_else(|| RestoreError::NoOpenAsk {
            tenant: tenant.clone(),
            ask: id,
        })?;
    audit::record(
        &*transaction,
        actor,
        action,
        Some(tenant.as_str()),
        Some(reason),
        serde_json::json!({ "ask": id }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(from_row(&row))
}

/// A restore of `tenant` (`mode`, from `backup`) was enqueued as `job`: the open ask it
/// answers (same target; the same backup when the ask named one) is served. Called in the
/// restore's own transaction (`request::enqueue_restore`).
pub(super) async fn serve_open_ask<C: GenericClient>(
    transaction: &C,
    tenant: &TenantName,
    mode: RestoreMode,
    backup: Option<BackupId>,
    job: i64,
    actor: &Actor,
) -> Result<(), RestoreError> {
    transaction
        .execute(
            "UPDATE restore_asks
                SET state = 'served', closed_by = $3, closed_at = now(), restore_job = $2
              WHERE tenant = $1 AND state = 'open' AND target = $4
                AND (backup_id IS NULL OR backup_id = $5)",
            &[
                &tenant.as_str(),
                &job,
                &actor.to_string(),
                &mode.as_str(),
                &backup.map(|backup| backup.as_uuid()),
            ],
        )
        .await
        .map_err(query_error("serve the open ask"))?;
    Ok(())
}
