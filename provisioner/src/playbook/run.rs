//! Running a playbook: every step in order, each reported; on failure, what this run made
//! is undone in reverse, so the databases are as they were before it started.
//!
//! Undo is written against the state of the cluster, not against memory of what ran: each
//! undo checks first (drop the database only if it carries this run's tag, swap back only if
//! the swap happened), so it is safe for a step that never ran or only half ran. That is what
//! lets the next attempt of a job whose agent died mid-run finish the job's business:
//! - if the run had passed its commit point (a `swap_databases` that happened), the new
//!   attempt goes on after it;
//! - otherwise it undoes every step, which removes what the dead attempt left (its shadow
//!   or scratch database, a blocked live database), and starts again.

use std::future::Future;
use std::time::{Duration, Instant};

use lifeboat_core::api::{StepReport, StepState};
use tokio_util::sync::CancellationToken;

use super::file::Playbook;
use super::steps::{Action, StepName};
use super::template::{Bindings, Variable};

/// Why a step failed, which decides what the caller does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The backup itself is bad: it cannot be read, decrypted, restored or verified. A
    /// drill's verdict; retrying will not help.
    Backup,
    /// Wrong for good: bad input, a newer PostgreSQL major, a name already taken.
    Permanent,
    /// This agent, the cluster or a region, now: worth another attempt.
    Transient,
    /// The run was stopped between steps; nothing was undone.
    Cancelled,
}

/// A step that failed, in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepFailure {
    pub message: String,
    pub kind: FailureKind,
}

impl StepFailure {
    pub fn transient(message: impl Into<String>) -> StepFailure {
        StepFailure {
            message: message.into(),
            kind: FailureKind::Transient,
        }
    }

    pub fn permanent(message: impl Into<String>) -> StepFailure {
        StepFailure {
            message: message.into(),
            kind: FailureKind::Permanent,
        }
    }

    pub fn backup(message: impl Into<String>) -> StepFailure {
        StepFailure {
            message: message.into(),
            kind: FailureKind::Backup,
        }
    }
}

/// What carries out steps: the cluster executor in production, wrapped to inject a fault
/// in tests.
pub trait Executor: Send + Sync {
    /// Checks made before anything is done (e.g. a dump from a newer PostgreSQL major is
    /// refused before a database is made).
    fn preflight(&self, actions: &[Action])
    -> impl Future<Output = Result<(), StepFailure>> + Send;

    /// Carry out one step; `Ok(detail)` says what it did, in a few words.
    fn execute(
        &self,
        action: &Action,
    ) -> impl Future<Output = Result<Option<String>, StepFailure>> + Send;

    /// Undo whatever of `action` this run (or an earlier attempt of it) made, judging by
    /// the cluster's state; `Ok(None)` when there was nothing to undo.
    fn undo(
        &self,
        action: &Action,
    ) -> impl Future<Output = Result<Option<String>, StepFailure>> + Send;

    /// Whether `action`, a commit point, already happened (an earlier attempt's swap).
    fn committed(&self, action: &Action) -> impl Future<Output = Result<bool, StepFailure>> + Send;
}

/// Told each time a step changes state, with the whole list so far.
pub trait StepObserver: Send + Sync {
    fn steps_changed(&self, steps: &[StepReport]);
}

/// An observer that ignores everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl StepObserver for NoObserver {
    fn steps_changed(&self, _steps: &[StepReport]) {}
}

/// A run that completed.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub steps: Vec<StepReport>,
    pub duration: Duration,
    /// Whether an earlier attempt's work was found and completed rather than redone.
    pub resumed_after_commit: bool,
}

/// A run that failed; what it made has been undone unless `undo_errors` says otherwise.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", self.describe())]
pub struct RunFailure {
    pub playbook: String,
    /// The step that failed (from 1), or none if the run failed before its first step.
    pub failed_step: Option<(u32, StepName)>,
    pub failure: StepFailure,
    pub steps: Vec<StepReport>,
    /// Undo steps that failed in turn: something may be left behind, named here.
    pub undo_errors: Vec<String>,
}

impl RunFailure {
    fn describe(&self) -> String {
        let mut text = match self.failed_step {
            Some((number, step)) => format!(
                "playbook {} failed at step {number} ({}): {}",
                self.playbook,
                step.as_str(),
                self.failure.message
            ),
            None => format!(
                "playbook {} refused before its first step: {}",
                self.playbook, self.failure.message
            ),
        };
        if self.undo_errors.is_empty() {
            if self.failed_step.is_some() && self.failure.kind != FailureKind::Cancelled {
                text.push_str("; what this run made was undone");
            }
        } else {
            text.push_str("; UNDO FAILED, check by hand: ");
            text.push_str(&self.undo_errors.join("; "));
        }
        text
    }
}

/// Each step of `playbook` with `bindings`, or the first variable a step needs and the run
/// does not bind.
pub fn plan(playbook: &Playbook, bindings: &Bindings) -> Result<Vec<Action>, RunFailure> {
    playbook
        .steps
        .iter()
        .map(|planned| {
            planned
                .step
                .resolve(bindings)
                .map_err(|variable: Variable| RunFailure {
                    playbook: playbook.name.clone(),
                    failed_step: None,
                    failure: StepFailure::permanent(format!(
                        "step {} ({}, line {}) uses {{{}}}, which a {} run does not have",
                        planned.number,
                        planned.step.name().as_str(),
                        planned.line,
                        variable.as_str(),
                        playbook.name
                    )),
                    steps: Vec::new(),
                    undo_errors: Vec::new(),
                })
        })
        .collect()
}

/// Run `playbook`. `resume`: this is a later attempt of the same job (same bindings), whose
/// earlier attempt may have left work behind. `cancel` stops the run between steps WITHOUT
/// undoing: a cancelled job lost its lease or its agent is stopping, and the job's next
/// attempt completes or undoes what this one did (two attempts must not both act).
pub async fn run_playbook<E: Executor>(
    executor: &E,
    playbook: &Playbook,
    bindings: &Bindings,
    resume: bool,
    observer: &dyn StepObserver,
    cancel: &CancellationToken,
) -> Result<RunSummary, RunFailure> {
    let started = Instant::now();
    let actions = plan(playbook, bindings)?;
    let mut reports: Vec<StepReport> = playbook
        .steps
        .iter()
        .map(|planned| StepReport {
            number: planned.number,
            step: planned.step.name().as_str().to_owned(),
            state: StepState::Running,
            duration_ms: None,
            detail: None,
        })
        .collect();
    let failure_before_start = |failure: StepFailure| RunFailure {
        playbook: playbook.name.clone(),
        failed_step: None,
        failure,
        steps: Vec::new(),
        undo_errors: Vec::new(),
    };

    let mut first_step = 0;
    let mut resumed_after_commit = false;
    if resume {
        match last_commit_done(executor, &actions).await {
            Ok(Some(commit_index)) => {
                for report in &mut reports[..=commit_index] {
                    report.state = StepState::AlreadyDone;
                    report.detail = Some("done by an earlier attempt".to_owned());
                }
                first_step = commit_index + 1;
                resumed_after_commit = true;
            }
            Ok(None) => {
                let undo_errors = undo_steps(executor, &actions, actions.len(), None).await;
                if !undo_errors.is_empty() {
                    return Err(RunFailure {
                        undo_errors,
                        ..failure_before_start(StepFailure::transient(
                            "could not clear what an earlier attempt left",
                        ))
                    });
                }
            }
            Err(failure) => return Err(failure_before_start(failure)),
        }
    }
    if first_step == 0 {
        executor
            .preflight(&actions)
            .await
            .map_err(failure_before_start)?;
    }

    // The steps reported so far: those an earlier attempt did, then each as it starts.
    for index in first_step..actions.len() {
        let action = &actions[index];
        if cancel.is_cancelled() {
            return Err(RunFailure {
                playbook: playbook.name.clone(),
                failed_step: Some((
                    playbook.steps[index].number,
                    playbook.steps[index].step.name(),
                )),
                failure: StepFailure {
                    message: "cancelled before this step; the job's next attempt completes or undoes the run".to_owned(),
                    kind: FailureKind::Cancelled,
                },
                steps: reports,
                undo_errors: Vec::new(),
            });
        }
        reports[index].state = StepState::Running;
        let shown = index + 1;
        observer.steps_changed(&reports[..shown]);
        let step_started = Instant::now();
        tracing::info!(playbook = %playbook.name, step = index + 1, name = action.name().as_str(), "step started");
        let outcome = executor.execute(action).await;
        reports[index].duration_ms =
            Some(u64::try_from(step_started.elapsed().as_millis()).unwrap_or(u64::MAX));
        match outcome {
            Ok(detail) => {
                tracing::info!(playbook = %playbook.name, step = index + 1, name = action.name().as_str(), detail = detail.as_deref().unwrap_or(""), "step done");
                reports[index].state = StepState::Done;
                reports[index].detail = detail;
                observer.steps_changed(&reports[..shown]);
            }
            Err(failure) => {
                tracing::warn!(playbook = %playbook.name, step = index + 1, name = action.name().as_str(), error = %failure.message, "step failed, undoing");
                reports[index].state = StepState::Failed;
                reports[index].detail = Some(failure.message.clone());
                observer.steps_changed(&reports[..shown]);
                let undo_errors = undo_steps(
                    executor,
                    &actions,
                    index + 1,
                    Some((&mut reports, observer)),
                )
                .await;
                return Err(RunFailure {
                    playbook: playbook.name.clone(),
                    failed_step: Some((
                        playbook.steps[index].number,
                        playbook.steps[index].step.name(),
                    )),
                    failure,
                    steps: reports,
                    undo_errors,
                });
            }
        }
    }
    Ok(RunSummary {
        steps: reports,
        duration: started.elapsed(),
        resumed_after_commit,
    })
}

/// The index of the last commit point (a swap) an earlier attempt completed, if any.
async fn last_commit_done<E: Executor>(
    executor: &E,
    actions: &[Action],
) -> Result<Option<usize>, StepFailure> {
    for (index, action) in actions.iter().enumerate().rev() {
        if action.name() == StepName::SwapDatabases && executor.committed(action).await? {
            return Ok(Some(index));
        }
    }
    Ok(None)
}

/// Undo `actions[..count]` in reverse; the errors, each naming its step.
async fn undo_steps<E: Executor>(
    executor: &E,
    actions: &[Action],
    count: usize,
    mut reporting: Option<(&mut Vec<StepReport>, &dyn StepObserver)>,
) -> Vec<String> {
    let mut errors = Vec::new();
    for index in (0..count).rev() {
        let action = &actions[index];
        match executor.undo(action).await {
            Ok(Some(detail)) => {
                tracing::info!(step = index + 1, name = action.name().as_str(), %detail, "step undone");
                if let Some((reports, observer)) = reporting.as_mut() {
                    reports[index].state = StepState::Undone;
                    reports[index].detail = Some(detail);
                    let shown = reports
                        .iter()
                        .rposition(|report| report.state != StepState::Running)
                        .map_or(0, |last| last + 1);
                    observer.steps_changed(&reports[..shown.max(index + 1)]);
                }
            }
            Ok(None) => {}
            Err(failure) => {
                tracing::error!(step = index + 1, name = action.name().as_str(), error = %failure.message, "undo failed");
                errors.push(format!(
                    "undo of step {} ({}): {}",
                    index + 1,
                    action.name().as_str(),
                    failure.message
                ));
            }
        }
    }
    errors
}
