//! The trash (admins): the backups retention trashed, each until its purge, and bringing
//! one back, through the same function as `POST /api/v1/trash/{backup}/restore`.

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;

use super::PanelUser;
use super::layout::{Notice, PanelError, human_bytes, page};
use super::session::CsrfOnly;
use crate::api::AppState;
use crate::api::v1::trash::untrash;
use crate::retention;

pub async fn list(
    State(state): State<AppState>,
    user: PanelUser,
    Query(notice): Query<Notice>,
) -> Result<Response, PanelError> {
    user.user.require_admin()?;
    let trashed = retention::list_trash(&state.catalog).await?;
    let csrf = user.csrf_token().to_owned();
    Ok(page(
        "Trash",
        Some(&user),
        html! {
            h1 { "Trash" }
            @if notice.done.as_deref() == Some("restored") {
                p class="notice" role="status" {
                    "The backup is out of the trash. Retention may trash it again unless it is held."
                }
            }
            p { "Backups retention trashed wait here until their purge; until then they can be brought back." }
            @if trashed.is_empty() { p { "The trash is empty." } }
            @else {
                div class="scroll" {
                    table id="trash" {
                        thead { tr {
                            th { "Tenant" } th { "Backup taken" } th class="wide" { "Size" }
                            th class="wide" { "Why" } th { "Purged after" } th { span class="visually-hidden" { "Actions" } }
                        } }
                        tbody {
                            @for backup in &trashed {
                                tr data-backup=(backup.backup_id) {
                                    td { a href=(format!("/tenants/{}", backup.tenant)) { (backup.tenant) } }
                                    td { (backup.started_at.format("%Y-%m-%d %H:%M UTC")) " (" (backup.kind.as_str()) ")" }
                                    td class="wide" { (human_bytes(i64::try_from(backup.stored_bytes).unwrap_or(i64::MAX))) }
                                    td class="wide" { (backup.trash_reason.as_deref().unwrap_or("")) }
                                    td {
                                        (backup.purge_after.format("%Y-%m-%d"))
                                        @if backup.legal_hold { " (held: not purged)" }
                                    }
                                    td {
                                        form class="inline" method="post" action=(format!("/trash/{}/restore", backup.backup_id)) {
                                            input type="hidden" name="csrf" value=(csrf);
                                            button type="submit" id=(format!("untrash-{}", backup.backup_id)) {
                                                "Bring back" span class="visually-hidden" { " the backup of " (backup.tenant) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

pub async fn restore(
    State(state): State<AppState>,
    user: PanelUser,
    Path(backup): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    untrash(&state, &user.user, &backup).await?;
    Ok(Redirect::to("/trash?done=restored").into_response())
}
