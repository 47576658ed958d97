//! `[queue]`, `[controller]`, `[restore]` and `[panel]`: how the long-running roles behave, in the
//! configuration.
//!
//! Every default is written here, once. Command-line flags (`lifeboat controller`,
//! `lifeboat nightly`) override a value for one run; the configuration is what a
//! deployment keeps. [`crate::config::RawConfig::validate`] calls [`QueueSettings::check`],
//! [`ControllerSettings::check`] and [`RestoreSettings::check`], so `lifeboat config check`
//! names every bad key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::ids::ClusterName;

/// `[queue]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    lease_seconds: Option<u64>,
    max_jobs_per_cluster: Option<i64>,
    max_jobs_per_region: Option<i64>,
    retry_base_seconds: Option<u64>,
    max_attempts: Option<i32>,
    #[serde(default)]
    deadline_hours: RawDeadlines,
}

/// `[queue.deadline_hours]`: the longest one attempt of each kind of job may run.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeadlines {
    backup: Option<u64>,
    restore: Option<u64>,
    drill: Option<u64>,
    replicate: Option<u64>,
    scrub: Option<u64>,
    delete: Option<u64>,
}

/// `[controller]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawController {
    listen: Option<String>,
    scrub_full_sample: Option<usize>,
    drill: Option<bool>,
    drill_cluster: Option<String>,
    drill_every_days: Option<u32>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    metrics_token_file: Option<PathBuf>,
}

/// `[panel]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPanel {
    session_idle_minutes: Option<u32>,
    session_max_hours: Option<u32>,
    single_session: Option<bool>,
}

/// Sessions of the control panel's users (customers and staff).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanelSettings {
    /// A session unused for this long is over.
    pub session_idle: Duration,
    /// A session is over this long after its login, used or not.
    pub session_max: Duration,
    /// A login ends the user's other sessions.
    pub single_session: bool,
}

impl Default for PanelSettings {
    fn default() -> Self {
        PanelSettings {
            session_idle: Duration::from_secs(30 * 60),
            session_max: Duration::from_secs(12 * HOUR),
            single_session: false,
        }
    }
}

/// Bounds past which a session setting is a typo: a day idle, a week in all.
const MAX_SESSION_IDLE_MINUTES: u32 = 24 * 60;
const MAX_SESSION_HOURS: u32 = 7 * 24;

impl PanelSettings {
    /// Check `[panel]`; the defaults fill what is absent.
    pub(crate) fn check(raw: &RawPanel, problems: &mut Vec<SectionProblem>) -> PanelSettings {
        let defaults = PanelSettings::default();
        let session_idle = match raw.session_idle_minutes {
            None => defaults.session_idle,
            Some(minutes) if (1..=MAX_SESSION_IDLE_MINUTES).contains(&minutes) => {
                Duration::from_secs(u64::from(minutes) * 60)
            }
            Some(_) => {
                problems.push((
                    "panel.session_idle_minutes".to_owned(),
                    format!("must be between 1 and {MAX_SESSION_IDLE_MINUTES} minutes"),
                ));
                defaults.session_idle
            }
        };
        let session_max = match raw.session_max_hours {
            None => defaults.session_max,
            Some(hours) if (1..=MAX_SESSION_HOURS).contains(&hours) => {
                Duration::from_secs(u64::from(hours) * HOUR)
            }
            Some(_) => {
                problems.push((
                    "panel.session_max_hours".to_owned(),
                    format!("must be between 1 and {MAX_SESSION_HOURS} hours"),
                ));
                defaults.session_max
            }
        };
        if session_idle > session_max {
            problems.push((
                "panel.session_idle_minutes".to_owned(),
                "must not be longer than panel.session_max_hours".to_owned(),
            ));
        }
        PanelSettings {
            session_idle,
            session_max,
            single_session: raw.single_session.unwrap_or(defaults.single_session),
        }
    }
}

/// `[restore]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRestore {
    keep_previous_days: Option<u32>,
    jobs: Option<RawRestoreJobs>,
    staging_dir: Option<PathBuf>,
    stage_min_mb: Option<u64>,
}

/// `[restore] jobs`: `"auto"` or a number of pg_restore jobs.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawRestoreJobs {
    Count(i64),
    Word(String),
}

/// Restores: helpdesk restores' grace period, and how every restore feeds pg_restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSettings {
    /// Days the database a live restore or a rollback swapped out is kept (a rollback can
    /// swap it back until then); daily maintenance drops it afterwards.
    pub keep_previous_days: u32,
    /// pg_restore jobs for a staged restore; 1 never stages (every restore streams).
    pub jobs: RestoreJobs,
    /// Where a staged restore writes the decrypted dump; the system's temporary directory
    /// when absent. It must belong to this agent alone: leftovers are removed at start.
    pub staging_dir: Option<PathBuf>,
    /// Dumps smaller than this stream even when staging is on: below it, writing the file
    /// costs more than the parallel restore gains.
    pub stage_min_bytes: u64,
}

/// `[restore] jobs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreJobs {
    /// Chosen from the cores this machine has ([`crate::restore::Staging::choose`]).
    Auto,
    Fixed(u32),
}

/// The most pg_restore jobs a restore may ask for: each is a backend on the tenant's
/// cluster.
const MAX_RESTORE_JOBS: i64 = 32;
const MIB: u64 = 1024 * 1024;

impl Default for RestoreSettings {
    fn default() -> Self {
        RestoreSettings {
            keep_previous_days: 7,
            jobs: RestoreJobs::Auto,
            staging_dir: None,
            stage_min_bytes: crate::policy::DEFAULT_STAGE_MIN_BYTES,
        }
    }
}

/// A grace period longer than this (ten years) is a typo.
const MAX_KEEP_PREVIOUS_DAYS: u32 = 3650;

impl RestoreSettings {
    /// Check `[restore]`; the defaults fill what is absent.
    pub(crate) fn check(raw: &RawRestore, problems: &mut Vec<SectionProblem>) -> RestoreSettings {
        let defaults = RestoreSettings::default();
        let keep_previous_days = match raw.keep_previous_days {
            None => defaults.keep_previous_days,
            Some(days) if (1..=MAX_KEEP_PREVIOUS_DAYS).contains(&days) => days,
            Some(_) => {
                problems.push((
                    "restore.keep_previous_days".to_owned(),
                    format!("must be between 1 and {MAX_KEEP_PREVIOUS_DAYS} days"),
                ));
                defaults.keep_previous_days
            }
        };
        let jobs = match &raw.jobs {
            None => defaults.jobs,
            Some(RawRestoreJobs::Word(word)) if word == "auto" => RestoreJobs::Auto,
            Some(RawRestoreJobs::Count(count)) if (1..=MAX_RESTORE_JOBS).contains(count) => {
                RestoreJobs::Fixed(u32::try_from(*count).unwrap_or(1))
            }
            Some(_) => {
                problems.push((
                    "restore.jobs".to_owned(),
                    format!("must be \"auto\" or a number from 1 to {MAX_RESTORE_JOBS}"),
                ));
                defaults.jobs
            }
        };
        let staging_dir = match &raw.staging_dir {
            Some(dir) if !dir.is_absolute() => {
                problems.push((
                    "restore.staging_dir".to_owned(),
                    format!("must be an absolute path, not {}", dir.display()),
                ));
                None
            }
            other => other.clone(),
        };
        let stage_min_bytes = raw
            .stage_min_mb
            .map_or(defaults.stage_min_bytes, |mb| mb.saturating_mul(MIB));
        RestoreSettings {
            keep_previous_days,
            jobs,
            staging_dir,
            stage_min_bytes,
        }
    }

    /// [`RestoreSettings::keep_previous_days`] as a duration.
    pub fn keep_previous(&self) -> Duration {
        Duration::from_secs(u64::from(self.keep_previous_days) * 24 * HOUR)
    }
}

/// The job queue's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// A claimed job whose agent sends no heartbeat for this long is retried.
    pub lease: Duration,
    /// Jobs running at once against one database cluster, and one region.
    pub max_jobs_per_cluster: i64,
    pub max_jobs_per_region: i64,
    /// First retry delay; doubled at each further attempt, up to [`RETRY_MAX`].
    pub retry_base: Duration,
    /// Attempts before a job is left failed.
    pub max_attempts: i32,
    pub deadlines: JobDeadlineSettings,
}

/// The longest one attempt of each kind of job may run, heartbeats or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobDeadlineSettings {
    pub backup: Duration,
    pub restore: Duration,
    pub drill: Duration,
    pub replicate: Duration,
    pub scrub: Duration,
    pub delete: Duration,
}

/// The longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(30 * 60);

const HOUR: u64 = 3600;
/// A deadline longer than this (a month) is a typo.
const MAX_DEADLINE_HOURS: u64 = 24 * 31;

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            lease: Duration::from_secs(60),
            max_jobs_per_cluster: 4,
            max_jobs_per_region: 8,
            retry_base: Duration::from_secs(30),
            max_attempts: 4,
            deadlines: JobDeadlineSettings::default(),
        }
    }
}

impl Default for JobDeadlineSettings {
    fn default() -> Self {
        let hours = |hours: u64| Duration::from_secs(hours * HOUR);
        // Generous: a backup of a large tenant to a slow region may take most of a day.
        JobDeadlineSettings {
            backup: hours(36),
            restore: hours(24),
            drill: hours(24),
            replicate: hours(24),
            scrub: hours(12),
            delete: hours(1),
        }
    }
}

/// The controller's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// Address of the API, /metrics and /healthz.
    pub listen: SocketAddr,
    /// Copies per region read whole and hashed by each day's scrub.
    pub scrub_full_sample: usize,
    /// Each day, drill the newest unverified backup of every tenant due a drill.
    pub drill: bool,
    /// Where drills restore (a cluster set aside for them); `None`: each tenant's own.
    pub drill_cluster: Option<ClusterName>,
    /// A large fleet's sampling: a tenant is due a drill once its last verified drill is
    /// this many days old (or it has none). 1: every day.
    pub drill_every_days: u32,
    /// Serve HTTPS with this certificate chain and key (PEM). Without it the controller
    /// serves plain HTTP on loopback only, unless `--insecure-http`.
    pub tls: Option<TlsFiles>,
    /// A file holding the bearer token `/metrics` asks for (it names tenants). Without
    /// one, `/metrics` answers only clients on loopback.
    pub metrics_token_file: Option<PathBuf>,
}

/// A server certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            scrub_full_sample: 20,
            drill: false,
            drill_cluster: None,
            drill_every_days: 1,
            tls: None,
            metrics_token_file: None,
        }
    }
}

/// A problem found in a section: its key and what is wrong.
pub(crate) type SectionProblem = (String, String);

impl QueueSettings {
    /// Check `[queue]`, collecting every problem; the defaults fill what is absent.
    pub(crate) fn check(raw: &RawQueue, problems: &mut Vec<SectionProblem>) -> QueueSettings {
        let defaults = QueueSettings::default();
        let mut at_least_one = |key: &str, value: Option<i64>, default: i64| match value {
            Some(value) if value < 1 => {
                problems.push((format!("queue.{key}"), "must be at least 1".to_owned()));
                default
            }
            Some(value) => value,
            None => default,
        };
        let lease_seconds = at_least_one(
            "lease_seconds",
            raw.lease_seconds.map(saturating_i64),
            saturating_i64(defaults.lease.as_secs()),
        );
        let max_jobs_per_cluster = at_least_one(
            "max_jobs_per_cluster",
            raw.max_jobs_per_cluster,
            defaults.max_jobs_per_cluster,
        );
        let max_jobs_per_region = at_least_one(
            "max_jobs_per_region",
            raw.max_jobs_per_region,
            defaults.max_jobs_per_region,
        );
        let max_attempts = at_least_one(
            "max_attempts",
            raw.max_attempts.map(i64::from),
            i64::from(defaults.max_attempts),
        );
        let mut deadline = |kind: &str, hours: Option<u64>, default: Duration| match hours {
            Some(hours) if hours == 0 || hours > MAX_DEADLINE_HOURS => {
                problems.push((
                    format!("queue.deadline_hours.{kind}"),
                    format!("must be between 1 and {MAX_DEADLINE_HOURS} hours"),
                ));
                default
            }
            Some(hours) => Duration::from_secs(hours * HOUR),
            None => default,
        };
        let known = defaults.deadlines;
        let deadlines = JobDeadlineSettings {
            backup: deadline("backup", raw.deadline_hours.backup, known.backup),
            restore: deadline("restore", raw.deadline_hours.restore, known.restore),
            drill: deadline("drill", raw.deadline_hours.drill, known.drill),
            replicate: deadline("replicate", raw.deadline_hours.replicate, known.replicate),
            scrub: deadline("scrub", raw.deadline_hours.scrub, known.scrub),
            delete: deadline("delete", raw.deadline_hours.delete, known.delete),
        };
        QueueSettings {
            lease: Duration::from_secs(u64::try_from(lease_seconds).unwrap_or(1)),
            max_jobs_per_cluster,
            max_jobs_per_region,
            retry_base: raw
                .retry_base_seconds
                .map_or(defaults.retry_base, Duration::from_secs),
            max_attempts: i32::try_from(max_attempts).unwrap_or(defaults.max_attempts),
            deadlines,
        }
    }
}

impl ControllerSettings {
    /// Check `[controller]`, collecting every problem; the defaults fill what is absent.
    pub(crate) fn check(
        raw: &RawController,
        problems: &mut Vec<SectionProblem>,
    ) -> ControllerSettings {
        let defaults = ControllerSettings::default();
        let listen = match raw.listen.as_deref().map(str::parse::<SocketAddr>) {
            None => defaults.listen,
            Some(Ok(address)) => address,
            Some(Err(_)) => {
                problems.push((
                    "controller.listen".to_owned(),
                    "must be an address and port, e.g. \"127.0.0.1:7070\"".to_owned(),
                ));
                defaults.listen
            }
        };
        let drill_cluster = raw.drill_cluster.as_deref().and_then(|name| {
            ClusterName::parse(name)
                .map_err(|error| {
                    problems.push(("controller.drill_cluster".to_owned(), error.to_string()));
                })
                .ok()
        });
        let drill_every_days = match raw.drill_every_days {
            None => defaults.drill_every_days,
            Some(0) => {
                problems.push((
                    "controller.drill_every_days".to_owned(),
                    "must be at least 1".to_owned(),
                ));
                defaults.drill_every_days
            }
            Some(days) => days,
        };
        let tls = match (&raw.tls_cert_file, &raw.tls_key_file) {
            (Some(cert_file), Some(key_file)) => Some(TlsFiles {
                cert_file: cert_file.clone(),
                key_file: key_file.clone(),
            }),
            (None, None) => None,
            (Some(_), None) | (None, Some(_)) => {
                problems.push((
                    "controller.tls_cert_file".to_owned(),
                    "tls_cert_file and tls_key_file go together: set both, or neither".to_owned(),
                ));
                None
            }
        };
        ControllerSettings {
            listen,
            scrub_full_sample: raw.scrub_full_sample.unwrap_or(defaults.scrub_full_sample),
            drill: raw.drill.unwrap_or(defaults.drill),
            drill_cluster,
            drill_every_days,
            tls,
            metrics_token_file: raw.metrics_token_file.clone(),
        }
    }
}

fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}
