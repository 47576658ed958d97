//! Login: [`Accounts::authenticate`] checks a login name, a password and (when the user
//! has one, and always for staff) a TOTP or recovery code, under the throttle.
//!
//! The caller learns one thing on a refusal: "wrong login, password or code"
//! ([`LoginError::Refused`]); the precise [`RefusalReason`] is for the log and the audit,
//! never for the person at the door. An unknown login costs the same work as a known one
//! (a dummy hash is verified), and disabled users and frozen tenants are checked only after
//! the password, so neither timing nor wording tells whether a login exists.
//!
//! Staff must have a confirmed TOTP secret. A staff user an admin created has a pending
//! one (the admin handed over the secret out of band, `lifeboat user add`): their first
//! login with a right code from it confirms it and returns their recovery codes. A staff
//! user with no secret at all cannot log in until an admin begins an enrolment; nobody
//! enrols a second factor through the login door, since whoever holds the password alone
//! could then bind their own authenticator.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use lifeboat_core::ids::TenantName;
use secrecy::{ExposeSecret, SecretString};

use super::passwords::verify_password_blocking;
use super::throttle::{self, PER_ADDRESS, PER_LOGIN, Refusal};
use super::totp::{self, RecoveryCodes};
use super::users::{find_user, lock_user};
use super::{AccountError, Accounts, Role};
use crate::audit::{self, Actor};
use crate::catalog::{CatalogError, query_error};

/// When a sign-in that found no turn to check its password (see
/// [`super::passwords::VERIFICATION_WAIT`]) may try again.
const BUSY_RETRY: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

/// What someone typed at the login door.
#[derive(Debug)]
pub struct LoginAttempt<'a> {
    pub login: &'a str,
    pub password: &'a SecretString,
    /// A 6-digit TOTP code, or a recovery code.
    pub second_factor: Option<&'a SecretString>,
    pub client_address: IpAddr,
    pub now: DateTime<Utc>,
}

/// A user who just proved who they are.
#[derive(Debug)]
pub struct AuthenticatedUser {
    pub user_id: i64,
    pub login: String,
    pub role: Role,
    pub tenant: Option<TenantName>,
    /// A recovery code opened this login (the panel suggests enrolling again).
    pub used_recovery_code: bool,
    /// This login confirmed a pending TOTP enrolment: the new recovery codes, shown once.
    pub new_recovery_codes: Option<RecoveryCodes>,
}

/// Why a login was refused, precisely: for logs and the audit, never for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    UnknownLogin,
    WrongPassword,
    Disabled,
    TenantFrozen,
    /// The user has a second factor and none was given.
    SecondFactorMissing,
    WrongSecondFactor,
    /// A right TOTP code of a time step already used.
    ReplayedCode,
    /// Staff without a TOTP secret, confirmed or pending.
    StaffWithoutTotp,
}

impl RefusalReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalReason::UnknownLogin => "unknown-login",
            RefusalReason::WrongPassword => "wrong-password",
            RefusalReason::Disabled => "disabled",
            RefusalReason::TenantFrozen => "tenant-frozen",
            RefusalReason::SecondFactorMissing => "second-factor-missing",
            RefusalReason::WrongSecondFactor => "wrong-second-factor",
            RefusalReason::ReplayedCode => "replayed-code",
            RefusalReason::StaffWithoutTotp => "staff-without-totp",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Whatever was wrong; the reason is in the value, not in the message.
    #[error("wrong login, password or code")]
    Refused(RefusalReason),
    #[error("too many failed logins: wait until {0} before trying again")]
    Delayed(DateTime<Utc>),
    #[error("too many failed logins: locked until {0}, or until an admin unlocks it")]
    Locked(DateTime<Utc>),
    #[error(transparent)]
    Account(#[from] AccountError),
}

impl From<CatalogError> for LoginError {
    fn from(error: CatalogError) -> Self {
        LoginError::Account(error.into())
    }
}

/// Whether `text` looks like a TOTP code (else it is taken as a recovery code).
fn is_totp_code(text: &str) -> bool {
    let text = text.trim();
    text.len() == 6 && text.bytes().all(|byte| byte.is_ascii_digit())
}

impl Accounts {
    /// Check a login attempt; see the module's documentation.
    pub async fn authenticate(
        &self,
        attempt: LoginAttempt<'_>,
    ) -> Result<AuthenticatedUser, LoginError> {
        let result = self.authenticate_unlogged(&attempt).await;
        match &result {
            Ok(user) => tracing::info!(
                login = %user.login, role = %user.role, address = %attempt.client_address,
                "login"
            ),
            Err(LoginError::Refused(reason)) => tracing::info!(
                login = attempt.login, address = %attempt.client_address,
                reason = reason.as_str(), "login refused"
            ),
            Err(LoginError::Delayed(_) | LoginError::Locked(_)) => tracing::info!(
                login = attempt.login, address = %attempt.client_address,
                "login throttled"
            ),
            Err(LoginError::Account(error)) => tracing::warn!(
                login = attempt.login, address = %attempt.client_address,
                %error, "login failed"
            ),
        }
        result
    }

    async fn authenticate_unlogged(
        &self,
        attempt: &LoginAttempt<'_>,
    ) -> Result<AuthenticatedUser, LoginError> {
        let login_subject = throttle::login_subject(attempt.login);
        let address_subject = throttle::address_subject(attempt.client_address);
        let mut connection = self.catalog.connection().await?;

        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let admitted = throttle::admit(
            &*transaction,
            &[(&login_subject, PER_LOGIN), (&address_subject, PER_ADDRESS)],
            attempt.now,
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        match admitted {
            Ok(()) => {}
            Err(Refusal::Delayed(until)) => return Err(LoginError::Delayed(until)),
            Err(Refusal::Locked(until)) => return Err(LoginError::Locked(until)),
        }

        let row = connection
            .query_opt(
                "SELECT u.password_phc, u.disabled_at IS NOT NULL, coalesce(t.frozen_at IS NOT NULL, false)
                 FROM users u LEFT JOIN tenants t ON t.name = u.tenant
                 WHERE lower(u.login) = lower($1)",
                &[&attempt.login],
            )
            .await
            .map_err(query_error("find the user"))?;
        let stored_phc: Option<String> = row.as_ref().map(|row| row.get(0));
        // No pooled connection is held while the password is checked (and while waiting for
        // a turn to check it): a burst of sign-ins must not starve every other request.
        drop(connection);
        // The same work whether or not the login exists.
        let Some(password_matches) = verify_password_blocking(
            attempt.password,
            stored_phc.as_deref().unwrap_or(&self.dummy_password_phc),
        )
        .await
        else {
            // Too many sign-ins at once: come back in a moment (429 with Retry-After).
            return Err(LoginError::Delayed(attempt.now + BUSY_RETRY));
        };
        let Some(row) = row else {
            return Err(LoginError::Refused(RefusalReason::UnknownLogin));
        };
        if !password_matches {
            return Err(LoginError::Refused(RefusalReason::WrongPassword));
        }
        if row.get::<_, bool>(1) {
            return Err(LoginError::Refused(RefusalReason::Disabled));
        }
        if row.get::<_, bool>(2) {
            return Err(LoginError::Refused(RefusalReason::TenantFrozen));
        }

        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let user = lock_user(&*transaction, attempt.login).await?;
        let secrets = transaction
            .query_one(
                "SELECT totp_secret, totp_pending_secret FROM users WHERE id = $1",
                &[&user.id],
            )
            .await
            .map_err(query_error("read the TOTP secret"))?;
        let active: Option<Vec<u8>> = secrets.get(0);
        let pending: Option<Vec<u8>> = secrets.get(1);
        let code = attempt.second_factor.map(|code| code.expose_secret());
        let mut used_recovery_code = false;
        let mut new_recovery_codes = None;
        match (active, pending, user.role.is_staff()) {
            (Some(secret), _, _) => {
                let code = code.ok_or(LoginError::Refused(RefusalReason::SecondFactorMissing))?;
                if is_totp_code(code) {
                    let step = totp::matching_step(&secret, &user.login, code, attempt.now)?
                        .ok_or(LoginError::Refused(RefusalReason::WrongSecondFactor))?;
                    if !totp::accept_step_once(&*transaction, user.id, step).await? {
                        return Err(LoginError::Refused(RefusalReason::ReplayedCode));
                    }
                } else if totp::use_recovery_code(&*transaction, user.id, code).await? {
                    used_recovery_code = true;
                } else {
                    return Err(LoginError::Refused(RefusalReason::WrongSecondFactor));
                }
            }
            (None, Some(pending), true) => {
                let code = code.ok_or(LoginError::Refused(RefusalReason::SecondFactorMissing))?;
                let step = totp::matching_step(&pending, &user.login, code, attempt.now)?
                    .ok_or(LoginError::Refused(RefusalReason::WrongSecondFactor))?;
                if !totp::accept_step_once(&*transaction, user.id, step).await? {
                    return Err(LoginError::Refused(RefusalReason::ReplayedCode));
                }
                new_recovery_codes =
                    Some(totp::activate_pending(&*transaction, user.id, step).await?);
            }
            (None, None, true) => {
                return Err(LoginError::Refused(RefusalReason::StaffWithoutTotp));
            }
            (None, _, false) => {}
        }
        throttle::succeeded(&*transaction, &login_subject, &address_subject).await?;
        if user.role.is_staff() {
            let actor = Actor {
                name: user.login.clone(),
                role: user.role.actor_role(),
                address: Some(attempt.client_address),
            };
            audit::record(
                &*transaction,
                &actor,
                "user.login",
                None,
                None,
                serde_json::json!({
                    "recovery_code": used_recovery_code,
                    "totp_confirmed": new_recovery_codes.is_some(),
                }),
            )
            .await?;
        }
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(AuthenticatedUser {
            user_id: user.id,
            login: user.login,
            role: user.role,
            tenant: user.tenant,
            used_recovery_code,
            new_recovery_codes,
        })
    }

    /// Lift the throttle (delays and lock) of `login`; true if there was one.
    pub async fn unlock_user(&self, login: &str, actor: &Actor) -> Result<bool, AccountError> {
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let user = find_user(&*transaction, login)
            .await?
            .ok_or_else(|| AccountError::UnknownUser(login.to_owned()))?;
        let lifted = throttle::lift(&*transaction, &throttle::login_subject(&user.login)).await?;
        audit::record(
            &*transaction,
            actor,
            "user.unlock",
            user.tenant.as_ref().map(TenantName::as_str),
            None,
            serde_json::json!({ "login": user.login, "was_throttled": lifted }),
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(lifted)
    }

    /// Lift the throttle of a client address; true if there was one.
    pub async fn unlock_address(
        &self,
        address: IpAddr,
        actor: &Actor,
    ) -> Result<bool, AccountError> {
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let lifted = throttle::lift(&*transaction, &throttle::address_subject(address)).await?;
        audit::record(
            &*transaction,
            actor,
            "address.unlock",
            None,
            None,
            serde_json::json!({ "address": address.to_string(), "was_throttled": lifted }),
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(lifted)
    }
}
