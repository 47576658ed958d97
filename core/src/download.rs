//! Downloading a backup: decrypted on the fly and handed out as a bounded stream of chunks,
//! never whole in memory or on disk.
//!
//! [`open_download`] reads the object from the first region that serves it, decrypts it
//! with the restore path's own code ([`crate::restore`]'s `Decrypting`, which checks the
//! stored bytes' SHA-256 against the manifest at the end), and produces one of:
//! - [`DownloadFormat::Custom`]: the pg_dump custom-format file, as `pg_restore` reads it;
//! - [`DownloadFormat::PlainSqlGzip`]: that dump piped through `pg_restore --file=-` into
//!   plain SQL, gzipped, which loads anywhere with `psql`;
//!
//! either of them optionally encrypted (binary age format) to a recipient the customer
//! gives, so the file is never in the clear outside their machine.
//!
//! The work runs on blocking threads that hand [`DOWNLOAD_CHUNK_BYTES`] chunks to the
//! caller through a channel of [`DOWNLOAD_CHUNKS_IN_FLIGHT`] slots, so memory is bounded
//! whatever the backup's size, and a slow client slows the reading down.
//!
//! Integrity: the last chunk is held back until the object's SHA-256 matched the manifest
//! (and, for plain SQL, pg_restore exited cleanly). Otherwise the stream ends with an
//! error instead of that chunk, so a client sees a broken transfer (a truncated gzip or
//! age stream, a short body), never a complete-looking corrupt file. A region that fails
//! before the first chunk went out is replaced by the next one; after it, the stream can
//! only end with an error.
//!
//! Dropping the [`DownloadBody`] (the client went away) stops the reading thread and kills
//! pg_restore.

use std::io::{self, Read, Write};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use tokio::sync::mpsc;

use crate::ids::{BackupId, RegionName};
use crate::keys::{Identities, Recipient};
use crate::manifest::Manifest;
use crate::postgres::{self, PgTools, PostgresError, ToolKiller};
use crate::progress::Silent;
use crate::region::Region;
use crate::restore::{self, Decrypting, RestoreError, SetOnDrop};

/// Bytes in one chunk handed to the caller.
pub const DOWNLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// Chunks waiting in the channel for the caller; with the one held back and the one
/// being filled, a download holds about 1.5 MiB of chunks at most.
pub const DOWNLOAD_CHUNKS_IN_FLIGHT: usize = 4;

/// gzip level of the plain-SQL form: gzip's own default, so the file is the size
/// `pg_restore -f - | gzip` would make.
const GZIP_LEVEL: u32 = 6;

/// What a download delivers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DownloadFormat {
    /// The pg_dump custom-format file (`pg_restore` reads it).
    Custom,
    /// Plain SQL, gzipped (`gunzip | psql` loads it), without owners and grants.
    PlainSqlGzip,
}

impl DownloadFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DownloadFormat::Custom => "custom",
            DownloadFormat::PlainSqlGzip => "plain-sql-gzip",
        }
    }

    pub fn parse(text: &str) -> Option<DownloadFormat> {
        match text {
            "custom" => Some(DownloadFormat::Custom),
            "plain-sql-gzip" => Some(DownloadFormat::PlainSqlGzip),
            _ => None,
        }
    }

    fn extension(self) -> &'static str {
        match self {
            DownloadFormat::Custom => "dump",
            DownloadFormat::PlainSqlGzip => "sql.gz",
        }
    }
}

impl std::fmt::Display for DownloadFormat {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The name a download is saved under: `<tenant>-<YYYYMMDDTHHMMSSZ>-<backup id>.<ext>`,
/// with `.age` when re-encrypted. Tenant names are slugs and the rest is digits, letters
/// and dashes, so it needs no quoting in a `Content-Disposition` header.
pub fn download_file_name(manifest: &Manifest, format: DownloadFormat, encrypted: bool) -> String {
    format!(
        "{}-{}-{}.{}{}",
        manifest.tenant,
        manifest.started_at.format("%Y%m%dT%H%M%SZ"),
        manifest.backup_id,
        format.extension(),
        if encrypted { ".age" } else { "" }
    )
}

/// What to download.
#[derive(Debug, Clone)]
pub struct DownloadRequest {
    /// The backup's manifest as the catalog recorded it: its SHA-256 is the one checked.
    pub manifest: Manifest,
    pub format: DownloadFormat,
    /// Encrypt the output to this key (the customer's); `None`: in the clear.
    pub recipient: Option<Recipient>,
}

/// Why a download could not start, or ended early.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error("backup {backup} could not be read from any region: {reasons}")]
    NoRegionServed { backup: BackupId, reasons: String },
    #[error(transparent)]
    Read(#[from] RestoreError),
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error("could not encrypt the download to the recipient: {0}")]
    Encrypt(String),
    #[error("could not compress the download: {0}")]
    Compress(io::Error),
    #[error("download worker failed: {0}")]
    Worker(String),
    #[error("the download was abandoned by its client")]
    Abandoned,
}

impl DownloadError {
    /// Whether reading the same backup from another region may succeed.
    pub fn is_region_specific(&self) -> bool {
        matches!(self, DownloadError::Read(error) if error.is_region_specific())
    }
}

/// A download under way: its name, its length when known, where it is read from, and
/// the bytes.
#[derive(Debug)]
pub struct Download {
    pub file_name: String,
    /// Known for the custom format in the clear (the manifest's dump size); otherwise the
    /// output's size is only known at its end.
    pub content_length: Option<u64>,
    pub region: RegionName,
    pub body: DownloadBody,
}

/// The bytes of a download. Ends cleanly only after the whole object was verified;
/// otherwise ends with an error. Dropping it stops the work behind it.
pub struct DownloadBody {
    first: Option<Bytes>,
    chunks: mpsc::Receiver<Result<Bytes, io::Error>>,
    _stop: StopWork,
}

impl std::fmt::Debug for DownloadBody {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DownloadBody")
            .finish_non_exhaustive()
    }
}

impl Stream for DownloadBody {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        self.chunks.poll_recv(context)
    }
}

/// Dropped with the body: tells the reader to stop and kills pg_restore.
struct StopWork {
    _stop_reading: SetOnDrop,
    pg_restore: Arc<Mutex<Option<Arc<ToolKiller>>>>,
}

impl Drop for StopWork {
    fn drop(&mut self) {
        if let Ok(slot) = self.pg_restore.lock()
            && let Some(killer) = slot.as_ref()
        {
            // A no-op once the worker disarmed it to reap pg_restore.
            killer.kill();
        }
    }
}

/// Start downloading `request`'s backup from the first of `regions` (in order) that
/// serves it: a region that fails before the first chunk is ready (missing, truncated or
/// corrupt object, unreachable) is replaced by the next; any other failure (a wrong
/// identity, pg_restore failing) is returned as it is.
pub async fn open_download(
    regions: &[Region],
    identities: Arc<Identities>,
    tools: &PgTools,
    request: DownloadRequest,
) -> Result<Download, DownloadError> {
    let backup = request.manifest.backup_id;
    let file_name = download_file_name(
        &request.manifest,
        request.format,
        request.recipient.is_some(),
    );
    let content_length = (request.format == DownloadFormat::Custom && request.recipient.is_none())
        .then_some(request.manifest.object.dump_bytes);
    let mut reasons = Vec::new();
    for region in regions {
        match open_from_region(region, identities.clone(), tools, &request).await {
            Ok(body) => {
                return Ok(Download {
                    file_name,
                    content_length,
                    region: region.name().clone(),
                    body,
                });
            }
            Err(error) if error.is_region_specific() => {
                tracing::warn!(region = %region.name(), %backup, %error, "download: trying the next region");
                reasons.push(error.to_string());
            }
            Err(error) => return Err(error),
        }
    }
    Err(DownloadError::NoRegionServed {
        backup,
        reasons: if reasons.is_empty() {
            "no region is configured".to_owned()
        } else {
            reasons.join("; ")
        },
    })
}

/// Start the work reading from `region` and wait for its first chunk (or its end).
async fn open_from_region(
    region: &Region,
    identities: Arc<Identities>,
    tools: &PgTools,
    request: &DownloadRequest,
) -> Result<DownloadBody, DownloadError> {
    let stored = restore::open_stored_object(region, &request.manifest).await?;
    let (sender, mut chunks) = mpsc::channel(DOWNLOAD_CHUNKS_IN_FLIGHT);
    let stop = Arc::new(AtomicBool::new(false));
    let pg_restore = Arc::new(Mutex::new(None));
    let work = Work {
        decrypting: Decrypting::new(
            region.name().clone(),
            request.manifest.clone(),
            identities,
            Arc::new(Silent),
        ),
        stored: Box::new(stored),
        format: request.format,
        recipient: request.recipient.clone(),
        tools: tools.clone(),
        stop: stop.clone(),
        pg_restore: pg_restore.clone(),
    };
    let stop_work = StopWork {
        _stop_reading: SetOnDrop(stop),
        pg_restore,
    };
    let worker = tokio::task::spawn_blocking(move || work.run(ChunkSender::new(sender)));
    match chunks.recv().await {
        Some(Ok(first)) => Ok(DownloadBody {
            first: Some(first),
            chunks,
            _stop: stop_work,
        }),
        // Failed or finished before anything went out: the worker says which.
        _ => {
            drop(stop_work);
            worker
                .await
                .map_err(|join_error| DownloadError::Worker(join_error.to_string()))??;
            // Finished cleanly with nothing to send: an empty file.
            Ok(DownloadBody {
                first: None,
                chunks,
                _stop: StopWork {
                    _stop_reading: SetOnDrop(Arc::default()),
                    pg_restore: Arc::default(),
                },
            })
        }
    }
}

/// The blocking side of one download from one region.
struct Work {
    decrypting: Decrypting,
    stored: Box<dyn Read + Send>,
    format: DownloadFormat,
    recipient: Option<Recipient>,
    tools: PgTools,
    stop: Arc<AtomicBool>,
    /// Where pg_restore's killer is put, so that dropping the body can kill it.
    pg_restore: Arc<Mutex<Option<Arc<ToolKiller>>>>,
}

impl Work {
    /// Produce the download into `chunks`; release the held-back last chunk only if
    /// everything was verified, else end the stream with the error.
    fn run(self, mut chunks: ChunkSender) -> Result<(), DownloadError> {
        let region = self.decrypting.region().clone();
        let produced = match self.format {
            DownloadFormat::Custom => self.custom(&mut chunks),
            DownloadFormat::PlainSqlGzip => self.plain_sql_gzip(&mut chunks),
        };
        let result = produced
            .map_err(|error| match error {
                DownloadError::Read(RestoreError::Abandoned) => DownloadError::Abandoned,
                other => other,
            })
            .and_then(|()| chunks.finish());
        if let Err(error) = &result {
            if chunks.sent_any && !matches!(error, DownloadError::Abandoned) {
                tracing::warn!(%region, %error, "download ended with an error after its first bytes");
            }
            chunks.fail(io::Error::other(error.to_string()));
        }
        result
    }

    fn custom(self, chunks: &mut ChunkSender) -> Result<(), DownloadError> {
        let Work {
            decrypting,
            stored,
            recipient,
            stop,
            ..
        } = self;
        let abandoned = |_: io::Error| RestoreError::Abandoned;
        match recipient {
            None => {
                decrypting.decrypt_into(stored, chunks, &abandoned, &stop)?;
            }
            Some(recipient) => {
                let mut encrypted = encrypt_to(&recipient, chunks)?;
                decrypting.decrypt_into(stored, &mut encrypted, &abandoned, &stop)?;
                encrypted.finish().map_err(|_| DownloadError::Abandoned)?;
            }
        }
        Ok(())
    }

    /// The dump goes into `pg_restore --file=-` on a thread of its own; its SQL output is
    /// gzipped (and encrypted) here.
    fn plain_sql_gzip(self, chunks: &mut ChunkSender) -> Result<(), DownloadError> {
        let Work {
            decrypting,
            stored,
            recipient,
            tools,
            stop,
            pg_restore: killer_slot,
            ..
        } = self;
        let (mut pg_restore, pg_restore_stderr) = postgres::spawn_pg_restore_to_sql(&tools)?;
        let killer = ToolKiller::for_child(&pg_restore);
        if let Ok(mut slot) = killer_slot.lock() {
            *slot = Some(killer.clone());
        }
        if stop.load(Ordering::Relaxed) {
            killer.kill();
        }
        let stdin = pg_restore.stdin.take();
        let stdout = pg_restore.stdout.take();
        let feeder_killer = killer.clone();
        let feeder_stop = stop.clone();
        let feeder = std::thread::Builder::new()
            .name("download-feed".to_owned())
            .spawn(move || {
                let fed = (|| {
                    let mut stdin = stdin.ok_or_else(|| {
                        RestoreError::Worker("pg_restore has no stdin".to_owned())
                    })?;
                    decrypting.decrypt_into(stored, &mut stdin, &stopped_reading, &feeder_stop)
                })();
                // Killed, pg_restore never finishes its output: the gzip stays truncated.
                if fed.is_err() {
                    feeder_killer.kill();
                }
                fed.map(|_| ())
            })
            .map_err(|error| DownloadError::Worker(error.to_string()))?;

        let pumped = (|| {
            let mut stdout = stdout
                .ok_or_else(|| DownloadError::Worker("pg_restore has no stdout".to_owned()))?;
            match &recipient {
                None => gzip_into(&mut stdout, &mut *chunks),
                Some(recipient) => {
                    let mut encrypted = encrypt_to(recipient, &mut *chunks)?;
                    gzip_into(&mut stdout, &mut encrypted)?;
                    encrypted.finish().map_err(|_| DownloadError::Abandoned)?;
                    Ok(())
                }
            }
        })();
        if pumped.is_err() {
            killer.kill();
        }
        let fed = feeder.join();
        killer.disarm();
        let exited = postgres::wait_for_tool("pg_restore", &mut pg_restore, &pg_restore_stderr);
        let fed = fed.map_err(|_| {
            DownloadError::Worker("the download's feeding thread panicked".to_owned())
        })?;
        // The first cause wins: a client that went away (pg_restore was killed for it),
        // then a corrupt object (likewise), then pg_restore's own failure.
        if matches!(pumped, Err(DownloadError::Abandoned))
            || matches!(fed, Err(RestoreError::Abandoned))
        {
            return Err(DownloadError::Abandoned);
        }
        match fed {
            // pg_restore stopped reading: its exit status says why. Even if it exited
            // cleanly, the object was not read to its end, so its SHA-256 was never checked.
            Err(error @ RestoreError::Postgres(PostgresError::ToolFailed { .. })) => {
                exited?;
                Err(error.into())
            }
            Err(error) => Err(error.into()),
            Ok(()) => {
                exited?;
                pumped
            }
        }
    }
}

/// What pg_restore closing its stdin early becomes; replaced by its exit status.
fn stopped_reading(_: io::Error) -> RestoreError {
    RestoreError::Postgres(PostgresError::ToolFailed {
        program: "pg_restore".to_owned(),
        status: "stopped reading its input".to_owned(),
        stderr: String::new(),
    })
}

/// Gzip everything `input` gives into `output`, trailer included.
fn gzip_into(input: &mut impl Read, output: impl Write) -> Result<(), DownloadError> {
    let mut gzip = flate2::write::GzEncoder::new(output, flate2::Compression::new(GZIP_LEVEL));
    let mut buffer = vec![0u8; DOWNLOAD_CHUNK_BYTES];
    loop {
        let read = match input.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(DownloadError::Compress(error)),
        };
        gzip.write_all(&buffer[..read])
            .map_err(|_| DownloadError::Abandoned)?;
    }
    gzip.finish().map_err(|_| DownloadError::Abandoned)?;
    Ok(())
}

/// An age writer (binary format) encrypting to `recipient` into `output`.
fn encrypt_to<W: Write>(
    recipient: &Recipient,
    output: W,
) -> Result<age::stream::StreamWriter<W>, DownloadError> {
    let encryptor = age::Encryptor::with_recipients(std::iter::once(
        recipient.age_recipient() as &dyn age::Recipient
    ))
    .map_err(|error| DownloadError::Encrypt(error.to_string()))?;
    encryptor
        .wrap_output(output)
        .map_err(|_| DownloadError::Abandoned)
}

/// Cuts what is written into [`DOWNLOAD_CHUNK_BYTES`] chunks and sends them, always
/// keeping the newest full chunk (and what follows it) back until [`ChunkSender::finish`].
/// A write fails once the receiver is gone.
struct ChunkSender {
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
    filling: BytesMut,
    held: Option<Bytes>,
    sent_any: bool,
}

impl ChunkSender {
    fn new(sender: mpsc::Sender<Result<Bytes, io::Error>>) -> ChunkSender {
        ChunkSender {
            sender,
            filling: BytesMut::with_capacity(DOWNLOAD_CHUNK_BYTES),
            held: None,
            sent_any: false,
        }
    }

    fn send(&mut self, chunk: Bytes) -> io::Result<()> {
        self.sender.blocking_send(Ok(chunk)).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the download's client went away")
        })?;
        self.sent_any = true;
        Ok(())
    }

    /// Everything was verified: send what was held back. The stream then ends cleanly.
    fn finish(&mut self) -> Result<(), DownloadError> {
        let held = self.held.take();
        let rest = self.filling.split().freeze();
        for chunk in held.into_iter().chain((!rest.is_empty()).then_some(rest)) {
            self.send(chunk).map_err(|_| DownloadError::Abandoned)?;
        }
        Ok(())
    }

    /// End the stream with `error`; what was held back is never sent.
    fn fail(&mut self, error: io::Error) {
        self.held = None;
        self.filling.clear();
        let _ = self.sender.blocking_send(Err(error));
    }
}

impl Write for ChunkSender {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let room = DOWNLOAD_CHUNK_BYTES - self.filling.len();
        let taken = bytes.len().min(room);
        self.filling.extend_from_slice(&bytes[..taken]);
        if self.filling.len() == DOWNLOAD_CHUNK_BYTES {
            let full = self.filling.split().freeze();
            self.filling.reserve(DOWNLOAD_CHUNK_BYTES);
            if let Some(previous) = self.held.replace(full) {
                self.send(previous)?;
            }
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(
        receiver: &mut mpsc::Receiver<Result<Bytes, io::Error>>,
    ) -> Vec<Result<usize, String>> {
        let mut items = Vec::new();
        while let Ok(item) = receiver.try_recv() {
            items.push(
                item.map(|bytes| bytes.len())
                    .map_err(|error| error.to_string()),
            );
        }
        items
    }

    #[test]
    fn the_last_chunk_goes_out_only_when_finished() {
        let (sender, mut receiver) = mpsc::channel(16);
        let mut chunks = ChunkSender::new(sender);
        chunks
            .write_all(&vec![7u8; 2 * DOWNLOAD_CHUNK_BYTES + 10])
            .expect("write");
        // Two full chunks: the first went out, the second is held, 10 bytes are filling.
        assert_eq!(received(&mut receiver), vec![Ok(DOWNLOAD_CHUNK_BYTES)]);
        chunks.finish().expect("finish");
        assert_eq!(
            received(&mut receiver),
            vec![Ok(DOWNLOAD_CHUNK_BYTES), Ok(10)]
        );
    }

    #[test]
    fn a_failure_ends_the_stream_with_an_error_instead_of_the_held_chunk() {
        let (sender, mut receiver) = mpsc::channel(16);
        let mut chunks = ChunkSender::new(sender);
        chunks
            .write_all(&vec![7u8; DOWNLOAD_CHUNK_BYTES])
            .expect("write");
        chunks.fail(io::Error::other("corrupt"));
        assert_eq!(received(&mut receiver), vec![Err("corrupt".to_owned())]);
    }

    #[test]
    fn writes_fail_once_the_receiver_is_gone() {
        let (sender, receiver) = mpsc::channel(16);
        let mut chunks = ChunkSender::new(sender);
        drop(receiver);
        let error = chunks
            .write_all(&vec![7u8; 2 * DOWNLOAD_CHUNK_BYTES])
            .expect_err("nobody listens");
        assert_eq!(error.kind(), io::ErrorKind::BrokenPipe);
    }

    #[test]
    fn formats_parse_what_they_print() {
        for format in [DownloadFormat::Custom, DownloadFormat::PlainSqlGzip] {
            assert_eq!(DownloadFormat::parse(format.as_str()), Some(format));
        }
        assert_eq!(DownloadFormat::parse("tar"), None);
    }
}
