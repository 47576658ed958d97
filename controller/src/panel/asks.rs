//! Restore asks in the panel: an owner asks staff for a restore from the tenant's page (or
//! withdraws the ask); staff see it there and in the tenant list, and decline it or serve
//! it with a restore. Every action calls the same function as its `/api/v1` route
//! (`api::v1::asks`).

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::PanelUser;
use super::layout::PanelError;
use crate::accounts::Role;
use crate::api::AppState;
use crate::api::v1::asks::{AskRequest, ask_as, close_as};
use crate::evidence::BackupView;
use crate::restores::RestoreMode;
use crate::restores::asks::RestoreAsk;

/// The tenant page's section: the open ask, or (for owners) the form to ask.
pub fn section(
    user: &PanelUser,
    tenant: &str,
    open: Option<&RestoreAsk>,
    backups: &[BackupView],
) -> Markup {
    let csrf = user.csrf_token();
    let role = user.user.role;
    html! {
        @if let Some(ask) = open {
            div class="card" id="open-ask" {
                h2 { "Restore asked" }
                p {
                    (ask.asked_by) " asked on " (ask.asked_at.format("%Y-%m-%d %H:%M UTC")) " for "
                    @if ask.target == "live" { "the live database to go back to " } @else { "a copy of " }
                    @match &ask.backup_id { Some(backup) => { "backup " code { (backup) } }, None => "the newest backup" }
                    "."
                }
                blockquote id="ask-note" { (ask.note) }
                @if role.is_staff() {
                    p { a href=(format!("/tenants/{tenant}/restore")) { "Restore…" } " (the restore serves the ask)" }
                }
                form method="post" action=(format!("/tenants/{tenant}/asks/{}/close", ask.id)) {
                    input type="hidden" name="csrf" value=(csrf);
                    label for="close-reason" { @if role.is_staff() { "Why it is declined" } @else { "Why you withdraw it" } }
                    input id="close-reason" name="reason" required;
                    " "
                    button type="submit" id="close-ask" class="danger" {
                        @if role.is_staff() { "Decline" } @else { "Withdraw" }
                    }
                }
            }
        } @else if role == Role::Owner {
            form class="card" method="post" action=(format!("/tenants/{tenant}/asks")) id="ask-form" {
                h2 { "Ask for a restore" }
                p { "Our helpdesk restores it and tells you when it is done. You see its progress below." }
                input type="hidden" name="csrf" value=(csrf);
                label for="ask-target" { "Restore" }
                select id="ask-target" name="target" {
                    option value="copy" { "into a copy beside the live database" }
                    option value="live" { "onto the live database (it goes back to the backup)" }
                }
                label for="ask-backup" { "From" }
                select id="ask-backup" name="backup" {
                    option value="" { "the newest backup" }
                    @for backup in backups {
                        option value=(backup.id) { (backup.started_at.format("%Y-%m-%d %H:%M UTC")) " (" (backup.kind) ")" }
                    }
                }
                label for="ask-note-field" { "What happened, and what should come back" }
                textarea id="ask-note-field" name="note" required maxlength="2000" rows="3" {}
                p { button type="submit" id="ask-restore" { "Ask for the restore" } }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct AskForm {
    csrf: String,
    target: RestoreMode,
    backup: Option<String>,
    note: String,
}

pub async fn ask(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Form(form): Form<AskForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    ask_as(
        &state,
        &user.user,
        &tenant,
        &AskRequest {
            target: form.target,
            backup: form.backup.filter(|backup| !backup.is_empty()),
            note: form.note,
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/tenants/{tenant}?done=asked")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CloseForm {
    csrf: String,
    reason: String,
}

pub async fn close(
    State(state): State<AppState>,
    user: PanelUser,
    Path((tenant, ask)): Path<(String, i64)>,
    Form(form): Form<CloseForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    close_as(&state, &user.user, &tenant, ask, &form.reason).await?;
    Ok(Redirect::to(&format!("/tenants/{tenant}?done=ask-closed")).into_response())
}
