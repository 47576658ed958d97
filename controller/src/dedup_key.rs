//! Job dedup keys: the one type that builds and parses them.
//!
//! A dedup key makes an enqueue happen once, ever (`jobs.dedup_key` is UNIQUE and enqueue
//! is `ON CONFLICT DO NOTHING`): a scheduler slot, a nightly run's backup of a tenant, a
//! maintenance pass's scrub of a region. Two controllers, a restart or a rerun of the same
//! nightly therefore enqueue each piece of work once. Every key is written and read through
//! [`DedupKey`], so the scheduler, the nightly and maintenance agree on the format without
//! importing each other, and no SQL has to match a key's text.
//!
//! ```text
//! backup:<tenant>:<slot, YYYY-MM-DDTHH:MM:SSZ>   a scheduled slot
//! nightly:<run>:backup:<tenant>                  a nightly run's backup of a tenant
//! nightly:<run>:drill:<tenant>                   ... and its drill of that backup
//! maintenance:<run>:scrub:<region>               a maintenance pass's scrub of a region
//! maintenance:<run>:drill:<tenant>               ... drill of a tenant's newest backup
//! maintenance:<run>:repair:<backup>:<region>     ... copy of a backup into a region
//! maintenance:<run>:drop-database:<kept id>      ... drop of a kept database past its time
//! restore:<tenant>:<YYYYMMDDHHMM>                a restore (live, rollback, copy) requested
//!                                                that minute
//! ```
//!
//! A restore's key has the minute the kept database's name has
//! (`lifeboat_prev_<YYYYMMDDHHMM>_<database>`), so two restores of a tenant can never be
//! given the same kept name.
//!
//! A maintenance pass is named like a nightly run: by its UTC date unless told otherwise,
//! so the nightly and a controller's daily pass of the same date share their keys and do
//! the day's scrub once.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use lifeboat_core::ids::{BackupId, RegionName, TenantName};

/// How a slot's time is written in its key.
const SLOT_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
/// How a restore's minute is written in its key (and in the kept database's name).
pub const RESTORE_MINUTE_FORMAT: &str = "%Y%m%d%H%M%S";
/// How a run named by its date spells it (the nightly's default run name).
pub const RUN_DATE_FORMAT: &str = "%Y-%m-%d";

/// The name of a nightly run or maintenance pass: letters, digits, `-` and `_`, at most 64.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunName(String);

/// A run name that is not one.
#[derive(Debug, Clone, thiserror::Error)]
#[error("run name {0:?}: use letters, digits, '-' and '_' (at most 64)")]
pub struct InvalidRunName(pub String);

impl RunName {
    pub fn parse(name: &str) -> Result<RunName, InvalidRunName> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if valid {
            Ok(RunName(name.to_owned()))
        } else {
            Err(InvalidRunName(name.to_owned()))
        }
    }

    /// The run of `date`, the default name.
    pub fn for_date(date: NaiveDate) -> RunName {
        RunName(date.format(RUN_DATE_FORMAT).to_string())
    }

    /// The date a run is named by, if it is named by one.
    pub fn date(&self) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(&self.0, RUN_DATE_FORMAT).ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// What a job is the one instance of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DedupKey {
    /// The scheduler's slot of a tenant (the slot's time, whole seconds, UTC).
    ScheduledBackup {
        tenant: TenantName,
        slot: DateTime<Utc>,
    },
    /// A nightly run's backup of a tenant.
    NightlyBackup { run: RunName, tenant: TenantName },
    /// A nightly run's drill of the backup it took of a tenant.
    NightlyDrill { run: RunName, tenant: TenantName },
    /// A maintenance pass's scrub of one region.
    Scrub { run: RunName, region: RegionName },
    /// A maintenance pass's drill of a tenant's newest unverified backup.
    Drill { run: RunName, tenant: TenantName },
    /// A maintenance pass's repair: a copy of `backup` made again in `region`.
    Repair {
        run: RunName,
        backup: BackupId,
        region: RegionName,
    },
    /// A maintenance pass's drop of a kept database (`kept_databases.id`) past its time.
    DropKeptDatabase { run: RunName, kept: i64 },
    /// A restore of a tenant requested in `minute` (whole seconds, UTC; one request a
    /// second per tenant, and a running restore refuses the next anyway).
    Restore {
        tenant: TenantName,
        minute: DateTime<Utc>,
    },
}

impl DedupKey {
    /// The key of `tenant`'s scheduled `slot`.
    pub fn scheduled_backup(tenant: &TenantName, slot: DateTime<Utc>) -> DedupKey {
        DedupKey::ScheduledBackup {
            tenant: tenant.clone(),
            slot,
        }
    }
}

impl fmt::Display for DedupKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DedupKey::ScheduledBackup { tenant, slot } => {
                write!(formatter, "backup:{tenant}:{}", slot.format(SLOT_FORMAT))
            }
            DedupKey::NightlyBackup { run, tenant } => {
                write!(formatter, "nightly:{run}:backup:{tenant}")
            }
            DedupKey::NightlyDrill { run, tenant } => {
                write!(formatter, "nightly:{run}:drill:{tenant}")
            }
            DedupKey::Scrub { run, region } => {
                write!(formatter, "maintenance:{run}:scrub:{region}")
            }
            DedupKey::Drill { run, tenant } => {
                write!(formatter, "maintenance:{run}:drill:{tenant}")
            }
            DedupKey::Repair {
                run,
                backup,
                region,
            } => write!(formatter, "maintenance:{run}:repair:{backup}:{region}"),
            DedupKey::DropKeptDatabase { run, kept } => {
                write!(formatter, "maintenance:{run}:drop-database:{kept}")
            }
            DedupKey::Restore { tenant, minute } => write!(
                formatter,
                "restore:{tenant}:{}",
                minute.format(RESTORE_MINUTE_FORMAT)
            ),
        }
    }
}

/// A string that is not a key this lifeboat writes.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0:?} is not a dedup key lifeboat writes")]
pub struct UnknownDedupKey(pub String);

impl FromStr for DedupKey {
    type Err = UnknownDedupKey;

    fn from_str(text: &str) -> Result<DedupKey, UnknownDedupKey> {
        parse_key(text).ok_or_else(|| UnknownDedupKey(text.to_owned()))
    }
}

fn parse_key(text: &str) -> Option<DedupKey> {
    if let Some(rest) = text.strip_prefix("backup:") {
        let (tenant, slot) = rest.split_once(':')?;
        let slot = NaiveDateTime::parse_from_str(slot, SLOT_FORMAT).ok()?;
        return Some(DedupKey::ScheduledBackup {
            tenant: TenantName::parse(tenant).ok()?,
            slot: slot.and_utc(),
        });
    }
    if let Some(rest) = text.strip_prefix("restore:") {
        let (tenant, minute) = rest.split_once(':')?;
        if minute.len() != 14 {
            return None;
        }
        let minute = NaiveDateTime::parse_from_str(minute, RESTORE_MINUTE_FORMAT).ok()?;
        return Some(DedupKey::Restore {
            tenant: TenantName::parse(tenant).ok()?,
            minute: minute.and_utc(),
        });
    }
    let (scope, rest) = text.split_once(':')?;
    let (run, rest) = rest.split_once(':')?;
    let run = RunName::parse(run).ok()?;
    let parts: Vec<&str> = rest.split(':').collect();
    let tenant = |name: &str| TenantName::parse(name).ok();
    let region = |name: &str| RegionName::parse(name).ok();
    match (scope, parts.as_slice()) {
        ("nightly", ["backup", name]) => Some(DedupKey::NightlyBackup {
            run,
            tenant: tenant(name)?,
        }),
        ("nightly", ["drill", name]) => Some(DedupKey::NightlyDrill {
            run,
            tenant: tenant(name)?,
        }),
        ("maintenance", ["scrub", name]) => Some(DedupKey::Scrub {
            run,
            region: region(name)?,
        }),
        ("maintenance", ["drill", name]) => Some(DedupKey::Drill {
            run,
            tenant: tenant(name)?,
        }),
        ("maintenance", ["repair", backup, name]) => Some(DedupKey::Repair {
            run,
            backup: BackupId::parse(backup).ok()?,
            region: region(name)?,
        }),
        ("maintenance", ["drop-database", kept]) => Some(DedupKey::DropKeptDatabase {
            run,
            // Only the digits this type writes (no sign, no leading zeros).
            kept: kept
                .parse()
                .ok()
                .filter(|id: &i64| *id >= 0 && id.to_string() == *kept)?,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_key_round_trips_through_its_text() {
        let run = RunName::parse("2026-11-28").expect("run");
        let tenant = TenantName::parse("acme").expect("tenant");
        let region = RegionName::parse("eu-west").expect("region");
        let slot = NaiveDate::from_ymd_opt(2026, 11, 28)
            .and_then(|date| date.and_hms_opt(2, 17, 0))
            .expect("slot")
            .and_utc();
        let keys = [
            DedupKey::scheduled_backup(&tenant, slot),
            DedupKey::NightlyBackup {
                run: run.clone(),
                tenant: tenant.clone(),
            },
            DedupKey::NightlyDrill {
                run: run.clone(),
                tenant: tenant.clone(),
            },
            DedupKey::Scrub {
                run: run.clone(),
                region: region.clone(),
            },
            DedupKey::Drill {
                run: run.clone(),
                tenant: tenant.clone(),
            },
            DedupKey::Repair {
                run: run.clone(),
                backup: BackupId::new(),
                region,
            },
            DedupKey::DropKeptDatabase { run, kept: 42 },
            DedupKey::Restore {
                tenant: tenant.clone(),
                minute: slot,
            },
        ];
        for key in keys {
            let text = key.to_string();
            assert_eq!(text.parse::<DedupKey>().expect(&text), key, "{text}");
        }
        assert_eq!(
            DedupKey::scheduled_backup(&tenant, slot).to_string(),
            "backup:acme:2026-11-28T02:17:00Z"
        );
        assert_eq!(
            DedupKey::Restore {
                tenant,
                minute: slot
            }
            .to_string(),
            "restore:acme:20261128021700"
        );
    }

    #[test]
    fn strangers_are_not_keys() {
        for text in [
            "",
            "backup:acme",
            "backup:acme:yesterday",
            "nightly:r1:backup",
            "nightly:r1:scrub:eu",
            "maintenance:r1:repair:not-a-uuid:eu",
            "nightly:bad run:backup:acme",
            "test:anything",
            "restore:acme:2026112802",
            "restore:acme:20261128027500",
            "maintenance:r1:drop-database:-1",
            "maintenance:r1:drop-database:007",
        ] {
            assert!(text.parse::<DedupKey>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn run_names_are_checked_and_dates_read_back() {
        assert!(RunName::parse("").is_err());
        assert!(RunName::parse("a:b").is_err());
        assert!(RunName::parse(&"x".repeat(65)).is_err());
        let date = NaiveDate::from_ymd_opt(2026, 1, 2).expect("date");
        assert_eq!(RunName::for_date(date).date(), Some(date));
        assert_eq!(RunName::parse("manual-1").expect("run").date(), None);
    }
}
