//! A tenant's users and API tokens (its owners and admins), and each person's own
//! authenticator enrolment. Every action calls the same function as its `/api/v1` route
//! (`api::v1::users`), so the access checks and the audit entries are the API's.
//!
//! The password field shows its strength as it is typed through `/panel.js`, which asks
//! `/api/v1/password-strength` (the policy's own verdict); without JavaScript the form still
//! works and a refused password comes back with the reason.

use axum::extract::{Form, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, PreEscaped, html};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::PanelUser;
use super::layout::{Notice, PanelError, page};
use super::session::CsrfOnly;
use crate::accounts::{ApiTokenInfo, Role, TotpState, User};
use crate::api::AppState;
use crate::api::v1::users::{
    NewTokenRequest, add_user_of, issue_token_of, revoke_token_of, set_disabled, tokens_of,
    users_of,
};

/// Shows a password's strength as it is typed; the page works without it.
const STRENGTH_SCRIPT: &str = r#"// lifeboat panel: password strength as it is typed (the server's policy decides).
(function () {
  var labels = ["very weak", "weak", "fair", "strong", "very strong"];
  var meta = document.querySelector('meta[name="csrf-token"]');
  document.querySelectorAll("input[data-strength]").forEach(function (input) {
    var output = document.getElementById(input.getAttribute("data-strength"));
    var login = document.getElementById(input.getAttribute("data-login") || "");
    var timer = null;
    var asked = 0;
    input.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var number = ++asked;
        if (!input.value) { output.textContent = ""; return; }
        fetch("/api/v1/password-strength", {
          method: "POST",
          credentials: "same-origin",
          headers: {"content-type": "application/json", "x-csrf-token": meta ? meta.content : ""},
          body: JSON.stringify({password: input.value, login: login && login.value ? login.value : null})
        }).then(function (response) { return response.ok ? response.json() : null; })
          .then(function (strength) {
            if (!strength || number !== asked) { return; }
            output.textContent = labels[strength.score] +
              (strength.acceptable ? ": accepted" : ": not accepted" + (strength.feedback ? " (" + strength.feedback + ")" : ""));
            output.className = strength.acceptable ? "ok" : "bad";
          });
      }, 250);
    });
  });
})();
"#;

pub async fn script() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        STRENGTH_SCRIPT,
    )
        .into_response()
}

/// A fixed message for each action that redirects back (never text from the request).
fn notice_text(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "added" => Some("The user was added. Give them their password by a channel of its own."),
        "disabled" => Some("The user is disabled: signed out and refused."),
        "enabled" => Some("The user can sign in again."),
        "revoked" => Some("The token is revoked: refused from its next use."),
        _ => None,
    }
}

pub async fn show(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, PanelError> {
    users_page(
        &state,
        &user,
        &tenant,
        notice_text(notice.done.as_deref()),
        None,
    )
    .await
}

async fn users_page(
    state: &AppState,
    user: &PanelUser,
    tenant: &str,
    notice: Option<&str>,
    refusal: Option<(&str, &NewUserForm)>,
) -> Result<Response, PanelError> {
    let users = users_of(state, &user.user, tenant).await?;
    let tokens = tokens_of(state, &user.user, tenant).await?;
    // Helpdesk staff may look; owners and admins manage.
    let manages = user.user.role != Role::Helpdesk;
    let csrf = user.csrf_token().to_owned();
    let now = Utc::now();
    let body = html! {
        h1 { "Users of " (tenant) }
        p { a href=(format!("/tenants/{tenant}")) { "Back to " (tenant) } }
        @if let Some(text) = notice { p class="notice" role="status" { (text) } }
        @if let Some((message, _)) = refusal { p class="error" role="alert" id="user-error" { (message) } }
        div class="scroll" {
            table id="users" {
                thead { tr { th { "Login" } th { "Role" } th class="wide" { "Authenticator" } th { "State" } @if manages { th { span class="visually-hidden" { "Actions" } } } } }
                tbody {
                    @for person in &users {
                        tr data-user=(person.login) {
                            td { (person.login) }
                            td { (person.role) }
                            td class="wide" { (totp_words(person)) }
                            td { @if person.disabled { span class="bad" { "disabled" } } @else { "active" } }
                            @if manages {
                                td {
                                    @if person.login != user.user.login {
                                        @let action = if person.disabled { "enable" } else { "disable" };
                                        form class="inline" method="post" action=(format!("/tenants/{tenant}/users/{}/{action}", person.login)) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" class=[(!person.disabled).then_some("danger")] id=(format!("{action}-{}", person.login)) {
                                                (if person.disabled { "Enable" } else { "Disable" })
                                                span class="visually-hidden" { " " (person.login) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if manages {
            h2 { "Add a user" }
            form class="card" method="post" action=(format!("/tenants/{tenant}/users")) {
                input type="hidden" name="csrf" value=(csrf);
                label for="new-login" { "Login" }
                input id="new-login" name="login" required autocomplete="off"
                    value=(refusal.map(|(_, form)| form.login.as_str()).unwrap_or(""));
                label for="new-role" { "Role" }
                select id="new-role" name="role" {
                    option value="viewer" selected[refusal.is_none_or(|(_, form)| form.role == "viewer")] { "viewer: sees backups and their evidence" }
                    option value="owner" selected[refusal.is_some_and(|(_, form)| form.role == "owner")] { "owner: manages users, downloads, backups" }
                }
                label for="new-password" { "Password (at least 10 characters, not a common one)" }
                input id="new-password" name="password" type="password" required minlength="10"
                    autocomplete="new-password" data-strength="password-strength" data-login="new-login"
                    aria-describedby="password-strength";
                output id="password-strength" for="new-password" aria-live="polite" {}
                p { button type="submit" id="add-user" { "Add the user" } }
            }
        }
        h2 { "API tokens" }
        @if tokens.is_empty() { p { "No token yet." } }
        @else {
            div class="scroll" {
                table id="tokens" {
                    thead { tr { th { "Name" } th { "Role" } th class="wide" { "Last used" } th { "State" } @if manages { th { span class="visually-hidden" { "Actions" } } } } }
                    tbody {
                        @for token in &tokens {
                            tr data-token=(token.name) {
                                td { (token.name) }
                                td { (token.role) }
                                td class="wide" { (token.last_used_at.map_or_else(|| "never".to_owned(), |at| at.format("%Y-%m-%d %H:%M UTC").to_string())) }
                                td { (token_state(token, now)) }
                                @if manages {
                                    td {
                                        @if token.revoked_at.is_none() && token.expires_at > now {
                                            form class="inline" method="post" action=(format!("/tenants/{tenant}/tokens/{}/revoke", token.name)) {
                                                input type="hidden" name="csrf" value=(csrf);
                                                button type="submit" class="danger" id=(format!("revoke-{}", token.name)) {
                                                    "Revoke" span class="visually-hidden" { " " (token.name) }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if manages {
            form class="card" method="post" action=(format!("/tenants/{tenant}/tokens")) {
                input type="hidden" name="csrf" value=(csrf);
                label for="token-name" { "Token name" }
                input id="token-name" name="name" required autocomplete="off";
                label for="token-role" { "Role" }
                select id="token-role" name="role" {
                    option value="viewer" { "viewer" }
                    option value="owner" { "owner" }
                }
                label for="token-days" { "Valid for (days, 1 to 366)" }
                input id="token-days" name="days" type="number" min="1" max="366" value="90";
                p { button type="submit" id="issue-token" { "Issue a token" } }
            }
        }
    };
    let mut response = page(&format!("Users of {tenant}"), Some(user), body);
    if refusal.is_some() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

fn totp_words(user: &User) -> &'static str {
    match user.totp {
        TotpState::Active => "enrolled",
        TotpState::Pending => "enrolment begun",
        TotpState::None => "none",
    }
}

fn token_state(token: &ApiTokenInfo, now: chrono::DateTime<Utc>) -> String {
    if let Some(revoked_at) = token.revoked_at {
        format!("revoked {}", revoked_at.format("%Y-%m-%d"))
    } else if token.expires_at <= now {
        "expired".to_owned()
    } else {
        format!("valid until {}", token.expires_at.format("%Y-%m-%d"))
    }
}

#[derive(Deserialize)]
pub struct NewUserForm {
    csrf: String,
    login: String,
    role: String,
    password: SecretString,
}

pub async fn add(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Form(form): Form<NewUserForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    match add_user_of(
        &state,
        &user.user,
        &tenant,
        form.login.clone(),
        &form.role,
        form.password.clone(),
    )
    .await
    {
        Ok(_) => Ok(Redirect::to(&format!("/tenants/{tenant}/users?done=added")).into_response()),
        // A weak password, a taken or malformed login: the form again, with the reason
        // (never the password).
        Err(error)
            if matches!(
                error.status(),
                StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY
            ) =>
        {
            users_page(&state, &user, &tenant, None, Some((error.message(), &form))).await
        }
        Err(error) => Err(error.into()),
    }
}

pub async fn disable(
    State(state): State<AppState>,
    user: PanelUser,
    Path((tenant, login)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    set_disabled(&state, &user.user, &tenant, &login, true).await?;
    Ok(Redirect::to(&format!("/tenants/{tenant}/users?done=disabled")).into_response())
}

pub async fn enable(
    State(state): State<AppState>,
    user: PanelUser,
    Path((tenant, login)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    set_disabled(&state, &user.user, &tenant, &login, false).await?;
    Ok(Redirect::to(&format!("/tenants/{tenant}/users?done=enabled")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct NewTokenForm {
    csrf: String,
    name: String,
    role: String,
    days: Option<u32>,
}

pub async fn issue_token(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Form(form): Form<NewTokenForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    let issued = issue_token_of(
        &state,
        &user.user,
        &tenant,
        &NewTokenRequest {
            name: form.name,
            role: form.role,
            days: form.days,
        },
    )
    .await?;
    Ok(page(
        "Token issued",
        Some(&user),
        html! {
            h1 { "Token " (issued.info.name) }
            p class="notice" role="status" {
                "Copy the token now: it is shown this once, and lifeboat keeps only its hash."
            }
            p { code id="issued-token" { (issued.token.expose_secret()) } }
            p {
                (issued.info.role) " of " (tenant) ", valid until "
                (issued.info.expires_at.format("%Y-%m-%d %H:%M UTC"))
            }
            p { a href=(format!("/tenants/{tenant}/users")) { "Back to the users and tokens" } }
        },
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    user: PanelUser,
    Path((tenant, name)): Path<(String, String)>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    revoke_token_of(&state, &user.user, &tenant, &name).await?;
    Ok(Redirect::to(&format!("/tenants/{tenant}/users?done=revoked")).into_response())
}

/// The signed-in person's own account: their authenticator.
pub async fn account(
    State(state): State<AppState>,
    user: PanelUser,
) -> Result<Response, PanelError> {
    let me = state.portal()?.accounts.user(&user.user.login).await?;
    let csrf = user.csrf_token().to_owned();
    Ok(page(
        "Your account",
        Some(&user),
        html! {
            h1 { "Your account" }
            p { (me.login) ", " (me.role) @if let Some(tenant) = &me.tenant { " of " (tenant) } }
            h2 { "Authenticator (TOTP)" }
            p id="totp-state" { (totp_words(&me)) }
            @if me.totp != TotpState::Active {
                form method="post" action="/account/totp" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" id="begin-totp" { "Set up an authenticator app" }
                }
            } @else {
                p { "To change it, ask an admin to reset it (`lifeboat user reset-totp`), then set up the new one here." }
            }
        },
    ))
}

pub async fn begin_totp(
    State(state): State<AppState>,
    user: PanelUser,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    user.user.require_session()?;
    let enrolment = state
        .portal()?
        .accounts
        .begin_totp_enrolment(&user.user.login, &user.user.actor())
        .await?;
    Ok(page(
        "Set up an authenticator",
        Some(&user),
        html! {
            h1 { "Set up an authenticator" }
            p { "Scan the code with an authenticator app, or type the key by hand. It is shown this once." }
            // The SVG is made by lifeboat (the `qrcode` crate), never from the request.
            div class="card" id="totp-qr" { (PreEscaped(enrolment.qr_svg.expose_secret())) }
            p { "Key: " code id="totp-secret" { (enrolment.secret_base32.expose_secret()) } }
            form class="card" method="post" action="/account/totp/confirm" {
                input type="hidden" name="csrf" value=(user.csrf_token());
                label for="totp-code" { "The code the app shows now" }
                input id="totp-code" name="code" inputmode="numeric" autocomplete="one-time-code" required;
                p { button type="submit" id="confirm-totp" { "Confirm" } }
            }
        },
    ))
}

#[derive(Deserialize)]
pub struct CodeForm {
    csrf: String,
    code: SecretString,
}

pub async fn confirm_totp(
    State(state): State<AppState>,
    user: PanelUser,
    Form(form): Form<CodeForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    user.user.require_session()?;
    let codes = state
        .portal()?
        .accounts
        .confirm_totp_enrolment(&user.user.login, &form.code, Utc::now(), &user.user.actor())
        .await?;
    Ok(page(
        "Authenticator enrolled",
        Some(&user),
        html! {
            h1 { "Authenticator enrolled" }
            p class="notice" role="status" {
                "From now on, sign in with a code from the app. Keep these recovery codes somewhere safe: each opens one sign-in instead of a code, and they are shown this once."
            }
            ul id="recovery-codes" {
                @for code in &codes.0 { li { code { (code.expose_secret()) } } }
            }
            p { a href="/" { "Continue" } }
        },
    ))
}

/// Links for the tenant page's header: where its users are managed.
pub fn users_link(tenant: &str) -> Markup {
    html! { a href=(format!("/tenants/{tenant}/users")) id="users-link" { "Users and tokens" } }
}
