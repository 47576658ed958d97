//! One S3-compatible region, through aws-sdk-s3.
//!
//! Settings chosen for stores that are not AWS: path-style addressing and an explicit
//! endpoint; request checksums only where the API requires them, because servers treat
//! checksums of multipart objects differently (composite, full-object, none) and some
//! store `aws-chunked` framing verbatim. Integrity is lifeboat's own instead: SHA-256 of
//! the stored bytes in the manifest, checked on every read, and age's authenticated
//! chunks. Parts are sent as in-memory bytes, never as streaming bodies.

use std::fmt;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use secrecy::ExposeSecret;

use crate::config::RegionConfig;
use crate::ids::RegionName;
use crate::policy;

/// What went wrong with a region, and whether another region may do better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionErrorKind {
    /// The object is not there.
    NotFound,
    /// The bucket is not there: the whole region is misconfigured or gone, which says
    /// nothing about any one object.
    BucketMissing,
    /// The region did not answer: connection refused, timeout, 5xx after retries.
    Unreachable,
    /// Credentials refused.
    AccessDenied,
    /// Anything else the server said.
    Other,
}

/// A failed request to a region. Carries no credentials.
#[derive(Debug, thiserror::Error)]
pub struct RegionError {
    pub region: RegionName,
    pub operation: &'static str,
    pub key: String,
    pub kind: RegionErrorKind,
    pub message: String,
}

impl fmt::Display for RegionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            RegionErrorKind::NotFound => "not found",
            RegionErrorKind::BucketMissing => "bucket missing",
            RegionErrorKind::Unreachable => "region unreachable",
            RegionErrorKind::AccessDenied => "access denied",
            RegionErrorKind::Other => "failed",
        };
        write!(
            formatter,
            "region {}: {} {} {what}: {}",
            self.region, self.operation, self.key, self.message
        )
    }
}

/// A connected region.
#[derive(Clone)]
pub struct Region {
    name: RegionName,
    bucket: String,
    endpoint: String,
    client: Client,
}

impl fmt::Debug for Region {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Region")
            .field("name", &self.name)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// An object being read: its length and body.
#[derive(Debug)]
pub struct ObjectReader {
    pub content_length: Option<u64>,
    pub body: ByteStream,
}

impl Region {
    /// Build a client; nothing is sent until the first request.
    pub fn new(config: &RegionConfig) -> Region {
        let credentials = Credentials::new(
            config.access_key_id.clone(),
            config.secret_access_key.expose_secret().to_owned(),
            None,
            None,
            "lifeboat-config",
        );
        let s3_config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(config.s3_region.clone()))
            .endpoint_url(&config.endpoint)
            .credentials_provider(credentials)
            .force_path_style(config.path_style)
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .retry_config(RetryConfig::standard().with_max_attempts(policy::S3_MAX_ATTEMPTS))
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(policy::S3_CONNECT_TIMEOUT)
                    .operation_attempt_timeout(policy::S3_OPERATION_ATTEMPT_TIMEOUT)
                    .build(),
            )
            .build();
        Region {
            name: config.name.clone(),
            bucket: config.bucket.clone(),
            endpoint: config.endpoint.clone(),
            client: Client::from_conf(s3_config),
        }
    }

    pub fn name(&self) -> &RegionName {
        &self.name
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn error<E>(&self, operation: &'static str, key: &str, error: &SdkError<E>) -> RegionError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error
            .raw_response()
            .map(|response| response.status().as_u16());
        let code = error.code().map(str::to_owned);
        let kind = match (error, status, code.as_deref()) {
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => {
                RegionErrorKind::Unreachable
            }
            (_, _, Some("NoSuchBucket")) => RegionErrorKind::BucketMissing,
            (_, _, Some("NoSuchKey" | "NotFound" | "NoSuchUpload")) | (_, Some(404), _) => {
                RegionErrorKind::NotFound
            }
            (_, _, Some("AccessDenied" | "InvalidAccessKeyId" | "SignatureDoesNotMatch"))
            | (_, Some(401 | 403), _) => RegionErrorKind::AccessDenied,
            (_, Some(500..=599), _) => RegionErrorKind::Unreachable,
            _ => RegionErrorKind::Other,
        };
        let message = match (code, error.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code,
            _ => DisplayErrorContext(error).to_string(),
        };
        RegionError {
            region: self.name.clone(),
            operation,
            key: key.to_owned(),
            kind,
            message,
        }
    }

    pub async fn create_multipart_upload(&self, key: &str) -> Result<String, RegionError> {
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .send()
            .await
            .map_err(|error| self.error("create multipart upload", key, &error))?;
        output.upload_id.ok_or_else(|| RegionError {
            region: self.name.clone(),
            operation: "create multipart upload",
            key: key.to_owned(),
            kind: RegionErrorKind::Other,
            message: "the server returned no upload id".to_owned(),
        })
    }

    /// Upload one part; returns its ETag.
    pub async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        part_number: i32,
        body: Bytes,
    ) -> Result<String, RegionError> {
        let output = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(part_number)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| self.error("upload part", key, &error))?;
        Ok(output.e_tag.unwrap_or_default())
    }

    /// Complete an upload from its parts' `(number, etag)`, in order.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), RegionError> {
        let completed = CompletedMultipartUpload::builder()
            .set_parts(Some(
                parts
                    .iter()
                    .map(|(number, etag)| {
                        CompletedPart::builder()
                            .part_number(*number)
                            .e_tag(etag)
                            .build()
                    })
                    .collect(),
            ))
            .build();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .multipart_upload(completed)
            .send()
            .await
            .map_err(|error| self.error("complete multipart upload", key, &error))?;
        Ok(())
    }

    pub async fn abort_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<(), RegionError> {
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|error| self.error("abort multipart upload", key, &error))?;
        Ok(())
    }

    /// Open multipart uploads under `prefix`, as `(key, upload id)`.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, RegionError> {
        let mut uploads = Vec::new();
        let mut key_marker = None;
        let mut upload_id_marker = None;
        loop {
            let output = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await
                .map_err(|error| self.error("list multipart uploads", prefix, &error))?;
            for upload in output.uploads() {
                uploads.push((
                    upload.key().unwrap_or_default().to_owned(),
                    upload.upload_id().unwrap_or_default().to_owned(),
                ));
            }
            if output.is_truncated() != Some(true) {
                return Ok(uploads);
            }
            key_marker = output.next_key_marker().map(str::to_owned);
            upload_id_marker = output.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(uploads);
            }
        }
    }

    pub async fn put_object(&self, key: &str, body: Bytes) -> Result<(), RegionError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(body.len() as i64)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| self.error("put object", key, &error))?;
        Ok(())
    }

    /// Read a small object (a manifest) whole, refusing one larger than `max_bytes`.
    pub async fn get_small_object(&self, key: &str, max_bytes: u64) -> Result<Bytes, RegionError> {
        let reader = self.get_object(key).await?;
        if reader.content_length.unwrap_or(0) > max_bytes {
            return Err(RegionError {
                region: self.name.clone(),
                operation: "get object",
                key: key.to_owned(),
                kind: RegionErrorKind::Other,
                message: format!("larger than the {max_bytes} bytes a manifest may have"),
            });
        }
        let collected = reader.body.collect().await.map_err(|error| RegionError {
            region: self.name.clone(),
            operation: "get object",
            key: key.to_owned(),
            kind: RegionErrorKind::Unreachable,
            message: error.to_string(),
        })?;
        Ok(collected.into_bytes())
    }

    pub async fn get_object(&self, key: &str) -> Result<ObjectReader, RegionError> {
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| self.error("get object", key, &error))?;
        Ok(ObjectReader {
            content_length: output
                .content_length
                .and_then(|length| u64::try_from(length).ok()),
            body: output.body,
        })
    }

    /// The object's size, or `None` if it does not exist.
    pub async fn object_size(&self, key: &str) -> Result<Option<u64>, RegionError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(
                output
                    .content_length
                    .and_then(|length| u64::try_from(length).ok())
                    .unwrap_or(0),
            )),
            Err(error) => {
                let error = self.error("head object", key, &error);
                if error.kind == RegionErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    /// Every key under `prefix`, in the server's (lexicographic) order.
    pub async fn list_keys(&self, prefix: &str) -> Result<Vec<String>, RegionError> {
        Ok(self
            .list_objects(prefix)
            .await?
            .into_iter()
            .map(|object| object.key)
            .collect())
    }

    /// Every object under `prefix` with its last-modified time, in the server's order.
    pub async fn list_objects(&self, prefix: &str) -> Result<Vec<ListedObject>, RegionError> {
        let mut objects = Vec::new();
        let mut continuation_token = None;
        loop {
            let output = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(continuation_token.take())
                .send()
                .await
                .map_err(|error| self.error("list objects", prefix, &error))?;
            objects.extend(output.contents().iter().filter_map(|object| {
                Some(ListedObject {
                    key: object.key()?.to_owned(),
                    last_modified: object.last_modified().and_then(|modified| {
                        chrono::DateTime::from_timestamp(modified.secs(), modified.subsec_nanos())
                    }),
                })
            }));
            if output.is_truncated() != Some(true) {
                return Ok(objects);
            }
            // A listing cut short must not pass for the whole: scrub deletes what it
            // does not find a manifest for.
            continuation_token = Some(
                output
                    .next_continuation_token()
                    .ok_or_else(|| RegionError {
                        region: self.name.clone(),
                        operation: "list objects",
                        key: prefix.to_owned(),
                        kind: RegionErrorKind::Other,
                        message: "the listing is truncated but has no continuation token"
                            .to_owned(),
                    })?
                    .to_owned(),
            );
        }
    }

    /// Whether the bucket is there and ours: HeadBucket. A HEAD of an object answers a bare
    /// 404 both for a missing object and a missing bucket, so callers that conclude
    /// "missing" from a 404 (scrub) ask this first.
    pub async fn check_bucket(&self) -> Result<(), RegionError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let mut error = self.error("head bucket", "", &error);
                if error.kind == RegionErrorKind::NotFound {
                    error.kind = RegionErrorKind::BucketMissing;
                }
                Err(error)
            }
        }
    }

    pub async fn delete_object(&self, key: &str) -> Result<(), RegionError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| self.error("delete object", key, &error))?;
        Ok(())
    }
}

/// An object, as [`Region::list_objects`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    pub key: String,
    /// When the server says the object was last written; `None` if it did not say.
    pub last_modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// An open multipart upload, as [`Region::list_open_uploads`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMultipartUpload {
    pub key: String,
    pub upload_id: String,
    /// When the server says the upload was created; `None` if it did not say.
    pub initiated: Option<chrono::DateTime<chrono::Utc>>,
}

impl Region {
    /// Open multipart uploads under `prefix` with their creation times, or `None` when the
    /// server does not implement ListMultipartUploads (s3s-fs answers 501).
    pub async fn list_open_uploads(
        &self,
        prefix: &str,
    ) -> Result<Option<Vec<OpenMultipartUpload>>, RegionError> {
        let mut uploads = Vec::new();
        let mut key_marker = None;
        let mut upload_id_marker = None;
        loop {
            let output = match self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(upload_id_marker.take())
                .send()
                .await
            {
                Ok(output) => output,
                Err(error) => {
                    let status = error
                        .raw_response()
                        .map(|response| response.status().as_u16());
                    if status == Some(501) || error.code() == Some("NotImplemented") {
                        return Ok(None);
                    }
                    return Err(self.error("list multipart uploads", prefix, &error));
                }
            };
            for upload in output.uploads() {
                let initiated = upload.initiated().and_then(|initiated| {
                    chrono::DateTime::from_timestamp(initiated.secs(), initiated.subsec_nanos())
                });
                uploads.push(OpenMultipartUpload {
                    key: upload.key().unwrap_or_default().to_owned(),
                    upload_id: upload.upload_id().unwrap_or_default().to_owned(),
                    initiated,
                });
            }
            if output.is_truncated() != Some(true) {
                return Ok(Some(uploads));
            }
            key_marker = output.next_key_marker().map(str::to_owned);
            upload_id_marker = output.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(Some(uploads));
            }
        }
    }
}
