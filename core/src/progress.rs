//! Progress of a long operation, for whoever shows it (a terminal bar, nothing, a log).
//!
//! The data path calls these from its worker threads, so implementations must be cheap
//! and thread-safe.

/// A stage of a backup or restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Connecting,
    Dumping,
    Committing,
    Downloading,
    Verifying,
    Done,
}

impl Stage {
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Connecting => "connecting",
            Stage::Dumping => "dumping",
            Stage::Committing => "committing",
            Stage::Downloading => "restoring",
            Stage::Verifying => "verifying",
            Stage::Done => "done",
        }
    }
}

pub trait Progress: Send + Sync {
    fn stage(&self, _stage: Stage) {}
    /// Uncompressed dump bytes handled so far.
    fn add_bytes(&self, _bytes: u64) {}
}

/// Shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Progress for Silent {}
