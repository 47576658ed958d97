//! Reading a backup back: find its manifest, stream its object from a region through
//! SHA-256, age and zstd into `pg_restore`.
//!
//! The object is never written to disk, except by a staged restore ([`Staging`]): a large
//! dump, decrypted into a private file that is checked before pg_restore reads it and
//! removed afterwards, so `pg_restore --jobs` can restore it in parallel. Corruption is caught three ways: the size
//! against the manifest before reading, age's authenticated 64 KiB chunks while reading
//! (a flipped bit stops the stream before it reaches pg_restore), and SHA-256 of every
//! stored byte at the end, checked before pg_restore is allowed to commit its single
//! transaction. Errors say whether another region could do better
//! ([`RestoreError::is_region_specific`]).

use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_util::io::SyncIoBridge;

use crate::config::ClusterConfig;
use crate::ids::{BackupId, RegionName, TenantName};
use crate::keys::Identities;
use crate::manifest::{self, Manifest, ManifestError, ObjectKey};
use crate::policy;
use crate::postgres::{self, PgTools, PostgresError, RestoreInput};
use crate::progress::Progress;
use crate::region::{Region, RegionError};
use crate::service_config::{RestoreJobs, RestoreSettings};

/// Manifests are small; anything larger is not one.
const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Region(#[from] RegionError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("region {region}: manifest {key} is not the one asked for: {reason}")]
    ManifestMismatch {
        region: RegionName,
        key: String,
        reason: String,
    },
    #[error("tenant {tenant} has no backups in any reachable region{}", if reasons.is_empty() { String::new() } else { format!(" ({reasons})") })]
    NoBackups { tenant: TenantName, reasons: String },
    #[error("backup {backup} of tenant {tenant} was found in no region: {reasons}")]
    BackupNotFound {
        tenant: TenantName,
        backup: BackupId,
        reasons: String,
    },
    #[error(
        "region {region}: object {key} has {actual} bytes but the manifest says {expected} (truncated or replaced)"
    )]
    SizeMismatch {
        region: RegionName,
        key: String,
        expected: u64,
        actual: u64,
    },
    #[error("region {region}: object {key} does not match the manifest's SHA-256 (corrupt)")]
    ChecksumMismatch { region: RegionName, key: String },
    #[error(
        "region {region}: object {key} is not a valid age stream (corrupt or truncated): {message}"
    )]
    Corrupt {
        region: RegionName,
        key: String,
        message: String,
    },
    #[error(
        "the identity file does not match any recipient of backup {backup} (encrypted to key fingerprints {fingerprints})"
    )]
    WrongIdentity {
        backup: BackupId,
        fingerprints: String,
    },
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error("restore worker failed: {0}")]
    Worker(String),
    #[error("could not stage the dump in {}: {source}", dir.display())]
    Staging { dir: PathBuf, source: io::Error },
    #[error("the restore was abandoned by its caller")]
    Abandoned,
}

impl RestoreError {
    /// Whether trying the same backup from another region may succeed.
    pub fn is_region_specific(&self) -> bool {
        matches!(
            self,
            RestoreError::Region(_)
                | RestoreError::Manifest(_)
                | RestoreError::ManifestMismatch { .. }
                | RestoreError::SizeMismatch { .. }
                | RestoreError::ChecksumMismatch { .. }
                | RestoreError::Corrupt { .. }
        )
    }
}

/// Which backup to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupSelector {
    Id(BackupId),
    Latest,
}

/// Read the manifest of `backup_id` of `tenant` from `region`, and check that it is that
/// manifest: its tenant, backup id and object key must be the ones asked for. Whoever can
/// write one bucket could otherwise put tenant B's manifest (and object) under tenant A's
/// name, and A's restore would deliver B's data.
pub async fn read_manifest(
    region: &Region,
    tenant: &TenantName,
    backup_id: BackupId,
) -> Result<Manifest, RestoreError> {
    let key = ObjectKey::Manifest(tenant, backup_id).to_key();
    let bytes = region.get_small_object(&key, MAX_MANIFEST_BYTES).await?;
    let manifest = Manifest::from_json(&key, &bytes)?;
    let mismatch = |reason: String| RestoreError::ManifestMismatch {
        region: region.name().clone(),
        key: key.clone(),
        reason,
    };
    if &manifest.tenant != tenant {
        return Err(mismatch(format!(
            "it is for tenant {}, not {tenant}",
            manifest.tenant
        )));
    }
    if manifest.backup_id != backup_id {
        return Err(mismatch(format!(
            "it is for backup {}, not {backup_id}",
            manifest.backup_id
        )));
    }
    let object_key = ObjectKey::Dump(tenant, backup_id).to_key();
    if manifest.object.key != object_key {
        return Err(mismatch(format!(
            "it names object {:?}, not {object_key:?}",
            manifest.object.key
        )));
    }
    Ok(manifest)
}

/// Check a manifest read from a region against what the catalog recorded when the backup
/// was committed: a manifest rewritten in a bucket since then is not believed.
pub fn check_manifest_against_catalog(
    region: &RegionName,
    manifest: &Manifest,
    catalog_sha256: &str,
) -> Result<(), RestoreError> {
    if manifest.object.sha256.eq_ignore_ascii_case(catalog_sha256) {
        return Ok(());
    }
    Err(RestoreError::ManifestMismatch {
        region: region.clone(),
        key: ObjectKey::Manifest(&manifest.tenant, manifest.backup_id).to_key(),
        reason: format!(
            "its SHA-256 {} differs from the catalog's {catalog_sha256}",
            manifest.object.sha256
        ),
    })
}

/// The backup ids of `tenant` (or of every tenant) that have a manifest in `region`, oldest first.
pub async fn list_backup_ids(
    region: &Region,
    tenant: Option<&TenantName>,
) -> Result<Vec<(TenantName, BackupId)>, RegionError> {
    let keys = region.list_keys(&manifest::listing_prefix(tenant)).await?;
    let mut ids: Vec<(TenantName, BackupId)> = keys
        .iter()
        .filter_map(|key| manifest::parse_manifest_key(key))
        .collect();
    ids.sort();
    Ok(ids)
}

/// The backup `selector` names. For the newest, every region is listed, because a degraded
/// backup may be in some only. A committed backup was written to at least `min_regions`
/// of them, so once all but `min_regions - 1` have answered, one of those holds the
/// newest; the rest get `policy::LISTING_GRACE`, and one still silent then is left out
/// with a warning, so a wedged region costs seconds, not the request timeout.
pub async fn resolve_backup(
    regions: &[Region],
    min_regions: usize,
    tenant: &TenantName,
    selector: BackupSelector,
) -> Result<ResolvedBackup, RestoreError> {
    let mut unlisted = Vec::new();
    let backup_id = match selector {
        BackupSelector::Id(backup_id) => backup_id,
        BackupSelector::Latest => {
            let requests = regions
                .iter()
                .map(|region| async move {
                    list_backup_ids(region, Some(tenant))
                        .await
                        .map_err(|error| error.to_string())
                })
                .collect();
            let enough = regions.len().saturating_sub(min_regions.max(1)) + 1;
            let (listings, _) = crate::stragglers::join_bounded(
                requests,
                enough,
                policy::LISTING_GRACE,
                "still listing backups",
                None,
            )
            .await;
            let mut reasons = Vec::new();
            let mut newest: Option<BackupId> = None;
            for (region, listing) in regions.iter().zip(listings) {
                match listing {
                    Ok(ids) => {
                        let region_newest = ids.last().map(|(_, backup_id)| *backup_id);
                        newest = newest.max(region_newest);
                    }
                    Err(reason) => {
                        tracing::warn!(region = %region.name(), %reason, "the newest backup is chosen without this region");
                        reasons.push(format!("region {}: {reason}", region.name()));
                        unlisted.push((region.name().clone(), reason));
                    }
                }
            }
            newest.ok_or_else(|| RestoreError::NoBackups {
                tenant: tenant.clone(),
                reasons: reasons.join("; "),
            })?
        }
    };
    Ok(ResolvedBackup {
        backup_id,
        unlisted,
    })
}

/// The backup a selector named, and the regions left out of the search for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedBackup {
    pub backup_id: BackupId,
    /// With `--latest`, the regions that could not be listed, and why: a newer backup
    /// that only they hold was not considered.
    pub unlisted: Vec<(RegionName, String)>,
}

/// Where a restore writes.
#[derive(Debug, Clone)]
pub struct RestoreTarget {
    pub tools: PgTools,
    pub cluster: ClusterConfig,
    /// Must exist and be empty.
    pub database: String,
    /// Restore as this role (`pg_restore --no-owner --role`): every object, large objects
    /// included, is owned by it. `None`: as the dump says (and as the cluster's user).
    pub owner_role: Option<String>,
    /// Stage large dumps on local disk for `pg_restore --jobs`; `None`: always stream.
    pub staging: Option<Staging>,
}

/// Restoring large dumps in parallel: the decrypted dump is written to a private file in
/// `dir` (`pg_restore --jobs` needs a seekable file, not a pipe), checked against the
/// manifest's SHA-256, restored with `jobs` jobs, and removed. A dump under
/// `min_dump_bytes`, or one the directory lacks room for, streams as usual.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Staging {
    pub dir: PathBuf,
    pub jobs: u32,
    pub min_dump_bytes: u64,
}

/// Staged dumps are named `lifeboat-restore-*.dump`, so leftovers of a crash are found.
pub const STAGING_FILE_PREFIX: &str = "lifeboat-restore-";
const STAGING_FILE_SUFFIX: &str = ".dump";

impl Staging {
    /// What `[restore]` asks for on this machine: `None` when every restore streams.
    pub fn configured(settings: &RestoreSettings) -> Option<Staging> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Staging::choose(settings, cores)
    }

    /// What `[restore]` asks for on a machine with `cores` cores: `None` when every restore
    /// streams.
    pub fn choose(settings: &RestoreSettings, cores: usize) -> Option<Staging> {
        let jobs = match settings.jobs {
            RestoreJobs::Fixed(jobs) => jobs,
            RestoreJobs::Auto => auto_restore_jobs(cores),
        };
        (jobs >= 2).then(|| Staging {
            dir: settings
                .staging_dir
                .clone()
                .unwrap_or_else(std::env::temp_dir),
            jobs,
            min_dump_bytes: settings.stage_min_bytes,
        })
    }

    /// How to restore a dump of `dump_bytes`, and why when it streams after all.
    fn method_for(&self, dump_bytes: u64) -> (RestoreMethod, Option<String>) {
        if dump_bytes < self.min_dump_bytes {
            return (RestoreMethod::Streamed, None);
        }
        if self.dir.to_str().is_none() {
            return (
                RestoreMethod::Streamed,
                Some(format!(
                    "staging directory {} is not valid UTF-8",
                    self.dir.display()
                )),
            );
        }
        let needed = staging_room_needed(dump_bytes);
        match free_bytes(&self.dir) {
            Ok(free) if free >= needed => (RestoreMethod::Staged { jobs: self.jobs }, None),
            Ok(free) => (
                RestoreMethod::Streamed,
                Some(format!(
                    "staging directory {} has {free} bytes free, {needed} needed for a {dump_bytes}-byte dump",
                    self.dir.display()
                )),
            ),
            Err(error) => (
                RestoreMethod::Streamed,
                Some(format!("staging directory {}: {error}", self.dir.display())),
            ),
        }
    }
}

/// `[restore] jobs = "auto"`: one job per core up to [`policy::MAX_AUTO_RESTORE_JOBS`], and
/// none (stream) on fewer than four cores, where staging did not pay (BENCHMARKS.md,
/// "Parallel restore").
fn auto_restore_jobs(cores: usize) -> u32 {
    if cores < 4 {
        return 1;
    }
    u32::try_from(cores)
        .unwrap_or(u32::MAX)
        .min(policy::MAX_AUTO_RESTORE_JOBS)
}

/// Room a staged dump of `dump_bytes` needs: itself, plus headroom for everyone else.
fn staging_room_needed(dump_bytes: u64) -> u64 {
    dump_bytes
        .saturating_add(dump_bytes / policy::STAGING_HEADROOM_DIVISOR)
        .saturating_add(policy::STAGING_HEADROOM_BYTES)
}

/// Bytes an unprivileged process may still write in the file system holding `dir`.
fn free_bytes(dir: &Path) -> io::Result<u64> {
    let stats = nix::sys::statvfs::statvfs(dir).map_err(io::Error::from)?;
    Ok(stats
        .blocks_available()
        .saturating_mul(stats.fragment_size()))
}

/// Remove staged dumps in `dir` last written more than `older_than` ago (the longest a
/// restore job may run): leftovers of a restore that crashed. What was removed.
pub fn remove_staging_leftovers(dir: &Path, older_than: Duration) -> io::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(STAGING_FILE_PREFIX) || !name.ends_with(STAGING_FILE_SUFFIX) {
            continue;
        }
        let metadata = entry.metadata()?;
        let age = metadata.modified()?.elapsed().unwrap_or(Duration::ZERO);
        if metadata.is_file() && age >= older_than {
            std::fs::remove_file(entry.path())?;
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

/// How a restore fed pg_restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreMethod {
    /// Decrypted on the fly into pg_restore's stdin, in one transaction.
    Streamed,
    /// Staged on local disk, then `pg_restore --jobs`.
    Staged { jobs: u32 },
}

impl std::fmt::Display for RestoreMethod {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RestoreMethod::Streamed => formatter.write_str("streamed"),
            RestoreMethod::Staged { jobs } => write!(formatter, "staged, {jobs} jobs"),
        }
    }
}

/// What one restore from a region did.
#[derive(Debug, Clone)]
pub struct StreamedRestore {
    pub region: RegionName,
    pub stored_bytes: u64,
    pub dump_bytes: u64,
    pub method: RestoreMethod,
    pub duration: Duration,
}

/// Hashes and counts every byte read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.hasher.update(&buffer[..read]);
        self.bytes += read as u64;
        Ok(read)
    }
}

/// Restore `manifest`'s object from `region` into `target`: streamed into pg_restore, or
/// staged for `pg_restore --jobs` when `target.staging` says so and the dump is large.
pub async fn stream_restore(
    region: &Region,
    manifest: &Manifest,
    identities: Arc<Identities>,
    target: &RestoreTarget,
    progress: Arc<dyn Progress>,
) -> Result<StreamedRestore, RestoreError> {
    let started = Instant::now();
    let (method, why_streamed) = target
        .staging
        .as_ref()
        .map_or((RestoreMethod::Streamed, None), |staging| {
            staging.method_for(manifest.object.dump_bytes)
        });
    if let Some(why) = why_streamed {
        tracing::warn!(reason = %why, "not staging the dump for a parallel restore: streaming it");
    }
    let reader = open_stored_object(region, manifest).await?;
    let decrypting = Decrypting::new(
        region.name().clone(),
        manifest.clone(),
        identities,
        progress,
    );
    let (stored_bytes, dump_bytes) = match method {
        RestoreMethod::Streamed => streamed(decrypting, reader, target).await?,
        RestoreMethod::Staged { jobs } => {
            let dir = target
                .staging
                .as_ref()
                .map(|staging| staging.dir.clone())
                .unwrap_or_else(std::env::temp_dir);
            staged(decrypting, reader, target, &dir, jobs).await?
        }
    };
    Ok(StreamedRestore {
        region: region.name().clone(),
        stored_bytes,
        dump_bytes,
        method,
        duration: started.elapsed(),
    })
}

/// Start reading `manifest`'s object from `region`, as a blocking reader for
/// [`Decrypting::decrypt_into`] (to be used on a blocking thread). An object whose length
/// is not the manifest's is refused before a byte is read.
pub(crate) async fn open_stored_object(
    region: &Region,
    manifest: &Manifest,
) -> Result<impl Read + Send + 'static, RestoreError> {
    let object = region.get_object(&manifest.object.key).await?;
    if let Some(actual) = object.content_length
        && actual != manifest.object.stored_bytes
    {
        return Err(RestoreError::SizeMismatch {
            region: region.name().clone(),
            key: manifest.object.key.clone(),
            expected: manifest.object.stored_bytes,
            actual,
        });
    }
    Ok(SyncIoBridge::new(object.body.into_async_read()))
}

/// One object being read back: which, from where, with what. Restores
/// ([`stream_restore`]) and downloads ([`crate::download`]) both decrypt through it.
pub(crate) struct Decrypting {
    region: RegionName,
    manifest: Manifest,
    identities: Arc<Identities>,
    progress: Arc<dyn Progress>,
}

/// A decrypted object, checked against its manifest.
pub(crate) struct Decrypted {
    pub(crate) stored_bytes: u64,
    pub(crate) dump_bytes: u64,
}

impl Decrypting {
    pub(crate) fn new(
        region: RegionName,
        manifest: Manifest,
        identities: Arc<Identities>,
        progress: Arc<dyn Progress>,
    ) -> Decrypting {
        Decrypting {
            region,
            manifest,
            identities,
            progress,
        }
    }

    /// The region the object is read from.
    pub(crate) fn region(&self) -> &RegionName {
        &self.region
    }

    fn corrupt(&self, message: String) -> RestoreError {
        RestoreError::Corrupt {
            region: self.region.clone(),
            key: self.manifest.object.key.clone(),
            message,
        }
    }

    /// Read `stored` through SHA-256, age and zstd into `sink` (the dump), then check the
    /// stored bytes against the manifest. `write_error` names a failure to write; `stop`
    /// ends the read early when set. Nothing is checked before the end: the caller must
    /// not let what reached `sink` take effect unless this returns `Ok`.
    pub(crate) fn decrypt_into(
        &self,
        stored: impl Read,
        sink: &mut dyn Write,
        write_error: &dyn Fn(io::Error) -> RestoreError,
        stop: &AtomicBool,
    ) -> Result<Decrypted, RestoreError> {
        let mut hashing = HashingReader {
            inner: stored,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let dump_bytes = {
            let decryptor =
                age::Decryptor::new_buffered(BufReader::with_capacity(256 * 1024, &mut hashing))
                    .map_err(|error| self.corrupt(error.to_string()))?;
            let plaintext =
                decryptor
                    .decrypt(self.identities.iter())
                    .map_err(|error| match error {
                        age::DecryptError::NoMatchingKeys => RestoreError::WrongIdentity {
                            backup: self.manifest.backup_id,
                            fingerprints: self.manifest.pipeline.recipient_fingerprints.join(", "),
                        },
                        other => self.corrupt(other.to_string()),
                    })?;
            let mut decoder = zstd::stream::read::Decoder::new(plaintext)
                .map_err(|error| self.corrupt(error.to_string()))?;
            let mut buffer = vec![0u8; 256 * 1024];
            let mut dump_bytes = 0u64;
            loop {
                if stop.load(Ordering::Relaxed) {
                    return Err(RestoreError::Abandoned);
                }
                let read = match decoder.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => return Err(self.corrupt(error.to_string())),
                };
                dump_bytes += read as u64;
                // The manifest bounds what a staged restore may write to disk.
                if dump_bytes > self.manifest.object.dump_bytes {
                    return Err(self.corrupt(format!(
                        "the dump is larger than the {} bytes its manifest says",
                        self.manifest.object.dump_bytes
                    )));
                }
                sink.write_all(&buffer[..read]).map_err(write_error)?;
                self.progress.add_bytes(read as u64);
            }
            // Read whatever follows the zstd frame, so every stored byte is hashed.
            io::copy(&mut decoder.finish(), &mut io::sink())
                .map_err(|error| self.corrupt(error.to_string()))?;
            dump_bytes
        };
        let sha256 = hex::encode(hashing.hasher.finalize());
        if hashing.bytes != self.manifest.object.stored_bytes
            || sha256 != self.manifest.object.sha256
        {
            return Err(RestoreError::ChecksumMismatch {
                region: self.region.clone(),
                key: self.manifest.object.key.clone(),
            });
        }
        Ok(Decrypted {
            stored_bytes: hashing.bytes,
            dump_bytes,
        })
    }
}

/// Sets its flag when dropped: a blocking worker sees that its caller went away.
pub(crate) struct SetOnDrop(pub(crate) Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Decrypt into pg_restore's stdin; end of input (its commit) only after the checksum.
async fn streamed(
    decrypting: Decrypting,
    stored: impl Read + Send + 'static,
    target: &RestoreTarget,
) -> Result<(u64, u64), RestoreError> {
    let (mut pg_restore, pg_restore_stderr) = postgres::spawn_pg_restore(
        &target.tools,
        &target.cluster,
        &target.database,
        target.owner_role.as_deref(),
        RestoreInput::Stdin,
    )?;
    let stdin = pg_restore.stdin.take();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_when_dropped = SetOnDrop(stop.clone());
    let worker = tokio::task::spawn_blocking(move || {
        let decrypted = (|| {
            let mut stdin =
                stdin.ok_or_else(|| RestoreError::Worker("pg_restore has no stdin".to_owned()))?;
            // pg_restore stopped reading: its own error says why.
            let stopped_reading = |_: io::Error| {
                RestoreError::Postgres(PostgresError::ToolFailed {
                    program: "pg_restore".to_owned(),
                    status: "stopped reading its input".to_owned(),
                    stderr: pg_restore_stderr.text(),
                })
            };
            let decrypted = decrypting.decrypt_into(stored, &mut stdin, &stopped_reading, &stop)?;
            Ok::<_, RestoreError>((decrypted, stdin))
        })();
        match decrypted {
            Ok((decrypted, stdin)) => {
                // End of input only now, after the checksum: the dump was the one committed.
                drop(stdin);
                postgres::wait_for_tool("pg_restore", &mut pg_restore, &pg_restore_stderr)?;
                Ok((decrypted.stored_bytes, decrypted.dump_bytes))
            }
            Err(error) => {
                // Killed before it reads end-of-input, pg_restore never commits.
                let _ = pg_restore.kill();
                let _ = pg_restore.wait();
                Err(error)
            }
        }
    });
    worker
        .await
        .map_err(|join_error| RestoreError::Worker(join_error.to_string()))?
}

/// Decrypt into a private file in `dir`, check it, then `pg_restore --jobs` from it. The
/// file is removed on every path, and pg_restore never sees a dump that failed its check.
async fn staged(
    decrypting: Decrypting,
    stored: impl Read + Send + 'static,
    target: &RestoreTarget,
    dir: &Path,
    jobs: u32,
) -> Result<(u64, u64), RestoreError> {
    let staging_error = |source: io::Error| RestoreError::Staging {
        dir: dir.to_owned(),
        source,
    };
    // Mode 0600, removed when dropped.
    let file = tempfile::Builder::new()
        .prefix(STAGING_FILE_PREFIX)
        .suffix(STAGING_FILE_SUFFIX)
        .tempfile_in(dir)
        .map_err(staging_error)?;
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_when_dropped = SetOnDrop(stop.clone());
    let staging_dir = dir.to_owned();
    let worker = tokio::task::spawn_blocking(move || {
        let mut writer = io::BufWriter::with_capacity(1024 * 1024, file);
        let write_error = |source: io::Error| RestoreError::Staging {
            dir: staging_dir.clone(),
            source,
        };
        let decrypted = decrypting.decrypt_into(stored, &mut writer, &write_error, &stop)?;
        let file = writer
            .into_inner()
            .map_err(|error| write_error(error.into_error()))?;
        Ok::<_, RestoreError>((decrypted, file))
    });
    let (decrypted, file) = worker
        .await
        .map_err(|join_error| RestoreError::Worker(join_error.to_string()))??;
    let (mut pg_restore, pg_restore_stderr) = postgres::spawn_pg_restore(
        &target.tools,
        &target.cluster,
        &target.database,
        target.owner_role.as_deref(),
        RestoreInput::File {
            path: file.path(),
            jobs,
        },
    )?;
    let restored = tokio::task::spawn_blocking(move || {
        let waited = postgres::wait_for_tool("pg_restore", &mut pg_restore, &pg_restore_stderr);
        drop(file);
        waited
    });
    restored
        .await
        .map_err(|join_error| RestoreError::Worker(join_error.to_string()))??;
    Ok((decrypted.stored_bytes, decrypted.dump_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(jobs: RestoreJobs) -> RestoreSettings {
        RestoreSettings {
            jobs,
            staging_dir: Some(PathBuf::from("/var/tmp/lifeboat")),
            ..RestoreSettings::default()
        }
    }

    #[test]
    fn auto_streams_on_fewer_than_four_cores_and_a_fixed_count_is_obeyed() {
        assert_eq!(Staging::choose(&settings(RestoreJobs::Auto), 2), None);
        let eight = Staging::choose(&settings(RestoreJobs::Auto), 8).expect("staged");
        assert_eq!(eight.jobs, policy::MAX_AUTO_RESTORE_JOBS);
        assert_eq!(eight.dir, PathBuf::from("/var/tmp/lifeboat"));
        assert_eq!(Staging::choose(&settings(RestoreJobs::Fixed(1)), 8), None);
        let fixed = Staging::choose(&settings(RestoreJobs::Fixed(3)), 2).expect("staged");
        assert_eq!(fixed.jobs, 3);
    }

    #[test]
    fn small_dumps_and_directories_without_room_stream() {
        let directory = tempfile::tempdir().expect("tempdir");
        let staging = Staging {
            dir: directory.path().to_owned(),
            jobs: 2,
            min_dump_bytes: 1000,
        };
        assert_eq!(staging.method_for(999), (RestoreMethod::Streamed, None));
        assert_eq!(
            staging.method_for(1000).0,
            RestoreMethod::Staged { jobs: 2 }
        );
        // More than any disk here has free: refused, with the figures.
        let (method, why) = staging.method_for(u64::MAX / 2);
        assert_eq!(method, RestoreMethod::Streamed);
        let why = why.expect("a reason");
        assert!(
            why.contains("bytes free") && why.contains("needed"),
            "{why}"
        );
        let missing = Staging {
            dir: directory.path().join("missing"),
            ..staging
        };
        let (method, why) = missing.method_for(1000);
        assert_eq!(method, RestoreMethod::Streamed);
        assert!(why.expect("a reason").contains("missing"));
    }

    #[test]
    fn only_staged_dumps_older_than_a_job_are_removed_as_leftovers() {
        let directory = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, age: Duration| {
            let path = directory.path().join(name);
            let file = std::fs::File::create(&path).expect("create");
            file.set_modified(std::time::SystemTime::now() - age)
                .expect("set mtime");
            path
        };
        let hour = Duration::from_secs(3600);
        let leftover = write("lifeboat-restore-abc.dump", 7 * hour);
        let running = write("lifeboat-restore-def.dump", hour);
        let other = write("somebody-else.dump", 7 * hour);
        let removed = remove_staging_leftovers(directory.path(), 6 * hour).expect("sweep");
        assert_eq!(removed, vec![leftover.clone()]);
        assert!(!leftover.exists());
        assert!(running.exists() && other.exists());
        assert_eq!(
            remove_staging_leftovers(&directory.path().join("absent"), hour).expect("absent"),
            Vec::<PathBuf>::new()
        );
    }
}
