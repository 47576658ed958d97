//! What the command line shows people: logs on stderr, progress bars on a terminal, sizes
//! and durations in human units.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use lifeboat_core::progress::{Progress, Silent, Stage};

/// Logs go to stderr; `LIFEBOAT_LOG` sets the filter ([`lifeboat_core::logging`]: default
/// `warn`, and never a target that logs secrets).
pub fn init_logging(json: bool) {
    let filter = lifeboat_core::logging::log_filter_from_env();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A bar on stderr when it is a terminal and JSON was not asked for; otherwise nothing.
pub fn progress_for(json: bool, what: &str) -> Arc<dyn Progress> {
    if json || !std::io::stderr().is_terminal() {
        return Arc::new(Silent);
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {prefix} {msg:12} {bytes:>10} {bytes_per_sec:>12} {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    Arc::new(TerminalProgress { bar })
}

struct TerminalProgress {
    bar: ProgressBar,
}

impl Progress for TerminalProgress {
    fn stage(&self, stage: Stage) {
        if stage == Stage::Done {
            self.bar.finish_and_clear();
        } else {
            self.bar.set_message(stage.as_str());
        }
    }

    fn add_bytes(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
}

impl Drop for TerminalProgress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

pub fn human_bytes(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

pub fn human_duration(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

/// One playbook step in one line: number, name, state, duration, what it did.
pub fn step_line(step: &lifeboat_core::api::StepReport) -> String {
    let state = serde_json::to_value(step.state)
        .ok()
        .and_then(|value| value.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!(
        "  {:>2}. {:<18} {:<12} {:>7}  {}",
        step.number,
        step.step,
        state,
        step.duration_ms
            .map_or_else(String::new, |milliseconds| format!("{milliseconds} ms")),
        step.detail.as_deref().unwrap_or("")
    )
}

/// Prints each playbook step once it ends, to stderr (so `--json` output stays clean).
#[derive(Debug, Clone, Copy)]
pub struct StepPrinter {
    pub quiet: bool,
}

impl lifeboat_provisioner::playbook::StepObserver for StepPrinter {
    fn steps_changed(&self, steps: &[lifeboat_core::api::StepReport]) {
        if self.quiet {
            return;
        }
        if let Some(step) = steps.last()
            && step.state != lifeboat_core::api::StepState::Running
        {
            eprintln!("{}", step_line(step));
        }
    }
}
