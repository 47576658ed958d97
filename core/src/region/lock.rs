//! Object lock and versions: what a bucket says of its versioning and lock, retentions
//! written with every object and extended later, and the versions behind a key.
//!
//! With object lock, deleting a key only hides it behind a delete marker, and overwriting
//! it adds a version: the locked version stays, readable by its id, until its retention
//! ends. Only a delete of that version id removes data, and the store refuses it while
//! the retention lasts (S3 answers 403 `AccessDenied`, the same as a refusal by policy).

use aws_sdk_s3::primitives::DateTime as SdkDateTime;
use aws_sdk_s3::types::{
    BucketVersioningStatus, ObjectLockMode, ObjectLockRetention, ObjectLockRetentionMode,
};
use chrono::{DateTime, Utc};

use super::{Operation, Region, RegionError, RegionErrorKind, chrono_time, listing};
use crate::config::LockMode;

/// What a bucket says of its versioning and object lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketLock {
    /// `Enabled`, `Suspended`, or `None` when versioning was never turned on.
    pub versioning: Option<String>,
    /// Whether object lock is enabled on the bucket.
    pub lock_enabled: bool,
    /// The default retention's mode and days (or years × 365), if the bucket has one.
    pub default_retention: Option<(String, i32)>,
}

/// A retention on one object version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub mode: String,
    pub retain_until: DateTime<Utc>,
}

/// One version (or delete marker) of a key, as ListObjectVersions gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: u64,
    pub last_modified: Option<DateTime<Utc>>,
}

fn sdk_time(time: DateTime<Utc>) -> SdkDateTime {
    SdkDateTime::from_millis(time.timestamp_millis())
}

impl Region {
    /// This handle, writing every object with a retention until `until` in the region's
    /// configured mode (nothing changes for a region without `object_lock`).
    pub fn retaining_until(&self, until: DateTime<Utc>) -> Region {
        Region {
            retain_until: Some(until),
            ..self.clone()
        }
    }

    /// The configured lock mode (`[regions.X] object_lock`).
    pub fn lock_mode(&self) -> Option<LockMode> {
        self.lock_mode
    }

    pub(super) fn object_lock_mode(&self) -> Option<ObjectLockMode> {
        self.retain_until?;
        Some(match self.lock_mode? {
            LockMode::Compliance => ObjectLockMode::Compliance,
            LockMode::Governance => ObjectLockMode::Governance,
        })
    }

    pub(super) fn object_lock_retain_until(&self) -> Option<SdkDateTime> {
        self.lock_mode?;
        self.retain_until.map(sdk_time)
    }

    /// The bucket's versioning and object lock configuration.
    pub async fn bucket_lock(&self) -> Result<BucketLock, RegionError> {
        self.injected_fault(Operation::GetBucketVersioning, "", None)?;
        let versioning = self
            .client
            .get_bucket_versioning()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|error| self.error(Operation::GetBucketVersioning, "", &error))?
            .status()
            .map(|status| status.as_str().to_owned());
        self.injected_fault(Operation::GetObjectLockConfiguration, "", None)?;
        let lock = match self
            .client
            .get_object_lock_configuration()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(output) => output.object_lock_configuration,
            Err(error) => {
                let region_error = self.error(Operation::GetObjectLockConfiguration, "", &error);
                // No lock configuration: 404 ObjectLockConfigurationNotFoundError.
                if region_error.kind == RegionErrorKind::NotFound
                    || region_error
                        .message
                        .starts_with("ObjectLockConfigurationNotFound")
                {
                    None
                } else {
                    return Err(region_error);
                }
            }
        };
        let lock_enabled = lock
            .as_ref()
            .and_then(|lock| lock.object_lock_enabled())
            .is_some_and(|enabled| enabled.as_str() == "Enabled");
        let default_retention = lock
            .as_ref()
            .and_then(|lock| lock.rule())
            .and_then(|rule| rule.default_retention())
            .and_then(|retention| {
                let mode = retention.mode()?.as_str().to_owned();
                let days = retention
                    .days()
                    .or_else(|| retention.years().map(|years| years.saturating_mul(365)))?;
                Some((mode, days))
            });
        Ok(BucketLock {
            versioning,
            lock_enabled,
            default_retention,
        })
    }

    /// The retention of `version_id` of `key`, or of its current version (`None` if it
    /// has none), from a HEAD.
    pub async fn object_retention(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<Retention>, RegionError> {
        self.injected_fault(Operation::HeadObject, key, None)?;
        let output = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|error| self.error(Operation::HeadObject, key, &error))?;
        Ok(output
            .object_lock_mode()
            .zip(output.object_lock_retain_until_date())
            .and_then(|(mode, until)| {
                Some(Retention {
                    mode: mode.as_str().to_owned(),
                    retain_until: chrono_time(until)?,
                })
            }))
    }

    /// Set the retention of `key` (its `version_id`, or the current version) to `until`
    /// in the region's lock mode. Extending is always allowed; shortening a compliance
    /// retention is refused by the store.
    pub async fn extend_retention(
        &self,
        key: &str,
        version_id: Option<&str>,
        until: DateTime<Utc>,
    ) -> Result<(), RegionError> {
        self.injected_fault(Operation::PutObjectRetention, key, None)?;
        let mode = match self.lock_mode {
            Some(LockMode::Governance) => ObjectLockRetentionMode::Governance,
            _ => ObjectLockRetentionMode::Compliance,
        };
        self.client
            .put_object_retention()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .retention(
                ObjectLockRetention::builder()
                    .mode(mode)
                    .retain_until_date(sdk_time(until))
                    .build(),
            )
            .send()
            .await
            .map_err(|error| self.error(Operation::PutObjectRetention, key, &error))?;
        Ok(())
    }

    /// Every version and delete marker of every key under `prefix`.
    pub async fn list_versions(&self, prefix: &str) -> Result<Vec<ObjectVersion>, RegionError> {
        let mut versions = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        let mut followed = listing::PageMarkers::new();
        loop {
            self.injected_fault(Operation::ListObjectVersions, prefix, None)?;
            let output = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|error| self.error(Operation::ListObjectVersions, prefix, &error))?;
            versions.extend(output.versions().iter().filter_map(|version| {
                Some(ObjectVersion {
                    key: version.key()?.to_owned(),
                    version_id: version.version_id().unwrap_or("null").to_owned(),
                    is_latest: version.is_latest() == Some(true),
                    delete_marker: false,
                    size: version
                        .size()
                        .and_then(|size| u64::try_from(size).ok())
                        .unwrap_or(0),
                    last_modified: version.last_modified().and_then(chrono_time),
                })
            }));
            versions.extend(output.delete_markers().iter().filter_map(|marker| {
                Some(ObjectVersion {
                    key: marker.key()?.to_owned(),
                    version_id: marker.version_id().unwrap_or("null").to_owned(),
                    is_latest: marker.is_latest() == Some(true),
                    delete_marker: true,
                    size: 0,
                    last_modified: marker.last_modified().and_then(chrono_time),
                })
            }));
            if output.is_truncated() != Some(true) {
                return Ok(versions);
            }
            let next_key = output.next_key_marker().map(str::to_owned);
            let next_version = output.next_version_id_marker().map(str::to_owned);
            let marker = format!(
                "{}\n{}",
                next_key.as_deref().unwrap_or(""),
                next_version.as_deref().unwrap_or("")
            );
            if next_key.is_none() || !followed.first_time(marker) {
                return Err(RegionError {
                    region: self.name.clone(),
                    operation: Operation::ListObjectVersions.name(),
                    key: prefix.to_owned(),
                    part_number: None,
                    kind: RegionErrorKind::Other,
                    message: "the version listing is truncated but its markers do not move on"
                        .to_owned(),
                });
            }
            key_marker = next_key;
            version_marker = next_version;
        }
    }

    /// Delete one version (or delete marker) of `key`. A version whose retention has not
    /// ended is refused by the store (`AccessDenied`).
    pub async fn delete_version(&self, key: &str, version_id: &str) -> Result<(), RegionError> {
        self.injected_fault(Operation::DeleteObjectVersion, key, None)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .version_id(version_id)
            .send()
            .await
            .map_err(|error| self.error(Operation::DeleteObjectVersion, key, &error))?;
        Ok(())
    }

    /// Read one version of `key`.
    pub async fn get_object_version(
        &self,
        key: &str,
        version_id: &str,
    ) -> Result<super::ObjectReader, RegionError> {
        self.read_object(key, Some(version_id)).await
    }

    /// Make `version_id` of `key` its current version again, by a server-side copy onto
    /// the same key (a new version, the bytes unchanged), locked until `retain_until` in
    /// the region's mode. What hid it (a delete marker, a newer version) stays, below.
    pub async fn restore_version(
        &self,
        key: &str,
        version_id: &str,
        retain_until: Option<DateTime<Utc>>,
    ) -> Result<(), RegionError> {
        self.injected_fault(Operation::CopyObject, key, None)?;
        let source = format!(
            "{}/{}?versionId={}",
            self.bucket,
            urlencoding_path(key),
            version_id
        );
        let retaining = Region {
            retain_until,
            ..self.clone()
        };
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(key)
            .copy_source(source)
            .set_object_lock_mode(retaining.object_lock_mode())
            .set_object_lock_retain_until_date(retaining.object_lock_retain_until())
            .send()
            .await
            .map_err(|error| self.error(Operation::CopyObject, key, &error))?;
        Ok(())
    }

    /// Whether the bucket's versioning is `Enabled`.
    pub async fn is_versioned(&self) -> Result<bool, RegionError> {
        Ok(self.bucket_lock().await?.versioning.as_deref()
            == Some(BucketVersioningStatus::Enabled.as_str()))
    }
}

/// `key` for a `x-amz-copy-source` path: our keys are `[a-z0-9./-]`, which need no
/// escaping; anything else is percent-encoded.
fn urlencoding_path(key: &str) -> String {
    let mut encoded = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' | b'~' => {
                encoded.push(char::from(byte));
            }
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}
