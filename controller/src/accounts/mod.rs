//! Accounts: the one home of every operation on the people who use lifeboat — users and
//! their roles, passwords, the TOTP second factor, login with throttling, sessions, API
//! tokens for automation, and freezing a tenant. The CLI (`lifeboat user …`), the HTTP API
//! and the panel only parse, check who is asking, call a method of [`Accounts`] and present
//! the result.
//!
//! - [`users`]: staff (`admin`, `helpdesk`, no tenant) and customer users (`owner`,
//!   `viewer` of exactly one tenant); add, list, disable, enable, reset a password;
//! - [`passwords`]: argon2id hashing, the policy (zxcvbn) and the strength meter;
//! - [`totp`]: two-step enrolment, codes accepted once, single-use recovery codes;
//! - [`login`] and [`throttle`]: [`Accounts::authenticate`], one generic refusal for the
//!   caller and the precise reason for the log, growing delays then a lock, per login name
//!   and per client address, kept in the catalog so that several controllers agree;
//! - [`sessions`]: server-side sessions with CSRF tokens, idle and absolute expiry;
//! - [`api_tokens`]: tenant-scoped bearer tokens, shown once, stored hashed;
//! - [`freeze`]: a frozen tenant's users are refused at every lookup, at once.
//!
//! Every change made by someone (an `actor`) is audited in the same transaction. No secret
//! (password, code, token, TOTP secret) is ever stored in the clear except the TOTP secret
//! (the server needs it to check codes), written to a log or an error, or shown by `Debug`:
//! they travel as [`secrecy::SecretString`].

pub mod api_tokens;
pub mod freeze;
pub mod login;
pub mod passwords;
pub mod sessions;
pub mod throttle;
pub mod totp;
pub mod users;

use lifeboat_core::ids::TenantName;
use lifeboat_core::service_config::PanelSettings;
use serde::Serialize;

use crate::audit::ActorRole;
use crate::catalog::{Catalog, CatalogError};

pub use api_tokens::{ApiTokenInfo, ApiTokenPrincipal, IssuedApiToken};
pub use login::{AuthenticatedUser, LoginAttempt, LoginError, RefusalReason};
pub use passwords::{PasswordHashing, Strength, generate_password, password_strength};
pub use sessions::{NewSession, Session};
pub use totp::{RecoveryCodes, TotpEnrolment};
pub use users::{NewUser, TotpState, User};

/// What a user may do. Staff roles have no tenant; customer roles have exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Staff: everything, users and tenants included.
    Admin,
    /// Staff: finds tenants, restores them.
    Helpdesk,
    /// A customer who manages the tenant's users, downloads, asks for restores.
    Owner,
    /// A customer who sees backups and restore evidence only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Helpdesk => "helpdesk",
            Role::Owner => "owner",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(text: &str) -> Result<Role, AccountError> {
        match text {
            "admin" => Ok(Role::Admin),
            "helpdesk" => Ok(Role::Helpdesk),
            "owner" => Ok(Role::Owner),
            "viewer" => Ok(Role::Viewer),
            other => Err(AccountError::InvalidRole(other.to_owned())),
        }
    }

    /// The role as the audit log names its actors.
    pub fn actor_role(self) -> ActorRole {
        match self {
            Role::Admin => ActorRole::Admin,
            Role::Helpdesk => ActorRole::Helpdesk,
            Role::Owner => ActorRole::Owner,
            Role::Viewer => ActorRole::Viewer,
        }
    }

    /// Staff act across tenants and must use a second factor.
    pub fn is_staff(self) -> bool {
        matches!(self, Role::Admin | Role::Helpdesk)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(
        "login {0:?} is not valid: 1 to 64 characters, letters, digits and . _ - @ +, starting with a letter or digit"
    )]
    InvalidLogin(String),
    #[error("role {0:?} is not one of admin, helpdesk, owner, viewer")]
    InvalidRole(String),
    #[error("a login named {0:?} already exists (logins are compared without case)")]
    LoginTaken(String),
    #[error("no user with login {0:?}")]
    UnknownUser(String),
    #[error("tenant {0} does not exist")]
    UnknownTenant(TenantName),
    #[error("a {0} user belongs to a tenant: give --tenant")]
    TenantRequired(Role),
    #[error("a {0} is staff and belongs to no tenant: leave out --tenant")]
    TenantNotAllowed(Role),
    #[error("the password is refused: {0}")]
    WeakPassword(String),
    #[error("user {0:?} has no TOTP enrolment waiting for confirmation")]
    NoPendingTotp(String),
    #[error(
        "user {0:?} has an active authenticator; an admin resets it first (lifeboat user reset-totp)"
    )]
    TotpActive(String),
    #[error("the code does not match the authenticator (or was already used); try the next one")]
    WrongTotpCode,
    #[error(
        "API token name {0:?} is not valid: 1 to 64 characters, letters, digits and . _ -, starting with a letter or digit"
    )]
    InvalidTokenName(String),
    #[error("tenant {tenant} already has an active API token named {name:?}")]
    TokenNameTaken { tenant: TenantName, name: String },
    #[error("tenant {tenant} has no active API token named {name:?}")]
    UnknownToken { tenant: TenantName, name: String },
    #[error("an API token's lifetime must be between 1 hour and 366 days")]
    InvalidTokenLifetime,
    #[error("an API token is for a tenant's owner or viewer, not for {0}")]
    StaffToken(Role),
    #[error("tenant {0} is already frozen")]
    AlreadyFrozen(TenantName),
    #[error("tenant {0} is not frozen")]
    NotFrozen(TenantName),
    #[error("a reason is required: 1 to 500 characters without control characters")]
    InvalidReason,
    #[error("the catalog holds something this lifeboat cannot read: {0}")]
    Inconsistent(String),
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
}

/// The accounts of one catalog, with the password hashing and session settings in force.
#[derive(Debug, Clone)]
pub struct Accounts {
    catalog: Catalog,
    hashing: PasswordHashing,
    panel: PanelSettings,
    /// A hash of a password nobody has, verified when the login is unknown so that an
    /// unknown login costs the same time as a known one.
    dummy_password_phc: std::sync::Arc<str>,
}

impl Accounts {
    /// Accounts with the production password hashing ([`PasswordHashing::PRODUCTION`]).
    pub fn new(catalog: Catalog, panel: PanelSettings) -> Result<Accounts, AccountError> {
        Accounts::with_password_hashing(catalog, panel, PasswordHashing::PRODUCTION)
    }

    /// Accounts hashing new passwords with `hashing` (tests use cheaper parameters; a
    /// stored hash is always verified with the parameters written in it).
    pub fn with_password_hashing(
        catalog: Catalog,
        panel: PanelSettings,
        hashing: PasswordHashing,
    ) -> Result<Accounts, AccountError> {
        let dummy_password_phc = hashing.hash(&generate_password())?.into();
        Ok(Accounts {
            catalog,
            hashing,
            panel,
            dummy_password_phc,
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    pub fn panel_settings(&self) -> &PanelSettings {
        &self.panel
    }
}

/// A reason given by staff (freeze): trimmed, 1 to 500 characters, no control characters.
fn checked_reason(reason: &str) -> Result<&str, AccountError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(AccountError::InvalidReason);
    }
    Ok(reason)
}
