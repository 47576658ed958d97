//! The control panel: server-rendered pages (maud) for customers and staff, over the same
//! principals, access checks and library operations as `/api/v1` — a page only renders
//! what an operation returned, and a form only parses and calls it.
//!
//! - [`layout`]: the page frame, the stylesheet, security headers, errors as pages;
//! - [`session`]: sign-in (with the TOTP code) and sign-out;
//! - [`tenants`]: the tenant list (staff), a tenant's page (backups with their evidence,
//!   manual backup, drills, restores), the audit log, freeze;
//! - [`restores`]: the helpdesk restore form and its live progress page, rollback;
//! - [`users`]: a tenant's users and API tokens, and each person's authenticator;
//! - [`trash`]: trashed backups, brought back (admins);
//! - [`asks`]: owners ask staff for a restore; staff decline or serve it.
//!
//! No JavaScript is needed: a running restore's page refreshes itself (a `Refresh`
//! header); `/panel.js` only shows a new password's strength as it is typed. Forms carry the session's CSRF token in a hidden field,
//! checked by [`PanelUser::check_csrf`]; cookies are SameSite=Strict besides.

mod asks;
mod layout;
mod restores;
mod session;
mod tenants;
mod trash;
mod users;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::routing::{get, post};

use crate::accounts::Session;
use crate::api::auth::session_principal;
use crate::api::{ApiError, AppState, UserPrincipal};
pub use layout::PanelError;

/// The panel's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(session::home))
        .route("/panel.css", get(layout::stylesheet))
        .route("/panel.js", get(users::script))
        .route("/account", get(users::account))
        .route("/account/totp", post(users::begin_totp))
        .route("/account/totp/confirm", post(users::confirm_totp))
        .route("/tenants/{tenant}/users", get(users::show).post(users::add))
        .route(
            "/tenants/{tenant}/users/{login}/disable",
            post(users::disable),
        )
        .route(
            "/tenants/{tenant}/users/{login}/enable",
            post(users::enable),
        )
        .route("/tenants/{tenant}/tokens", post(users::issue_token))
        .route(
            "/tenants/{tenant}/tokens/{name}/revoke",
            post(users::revoke_token),
        )
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/tenants", get(tenants::list))
        .route("/trash", get(trash::list))
        .route("/trash/{backup}/restore", post(trash::restore))
        .route("/tenants/{tenant}", get(tenants::show))
        .route("/tenants/{tenant}/backups", post(tenants::take_backup))
        .route(
            "/tenants/{tenant}/backups/{backup}/download",
            post(tenants::download),
        )
        .route("/tenants/{tenant}/audit", get(tenants::audit_log))
        .route("/tenants/{tenant}/freeze", post(tenants::freeze))
        .route("/tenants/{tenant}/unfreeze", post(tenants::unfreeze))
        .route(
            "/tenants/{tenant}/restore",
            get(restores::form).post(restores::request),
        )
        .route("/tenants/{tenant}/rollback", post(restores::rollback))
        .route("/tenants/{tenant}/asks", post(asks::ask))
        .route("/tenants/{tenant}/asks/{ask}/close", post(asks::close))
        .route("/tenants/{tenant}/restores/{job}", get(restores::progress))
}

/// A person signed in to the panel.
#[derive(Debug)]
pub struct PanelUser {
    pub user: UserPrincipal,
    session: Session,
}

impl PanelUser {
    /// The token a form must carry.
    pub fn csrf_token(&self) -> &str {
        use secrecy::ExposeSecret;
        self.session.csrf_token.expose_secret()
    }

    /// Refuse a form without this session's CSRF token.
    pub fn check_csrf(&self, presented: &str) -> Result<(), PanelError> {
        if self.session.csrf_matches(presented) {
            Ok(())
        } else {
            Err(PanelError(
                ApiError::forbidden(
                    "this form is out of date or did not come from the panel; reload the page and try again",
                )
                .with_code("csrf"),
            ))
        }
    }
}

impl FromRequestParts<AppState> for PanelUser {
    type Rejection = PanelError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PanelError> {
        let (user, session) = session_principal(parts, state).await?;
        Ok(PanelUser { user, session })
    }
}
