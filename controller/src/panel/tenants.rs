//! The tenant list (staff), a tenant's page, its audit log, manual backups and freezing.

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use serde::Deserialize;

use super::PanelUser;
use super::layout::{Notice, PanelError, human_bytes, page};
use super::session::CsrfOnly;
use crate::accounts::Role;
use crate::api::v1::tenants::set_frozen;
use crate::api::{Access, AppState};
use crate::evidence::{self, human_duration};
use crate::manual_backups;
use crate::{audit, drills, restores, tenants};
use lifeboat_core::ids::TenantName;

#[derive(Debug, Deserialize)]
pub struct Search {
    q: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    user: PanelUser,
    Query(search): Query<Search>,
) -> Result<Response, PanelError> {
    user.user.require_staff()?;
    let needle = search.q.clone().unwrap_or_default().to_lowercase();
    let all = tenants::list_tenants(&state.catalog).await?;
    let asks = crate::api::v1::asks::open_asks(&state, &user.user).await?;
    let shown: Vec<_> = all
        .iter()
        .filter(|tenant| tenant.name.as_str().contains(&needle))
        .collect();
    Ok(page(
        "Tenants",
        Some(&user),
        html! {
            h1 { "Tenants" }
            @if !asks.is_empty() {
                div class="card" id="ask-queue" {
                    h2 { "Restores asked by customers" }
                    ul { @for ask in &asks {
                        li {
                            a href=(format!("/tenants/{}", ask.tenant)) { (ask.tenant) } ": "
                            (ask.target) ", asked " (ask.asked_at.format("%Y-%m-%d %H:%M UTC"))
                            " by " (ask.asked_by)
                        }
                    } }
                }
            }
            form method="get" action="/tenants" role="search" {
                label for="q" { "Find a tenant" }
                input id="q" name="q" value=(search.q.unwrap_or_default());
                " " button type="submit" { "Search" }
            }
            div class="scroll" {
                table {
                    thead { tr { th { "Tenant" } th class="wide" { "Cluster" } th { "State" } } }
                    tbody {
                        @for tenant in &shown {
                            tr {
                                td { a href=(format!("/tenants/{}", tenant.name)) { (tenant.name) } }
                                td class="wide" { (tenant.cluster) }
                                td {
                                    @if asks.iter().any(|ask| ask.tenant == tenant.name.as_str()) { span class="bad" { "restore asked" } " " }
                                    @if tenant.frozen { span class="bad" { "frozen" } }
                                    @else if tenant.legal_hold { "legal hold" }
                                    @else { "active" }
                                }
                            }
                        }
                    }
                }
            }
        },
    ))
}

/// A fixed message for each action that redirects back (never text from the request).
fn notice_text(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "backup" => Some("A backup was queued; it appears here when it is stored in every region."),
        "freeze" => Some("The tenant is frozen: its users are signed out and refused."),
        "unfreeze" => Some("The tenant is no longer frozen."),
        "asked" => Some("Your ask is with our helpdesk; this page shows its progress."),
        "ask-closed" => Some("The ask is closed."),
        _ => None,
    }
}

pub async fn show(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Query(notice): Query<Notice>,
) -> Result<Response, PanelError> {
    let name = user.user.tenant(&tenant, Access::View)?;
    let tenant = tenants::show_tenant(&state.catalog, &name).await?;
    let connection = state.catalog.connection().await?;
    let backups = evidence::tenant_backups(&connection, &name).await?;
    let drill_history = drills::list_drills(&**connection, Some(&name), 20).await?;
    drop(connection);
    let restore_history = restores::restore_status(&state.catalog, Some(&name), 10).await?;
    let open_ask = if user.user.role == Role::Viewer {
        None
    } else {
        crate::api::v1::asks::asks_of(&state, &user.user, name.as_str())
            .await?
            .into_iter()
            .find(|ask| ask.state == "open")
    };
    let manages = user.user.role.is_staff() || user.user.role == Role::Owner;
    let staff = user.user.role.is_staff();
    let csrf = user.csrf_token().to_owned();
    let body = html! {
        h1 { "Tenant " (name) }
        @if let Some(text) = notice_text(notice.done.as_deref()) {
            p class="notice" role="status" { (text) }
        }
        @if tenant.frozen { p class="error" { "This tenant is frozen." } }
        @if manages {
            form method="post" action=(format!("/tenants/{name}/backups")) class="inline" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" id="take-backup" { "Take a backup now" }
            }
            " "
            a href=(format!("/tenants/{name}/audit")) { "Audit log" }
            " · " (super::users::users_link(name.as_str()))
        }
        @if staff {
            " · " a href=(format!("/tenants/{name}/restore")) id="restore-link" { "Restore…" }
        }
        (super::asks::section(&user, name.as_str(), open_ask.as_ref(), &backups))
        h2 { "Backups" }
        (backup_table(&backups, &name, manages.then_some(csrf.as_str())))
        h2 { "Restore tests (drills)" }
        @if drill_history.is_empty() { p { "No drill yet." } }
        @else {
            div class="scroll" { table {
                thead { tr { th { "Finished" } th { "Result" } th { "Recovery time" } th class="wide" { "Backup" } } }
                tbody { @for drill in &drill_history {
                    tr {
                        td { (drill.record.finished_at.format("%Y-%m-%d %H:%M UTC")) }
                        td { @match &drill.record.outcome {
                            lifeboat_core::api::DrillOutcome::Verified { tables_verified, rows_verified } =>
                                span class="ok" { "verified: " (tables_verified) " tables, " (rows_verified) " rows" },
                            lifeboat_core::api::DrillOutcome::Failed { error } =>
                                span class="bad" { "failed: " (error) },
                        } }
                        td { (human_duration((drill.record.finished_at - drill.record.started_at).num_milliseconds())) }
                        td class="wide" { code { (drill.record.backup_id) } }
                    }
                } }
            } }
        }
        h2 { "Restores" }
        @if restore_history.is_empty() { p { "No restore yet." } }
        @else {
            div class="scroll" { table {
                thead { tr { th { "Requested" } th { "Mode" } th { "State" } th class="wide" { "By" } } }
                tbody { @for restore in &restore_history {
                    tr {
                        td { a href=(format!("/tenants/{name}/restores/{}", restore.job_id)) {
                            (restore.requested_at.format("%Y-%m-%d %H:%M UTC")) } }
                        td { (restore.mode.as_str()) }
                        td { (format!("{:?}", restore.state).to_lowercase()) }
                        td class="wide" { (restore.requested_by) }
                    }
                } }
            } }
        }
        @if user.user.role == Role::Admin {
            h2 { "Freeze" }
            @let action = if tenant.frozen { "unfreeze" } else { "freeze" };
            form method="post" action=(format!("/tenants/{name}/{action}")) class="card" {
                input type="hidden" name="csrf" value=(csrf);
                label for="freeze-reason" { "Reason (goes into the audit log)" }
                input id="freeze-reason" name="reason" required;
                " "
                button type="submit" class="danger" id=(action) {
                    @if tenant.frozen { "Unfreeze" } @else { "Freeze: sign out and refuse every user of this tenant" }
                }
            }
        }
    };
    Ok(page(&format!("Tenant {name}"), Some(&user), body))
}

/// The backups, with a download form on each row for those who may download (`csrf`).
fn backup_table(
    backups: &[evidence::BackupView],
    tenant: &TenantName,
    csrf: Option<&str>,
) -> Markup {
    html! {
        @if backups.is_empty() { p { "No backup yet." } }
        @else {
            div class="scroll" { table id="backups" {
                thead { tr {
                    th { "Taken" } th { "Kind" } th { "Size" } th class="wide" { "Regions" } th { "Restore evidence" }
                    @if csrf.is_some() { th { "Download" } }
                } }
                tbody { @for backup in backups {
                    tr data-backup=(backup.id) {
                        td { (backup.started_at.format("%Y-%m-%d %H:%M UTC")) }
                        td { (backup.kind) }
                        td { (human_bytes(backup.dump_bytes)) }
                        td class="wide" { (backup.regions.join(", ")) }
                        td { @match &backup.evidence {
                            Some(evidence) if evidence.verified => span class="ok" { (evidence.summary) },
                            Some(evidence) => span class="bad" { (evidence.summary) },
                            None => "not tested yet",
                        } }
                        @if let Some(csrf) = csrf {
                            td { form method="post" action=(format!("/tenants/{tenant}/backups/{}/download", backup.id)) {
                                input type="hidden" name="csrf" value=(csrf);
                                label class="visually-hidden" for=(format!("format-{}", backup.id)) { "Format" }
                                select id=(format!("format-{}", backup.id)) name="format" {
                                    option value="custom" { "pg_restore file" }
                                    option value="plain-sql-gzip" { "plain SQL (gzip)" }
                                }
                                label for=(format!("recipient-{}", backup.id)) { "Encrypt to age recipient (optional)" }
                                input id=(format!("recipient-{}", backup.id)) name="recipient" placeholder="age1…";
                                " " button type="submit" class="download" { "Download" }
                            } }
                        }
                    }
                } }
            } }
        }
    }
}

pub async fn take_backup(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Form(form): Form<CsrfOnly>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    let name = user.user.tenant(&tenant, Access::Manage)?;
    manual_backups::request_manual_backup(
        &state.catalog,
        &name,
        manual_backups::DEFAULT_DAILY_LIMIT,
        state.options.policy.max_attempts,
        &user.user.actor(),
        Utc::now(),
    )
    .await?;
    state.work_ready.notify_waiters();
    Ok(Redirect::to(&format!("/tenants/{name}?done=backup")).into_response())
}

pub async fn audit_log(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
) -> Result<Response, PanelError> {
    let name = user
        .user
        .existing_tenant(&state, &tenant, Access::Manage)
        .await?;
    let entries = audit::entries_for_tenant(
        &state.catalog,
        &name,
        audit::Page {
            before_id: None,
            limit: 200,
        },
    )
    .await?;
    Ok(page(
        &format!("Audit log of {name}"),
        Some(&user),
        html! {
            h1 { "Audit log of " (name) }
            div class="scroll" { table id="audit" {
                thead { tr { th { "When" } th { "Who" } th { "What" } th { "Why" } th class="wide" { "From" } } }
                tbody { @for entry in &entries {
                    tr {
                        td { (entry.at.format("%Y-%m-%d %H:%M:%S UTC")) }
                        td { (entry.actor) @if let Some(role) = &entry.actor_role { " (" (role) ")" } }
                        td { (entry.action) }
                        td { (entry.reason.clone().unwrap_or_default()) }
                        td class="wide" { (entry.address.map(|address| address.to_string()).unwrap_or_default()) }
                    }
                } }
            } }
        },
    ))
}

#[derive(Debug, Deserialize)]
pub struct ReasonForm {
    csrf: String,
    reason: String,
}

pub async fn freeze(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    let name = set_frozen(&state, &user.user, &tenant, &form.reason, true).await?;
    Ok(Redirect::to(&format!("/tenants/{name}?done=freeze")).into_response())
}

pub async fn unfreeze(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Form(form): Form<ReasonForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    let name = set_frozen(&state, &user.user, &tenant, &form.reason, false).await?;
    Ok(Redirect::to(&format!("/tenants/{name}?done=unfreeze")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct DownloadForm {
    csrf: String,
    format: lifeboat_core::download::DownloadFormat,
    #[serde(default)]
    recipient: String,
}

/// Issue a single-use link and send the browser to it: the file downloads at once.
pub async fn download(
    State(state): State<AppState>,
    user: PanelUser,
    Path((tenant, backup)): Path<(String, String)>,
    Form(form): Form<DownloadForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    let issued = crate::api::downloads::issue_link_for(
        &state,
        &user.user,
        &tenant,
        &backup,
        crate::api::downloads::LinkRequest {
            format: Some(form.format),
            recipient: Some(form.recipient),
        },
    )
    .await?;
    Ok(Redirect::to(&issued.url).into_response())
}
