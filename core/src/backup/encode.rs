//! The encoding thread: pg_dump's stdout → zstd → age → fixed-size parts.
//!
//! Compression and encryption are CPU work, so they run on a thread of their own rather
//! than inside the async runtime; finished parts cross to the uploaders over a channel of
//! one slot, which is what keeps memory bounded: when every region is busy, this thread
//! blocks, pg_dump's pipe fills, and pg_dump waits. SHA-256 is computed over the stored
//! bytes as they are cut into parts, so the object is read exactly once.

use std::io::{self, Read, Write};
use std::process::Child;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::keys::Recipient;
use crate::policy;
use crate::postgres::{self, PostgresError, StderrTail, ToolKiller};
use crate::progress::Progress;

/// What the encoder made of the dump.
#[derive(Debug)]
pub(crate) struct EncodedDump {
    pub dump_bytes: u64,
    pub stored_bytes: u64,
    pub sha256: String,
    pub part_count: u64,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EncodeError {
    #[error(transparent)]
    PgDump(#[from] PostgresError),
    #[error("reading pg_dump's output failed: {0}")]
    ReadDump(io::Error),
    #[error("compressing or encrypting failed: {0}")]
    Encode(io::Error),
    #[error("the uploads stopped before the dump was fully sent")]
    UploadsStopped,
    #[error(
        "the stored object would need more than {max} parts of {part_size_bytes} bytes; raise part_size_bytes"
    )]
    TooManyParts { max: u64, part_size_bytes: u64 },
    #[error("age refused the recipients: {0}")]
    Recipients(String),
}

/// Cuts the encrypted stream into parts and hands them to the uploaders.
struct PartWriter {
    part_size_bytes: usize,
    current: BytesMut,
    hasher: Sha256,
    stored_bytes: u64,
    part_count: u64,
    parts: mpsc::Sender<Bytes>,
}

impl PartWriter {
    fn send_current(&mut self) -> io::Result<()> {
        if self.part_count >= policy::MAX_PARTS {
            return Err(io::Error::other(EncodeError::TooManyParts {
                max: policy::MAX_PARTS,
                part_size_bytes: self.part_size_bytes as u64,
            }));
        }
        let part = std::mem::replace(
            &mut self.current,
            BytesMut::with_capacity(self.part_size_bytes),
        );
        self.part_count += 1;
        self.parts
            .blocking_send(part.freeze())
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, EncodeError::UploadsStopped))
    }
}

impl Write for PartWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.part_size_bytes - self.current.len();
        let taken = data.len().min(room);
        self.current.extend_from_slice(&data[..taken]);
        self.hasher.update(&data[..taken]);
        self.stored_bytes += taken as u64;
        if self.current.len() == self.part_size_bytes {
            self.send_current()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Everything the encoding thread needs.
pub(crate) struct EncodeJob {
    pub pg_dump: Child,
    pub pg_dump_stderr: StderrTail,
    /// Disarmed before pg_dump is waited for; a cancelled backup kills pg_dump through it.
    pub pg_dump_killer: Arc<ToolKiller>,
    pub recipients: Vec<Recipient>,
    pub compression_level: i32,
    pub part_size_bytes: u64,
    pub parts: mpsc::Sender<Bytes>,
    pub progress: Arc<dyn Progress>,
}

fn io_to_encode_error(error: io::Error) -> EncodeError {
    if !error
        .get_ref()
        .is_some_and(|inner| inner.is::<EncodeError>())
    {
        return EncodeError::Encode(error);
    }
    match error
        .into_inner()
        .map(|inner| inner.downcast::<EncodeError>())
    {
        Some(Ok(encode_error)) => *encode_error,
        _ => EncodeError::Encode(io::Error::other("the encoder failed")),
    }
}

/// Run on a blocking thread. On any failure pg_dump is killed.
pub(crate) fn encode_dump(mut job: EncodeJob) -> Result<EncodedDump, EncodeError> {
    let result = encode_stream(&mut job);
    if result.is_err() {
        let _ = job.pg_dump.kill();
        job.pg_dump_killer.disarm();
        let _ = job.pg_dump.wait();
    }
    result
}

fn encode_stream(job: &mut EncodeJob) -> Result<EncodedDump, EncodeError> {
    let part_size_bytes = job.part_size_bytes as usize;
    let part_writer = PartWriter {
        part_size_bytes,
        current: BytesMut::with_capacity(part_size_bytes),
        hasher: Sha256::new(),
        stored_bytes: 0,
        part_count: 0,
        parts: job.parts.clone(),
    };
    let encryptor = age::Encryptor::with_recipients(
        job.recipients
            .iter()
            .map(|recipient| recipient.age_recipient() as &dyn age::Recipient),
    )
    .map_err(|error| EncodeError::Recipients(error.to_string()))?;
    let age_writer = encryptor
        .wrap_output(part_writer)
        .map_err(io_to_encode_error)?;
    let mut zstd_writer = zstd::stream::write::Encoder::new(age_writer, job.compression_level)
        .map_err(EncodeError::Encode)?;
    zstd_writer
        .include_checksum(true)
        .map_err(EncodeError::Encode)?;

    let mut stdout = job
        .pg_dump
        .stdout
        .take()
        .ok_or_else(|| EncodeError::ReadDump(io::Error::other("pg_dump has no stdout pipe")))?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut dump_bytes = 0u64;
    loop {
        let read = match stdout.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(EncodeError::ReadDump(error)),
        };
        dump_bytes += read as u64;
        zstd_writer
            .write_all(&buffer[..read])
            .map_err(io_to_encode_error)?;
        job.progress.add_bytes(read as u64);
    }
    // pg_dump closed its output: it must have succeeded before the last part leaves, so
    // a failed dump can never be completed in any region.
    job.pg_dump_killer.disarm();
    postgres::wait_for_tool("pg_dump", &mut job.pg_dump, &job.pg_dump_stderr)?;

    let age_writer = zstd_writer.finish().map_err(io_to_encode_error)?;
    let mut part_writer = age_writer.finish().map_err(io_to_encode_error)?;
    if !part_writer.current.is_empty() {
        part_writer.send_current().map_err(io_to_encode_error)?;
    }
    Ok(EncodedDump {
        dump_bytes,
        stored_bytes: part_writer.stored_bytes,
        sha256: hex::encode(part_writer.hasher.finalize()),
        part_count: part_writer.part_count,
    })
}
