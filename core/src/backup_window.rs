//! Where default backup schedules fall: a window of the day in UTC, `[schedule] backup_window`
//! in the configuration. The controller's scheduler spreads tenants without a cron expression
//! over it; `tenant list` and `show` print the same schedules because they read the same key.

use std::str::FromStr;

/// Where default schedules fall unless configured: 01:00 to 05:00 UTC.
pub const DEFAULT_WINDOW: BackupWindow = BackupWindow {
    start_minute_of_day: 60,
    length_minutes: 240,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupWindow {
    pub start_minute_of_day: u32,
    pub length_minutes: u32,
}

impl BackupWindow {
    /// The minute of the day (UTC) at which the window closes.
    pub fn end_minute_of_day(self) -> u32 {
        (self.start_minute_of_day + self.length_minutes) % (24 * 60)
    }
}

impl FromStr for BackupWindow {
    type Err = String;

    /// `HH:MM-HH:MM` in UTC; a window may wrap past midnight (`22:00-02:00`).
    fn from_str(text: &str) -> Result<Self, String> {
        let invalid =
            || format!("backup window {text:?} is not HH:MM-HH:MM (UTC), e.g. 01:00-05:00");
        let (start, end) = text.split_once('-').ok_or_else(invalid)?;
        let minute = |part: &str| -> Result<u32, String> {
            let (hours, minutes) = part.trim().split_once(':').ok_or_else(invalid)?;
            let hours: u32 = hours.parse().map_err(|_| invalid())?;
            let minutes: u32 = minutes.parse().map_err(|_| invalid())?;
            if hours > 23 || minutes > 59 {
                return Err(invalid());
            }
            Ok(hours * 60 + minutes)
        };
        let (start, end) = (minute(start)?, minute(end)?);
        let length_minutes = (end + 24 * 60 - start) % (24 * 60);
        if length_minutes == 0 {
            return Err(format!("backup window {text:?} is empty"));
        }
        Ok(BackupWindow {
            start_minute_of_day: start,
            length_minutes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_windows_parse_and_may_wrap_midnight() {
        let window: BackupWindow = "22:30-02:00".parse().expect("window");
        assert_eq!(window.start_minute_of_day, 22 * 60 + 30);
        assert_eq!(window.length_minutes, 210);
        assert!("25:00-01:00".parse::<BackupWindow>().is_err());
        assert!("01:00-01:00".parse::<BackupWindow>().is_err());
        assert!("nightly".parse::<BackupWindow>().is_err());
        assert_eq!(window.end_minute_of_day(), 2 * 60);
        assert_eq!(DEFAULT_WINDOW.end_minute_of_day(), 5 * 60);
    }
}
