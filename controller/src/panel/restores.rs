//! Helpdesk restores in the panel: the form (with the expected offline time), the live
//! progress page, rollback. The checks are the API's ([`crate::api::v1::restores`]).

use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use secrecy::SecretString;
use serde::Deserialize;

use super::PanelUser;
use super::layout::{PanelError, page};
use crate::api::v1::restores::{confirm_intent, selector, staff_on};
use crate::api::{Access, ApiError, AppState, Principal};
use crate::evidence::{self, human_duration};
use crate::queue::JobState;
use crate::restores::{self, CopyRequest, RestoreMode};

fn staff_principal(user: &PanelUser) -> Principal {
    Principal::User(user.user.clone())
}

pub async fn form(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
) -> Result<Response, PanelError> {
    let (_, name) = staff_on(&state, staff_principal(&user), &tenant).await?;
    let config = &state.portal()?.config;
    let plan = restores::plan_live_restore(
        &state.catalog,
        config,
        &name,
        lifeboat_core::restore::BackupSelector::Latest,
    )
    .await?;
    let connection = state.catalog.connection().await.map_err(ApiError::from)?;
    let backups = evidence::tenant_backups(&connection, &name).await?;
    drop(connection);
    let offline = match plan
        .estimate
        .as_ref()
        .and_then(|estimate| estimate.offline_ms)
    {
        Some(ms) => format!(
            "about {}",
            human_duration(i64::try_from(ms).unwrap_or(i64::MAX))
        ),
        None => "under a second (a rename; no earlier swap measured)".to_owned(),
    };
    let total = plan
        .estimate
        .as_ref()
        .map(|estimate| human_duration(i64::try_from(estimate.total_ms).unwrap_or(i64::MAX)));
    Ok(page(
        &format!("Restore {name}"),
        Some(&user),
        html! {
            h1 { "Restore tenant " (name) }
            p { "A live restore takes a safety backup, restores beside the live database, verifies, then swaps: "
                "the tenant is offline for " strong id="expected-offline" { (offline) } "."
                @if let Some(total) = total { " The whole job should take about " (total) "." } }
            form method="post" action=(format!("/tenants/{name}/restore")) class="card" {
                input type="hidden" name="csrf" value=(user.csrf_token());
                label for="backup" { "Backup" }
                select id="backup" name="backup" {
                    @for backup in &backups {
                        option value=(backup.id) {
                            (backup.started_at.format("%Y-%m-%d %H:%M UTC")) " · " (backup.kind)
                            @if let Some(evidence) = &backup.evidence { " · " (evidence.summary) }
                        }
                    }
                }
                label for="mode" { "Restore" }
                select id="mode" name="mode" {
                    option value="live" { "onto the live database (swap)" }
                    option value="copy" { "into a new database beside it" }
                }
                label for="into" { "New database's name (copy only)" }
                input id="into" name="into";
                label for="reason" { "Reason (goes into the audit log)" }
                input id="reason" name="reason" required;
                label for="confirm_tenant" { "Type the tenant's name, " (name) ", to confirm" }
                input id="confirm_tenant" name="confirm_tenant" required autocomplete="off";
                label for="code" { "A new code from your authenticator" }
                input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required;
                p { button type="submit" class="danger" id="restore" { "Restore" } }
            }
        },
    ))
}

#[derive(Deserialize)]
pub struct RestoreForm {
    csrf: String,
    backup: Option<String>,
    mode: RestoreMode,
    #[serde(default)]
    into: String,
    reason: String,
    confirm_tenant: String,
    code: SecretString,
}

impl std::fmt::Debug for RestoreForm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RestoreForm")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

pub async fn request(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Form(form): Form<RestoreForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    let (staff, name) = staff_on(&state, staff_principal(&user), &tenant).await?;
    let selector = selector(form.backup.as_deref().filter(|text| !text.is_empty()))?;
    confirm_intent(
        &state,
        &staff,
        &name,
        &form.confirm_tenant,
        &form.reason,
        &form.code,
    )
    .await?;
    let config = &state.portal()?.config;
    let actor = staff.actor();
    let job = match form.mode {
        RestoreMode::Live => {
            restores::request_live_restore(
                &state.catalog,
                config,
                &name,
                selector,
                &form.reason,
                &actor,
            )
            .await?
            .job_id
        }
        RestoreMode::Copy => {
            restores::request_copy(
                &state.catalog,
                config,
                CopyRequest {
                    tenant: &name,
                    selector,
                    into: form.into.trim(),
                    expires_days: Some(7),
                    actor: &actor,
                },
            )
            .await?
            .requested
            .job_id
        }
        RestoreMode::Rollback => {
            return Err(ApiError::unprocessable("choose live or copy").into());
        }
    };
    state.work_ready.notify_waiters();
    Ok(Redirect::to(&format!("/tenants/{name}/restores/{job}")).into_response())
}

pub async fn progress(
    State(state): State<AppState>,
    user: PanelUser,
    Path((tenant, job)): Path<(String, String)>,
) -> Result<Response, PanelError> {
    let name = user.user.tenant(&tenant, Access::View)?;
    let not_found = || ApiError::not_found(format!("tenant {name} has no restore {job}"));
    let job_id: i64 = job.parse().map_err(|_| not_found())?;
    let status = restores::restore_job_status(&state.catalog, job_id)
        .await?
        .filter(|status| status.tenant == name.as_str())
        .ok_or_else(not_found)?;
    let finished = matches!(status.state, JobState::Succeeded | JobState::Failed);
    let state_text = status.state.as_str();
    let mut response = page(
        &format!("Restore of {name}"),
        Some(&user),
        html! {
            h1 { "Restore of " (name) " (" (status.mode.as_str()) ")" }
            p { "State: " strong id="restore-state" { (state_text) }
                @if !finished { " — this page refreshes itself." } }
            @if let Some(offline) = status.offline_ms {
                p { "Offline for " span id="offline" { (human_duration(i64::try_from(offline).unwrap_or(i64::MAX))) } "." }
            }
            @if let Some(error) = &status.error { p class="error" { (error) } }
            ol id="steps" {
                @for step in &status.steps {
                    li { (step.step) ": " (format!("{:?}", step.state).to_lowercase())
                        @if let Some(ms) = step.duration_ms { " (" (human_duration(i64::try_from(ms).unwrap_or(i64::MAX))) ")" }
                        @if let Some(detail) = &step.detail { " — " (detail) } }
                }
            }
            p { "Requested by " (status.requested_by) " at " (status.requested_at.format("%Y-%m-%d %H:%M:%S UTC"))
                @if let Some(reason) = &status.reason { ": " (reason) } }
            @if user.user.role.is_staff() && finished && status.state == JobState::Succeeded
                && matches!(status.mode, RestoreMode::Live | RestoreMode::Rollback) {
                h2 { "Roll back" }
                form method="post" action=(format!("/tenants/{name}/rollback")) class="card" {
                    input type="hidden" name="csrf" value=(user.csrf_token());
                    label for="reason" { "Reason (goes into the audit log)" }
                    input id="reason" name="reason" required;
                    label for="confirm_tenant" { "Type the tenant's name, " (name) ", to confirm" }
                    input id="confirm_tenant" name="confirm_tenant" required autocomplete="off";
                    label for="code" { "A new code from your authenticator" }
                    input id="code" name="code" inputmode="numeric" autocomplete="one-time-code" required;
                    p { button type="submit" class="danger" id="rollback" { "Roll back to the database before this restore" } }
                }
            }
            p { a href=(format!("/tenants/{name}")) { "Back to " (name) } }
        },
    );
    if !finished && let Ok(value) = axum::http::HeaderValue::from_str("2") {
        response.headers_mut().insert("refresh", value);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct RollbackForm {
    csrf: String,
    reason: String,
    confirm_tenant: String,
    code: SecretString,
}

impl std::fmt::Debug for RollbackForm {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RollbackForm")
            .finish_non_exhaustive()
    }
}

pub async fn rollback(
    State(state): State<AppState>,
    user: PanelUser,
    Path(tenant): Path<String>,
    Form(form): Form<RollbackForm>,
) -> Result<Response, PanelError> {
    user.check_csrf(&form.csrf)?;
    let (staff, name) = staff_on(&state, staff_principal(&user), &tenant).await?;
    confirm_intent(
        &state,
        &staff,
        &name,
        &form.confirm_tenant,
        &form.reason,
        &form.code,
    )
    .await?;
    let requested = restores::request_rollback(
        &state.catalog,
        &state.portal()?.config,
        &name,
        Some(&form.reason),
        &staff.actor(),
    )
    .await?;
    state.work_ready.notify_waiters();
    Ok(Redirect::to(&format!("/tenants/{name}/restores/{}", requested.job_id)).into_response())
}
