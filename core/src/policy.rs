//! Limits and defaults of the data path, written down in one place.
//!
//! Memory on the backup path is bounded by parts: the one being filled, one waiting to be
//! fanned out, and at most `window + max_region_lag_parts` still needed by some region.
//! With the defaults that is (1 + 1 + 2 + 4) × 5 MiB = 40 MiB whatever the database size.

use std::ops::RangeInclusive;
use std::time::Duration;

/// S3 allows parts from 5 MiB (all but the last) to 5 GiB, and at most 10,000 of them.
pub const PART_SIZE_BYTES: RangeInclusive<u64> = 5 * 1024 * 1024..=5 * 1024 * 1024 * 1024;
pub const MAX_PARTS: u64 = 10_000;
/// Smallest legal part: the most parts in flight for the least memory. 10,000 of them
/// allow a 50 GiB stored object; raise `part_size_bytes` for larger tenants.
pub const DEFAULT_PART_SIZE_BYTES: u64 = 5 * 1024 * 1024;

/// Uploads in flight per region: enough to hide one request's latency behind another.
pub const UPLOADS_IN_FLIGHT_PER_REGION: usize = 2;
/// How many parts a region may fall behind the others before it is dropped.
pub const DEFAULT_MAX_REGION_LAG_PARTS: usize = 4;
/// How long the others wait for a slow region before going on without it (it keeps
/// receiving parts until it falls `max_region_lag_parts` behind).
pub const DEFAULT_REGION_PATIENCE: Duration = Duration::from_secs(5);

/// zstd level 2: about 2:1 on typical dumps at several hundred MB/s on one core. Level 1
/// only ties pg_dump's default gzip on size; level 2 is 1.8% smaller for ~10% more zstd CPU,
/// level 3 4% smaller for ~70% more (measured on the benchmark's data, BENCHMARKS.md).
pub const DEFAULT_COMPRESSION_LEVEL: i32 = 2;
pub const COMPRESSION_LEVELS: RangeInclusive<i32> = -7..=22;

/// Once one region has listed a tenant's backups (to find the newest), how long the others
/// get before the newest is chosen without them.
pub const LISTING_GRACE: Duration = Duration::from_secs(10);

/// The least time a region gets to answer the HeadBucket a backup asks before pg_dump starts
/// (otherwise the straggler allowance, `region_patience × max_region_lag_parts`).
pub const REGION_CHECK_MIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Timeouts for one S3 request attempt, and attempts per request: the SDK retries
/// transient failures. Applied once, in `region::client_config`, to every request.
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const S3_OPERATION_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);
pub const S3_MAX_ATTEMPTS: u32 = 3;

/// Manifests fetched at once when listing a region.
pub const MANIFEST_FETCHES_IN_FLIGHT: usize = 16;

/// How much of a child process's stderr is kept for an error message.
pub const STDERR_TAIL_BYTES: usize = 4096;

/// How long unacknowledged data may sit on a PostgreSQL connection before it is dropped
/// (`TCP_USER_TIMEOUT`), and the idle time before keepalive probes start.
pub const POSTGRES_TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest one catalog statement may run; anything longer is a bug or a lock, not work.
pub const CATALOG_STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);

/// Dumps below this stream into pg_restore even when staged restores are on (see
/// `restore::Staging`; measured in BENCHMARKS.md, "Parallel restore").
pub const DEFAULT_STAGE_MIN_BYTES: u64 = 256 * 1024 * 1024;
/// A staged restore needs the dump's size free in its directory, plus this share of it
/// (1/20) and this much more, so staging never fills the disk it shares.
pub const STAGING_HEADROOM_DIVISOR: u64 = 20;
pub const STAGING_HEADROOM_BYTES: u64 = 256 * 1024 * 1024;
/// The most jobs `[restore] jobs = "auto"` chooses.
pub const MAX_AUTO_RESTORE_JOBS: u32 = 4;

/// Manual backups are kept at least this many days, whatever the tenant's policy.
pub const MANUAL_MIN_AGE_DAYS: i64 = 30;
/// Pre-restore (safety) backups are kept at least this many days.
pub const PRE_RESTORE_MIN_AGE_DAYS: i64 = 14;
/// The fewest days any retention policy keeps a scheduled backup: the next day's backup
/// may replace it (`keep_daily` of 0 or 1).
pub const SCHEDULED_MIN_AGE_DAYS: i64 = 1;

/// The earliest moment any retention policy could purge a backup of `kind` written at
/// `written_at`: its minimum age, then the trash period. In a region with object lock,
/// every object of the backup is written with a retention until then; the controller
/// extends it while the tenant's policy keeps the backup longer.
pub fn earliest_purge(
    kind: crate::manifest::BackupKind,
    written_at: chrono::DateTime<chrono::Utc>,
    trash_period: Duration,
) -> chrono::DateTime<chrono::Utc> {
    use crate::manifest::BackupKind;
    let minimum_age_days = match kind {
        BackupKind::Manual => MANUAL_MIN_AGE_DAYS,
        BackupKind::PreRestore => PRE_RESTORE_MIN_AGE_DAYS,
        _ => SCHEDULED_MIN_AGE_DAYS,
    };
    written_at
        + chrono::TimeDelta::days(minimum_age_days)
        + chrono::TimeDelta::from_std(trash_period).unwrap_or(chrono::TimeDelta::MAX)
}

/// A kept backup's lock is extended when it would end within the trash period plus this
/// (a daily pass must not miss it)...
pub const LOCK_RENEW_MARGIN_DAYS: i64 = 2;
/// ...to the trash period plus this from now: extended about once a week, and a backup
/// trashed meanwhile waits at most this long past its purge date for the lock to end.
pub const LOCK_EXTENSION_DAYS: i64 = 7;

/// Until when the objects of a backup of `kind` written at `written_at` are locked in a
/// region with object lock: its [`earliest_purge`], and at least the horizon maintenance
/// extends a kept backup's lock to (`trash_period` + [`LOCK_EXTENSION_DAYS`]). A scheduled
/// backup's earliest purge (a day plus the trash period) is within the renewal margin the
/// moment it is written, so without this floor the first maintenance would extend every
/// new backup's objects at once: one PutObjectRetention per object and region, each night.
pub fn lock_at_write(
    kind: crate::manifest::BackupKind,
    written_at: chrono::DateTime<chrono::Utc>,
    trash_period: Duration,
) -> chrono::DateTime<chrono::Utc> {
    let horizon = written_at
        + chrono::TimeDelta::days(LOCK_EXTENSION_DAYS)
        + chrono::TimeDelta::from_std(trash_period).unwrap_or(chrono::TimeDelta::MAX);
    earliest_purge(kind, written_at, trash_period).max(horizon)
}

/// `[retention] trash_days` when not configured: 14 days.
pub const DEFAULT_TRASH_PERIOD: Duration = Duration::from_secs(14 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::BackupKind;

    /// A scheduled backup is locked to the extension horizon (it would be extended on its
    /// first night anyway), a manual one until its own earliest purge, which is later.
    #[test]
    fn a_backup_is_locked_until_its_earliest_purge_or_the_extension_horizon() {
        let written = chrono::Utc::now();
        let days = |count: i64| written + chrono::TimeDelta::days(count);
        let trash = DEFAULT_TRASH_PERIOD;
        assert_eq!(
            earliest_purge(BackupKind::Scheduled, written, trash),
            days(1 + 14)
        );
        assert_eq!(
            lock_at_write(BackupKind::Scheduled, written, trash),
            days(14 + LOCK_EXTENSION_DAYS)
        );
        assert_eq!(
            lock_at_write(BackupKind::Manual, written, trash),
            days(30 + 14)
        );
        assert_eq!(
            lock_at_write(BackupKind::PreRestore, written, trash),
            days(14 + 14)
        );
        // Past the renewal margin of the first pass: nothing to extend the night it is made.
        assert!(
            lock_at_write(BackupKind::Scheduled, written, trash)
                > days(LOCK_RENEW_MARGIN_DAYS) + chrono::TimeDelta::days(14)
        );
    }
}
