//! Getting the encoded object into every region.
//!
//! Nothing is opened in any region until the encoder has produced two parts or finished.
//! An object of one part (most small tenants) then goes up whole, with one PutObject per
//! region: one request instead of create, part and complete, and nothing left open if
//! the process dies. A larger one opens a multipart upload in every region and is fanned
//! out part by part (see [`super::fanout`]). A dump that fails before its first part is
//! out leaves nothing in any region. At most two parts wait while the uploads open.

use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::encode::{EncodeError, EncodedDump};
use super::fanout::{self, FanOutError, FanOutLimits, OpenUpload, UploadOutcome};
use crate::ids::RegionName;
use crate::region::Region;

/// How the object reached the regions, before anything is committed.
#[derive(Debug)]
pub(crate) enum Sent {
    /// One part, already whole in `stored`; the others may hold a stray copy.
    Whole {
        stored: Vec<Region>,
        not_stored: Vec<Region>,
    },
    /// Each region's multipart upload and how it ended; the stored ones wait to be
    /// completed.
    Multipart(Vec<(OpenUpload, UploadOutcome)>),
}

impl Sent {
    /// Undo everything: abort every upload, delete every whole object.
    pub(crate) fn into_cleanup(self) -> Cleanup {
        match self {
            Sent::Whole { stored, not_stored } => Cleanup {
                uploads: Vec::new(),
                objects_in: stored.into_iter().chain(not_stored).collect(),
            },
            Sent::Multipart(outcomes) => Cleanup {
                uploads: outcomes.into_iter().map(|(upload, _)| upload).collect(),
                objects_in: Vec::new(),
            },
        }
    }
}

/// What a backup that will not commit (or a region it dropped) leaves to undo.
#[derive(Debug, Default)]
pub(crate) struct Cleanup {
    pub uploads: Vec<OpenUpload>,
    /// Regions that hold, or may hold, the whole object.
    pub objects_in: Vec<Region>,
}

impl Cleanup {
    async fn run(&self, key: &str) {
        let aborts = self.uploads.iter().map(|upload| async move {
            if let Err(error) = upload
                .region
                .abort_multipart_upload(&upload.key, &upload.upload_id)
                .await
            {
                tracing::warn!(region = %upload.region.name(), %error, "could not abort upload; scrub will");
            }
        });
        let deletes = self.objects_in.iter().map(|region| async move {
            if let Err(error) = region.delete_object(key).await {
                tracing::warn!(region = %region.name(), %error, "could not delete uncommitted object");
            }
        });
        futures::join!(join_all(aborts), join_all(deletes));
    }

    /// Like [`Cleanup::run`], but a dead region may not hold things up beyond `limit`.
    pub(crate) async fn run_with_timeout(self, key: String, limit: Duration) {
        if self.uploads.is_empty() && self.objects_in.is_empty() {
            return;
        }
        if tokio::time::timeout(limit, self.run(&key)).await.is_err() {
            tracing::warn!("cleaning up dropped regions timed out; scrub will");
        }
    }
}

/// Why nothing may be committed, and what to undo.
#[derive(Debug)]
pub(crate) struct NotSent {
    pub error: FanOutError,
    pub cleanup: Cleanup,
}

pub(crate) struct SendJob<'a> {
    pub regions: &'a [Region],
    pub key: &'a str,
    pub parts: mpsc::Receiver<Bytes>,
    pub encoder: JoinHandle<Result<EncodedDump, EncodeError>>,
    pub limits: FanOutLimits,
    pub cancel: &'a CancellationToken,
}

/// Send the object to every region; returns how that went and the encoder's result,
/// which is only taken once the encoder can no longer block. Regions refused or dropped
/// along the way are added to `failures`.
pub(crate) async fn send_object(
    job: SendJob<'_>,
    failures: &mut Vec<(RegionName, String)>,
) -> (Result<Sent, NotSent>, Result<EncodedDump, EncodeError>) {
    let SendJob {
        regions,
        key,
        mut parts,
        encoder,
        limits,
        cancel,
    } = job;
    let mut first_parts = Vec::with_capacity(2);
    let cancelled = 'peek: {
        while first_parts.len() < 2 {
            tokio::select! {
                part = parts.recv() => match part {
                    Some(part) => first_parts.push(part),
                    None => break 'peek false,
                },
                () = cancel.cancelled() => break 'peek true,
            }
        }
        false
    };
    if cancelled {
        drop(parts);
        let encoded = join_encoder(encoder).await;
        return (Err(not_sent(FanOutError::Cancelled)), encoded);
    }

    if first_parts.len() < 2 {
        // The encoder has finished: check it before anything leaves.
        let encoded = join_encoder(encoder).await;
        let Some(body) = first_parts.pop().filter(|_| encoded.is_ok()) else {
            return (Err(not_sent(FanOutError::SourceFailed)), encoded);
        };
        let sent = put_whole(regions, key, body, limits, cancel, failures).await;
        return (sent, encoded);
    }

    let (uploads, cancelled) = open_uploads(regions, key, limits, cancel, failures).await;
    let sent = if cancelled || uploads.len() < limits.min_regions {
        // Unblock the encoder: it is waiting to hand over its third part.
        drop(parts);
        let error = if cancelled {
            FanOutError::Cancelled
        } else {
            FanOutError::TooFewRegions {
                min_regions: limits.min_regions,
                available: uploads.len(),
                dropped: Vec::new(),
            }
        };
        Err(NotSent {
            error,
            cleanup: Cleanup {
                uploads,
                objects_in: Vec::new(),
            },
        })
    } else {
        match fanout::fan_out(uploads, first_parts, parts, limits, cancel).await {
            Ok(outcomes) => Ok(Sent::Multipart(outcomes)),
            Err((uploads, error)) => Err(NotSent {
                error,
                cleanup: Cleanup {
                    uploads,
                    objects_in: Vec::new(),
                },
            }),
        }
    };
    // The parts receiver is gone by now, so the encoder cannot block.
    (sent, join_encoder(encoder).await)
}

fn not_sent(error: FanOutError) -> NotSent {
    NotSent {
        error,
        cleanup: Cleanup::default(),
    }
}

async fn join_encoder(
    encoder: JoinHandle<Result<EncodedDump, EncodeError>>,
) -> Result<EncodedDump, EncodeError> {
    match encoder.await {
        Ok(result) => result,
        Err(join_error) => Err(EncodeError::Encode(std::io::Error::other(
            join_error.to_string(),
        ))),
    }
}

/// Open a multipart upload in every region; one that refuses, or is still opening it
/// `allowance` after `min_regions` have, is left out.
async fn open_uploads(
    regions: &[Region],
    key: &str,
    limits: FanOutLimits,
    cancel: &CancellationToken,
    failures: &mut Vec<(RegionName, String)>,
) -> (Vec<OpenUpload>, bool) {
    let allowance = limits.straggler_allowance();
    let requests = regions
        .iter()
        .map(|region| async move {
            region
                .create_multipart_upload(key)
                .await
                .map_err(|error| error.to_string())
        })
        .collect();
    let (opened, cancelled) = crate::stragglers::join_bounded(
        requests,
        limits.min_regions,
        allowance,
        "still opening the upload",
        Some(cancel),
    )
    .await;
    let mut uploads = Vec::new();
    for (region, result) in regions.iter().zip(opened) {
        match result {
            Ok(upload_id) => uploads.push(OpenUpload {
                region: region.clone(),
                key: key.to_owned(),
                upload_id,
            }),
            // One given up on that opens after all is aborted by scrub once it is stale.
            Err(reason) => {
                tracing::warn!(region = %region.name(), %reason, "region refused the upload");
                failures.push((region.name().clone(), reason));
            }
        }
    }
    (uploads, cancelled)
}

/// PutObject the whole object in every region at once. Once `min_regions` hold it, the
/// others get the same allowance as multipart stragglers, then are dropped.
async fn put_whole(
    regions: &[Region],
    key: &str,
    body: Bytes,
    limits: FanOutLimits,
    cancel: &CancellationToken,
    failures: &mut Vec<(RegionName, String)>,
) -> Result<Sent, NotSent> {
    let allowance = limits.straggler_allowance();
    let requests = regions
        .iter()
        .map(|region| {
            let body = body.clone();
            async move {
                region
                    .put_object(key, body)
                    .await
                    .map_err(|error| error.to_string())
            }
        })
        .collect();
    drop(body);
    let (finished, cancelled) = crate::stragglers::join_bounded(
        requests,
        limits.min_regions,
        allowance,
        "still storing the object",
        Some(cancel),
    )
    .await;
    if cancelled {
        return Err(NotSent {
            error: FanOutError::Cancelled,
            cleanup: Cleanup {
                uploads: Vec::new(),
                objects_in: regions.to_vec(),
            },
        });
    }

    let mut stored = Vec::new();
    let mut not_stored = Vec::new();
    for (region, result) in regions.iter().zip(finished) {
        match result {
            Ok(()) => stored.push(region.clone()),
            Err(reason) => {
                tracing::warn!(region = %region.name(), %reason, "dropping region from backup");
                failures.push((region.name().clone(), reason));
                not_stored.push(region.clone());
            }
        }
    }
    if stored.len() < limits.min_regions {
        return Err(NotSent {
            error: FanOutError::TooFewRegions {
                min_regions: limits.min_regions,
                available: stored.len(),
                dropped: Vec::new(),
            },
            cleanup: Cleanup {
                uploads: Vec::new(),
                objects_in: stored.into_iter().chain(not_stored).collect(),
            },
        });
    }
    Ok(Sent::Whole { stored, not_stored })
}
