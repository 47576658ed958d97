//! One S3-compatible region, through aws-sdk-s3.
//!
//! Settings chosen for stores that are not AWS: path-style addressing and an explicit
//! endpoint; request checksums only where the API requires them, because servers treat
//! checksums of multipart objects differently (composite, full-object, none) and some
//! store `aws-chunked` framing verbatim. Integrity is lifeboat's own instead: SHA-256 of
//! the stored bytes in the manifest, checked on every read, and age's authenticated
//! chunks. Parts are sent as in-memory bytes, never as streaming bodies.
//!
//! A failed request becomes a [`RegionError`] whose text is one line a person can read:
//! the region, the operation, the object, and the innermost cause the SDK reported
//! (`region us: upload part 3 of tenants/…: connection refused (127.0.0.1:18302)`),
//! found by walking the error's `source()` chain ([`describe_cause`]) rather than by
//! printing the SDK's `Debug` dump. Credentials never appear in it.
//!
//! This is the storage seam: every request to a region goes through a [`Region`] method,
//! so the policy of one request lives here once. [`client_config`] sets the per-attempt
//! timeouts and the SDK's retries (numbers in [`policy`]); callers never wrap one request
//! in a timeout or a retry of their own. What they bound instead is a wait on several
//! regions at once (`stragglers`, the backup's fan-out), which is design, not per-request
//! policy. Each method first asks the region's [`FaultInjector`], so tests can fail a
//! chosen call in front of a real server (`region/faults.rs`). The configured regions
//! are built once per process as a [`Regions`] set and shared (`region/set.rs`).

pub mod check;
mod faults;
mod listing;
mod lock;
mod set;

pub use faults::{Fault, FaultInjector, INJECTED_FAULT};
pub use lock::{BucketLock, ObjectVersion, Retention};
pub use set::Regions;

use std::fmt;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use secrecy::ExposeSecret;

use crate::config::{LockMode, RegionConfig, RegionKey};
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

/// A request a [`Region`] makes: named in errors, and chosen by a [`Fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    ListMultipartUploads,
    PutObject,
    GetObject,
    HeadObject,
    ListObjects,
    HeadBucket,
    DeleteObject,
    GetBucketVersioning,
    GetObjectLockConfiguration,
    PutObjectRetention,
    ListObjectVersions,
    DeleteObjectVersion,
    CopyObject,
}

impl Operation {
    /// How the operation reads in an error: `upload part`, `get object`, ….
    pub fn name(self) -> &'static str {
        match self {
            Operation::CreateMultipartUpload => "create multipart upload",
            Operation::UploadPart => "upload part",
            Operation::CompleteMultipartUpload => "complete multipart upload",
            Operation::AbortMultipartUpload => "abort multipart upload",
            Operation::ListMultipartUploads => "list multipart uploads",
            Operation::PutObject => "put object",
            Operation::GetObject => "get object",
            Operation::HeadObject => "head object",
            Operation::ListObjects => "list objects",
            Operation::HeadBucket => "head bucket",
            Operation::DeleteObject => "delete object",
            Operation::GetBucketVersioning => "get bucket versioning",
            Operation::GetObjectLockConfiguration => "get object lock configuration",
            Operation::PutObjectRetention => "put object retention",
            Operation::ListObjectVersions => "list object versions",
            Operation::DeleteObjectVersion => "delete object version",
            Operation::CopyObject => "copy object",
        }
    }
}

/// A failed request to a region. Carries no credentials.
///
/// Displayed as one line: `region us: upload part 3 of KEY: connection refused
/// (127.0.0.1:18302)`, or `region eu: get object KEY: not found (NoSuchKey: …)`.
#[derive(Debug, thiserror::Error)]
pub struct RegionError {
    pub region: RegionName,
    pub operation: &'static str,
    /// The object (or prefix) the operation was about; empty for the bucket itself.
    pub key: String,
    /// The part, for an operation on one part of a multipart upload.
    pub part_number: Option<i32>,
    pub kind: RegionErrorKind,
    /// Why, in one line: the S3 error code and message, or the innermost cause of a
    /// failure to reach the region (see [`describe_cause`]).
    pub message: String,
}

impl fmt::Display for RegionError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "region {}: {}", self.region, self.operation)?;
        match (self.part_number, self.key.is_empty()) {
            (Some(part_number), true) => write!(formatter, " {part_number}")?,
            (Some(part_number), false) => write!(formatter, " {part_number} of {}", self.key)?,
            (None, true) => {}
            (None, false) => write!(formatter, " {}", self.key)?,
        }
        // Unreachable and Other say it all in the message ("connection refused (…)").
        let what = match self.kind {
            RegionErrorKind::NotFound => Some("not found"),
            RegionErrorKind::BucketMissing => Some("bucket missing"),
            RegionErrorKind::AccessDenied => Some("access denied"),
            RegionErrorKind::Unreachable | RegionErrorKind::Other => None,
        };
        match (what, self.message.is_empty()) {
            (Some(what), true) => write!(formatter, ": {what}"),
            (Some(what), false) => write!(formatter, ": {what} ({})", self.message),
            (None, true) => write!(formatter, ": failed"),
            (None, false) => write!(formatter, ": {}", self.message),
        }
    }
}

/// One line saying why `error` happened: its innermost cause, found by walking the
/// `source()` chain, since the outer layers of an SDK error only name themselves
/// ("dispatch failure", "io error", "client error (Connect)"). An I/O error of a known
/// kind reads as its kind ("connection refused", "timed out"). Never a `Debug` dump.
pub fn describe_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    let mut innermost_io_kind = None;
    let mut current = Some(error);
    while let Some(cause) = current {
        if let Some(io_error) = cause.downcast_ref::<std::io::Error>() {
            innermost_io_kind = Some(io_error.kind());
        }
        innermost = cause;
        current = cause.source();
    }
    if let Some(phrase) = innermost_io_kind.and_then(io_kind_phrase) {
        return phrase.to_owned();
    }
    one_line(&innermost.to_string())
}

/// How an I/O error of a network kind reads in a region error.
fn io_kind_phrase(kind: std::io::ErrorKind) -> Option<&'static str> {
    use std::io::ErrorKind;
    Some(match kind {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset by the server",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::NotConnected => "not connected",
        ErrorKind::TimedOut => "timed out",
        ErrorKind::BrokenPipe => "connection closed by the server",
        ErrorKind::UnexpectedEof => "connection closed before the response ended",
        ErrorKind::AddrNotAvailable => "address not available",
        ErrorKind::HostUnreachable => "host unreachable",
        ErrorKind::NetworkUnreachable => "network unreachable",
        _ => return None,
    })
}

/// `text` on one line, without the OS's error number.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match joined.rfind(" (os error ") {
        Some(start) if joined.ends_with(')') => joined[..start].to_owned(),
        _ => joined,
    }
}

/// `host:port` of an endpoint URL, without scheme, credentials or path: shown beside a
/// failure to connect.
fn endpoint_address(endpoint: &str) -> String {
    let without_scheme = endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest);
    let authority = without_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host_and_port.to_owned()
}

/// An S3 timestamp as a chrono one (`None` if out of chrono's range).
fn chrono_time(time: &aws_sdk_s3::primitives::DateTime) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(time.secs(), time.subsec_nanos())
}

/// What a HEAD tells of an object ([`Region::object_head`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectHead {
    pub size: u64,
    /// Until when it is locked (object lock retention), if it is.
    pub retain_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// A connected region.
#[derive(Clone)]
pub struct Region {
    name: RegionName,
    bucket: String,
    endpoint: String,
    /// `host:port` of the endpoint, named in errors about reaching it.
    endpoint_address: String,
    client: Client,
    faults: FaultInjector,
    /// The configured lock mode (`[regions.X] object_lock`).
    lock_mode: Option<LockMode>,
    /// With a lock mode: the retention every object written through this handle gets
    /// ([`Region::retaining_until`]).
    retain_until: Option<chrono::DateTime<chrono::Utc>>,
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

/// The S3 client's configuration for `config` signing with `key`: addressing, checksums,
/// and the policy of every request (per-attempt timeouts, the SDK's standard retries), set
/// here once.
pub fn client_config(config: &RegionConfig, key: &RegionKey) -> aws_sdk_s3::Config {
    let credentials = Credentials::new(
        key.access_key_id.clone(),
        key.secret_access_key.expose_secret().to_owned(),
        None,
        None,
        "lifeboat-config",
    );
    aws_sdk_s3::Config::builder()
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
        .build()
}

impl Region {
    /// Build a client signing with the writer's key (what agents hold); nothing is sent
    /// until the first request. A process builds its regions once
    /// ([`Regions::from_config`]) and shares them.
    pub fn new(config: &RegionConfig) -> Region {
        Region::with_key(config, &config.writer_key())
    }

    /// Build a client signing with the manager's key (the writer's where none is
    /// configured): the controller's maintenance only, never an agent.
    pub fn manager(config: &RegionConfig) -> Region {
        Region::with_key(config, &config.manager_key())
    }

    /// This region (its fault injector and retention included) signing with the manager's
    /// key of `config`.
    pub fn as_manager(&self, config: &RegionConfig) -> Region {
        Region {
            client: Client::from_conf(client_config(config, &config.manager_key())),
            ..self.clone()
        }
    }

    fn with_key(config: &RegionConfig, key: &RegionKey) -> Region {
        Region {
            name: config.name.clone(),
            bucket: config.bucket.clone(),
            endpoint: config.endpoint.clone(),
            endpoint_address: endpoint_address(&config.endpoint),
            client: Client::from_conf(client_config(config, key)),
            faults: FaultInjector::default(),
            lock_mode: config.object_lock,
            retain_until: None,
        }
    }

    /// The region's fault injector, shared by its clones; inert unless a test arms it.
    pub fn faults(&self) -> &FaultInjector {
        &self.faults
    }

    /// Fail now if an armed fault chooses this call.
    fn injected_fault(
        &self,
        operation: Operation,
        key: &str,
        part_number: Option<i32>,
    ) -> Result<(), RegionError> {
        self.faults.check(&self.name, operation, key, part_number)
    }

    pub fn name(&self) -> &RegionName {
        &self.name
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn error<E>(&self, operation: Operation, key: &str, error: &SdkError<E>) -> RegionError
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
        RegionError {
            region: self.name.clone(),
            operation: operation.name(),
            key: key.to_owned(),
            part_number: None,
            kind,
            message: self.sdk_error_message(error, code, status),
        }
    }

    /// Why a request failed, in one line: what the server said (code and message, or the
    /// HTTP status), else the innermost cause of not getting an answer, with the address
    /// that did not answer.
    fn sdk_error_message<E>(
        &self,
        error: &SdkError<E>,
        code: Option<String>,
        status: Option<u16>,
    ) -> String
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let server_message = error.message().map(one_line);
        match (code, server_message, status) {
            (Some(code), Some(message), _) => format!("{code}: {message}"),
            (Some(code), None, _) => code,
            (None, Some(message), _) => message,
            (None, None, Some(status)) => format!("HTTP status {status}"),
            (None, None, None) => {
                let cause = describe_cause(error);
                match error {
                    SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
                        format!("{cause} ({})", self.endpoint_address)
                    }
                    _ => cause,
                }
            }
        }
    }

    pub async fn create_multipart_upload(&self, key: &str) -> Result<String, RegionError> {
        self.injected_fault(Operation::CreateMultipartUpload, key, None)?;
        let output = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/octet-stream")
            .set_object_lock_mode(self.object_lock_mode())
            .set_object_lock_retain_until_date(self.object_lock_retain_until())
            .send()
            .await
            .map_err(|error| self.error(Operation::CreateMultipartUpload, key, &error))?;
        output.upload_id.ok_or_else(|| RegionError {
            region: self.name.clone(),
            operation: Operation::CreateMultipartUpload.name(),
            key: key.to_owned(),
            part_number: None,
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
        self.injected_fault(Operation::UploadPart, key, Some(part_number))?;
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
            .map_err(|error| RegionError {
                part_number: Some(part_number),
                ..self.error(Operation::UploadPart, key, &error)
            })?;
        Ok(output.e_tag.unwrap_or_default())
    }

    /// Complete an upload from its parts' `(number, etag)`, in order.
    pub async fn complete_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(i32, String)],
    ) -> Result<(), RegionError> {
        self.injected_fault(Operation::CompleteMultipartUpload, key, None)?;
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
            .map_err(|error| self.error(Operation::CompleteMultipartUpload, key, &error))?;
        Ok(())
    }

    pub async fn abort_multipart_upload(
        &self,
        key: &str,
        upload_id: &str,
    ) -> Result<(), RegionError> {
        self.injected_fault(Operation::AbortMultipartUpload, key, None)?;
        self.client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
            .map_err(|error| self.error(Operation::AbortMultipartUpload, key, &error))?;
        Ok(())
    }

    /// Open multipart uploads under `prefix`, as `(key, upload id)`.
    pub async fn list_multipart_uploads(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String)>, RegionError> {
        let uploads = self
            .list_uploads(prefix, NotImplemented::IsAnError)
            .await?
            .unwrap_or_default();
        Ok(uploads
            .into_iter()
            .map(|upload| (upload.key, upload.upload_id))
            .collect())
    }

    pub async fn put_object(&self, key: &str, body: Bytes) -> Result<(), RegionError> {
        self.injected_fault(Operation::PutObject, key, None)?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(body.len() as i64)
            .set_object_lock_mode(self.object_lock_mode())
            .set_object_lock_retain_until_date(self.object_lock_retain_until())
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|error| self.error(Operation::PutObject, key, &error))?;
        Ok(())
    }

    /// Read a small object (a manifest) whole, refusing one larger than `max_bytes`:
    /// at once if the server says its length, else as soon as the body passes the limit.
    pub async fn get_small_object(&self, key: &str, max_bytes: u64) -> Result<Bytes, RegionError> {
        let reader = self.get_object(key).await?;
        let too_large = || RegionError {
            region: self.name.clone(),
            operation: Operation::GetObject.name(),
            key: key.to_owned(),
            part_number: None,
            kind: RegionErrorKind::Other,
            message: format!("larger than the {max_bytes} bytes a manifest may have"),
        };
        if reader.content_length.unwrap_or(0) > max_bytes {
            return Err(too_large());
        }
        match listing::read_at_most(reader.body, max_bytes).await {
            Ok(bytes) => Ok(bytes),
            Err(listing::BoundedReadError::TooLarge) => Err(too_large()),
            Err(listing::BoundedReadError::Read(error)) => Err(RegionError {
                region: self.name.clone(),
                operation: Operation::GetObject.name(),
                key: key.to_owned(),
                part_number: None,
                kind: RegionErrorKind::Unreachable,
                message: describe_cause(&error),
            }),
        }
    }

    pub async fn get_object(&self, key: &str) -> Result<ObjectReader, RegionError> {
        self.read_object(key, None).await
    }

    /// Read `version_id` of `key`, or its current version.
    async fn read_object(
        &self,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<ObjectReader, RegionError> {
        self.injected_fault(Operation::GetObject, key, None)?;
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await
            .map_err(|error| self.error(Operation::GetObject, key, &error))?;
        Ok(ObjectReader {
            content_length: output
                .content_length
                .and_then(|length| u64::try_from(length).ok()),
            body: output.body,
        })
    }

    /// The object's size, or `None` if it does not exist.
    pub async fn object_size(&self, key: &str) -> Result<Option<u64>, RegionError> {
        Ok(self.object_head(key).await?.map(|head| head.size))
    }

    /// The object's size and the end of its retention (object lock), from one HEAD; `None`
    /// if it does not exist.
    pub async fn object_head(&self, key: &str) -> Result<Option<ObjectHead>, RegionError> {
        self.injected_fault(Operation::HeadObject, key, None)?;
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => Ok(Some(ObjectHead {
                size: output
                    .content_length
                    .and_then(|length| u64::try_from(length).ok())
                    .unwrap_or(0),
                retain_until: output.object_lock_retain_until_date().and_then(chrono_time),
            })),
            Err(error) => {
                let error = self.error(Operation::HeadObject, key, &error);
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
        let mut followed = listing::PageMarkers::new();
        loop {
            self.injected_fault(Operation::ListObjects, prefix, None)?;
            let output = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(continuation_token.take())
                .send()
                .await
                .map_err(|error| self.error(Operation::ListObjects, prefix, &error))?;
            objects.extend(output.contents().iter().filter_map(|object| {
                Some(ListedObject {
                    key: object.key()?.to_owned(),
                    last_modified: object.last_modified().and_then(chrono_time),
                })
            }));
            if output.is_truncated() != Some(true) {
                return Ok(objects);
            }
            // A listing cut short must not pass for the whole: scrub deletes what it
            // does not find a manifest for.
            let listing_error = |message: &str| RegionError {
                region: self.name.clone(),
                operation: Operation::ListObjects.name(),
                key: prefix.to_owned(),
                part_number: None,
                kind: RegionErrorKind::Other,
                message: message.to_owned(),
            };
            let next_token = output
                .next_continuation_token()
                .ok_or_else(|| {
                    listing_error("the listing is truncated but has no continuation token")
                })?
                .to_owned();
            if !followed.first_time(next_token.clone()) {
                return Err(listing_error(REPEATED_MARKER));
            }
            continuation_token = Some(next_token);
        }
    }

    /// Whether the bucket is there and ours: HeadBucket. A HEAD of an object answers a bare
    /// 404 both for a missing object and a missing bucket, so callers that conclude
    /// "missing" from a 404 (scrub) ask this first.
    pub async fn check_bucket(&self) -> Result<(), RegionError> {
        self.injected_fault(Operation::HeadBucket, "", None)?;
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(error) => {
                let mut error = self.error(Operation::HeadBucket, "", &error);
                if error.kind == RegionErrorKind::NotFound {
                    error.kind = RegionErrorKind::BucketMissing;
                }
                Err(error)
            }
        }
    }

    pub async fn delete_object(&self, key: &str) -> Result<(), RegionError> {
        self.injected_fault(Operation::DeleteObject, key, None)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| self.error(Operation::DeleteObject, key, &error))?;
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
        self.list_uploads(prefix, NotImplemented::IsNone).await
    }

    /// Every page of ListMultipartUploads under `prefix`.
    async fn list_uploads(
        &self,
        prefix: &str,
        not_implemented: NotImplemented,
    ) -> Result<Option<Vec<OpenMultipartUpload>>, RegionError> {
        let mut uploads = Vec::new();
        let mut key_marker = None;
        let mut upload_id_marker = None;
        let mut followed = listing::PageMarkers::new();
        loop {
            self.injected_fault(Operation::ListMultipartUploads, prefix, None)?;
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
                    let unsupported = status == Some(501) || error.code() == Some("NotImplemented");
                    if unsupported && not_implemented == NotImplemented::IsNone {
                        return Ok(None);
                    }
                    return Err(self.error(Operation::ListMultipartUploads, prefix, &error));
                }
            };
            for upload in output.uploads() {
                let initiated = upload.initiated().and_then(chrono_time);
                uploads.push(OpenMultipartUpload {
                    key: upload.key().unwrap_or_default().to_owned(),
                    upload_id: upload.upload_id().unwrap_or_default().to_owned(),
                    initiated,
                });
            }
            if output.is_truncated() != Some(true) {
                return Ok(Some(uploads));
            }
            let Some(next_key_marker) = output.next_key_marker().map(str::to_owned) else {
                return Ok(Some(uploads));
            };
            let next_upload_id_marker = output.next_upload_id_marker().map(str::to_owned);
            if !followed.first_time((next_key_marker.clone(), next_upload_id_marker.clone())) {
                return Err(RegionError {
                    region: self.name.clone(),
                    operation: Operation::ListMultipartUploads.name(),
                    key: prefix.to_owned(),
                    part_number: None,
                    kind: RegionErrorKind::Other,
                    message: REPEATED_MARKER.to_owned(),
                });
            }
            key_marker = Some(next_key_marker);
            upload_id_marker = next_upload_id_marker;
        }
    }
}

/// Why a listing stopped: the server sent a continuation marker it had sent before.
const REPEATED_MARKER: &str =
    "the server repeated a continuation marker; the listing would never end";

/// What a server without ListMultipartUploads means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotImplemented {
    /// Nothing to list (scrub on s3s-fs): `Ok(None)`.
    IsNone,
    /// A failure like any other.
    IsAnError,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that names only itself, like the SDK's outer layers.
    #[derive(Debug)]
    struct Layer {
        name: &'static str,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    }

    impl fmt::Display for Layer {
        fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str(self.name)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.source
                .as_deref()
                .map(|source| source as &(dyn std::error::Error + 'static))
        }
    }

    fn layers(names: &[&'static str], innermost: std::io::Error) -> Layer {
        let mut error: Box<dyn std::error::Error + Send + Sync> = Box::new(innermost);
        for name in names.iter().rev() {
            error = Box::new(Layer {
                name,
                source: Some(error),
            });
        }
        Layer {
            name: "dispatch failure",
            source: Some(error),
        }
    }

    #[test]
    fn the_chain_walk_keeps_the_innermost_cause_on_one_line() {
        let refused = layers(
            &["io error", "client error (Connect)", "tcp connect error"],
            std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "Connection refused (os error 111)",
            ),
        );
        assert_eq!(describe_cause(&refused), "connection refused");

        let lookup = layers(
            &["io error", "dns error"],
            std::io::Error::other(
                "failed to lookup address information:\nName or service not known",
            ),
        );
        assert_eq!(
            describe_cause(&lookup),
            "failed to lookup address information: Name or service not known"
        );

        let timeout = Layer {
            name: "timeout",
            source: Some(Box::new(Layer {
                name: "operation attempt timeout (single attempt) occurred after 120s",
                source: None,
            })),
        };
        assert_eq!(
            describe_cause(&timeout),
            "operation attempt timeout (single attempt) occurred after 120s"
        );
        assert_eq!(one_line("Broken (os error 32)"), "Broken");
    }

    #[test]
    fn the_endpoint_address_drops_scheme_credentials_and_path() {
        assert_eq!(
            endpoint_address("http://127.0.0.1:18302"),
            "127.0.0.1:18302"
        );
        assert_eq!(
            endpoint_address("https://user:secret@s3.example.com:9000/bucket?x=1"),
            "s3.example.com:9000"
        );
        assert_eq!(endpoint_address("s3.example.com"), "s3.example.com");
    }

    fn region_at(endpoint: &str) -> Region {
        Region::new(&RegionConfig {
            name: RegionName::parse("us").expect("region name"),
            endpoint: endpoint.to_owned(),
            bucket: "lifeboat".to_owned(),
            s3_region: "us-east-1".to_owned(),
            access_key_id: "lifeboat-test".to_owned(),
            secret_access_key: secrecy::SecretString::from("do-not-show-Zq81kL0p"),
            manager: None,
            object_lock: None,
            require_lock: false,
            path_style: true,
            priority: 0,
        })
    }

    #[tokio::test]
    async fn a_region_that_refuses_connections_fails_with_one_readable_line() {
        // A port nothing listens on: bound, then released.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let region = region_at(&format!("http://{address}"));

        let error = region
            .upload_part("tenants/acme/part", "upload-1", 3, Bytes::from_static(b"x"))
            .await
            .expect_err("nothing listens");
        assert_eq!(error.kind, RegionErrorKind::Unreachable);
        assert_eq!(
            error.to_string(),
            format!(
                "region us: upload part 3 of tenants/acme/part: connection refused ({address})"
            )
        );

        let error = region.check_bucket().await.expect_err("nothing listens");
        assert_eq!(
            error.to_string(),
            format!("region us: head bucket: connection refused ({address})")
        );
        assert!(!error.to_string().contains("Zq81kL0p"));
    }

    #[test]
    fn a_missing_object_reads_as_not_found_with_the_servers_words() {
        let error = RegionError {
            region: RegionName::parse("eu").expect("region name"),
            operation: "get object",
            key: "tenants/acme/x.manifest.json".to_owned(),
            part_number: None,
            kind: RegionErrorKind::NotFound,
            message: "NoSuchKey: The specified key does not exist.".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "region eu: get object tenants/acme/x.manifest.json: not found (NoSuchKey: The specified key does not exist.)"
        );
    }
}
