//! Freezing a tenant: from the moment [`Accounts::freeze_tenant`] commits, every session
//! and API token of the tenant's users is refused — both lookups read `tenants.frozen_at`
//! at every call, nothing is cached — and logins are refused, until
//! [`Accounts::unfreeze_tenant`]. The sessions open at the freeze are also ended, so
//! unfreezing does not bring them back; API tokens work again after an unfreeze.

use chrono::{DateTime, Utc};
use lifeboat_core::ids::TenantName;
use serde::Serialize;

use super::{AccountError, Accounts, checked_reason};
use crate::audit::{self, Actor};
use crate::catalog::query_error;

/// A tenant's freeze.
#[derive(Debug, Clone, Serialize)]
pub struct Freeze {
    pub frozen_at: DateTime<Utc>,
    pub reason: String,
}

impl Accounts {
    /// Freeze `tenant` with a `reason`; audited.
    pub async fn freeze_tenant(
        &self,
        tenant: &TenantName,
        actor: &Actor,
        reason: &str,
    ) -> Result<(), AccountError> {
        let reason = checked_reason(reason)?;
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let frozen = self.lock_tenant_freeze(&*transaction, tenant).await?;
        if frozen.is_some() {
            return Err(AccountError::AlreadyFrozen(tenant.clone()));
        }
        transaction
            .execute(
                "UPDATE tenants SET frozen_at = now(), frozen_reason = $2 WHERE name = $1",
                &[&tenant.as_str(), &reason],
            )
            .await
            .map_err(query_error("freeze the tenant"))?;
        let ended = transaction
            .execute(
                "UPDATE sessions SET ended_at = now()
                 WHERE ended_at IS NULL AND user_id IN (SELECT id FROM users WHERE tenant = $1)",
                &[&tenant.as_str()],
            )
            .await
            .map_err(query_error("end the tenant's sessions"))?;
        audit::record(
            &*transaction,
            actor,
            "tenant.freeze",
            Some(tenant.as_str()),
            Some(reason),
            serde_json::json!({ "sessions_ended": ended }),
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(())
    }

    /// Lift `tenant`'s freeze; audited with a `reason`.
    pub async fn unfreeze_tenant(
        &self,
        tenant: &TenantName,
        actor: &Actor,
        reason: &str,
    ) -> Result<(), AccountError> {
        let reason = checked_reason(reason)?;
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        if self
            .lock_tenant_freeze(&*transaction, tenant)
            .await?
            .is_none()
        {
            return Err(AccountError::NotFrozen(tenant.clone()));
        }
        transaction
            .execute(
                "UPDATE tenants SET frozen_at = NULL, frozen_reason = NULL WHERE name = $1",
                &[&tenant.as_str()],
            )
            .await
            .map_err(query_error("unfreeze the tenant"))?;
        audit::record(
            &*transaction,
            actor,
            "tenant.unfreeze",
            Some(tenant.as_str()),
            Some(reason),
            serde_json::json!({}),
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(())
    }

    /// `tenant`'s freeze, if frozen.
    pub async fn tenant_freeze(&self, tenant: &TenantName) -> Result<Option<Freeze>, AccountError> {
        let connection = self.catalog.connection().await?;
        self.lock_tenant_freeze(&**connection, tenant).await
    }

    /// The tenant's freeze (locking its row inside a transaction), or `UnknownTenant`.
    async fn lock_tenant_freeze<C: tokio_postgres::GenericClient>(
        &self,
        client: &C,
        tenant: &TenantName,
    ) -> Result<Option<Freeze>, AccountError> {
        let row = client
            .query_opt(
                "SELECT frozen_at, frozen_reason FROM tenants WHERE name = $1 FOR UPDATE",
                &[&tenant.as_str()],
            )
            .await
            .map_err(query_error("find the tenant"))?
            .ok_or_else(|| AccountError::UnknownTenant(tenant.clone()))?;
        let frozen_at: Option<DateTime<Utc>> = row.get(0);
        Ok(frozen_at.map(|frozen_at| Freeze {
            frozen_at,
            reason: row.get(1),
        }))
    }
}
