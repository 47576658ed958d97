//! Users: staff (`admin`, `helpdesk`) and customer users (`owner`, `viewer` of one tenant).
//!
//! A login is unique whatever its case and made of letters, digits and `. _ - @ +` (so it
//! fits an e-mail address, an otpauth URL and a log line unquoted). A user is removed with
//! its tenant (foreign key), and a disabled one is refused at login and at every session
//! lookup. Disabling a user or resetting their password ends their sessions.

use chrono::{DateTime, Utc};
use lifeboat_core::ids::TenantName;
use secrecy::SecretString;
use serde::Serialize;
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::passwords::check_password_policy;
use super::{AccountError, Accounts, Role};
use crate::audit::{self, Actor};
use crate::catalog::query_error;

/// A user to add.
#[derive(Debug)]
pub struct NewUser {
    pub login: String,
    pub role: Role,
    /// Required for `owner` and `viewer`, refused for staff.
    pub tenant: Option<TenantName>,
    pub password: SecretString,
}

/// Where a user's second factor stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TotpState {
    None,
    /// Begun, waiting for a first code.
    Pending,
    Active,
}

/// A user as stored, without any secret.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub login: String,
    pub role: Role,
    pub tenant: Option<TenantName>,
    pub disabled: bool,
    pub totp: TotpState,
    pub created_at: DateTime<Utc>,
}

/// The longest login.
pub const MAX_LOGIN_CHARS: usize = 64;

/// Whether `login` may name a user.
pub fn valid_login(login: &str) -> bool {
    (1..=MAX_LOGIN_CHARS).contains(&login.len())
        && login.starts_with(|c: char| c.is_ascii_alphanumeric())
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@' | '+'))
}

pub(crate) const SELECT_USERS: &str = "SELECT id, login, role, tenant, disabled_at IS NOT NULL, totp_secret IS NOT NULL, totp_pending_secret IS NOT NULL, created_at FROM users";

pub(crate) fn user_from_row(row: &tokio_postgres::Row) -> Result<User, AccountError> {
    let role_text: String = row.get(2);
    let role = Role::parse(&role_text)
        .map_err(|_| AccountError::Inconsistent(format!("user role {role_text:?}")))?;
    let tenant = row
        .get::<_, Option<String>>(3)
        .map(|name| {
            TenantName::parse(&name)
                .map_err(|_| AccountError::Inconsistent(format!("user tenant {name:?}")))
        })
        .transpose()?;
    let totp = match (row.get::<_, bool>(5), row.get::<_, bool>(6)) {
        (true, _) => TotpState::Active,
        (false, true) => TotpState::Pending,
        (false, false) => TotpState::None,
    };
    Ok(User {
        id: row.get(0),
        login: row.get(1),
        role,
        tenant,
        disabled: row.get(4),
        totp,
        created_at: row.get(7),
    })
}

/// The user named `login` (any case), if any.
pub(crate) async fn find_user<C: GenericClient>(
    client: &C,
    login: &str,
) -> Result<Option<User>, AccountError> {
    let row = client
        .query_opt(
            &format!("{SELECT_USERS} WHERE lower(login) = lower($1)"),
            &[&login],
        )
        .await
        .map_err(query_error("find the user"))?;
    row.as_ref().map(user_from_row).transpose()
}

/// [`find_user`], locking the row for the caller's transaction, or `UnknownUser`.
pub(crate) async fn lock_user<C: GenericClient>(
    client: &C,
    login: &str,
) -> Result<User, AccountError> {
    let row = client
        .query_opt(
            &format!("{SELECT_USERS} WHERE lower(login) = lower($1) FOR UPDATE"),
            &[&login],
        )
        .await
        .map_err(query_error("find the user"))?
        .ok_or_else(|| AccountError::UnknownUser(login.to_owned()))?;
    user_from_row(&row)
}

/// Record `action` on `user` (their login and tenant) in the caller's transaction.
pub(crate) async fn audit_user_change<C: GenericClient>(
    client: &C,
    actor: &Actor,
    action: &str,
    user: &User,
) -> Result<(), AccountError> {
    audit::record(
        client,
        actor,
        action,
        user.tenant.as_ref().map(TenantName::as_str),
        None,
        serde_json::json!({ "login": user.login }),
    )
    .await?;
    Ok(())
}

/// End every open session of user `user_id` (in the caller's transaction).
pub(crate) async fn end_sessions_of<C: GenericClient>(
    client: &C,
    user_id: i64,
) -> Result<u64, AccountError> {
    Ok(client
        .execute(
            "UPDATE sessions SET ended_at = now() WHERE user_id = $1 AND ended_at IS NULL",
            &[&user_id],
        )
        .await
        .map_err(query_error("end the user's sessions"))?)
}

/// The words an attacker knows about a user, fed to zxcvbn.
fn user_inputs<'a>(login: &'a str, tenant: Option<&'a TenantName>) -> Vec<&'a str> {
    let mut inputs = vec![login];
    inputs.extend(login.split(['@', '.', '-', '_', '+']));
    if let Some(tenant) = tenant {
        inputs.push(tenant.as_str());
    }
    inputs.retain(|input| !input.is_empty());
    inputs
}

impl Accounts {
    /// Add a user. The password must meet the policy; it is hashed, never stored.
    pub async fn add_user(&self, new: NewUser, actor: &Actor) -> Result<User, AccountError> {
        if !valid_login(&new.login) {
            return Err(AccountError::InvalidLogin(new.login));
        }
        match (new.role.is_staff(), &new.tenant) {
            (true, Some(_)) => return Err(AccountError::TenantNotAllowed(new.role)),
            (false, None) => return Err(AccountError::TenantRequired(new.role)),
            _ => {}
        }
        check_password_policy(&new.password, &user_inputs(&new.login, new.tenant.as_ref()))?;
        let password_phc = self.hashing.hash_blocking(&new.password).await?;
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        if let Some(tenant) = &new.tenant
            && !crate::tenants::tenant_held(&*transaction, tenant).await?
        {
            return Err(AccountError::UnknownTenant(tenant.clone()));
        }
        let tenant_name = new.tenant.as_ref().map(TenantName::as_str);
        let inserted = transaction
            .query_one(
                "INSERT INTO users (login, role, tenant, password_phc) VALUES ($1, $2, $3, $4) RETURNING id",
                &[&new.login, &new.role.as_str(), &tenant_name, &password_phc],
            )
            .await;
        if let Err(error) = &inserted
            && error.code() == Some(&SqlState::UNIQUE_VIOLATION)
        {
            return Err(AccountError::LoginTaken(new.login));
        }
        inserted.map_err(query_error("insert the user"))?;
        audit::record(
            &*transaction,
            actor,
            "user.add",
            tenant_name,
            None,
            serde_json::json!({ "login": new.login, "role": new.role.as_str() }),
        )
        .await?;
        let user = find_user(&*transaction, &new.login)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(new.login.clone()))?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(user)
    }

    /// Every user, or those of `tenant`, staff first, then by login.
    pub async fn list_users(&self, tenant: Option<&TenantName>) -> Result<Vec<User>, AccountError> {
        let connection = self.catalog.connection().await?;
        let tenant_name = tenant.map(TenantName::as_str);
        let rows = connection
            .query(
                &format!(
                    "{SELECT_USERS} WHERE $1::text IS NULL OR tenant = $1 ORDER BY tenant NULLS FIRST, lower(login)"
                ),
                &[&tenant_name],
            )
            .await
            .map_err(query_error("list users"))?;
        rows.iter().map(user_from_row).collect()
    }

    /// The user named `login`.
    pub async fn user(&self, login: &str) -> Result<User, AccountError> {
        let connection = self.catalog.connection().await?;
        find_user(&**connection, login)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(login.to_owned()))
    }

    /// Disable (`true`) or enable a user. Disabling ends their sessions at once.
    pub async fn set_user_disabled(
        &self,
        login: &str,
        disabled: bool,
        actor: &Actor,
    ) -> Result<User, AccountError> {
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let user = lock_user(&*transaction, login).await?;
        transaction
            .execute(
                "UPDATE users SET disabled_at = CASE WHEN $2 THEN coalesce(disabled_at, now()) END WHERE id = $1",
                &[&user.id, &disabled],
            )
            .await
            .map_err(query_error("disable the user"))?;
        if disabled {
            end_sessions_of(&*transaction, user.id).await?;
        }
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        audit_user_change(&*transaction, actor, action, &user).await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(User { disabled, ..user })
    }

    /// Replace a user's password (a lost one is never retrieved, only replaced). Their
    /// sessions end: whoever knew the old password is out.
    pub async fn reset_password(
        &self,
        login: &str,
        password: &SecretString,
        actor: &Actor,
    ) -> Result<(), AccountError> {
        let user = self.user(login).await?;
        check_password_policy(password, &user_inputs(&user.login, user.tenant.as_ref()))?;
        let password_phc = self.hashing.hash_blocking(password).await?;
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let user = lock_user(&*transaction, login).await?;
        transaction
            .execute(
                "UPDATE users SET password_phc = $2 WHERE id = $1",
                &[&user.id, &password_phc],
            )
            .await
            .map_err(query_error("set the password"))?;
        end_sessions_of(&*transaction, user.id).await?;
        audit_user_change(&*transaction, actor, "user.reset-password", &user).await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(())
    }
}
