//! Download links: the one home of issuing and redeeming a customer's download of a backup.
//!
//! A download goes in two steps, so that a browser can simply follow a link:
//! 1. an authenticated caller (a tenant's owner, or staff) asks for a link
//!    ([`issue_download_link`]): the backup must be that tenant's, in the catalog (so
//!    committed) and out of the trash; a random `lbd_` token is made, only its SHA-256 is
//!    stored (`download_links`), and it expires after [`DOWNLOAD_LINK_LIFETIME`]. The token
//!    is returned once. Audited as `download.link`.
//! 2. whoever holds the link redeems it ([`redeem_download_link`], `GET
//!    /api/v1/downloads/{token}`): it is marked used by one UPDATE that only matches an
//!    unused, unexpired link, so it works once; a frozen tenant or a backup moved to the
//!    trash since is refused. Audited as `download`, with the issuer as the actor and the
//!    address the link was used from. The bytes then come from
//!    `lifeboat_core::download::open_download`.
//!
//! An unknown, used and expired link are refused alike ([`DownloadLinkError::LinkRefused`]),
//! so the refusal says nothing about which links exist. An unknown backup and another
//! tenant's backup are refused alike too. No error carries a token.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lifeboat_core::download::{DownloadFormat, DownloadRequest, download_file_name};
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::keys::Recipient;
use lifeboat_core::manifest::Manifest;
use secrecy::{ExposeSecret, SecretString};

use crate::audit::{self, Actor, ActorRole};
use crate::catalog::{Catalog, CatalogError, query_error};
use crate::secret_tokens;

/// What every download link's token starts with.
pub const DOWNLOAD_LINK_PREFIX: &str = "lbd_";

/// How long a link works: long enough for a browser to follow it, short enough that a
/// link left in a history or a chat is useless soon.
pub const DOWNLOAD_LINK_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// The longest token looked up; anything longer is not one of ours.
const MAX_TOKEN_CHARS: usize = 128;

/// Why a link is not issued or not honoured. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadLinkError {
    /// Unknown backups and other tenants' backups alike: no oracle across tenants.
    #[error("tenant {tenant} has no backup {backup}")]
    NoSuchBackup {
        tenant: TenantName,
        backup: BackupId,
    },
    #[error("backup {0} is in the trash; it cannot be downloaded until it is taken out")]
    Trashed(BackupId),
    #[error("tenant {0} is frozen: its backups cannot be downloaded until it is unfrozen")]
    TenantFrozen(TenantName),
    #[error("recipient: {0}")]
    InvalidRecipient(String),
    /// Unknown, used and expired links alike.
    #[error("this download link is unknown, already used or expired; ask for a new one")]
    LinkRefused,
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// A link, as returned once to whoever asked for it.
#[derive(Debug)]
pub struct IssuedDownloadLink {
    /// The credential: the path `/api/v1/downloads/{token}` serves the file. Shown once.
    pub token: SecretString,
    pub expires_at: DateTime<Utc>,
    pub file_name: String,
    pub backup: BackupId,
    pub format: DownloadFormat,
}

/// A redeemed link: what to stream, and for whom.
#[derive(Debug)]
pub struct RedeemedDownload {
    pub tenant: TenantName,
    pub backup: BackupId,
    pub file_name: String,
    /// For `lifeboat_core::download::open_download`: the catalog's manifest (its SHA-256 is
    /// the one recorded when the backup was committed), the format and the recipient.
    pub request: DownloadRequest,
}

/// Issue a single-use link to download `backup` of `tenant` as `format`, encrypted to
/// `recipient` (an `age1…` public key) when given. `actor` is the authenticated caller,
/// whose right to act for `tenant` the caller has checked. Audited as `download.link`.
pub async fn issue_download_link(
    catalog: &Catalog,
    actor: &Actor,
    tenant: &TenantName,
    backup: BackupId,
    format: DownloadFormat,
    recipient: Option<&str>,
) -> Result<IssuedDownloadLink, DownloadLinkError> {
    let recipient = recipient
        .map(|text| {
            Recipient::from_str(text)
                .map_err(|error| DownloadLinkError::InvalidRecipient(error.to_string()))
        })
        .transpose()?;
    // The canonical text of the key (lowercase bech32), as stored and audited.
    let recipient_text = recipient
        .as_ref()
        .map(|recipient| recipient.age_recipient().to_string());
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let found = find_backup(&*transaction, tenant, backup).await?;
    if found.trashed {
        return Err(DownloadLinkError::Trashed(backup));
    }
    if tenant_is_frozen(&*transaction, tenant).await? {
        return Err(DownloadLinkError::TenantFrozen(tenant.clone()));
    }
    let token = secret_tokens::generate_token(DOWNLOAD_LINK_PREFIX);
    let row = transaction
        .query_one(
            "INSERT INTO download_links (token_sha256, tenant, backup_id, format, recipient,
                                         issued_by, issued_by_role, issued_from, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now() + make_interval(secs => $9::float8))
             RETURNING id, expires_at",
            &[
                &secret_tokens::token_sha256(&token),
                &tenant.as_str(),
                &backup.as_uuid(),
                &format.as_str(),
                &recipient_text,
                &actor.name,
                &actor.role.as_str(),
                &actor.address,
                &DOWNLOAD_LINK_LIFETIME.as_secs_f64(),
            ],
        )
        .await
        .map_err(query_error("store the download link"))?;
    let link_id: i64 = row.get(0);
    let expires_at: DateTime<Utc> = row.get(1);
    audit::record(
        &*transaction,
        actor,
        "download.link",
        Some(tenant.as_str()),
        None,
        serde_json::json!({
            "backup": backup.to_string(),
            "format": format.as_str(),
            "recipient": recipient_text,
            "link": link_id,
            "expires_at": expires_at,
        }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    Ok(IssuedDownloadLink {
        token: SecretString::from(token),
        expires_at,
        file_name: download_file_name(&found.manifest, format, recipient.is_some()),
        backup,
        format,
    })
}

/// Redeem the link whose token is `token`, used from `address`: marks it used (once), and
/// returns what to stream. Refused alike when unknown, used or expired; refused when the
/// tenant is frozen or the backup is in the trash (the link then stays unused). Audited as
/// `download`, by the actor who issued the link.
pub async fn redeem_download_link(
    catalog: &Catalog,
    token: &SecretString,
    address: IpAddr,
) -> Result<RedeemedDownload, DownloadLinkError> {
    let token = token.expose_secret();
    if token.len() > MAX_TOKEN_CHARS || !token.starts_with(DOWNLOAD_LINK_PREFIX) {
        return Err(DownloadLinkError::LinkRefused);
    }
    let mut connection = catalog.connection().await?;
    let transaction = connection
        .transaction()
        .await
        .map_err(query_error("begin"))?;
    let row = transaction
        .query_opt(
            "UPDATE download_links SET used_at = now(), used_from = $2
             WHERE token_sha256 = $1 AND used_at IS NULL AND expires_at > now()
             RETURNING id, tenant, backup_id, format, recipient, issued_by, issued_by_role",
            &[&secret_tokens::token_sha256(token), &address],
        )
        .await
        .map_err(query_error("use the download link"))?
        .ok_or(DownloadLinkError::LinkRefused)?;
    let link_id: i64 = row.get(0);
    let inconsistent =
        |what: &str| CatalogError::Inconsistent(format!("download link {link_id}: {what}"));
    let tenant = TenantName::parse(row.get::<_, &str>(1))
        .map_err(|_| inconsistent("its tenant is not a tenant name"))?;
    let backup = BackupId::from_uuid(row.get(2))
        .ok_or_else(|| inconsistent("its backup id is not a UUIDv7"))?;
    let format =
        DownloadFormat::parse(row.get(3)).ok_or_else(|| inconsistent("its format is unknown"))?;
    let recipient = row
        .get::<_, Option<&str>>(4)
        .map(Recipient::from_str)
        .transpose()
        .map_err(|_| inconsistent("its recipient is not an age recipient"))?;
    let issuer = Actor {
        name: row.get(5),
        role: actor_role(row.get(6)).ok_or_else(|| inconsistent("its issuer's role is unknown"))?,
        address: Some(address),
    };
    if tenant_is_frozen(&*transaction, &tenant).await? {
        return Err(DownloadLinkError::TenantFrozen(tenant));
    }
    let found = find_backup(&*transaction, &tenant, backup).await?;
    if found.trashed {
        return Err(DownloadLinkError::Trashed(backup));
    }
    audit::record(
        &*transaction,
        &issuer,
        "download",
        Some(tenant.as_str()),
        None,
        serde_json::json!({
            "backup": backup.to_string(),
            "format": format.as_str(),
            "recipient": recipient.as_ref().map(|recipient| recipient.age_recipient().to_string()),
            "link": link_id,
        }),
    )
    .await?;
    transaction.commit().await.map_err(query_error("commit"))?;
    let file_name = download_file_name(&found.manifest, format, recipient.is_some());
    Ok(RedeemedDownload {
        tenant,
        backup,
        file_name,
        request: DownloadRequest {
            manifest: found.manifest,
            format,
            recipient,
        },
    })
}

/// A backup as a download needs it.
struct FoundBackup {
    manifest: Manifest,
    trashed: bool,
}

/// `backup` of `tenant` from the catalog; another tenant's backup is not found.
async fn find_backup<C: tokio_postgres::GenericClient>(
    client: &C,
    tenant: &TenantName,
    backup: BackupId,
) -> Result<FoundBackup, DownloadLinkError> {
    let row = client
        .query_opt(
            "SELECT manifest::text, sha256, trashed_at IS NOT NULL FROM backups
             WHERE id = $1 AND tenant = $2",
            &[&backup.as_uuid(), &tenant.as_str()],
        )
        .await
        .map_err(query_error("find the backup to download"))?
        .ok_or_else(|| DownloadLinkError::NoSuchBackup {
            tenant: tenant.clone(),
            backup,
        })?;
    let manifest_text: String = row.get(0);
    let mut manifest = Manifest::from_json(
        &format!("catalog backup {backup}"),
        manifest_text.as_bytes(),
    )
    .map_err(|error| CatalogError::Inconsistent(error.to_string()))?;
    // The column is what the backup was recorded with: the hash a download must match.
    manifest.object.sha256 = row.get(1);
    Ok(FoundBackup {
        manifest,
        trashed: row.get(2),
    })
}

/// Whether `tenant` is frozen. A tenant only in the configuration (no catalog row) has no
/// users and cannot be frozen.
async fn tenant_is_frozen<C: tokio_postgres::GenericClient>(
    client: &C,
    tenant: &TenantName,
) -> Result<bool, DownloadLinkError> {
    let row = client
        .query_opt(
            "SELECT frozen_at IS NOT NULL FROM tenants WHERE name = $1",
            &[&tenant.as_str()],
        )
        .await
        .map_err(query_error("check whether the tenant is frozen"))?;
    Ok(row.is_some_and(|row| row.get(0)))
}

/// An issuer's role as stored.
fn actor_role(text: &str) -> Option<ActorRole> {
    [
        ActorRole::Admin,
        ActorRole::Helpdesk,
        ActorRole::Owner,
        ActorRole::Viewer,
        ActorRole::Operator,
        ActorRole::Agent,
        ActorRole::System,
    ]
    .into_iter()
    .find(|role| role.as_str() == text)
}

/// Delete links used or expired before `before`: they can never be honoured again, and
/// the audit log keeps what happened with them. Daily maintenance calls it with a day's
/// margin. Returns how many went.
pub async fn forget_spent_links(
    catalog: &Catalog,
    before: DateTime<Utc>,
) -> Result<u64, CatalogError> {
    catalog
        .connection()
        .await?
        .execute(
            "DELETE FROM download_links WHERE expires_at < $1 OR used_at < $1",
            &[&before],
        )
        .await
        .map_err(query_error("forget spent download links"))
}
