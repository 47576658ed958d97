//! When each tenant's backup runs.
//!
//! A tenant has either an explicit cron expression or the default: daily, at a minute inside
//! the backup window chosen by a stable hash of its name, so a thousand tenants spread over
//! the window instead of starting at once, and each keeps its minute across restarts and
//! controllers.

use std::str::FromStr;

use lifeboat_core::ids::TenantName;
use sha2::{Digest, Sha256};

pub use lifeboat_core::backup_window::{BackupWindow, DEFAULT_WINDOW};

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid cron expression {expression:?}: {message} (e.g. \"0 30 2 * * *\" for 02:30 UTC daily; a 5-field expression gets second 0)"
)]
pub struct InvalidSchedule {
    pub expression: String,
    pub message: String,
}

/// Parse a cron expression: 6 or 7 fields (seconds first), or the classic 5 fields.
pub fn parse_cron(expression: &str) -> Result<cron::Schedule, InvalidSchedule> {
    let trimmed = expression.trim();
    let with_seconds = if trimmed.split_whitespace().count() == 5 {
        format!("0 {trimmed}")
    } else {
        trimmed.to_owned()
    };
    cron::Schedule::from_str(&with_seconds).map_err(|error| InvalidSchedule {
        expression: expression.to_owned(),
        message: error.to_string(),
    })
}

/// The minute of the day (UTC) at which `tenant`'s default schedule runs.
pub fn default_minute_of_day(tenant: &TenantName, window: BackupWindow) -> u32 {
    let digest = Sha256::digest(tenant.as_str().as_bytes());
    let mut first_bytes = [0u8; 8];
    first_bytes.copy_from_slice(&digest[..8]);
    let offset = u64::from_be_bytes(first_bytes) % u64::from(window.length_minutes.max(1));
    let minute_of_day = (u64::from(window.start_minute_of_day) + offset) % (24 * 60);
    // Below 1440 by the modulo.
    u32::try_from(minute_of_day).unwrap_or(0)
}

/// The default schedule of `tenant`: daily at its hashed minute of `window`.
pub fn default_schedule(tenant: &TenantName, window: BackupWindow) -> String {
    let minute_of_day = default_minute_of_day(tenant, window);
    format!("0 {} {} * * *", minute_of_day % 60, minute_of_day / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedules_are_stable_valid_and_spread_over_the_window() {
        let mut minutes = std::collections::BTreeSet::new();
        for index in 0..1000 {
            let tenant = TenantName::parse(&format!("tenant-{index}")).expect("tenant");
            let schedule = default_schedule(&tenant, DEFAULT_WINDOW);
            assert_eq!(schedule, default_schedule(&tenant, DEFAULT_WINDOW));
            parse_cron(&schedule).expect("valid");
            let fields: Vec<u32> = schedule
                .split_whitespace()
                .skip(1)
                .take(2)
                .map(|field| field.parse().expect("number"))
                .collect();
            let minute_of_day = fields[1] * 60 + fields[0];
            assert!((60..300).contains(&minute_of_day), "{schedule}");
            minutes.insert(minute_of_day);
        }
        // 1000 tenants over 240 minutes: nearly every minute is used, none by all.
        assert!(minutes.len() > 200, "{}", minutes.len());
    }

    #[test]
    fn five_and_six_field_expressions_parse_and_nonsense_is_named() {
        assert!(parse_cron("30 2 * * *").is_ok());
        assert!(parse_cron("0 30 2 * * *").is_ok());
        let error = parse_cron("every night").expect_err("refused");
        assert!(error.to_string().contains("\"every night\""), "{error}");
    }
}
