//! Object versions: list every version and delete marker under a prefix, and delete one
//! version by its id.
//!
//! On a versioned bucket a plain DELETE only adds a delete marker and every earlier
//! version stays readable, so erasing something for good (a tenant's wrapped identities
//! when it is shredded) means deleting each version id; scrub uses the same listing to find
//! delete markers someone else placed. A bucket that never had versioning answers with one
//! version per object whose id is `null`, and deleting that id deletes the object. A store
//! without ListObjectVersions (the embedded s3s-fs answers 501) is read as unversioned: the
//! plain listing, each object as version `null`.

use aws_sdk_s3::error::SdkError;

use super::listing;
use super::{Operation, REPEATED_MARKER, Region, RegionError, RegionErrorKind};

/// One version of an object, or a delete marker, as the region lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectVersion {
    pub key: String,
    /// An unversioned object's id is `"null"`; `None` when the store has no versions (or
    /// gave no id): deleting it is a plain delete.
    pub version_id: Option<String>,
    /// A delete marker hides the versions before it; it holds no data.
    pub is_delete_marker: bool,
    /// The newest version (or marker) of its key.
    pub is_latest: bool,
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// The id S3 gives versions written while versioning was never enabled.
pub const NULL_VERSION_ID: &str = "null";

impl Region {
    /// Every version and delete marker of every object under `prefix`, in the server's
    /// order (by key, newest version first).
    pub async fn list_object_versions(
        &self,
        prefix: &str,
    ) -> Result<Vec<ObjectVersion>, RegionError> {
        let mut versions = Vec::new();
        let mut key_marker: Option<String> = None;
        let mut version_id_marker: Option<String> = None;
        let mut followed = listing::PageMarkers::new();
        loop {
            self.injected_fault(Operation::ListObjects, prefix, None)?;
            let sent = self
                .client
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_id_marker.take())
                .send()
                .await;
            let output = match sent {
                Ok(output) => output,
                Err(error) if not_implemented(&error) => {
                    return self.unversioned_listing(prefix).await;
                }
                Err(error) => return Err(self.error(Operation::ListObjects, prefix, &error)),
            };
            let modified = |time: Option<&aws_sdk_s3::primitives::DateTime>| {
                time.and_then(|time| {
                    chrono::DateTime::from_timestamp(time.secs(), time.subsec_nanos())
                })
            };
            versions.extend(output.versions().iter().filter_map(|version| {
                Some(ObjectVersion {
                    key: version.key()?.to_owned(),
                    version_id: version.version_id().map(str::to_owned),
                    is_delete_marker: false,
                    is_latest: version.is_latest().unwrap_or(false),
                    last_modified: modified(version.last_modified()),
                })
            }));
            versions.extend(output.delete_markers().iter().filter_map(|marker| {
                Some(ObjectVersion {
                    key: marker.key()?.to_owned(),
                    version_id: marker.version_id().map(str::to_owned),
                    is_delete_marker: true,
                    is_latest: marker.is_latest().unwrap_or(false),
                    last_modified: modified(marker.last_modified()),
                })
            }));
            if output.is_truncated() != Some(true) {
                return Ok(versions);
            }
            let listing_error = |message: &str| RegionError {
                region: self.name.clone(),
                operation: "list object versions",
                key: prefix.to_owned(),
                part_number: None,
                kind: RegionErrorKind::Other,
                message: message.to_owned(),
            };
            let next_key = output
                .next_key_marker()
                .ok_or_else(|| listing_error("the listing is truncated but has no key marker"))?
                .to_owned();
            let next_version = output.next_version_id_marker().map(str::to_owned);
            let marker = format!("{next_key}\u{0}{}", next_version.as_deref().unwrap_or(""));
            if !followed.first_time(marker) {
                return Err(listing_error(REPEATED_MARKER));
            }
            key_marker = Some(next_key);
            version_id_marker = next_version;
        }
    }

    /// A store without versions: each object listed as its one `null` version.
    async fn unversioned_listing(&self, prefix: &str) -> Result<Vec<ObjectVersion>, RegionError> {
        Ok(self
            .list_objects(prefix)
            .await?
            .into_iter()
            .map(|object| ObjectVersion {
                key: object.key,
                version_id: None,
                is_delete_marker: false,
                is_latest: true,
                last_modified: object.last_modified,
            })
            .collect())
    }

    /// Delete one version (or delete marker) of `key` for good; `None` or `"null"` deletes
    /// an unversioned object. Deleting a version that is already gone succeeds.
    pub async fn delete_object_version(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<(), RegionError> {
        self.injected_fault(Operation::DeleteObject, key, None)?;
        let sent = self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await;
        match sent {
            Ok(_) => Ok(()),
            Err(error) => {
                let error = self.error(Operation::DeleteObject, key, &error);
                if error.kind == RegionErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(error)
                }
            }
        }
    }
}

/// The server does not implement the request (HTTP 501).
fn not_implemented<E>(error: &SdkError<E>) -> bool {
    error
        .raw_response()
        .is_some_and(|response| response.status().as_u16() == 501)
}
