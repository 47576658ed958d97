//! Helpers shared by the servers that run as child processes (PostgreSQL, SeaweedFS): their log
//! files, and stopping them for sure.
//!
//! The children are `std::process::Child` rather than tokio's so that `Drop` can wait for them
//! synchronously: a test that panics must not leave a server running.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How much of a log file an error message quotes.
const LOG_TAIL_BYTES: u64 = 4_096;

/// How often a stopping child is polled.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A server's log file, remembered with its length when this run of the server began, so that an
/// error quotes this run's lines and not those of an earlier run in the same directory.
#[derive(Debug, Clone)]
pub(crate) struct ServerLog {
    pub(crate) path: PathBuf,
    start_offset_bytes: u64,
}

impl ServerLog {
    /// Opens (creating if needed) `path` for appending and returns the file to hand to the child as
    /// its stdout and stderr.
    pub(crate) fn open_for_append(path: &Path) -> anyhow::Result<(Self, File)> {
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("open server log file {}", path.display()))?;
        let start_offset_bytes = log_file
            .metadata()
            .with_context(|| format!("read the length of server log file {}", path.display()))?
            .len();
        let server_log = Self {
            path: path.to_path_buf(),
            start_offset_bytes,
        };
        Ok((server_log, log_file))
    }

    /// The last few kilobytes written by this run of the server, for error messages.
    pub(crate) fn tail(&self) -> String {
        match self.read_tail() {
            Ok(text) if text.trim().is_empty() => "(the server log is empty)".to_owned(),
            Ok(text) => text,
            Err(error) => format!("(could not read the server log: {error:#})"),
        }
    }

    fn read_tail(&self) -> anyhow::Result<String> {
        let mut log_file = File::open(&self.path)
            .with_context(|| format!("open server log file {}", self.path.display()))?;
        let length_bytes = log_file
            .metadata()
            .with_context(|| format!("read the length of {}", self.path.display()))?
            .len();
        let tail_start_bytes = self
            .start_offset_bytes
            .max(length_bytes.saturating_sub(LOG_TAIL_BYTES));
        log_file
            .seek(SeekFrom::Start(tail_start_bytes))
            .with_context(|| format!("seek in {}", self.path.display()))?;
        let mut tail_bytes = Vec::new();
        log_file
            .read_to_end(&mut tail_bytes)
            .with_context(|| format!("read {}", self.path.display()))?;
        Ok(String::from_utf8_lossy(&tail_bytes).into_owned())
    }
}

/// Sends `signal` to `child`, waits up to `grace_period` for it to exit, then kills it.
///
/// Returns the exit status and whether the child had to be killed.
pub(crate) fn stop_child(
    child: &mut Child,
    signal: Signal,
    grace_period: Duration,
) -> anyhow::Result<(ExitStatus, bool)> {
    if let Some(exit_status) = child
        .try_wait()
        .context("check whether the server exited")?
    {
        return Ok((exit_status, false));
    }
    let process_id =
        Pid::from_raw(i32::try_from(child.id()).context("convert the server process id to a pid")?);
    // The child may exit between try_wait and kill; the error (ESRCH) is then harmless because
    // the wait below reaps it either way.
    if let Err(error) = kill(process_id, signal) {
        tracing::debug!(%error, pid = child.id(), ?signal, "signal to server failed");
    }
    let deadline = Instant::now() + grace_period;
    while Instant::now() < deadline {
        if let Some(exit_status) = child.try_wait().context("wait for the server to exit")? {
            return Ok((exit_status, false));
        }
        thread::sleep(EXIT_POLL_INTERVAL);
    }
    tracing::warn!(
        pid = child.id(),
        grace_period_seconds = grace_period.as_secs(),
        "server did not exit in time, killing it"
    );
    let exit_status = kill_child(child)?;
    Ok((exit_status, true))
}

/// Kills `child` with SIGKILL and reaps it.
pub(crate) fn kill_child(child: &mut Child) -> anyhow::Result<ExitStatus> {
    if let Some(exit_status) = child
        .try_wait()
        .context("check whether the server exited")?
    {
        return Ok(exit_status);
    }
    // `Child::kill` sends SIGKILL; it fails only if the child is already reaped, which
    // try_wait above rules out.
    child.kill().context("send SIGKILL to the server")?;
    child.wait().context("wait for the killed server")
}
