//! Names and ids, validated once where they enter the program.
//!
//! Tenant, region and cluster names become parts of object keys, log fields and (later)
//! URLs, so they are restricted to slugs: lowercase ASCII letters, digits and `-`, starting
//! with a letter. Backup ids are UUIDv7, so that sorting them sorts by time and the newest
//! backup of a tenant is the last key under its prefix.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Why a name was refused; the message names the offending input.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{kind} name is empty")]
    Empty { kind: &'static str },
    #[error("{kind} name {name:?} is longer than {max} characters")]
    TooLong {
        kind: &'static str,
        name: String,
        max: usize,
    },
    #[error(
        "{kind} name {name:?} is not a slug: use lowercase letters, digits and '-', starting with a letter"
    )]
    NotASlug { kind: &'static str, name: String },
    #[error("backup id {0:?} is not a lifeboat backup id (a UUIDv7 such as 019a...)")]
    BadBackupId(String),
}

const MAX_SLUG_LENGTH: usize = 63;

fn validate_slug(kind: &'static str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { kind });
    }
    if name.chars().count() > MAX_SLUG_LENGTH {
        return Err(NameError::TooLong {
            kind,
            name: name.to_owned(),
            max: MAX_SLUG_LENGTH,
        });
    }
    let starts_with_letter = name.starts_with(|c: char| c.is_ascii_lowercase());
    let only_slug_characters = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !starts_with_letter || !only_slug_characters || name.ends_with('-') {
        return Err(NameError::NotASlug {
            kind,
            name: name.to_owned(),
        });
    }
    Ok(())
}

macro_rules! slug_type {
    ($(#[$doc:meta])* $type_name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $type_name(String);

        impl $type_name {
            pub fn parse(name: &str) -> Result<Self, NameError> {
                validate_slug($kind, name)?;
                Ok(Self(name.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $type_name {
            type Error = NameError;
            fn try_from(name: String) -> Result<Self, NameError> {
                validate_slug($kind, &name)?;
                Ok(Self(name))
            }
        }

        impl From<$type_name> for String {
            fn from(name: $type_name) -> String {
                name.0
            }
        }

        impl FromStr for $type_name {
            type Err = NameError;
            fn from_str(name: &str) -> Result<Self, NameError> {
                Self::parse(name)
            }
        }

        impl fmt::Display for $type_name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }
    };
}

slug_type!(
    /// A tenant: one customer, one database.
    TenantName,
    "tenant"
);
slug_type!(
    /// A configured S3-compatible region.
    RegionName,
    "region"
);
slug_type!(
    /// A configured PostgreSQL cluster.
    ClusterName,
    "cluster"
);

/// A backup's id: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BackupId(uuid::Uuid);

impl BackupId {
    /// A new id for a backup starting now.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    pub fn parse(text: &str) -> Result<Self, NameError> {
        let uuid =
            uuid::Uuid::parse_str(text).map_err(|_| NameError::BadBackupId(text.to_owned()))?;
        if uuid.get_version_num() != 7 {
            return Err(NameError::BadBackupId(text.to_owned()));
        }
        Ok(Self(uuid))
    }

    /// An id read back from the catalog; `None` unless it is a UUIDv7.
    pub fn from_uuid(uuid: uuid::Uuid) -> Option<Self> {
        (uuid.get_version_num() == 7).then_some(Self(uuid))
    }

    /// The id as a UUID, for the catalog's `uuid` columns.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// When the backup started, from the id's embedded millisecond timestamp.
    pub fn created_at(&self) -> DateTime<Utc> {
        let (seconds, nanoseconds) = self
            .0
            .get_timestamp()
            .map(|timestamp| timestamp.to_unix())
            .unwrap_or((0, 0));
        Utc.timestamp_opt(seconds as i64, nanoseconds)
            .single()
            .unwrap_or_default()
    }
}

impl Default for BackupId {
    fn default() -> Self {
        Self::new()
    }
}

impl TryFrom<String> for BackupId {
    type Error = NameError;
    fn try_from(text: String) -> Result<Self, NameError> {
        Self::parse(&text)
    }
}

impl From<BackupId> for String {
    fn from(id: BackupId) -> String {
        id.to_string()
    }
}

impl FromStr for BackupId {
    type Err = NameError;
    fn from_str(text: &str) -> Result<Self, NameError> {
        Self::parse(text)
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_accepted_and_everything_else_refused() {
        assert!(TenantName::parse("acme-2").is_ok());
        for bad in [
            "", "Acme", "a b", "a'b", "ünï", "-a", "a-", "1abc", "a_b", "a/b",
        ] {
            assert!(TenantName::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let error = TenantName::parse("it's").expect_err("quote refused");
        assert!(error.to_string().contains("it's"), "{error}");
    }

    #[test]
    fn backup_ids_sort_by_time_and_round_trip() {
        let first = BackupId::new();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let second = BackupId::new();
        assert!(first.to_string() < second.to_string());
        assert_eq!(BackupId::parse(&first.to_string()), Ok(first));
        assert!(BackupId::parse("not-an-id").is_err());
        assert!(BackupId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").is_err());
        let age = Utc::now() - second.created_at();
        assert!(age.num_seconds().abs() < 5, "{age}");
    }
}
