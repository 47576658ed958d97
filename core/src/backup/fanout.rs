//! Fan-out: every part goes to every region's multipart upload at once.
//!
//! Each region has an uploader task with up to [`policy::UPLOADS_IN_FLIGHT_PER_REGION`]
//! requests in flight. A region's *lag* is the number of parts handed to it and not yet
//! stored. After each part the producer waits until every live region's lag is within
//! the in-flight window: a region that is merely slower sets the pace rather than being
//! dropped. But once `min_regions` of them are ready, it waits at most the configured
//! patience for the rest, and a region whose lag passes window + `max_region_lag_parts`
//! is dropped. So a dead or stalled region costs at most a bounded number of parts of
//! waiting and of memory, and a region that errors is dropped at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::policy;
use crate::region::{Region, RegionError};

/// One region's open multipart upload.
#[derive(Debug, Clone)]
pub(crate) struct OpenUpload {
    pub region: Region,
    pub key: String,
    pub upload_id: String,
}

/// How a region's upload ended.
#[derive(Debug)]
pub(crate) enum UploadOutcome {
    /// Every part stored: `(part number, etag)` in order.
    Stored(Vec<(i32, String)>),
    /// Left behind; the reason says why.
    Dropped(String),
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FanOutError {
    #[error("cancelled")]
    Cancelled,
    #[error("fewer than {min_regions} regions are still taking the backup")]
    TooFewRegions { min_regions: usize },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FanOutLimits {
    pub min_regions: usize,
    pub max_region_lag_parts: usize,
    pub patience: Duration,
}

struct RegionLane {
    upload: OpenUpload,
    parts: Option<mpsc::UnboundedSender<(i32, Bytes)>>,
    stored_parts: Arc<AtomicU64>,
    task: Option<JoinHandle<Result<Vec<(i32, String)>, RegionError>>>,
    dropped: Option<String>,
}

impl RegionLane {
    fn is_live(&self) -> bool {
        self.dropped.is_none()
    }

    fn drop_with(&mut self, reason: String) {
        tracing::warn!(region = %self.upload.region.name(), %reason, "dropping region from backup");
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.parts = None;
        self.dropped = Some(reason);
    }
}

async fn upload_parts(
    upload: OpenUpload,
    mut parts: mpsc::UnboundedReceiver<(i32, Bytes)>,
    stored_parts: Arc<AtomicU64>,
    progress: Arc<Notify>,
) -> Result<Vec<(i32, String)>, RegionError> {
    let mut in_flight = FuturesUnordered::new();
    let mut etags = Vec::new();
    let mut more_parts = true;
    let result = loop {
        tokio::select! {
            part = parts.recv(), if more_parts && in_flight.len() < policy::UPLOADS_IN_FLIGHT_PER_REGION => {
                match part {
                    Some((number, body)) => {
                        let upload = &upload;
                        in_flight.push(async move {
                            let etag = upload.region.upload_part(&upload.key, &upload.upload_id, number, body).await?;
                            Ok::<_, RegionError>((number, etag))
                        });
                    }
                    None => more_parts = false,
                }
            }
            Some(stored) = in_flight.next(), if !in_flight.is_empty() => {
                match stored {
                    Ok(stored) => {
                        etags.push(stored);
                        stored_parts.fetch_add(1, Ordering::SeqCst);
                        progress.notify_one();
                    }
                    Err(error) => break Err(error),
                }
            }
            else => break Ok(()),
        }
    };
    drop(in_flight);
    progress.notify_one();
    result?;
    etags.sort_unstable_by_key(|(number, _)| *number);
    Ok(etags)
}

/// Send every part from `parts` to every upload; returns each upload's outcome, in order.
pub(crate) async fn fan_out(
    uploads: Vec<OpenUpload>,
    mut parts: mpsc::Receiver<Bytes>,
    limits: FanOutLimits,
    cancel: &CancellationToken,
) -> Result<Vec<(OpenUpload, UploadOutcome)>, (Vec<OpenUpload>, FanOutError)> {
    let progress = Arc::new(Notify::new());
    let mut lanes: Vec<RegionLane> = uploads
        .into_iter()
        .map(|upload| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let stored_parts = Arc::new(AtomicU64::new(0));
            let task = tokio::spawn(upload_parts(
                upload.clone(),
                receiver,
                stored_parts.clone(),
                progress.clone(),
            ));
            RegionLane {
                upload,
                parts: Some(sender),
                stored_parts,
                task: Some(task),
                dropped: None,
            }
        })
        .collect();
    let window = policy::UPLOADS_IN_FLIGHT_PER_REGION as u64;
    let drop_lag = window + limits.max_region_lag_parts as u64;
    let mut parts_sent: u64 = 0;

    let failure = 'parts: loop {
        let part = tokio::select! {
            part = parts.recv() => part,
            () = cancel.cancelled() => break 'parts Some(FanOutError::Cancelled),
        };
        let Some(part) = part else { break 'parts None };
        parts_sent += 1;
        let part_number = parts_sent as i32;
        for lane in lanes.iter_mut().filter(|lane| lane.is_live()) {
            if let Some(sender) = &lane.parts {
                // A closed channel means the task ended: the check below reaps it.
                let _ = sender.send((part_number, part.clone()));
            }
        }
        drop(part);

        let mut quorum_ready_since: Option<Instant> = None;
        loop {
            reap_failed_lanes(&mut lanes).await;
            for lane in lanes.iter_mut().filter(|lane| lane.is_live()) {
                let lag = parts_sent - lane.stored_parts.load(Ordering::SeqCst);
                if lag > drop_lag {
                    lane.drop_with(format!("fell {lag} parts behind the other regions"));
                }
            }
            let mut lags: Vec<u64> = lanes
                .iter()
                .filter(|lane| lane.is_live())
                .map(|lane| parts_sent - lane.stored_parts.load(Ordering::SeqCst))
                .collect();
            if lags.len() < limits.min_regions {
                break 'parts Some(FanOutError::TooFewRegions {
                    min_regions: limits.min_regions,
                });
            }
            lags.sort_unstable();
            if lags.last().is_some_and(|slowest| *slowest <= window) {
                break;
            }
            let quorum_ready = lags[limits.min_regions - 1] <= window;
            let patience_deadline = if quorum_ready {
                let since = *quorum_ready_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= limits.patience {
                    break;
                }
                Some(since + limits.patience)
            } else {
                quorum_ready_since = None;
                None
            };
            tokio::select! {
                () = progress.notified() => {}
                () = sleep_until_optional(patience_deadline) => {}
                () = cancel.cancelled() => break 'parts Some(FanOutError::Cancelled),
            }
        }
    };

    if let Some(error) = failure {
        for lane in &mut lanes {
            if let Some(task) = lane.task.take() {
                task.abort();
            }
        }
        return Err((lanes.into_iter().map(|lane| lane.upload).collect(), error));
    }

    // All parts sent: close the channels and wait for each live region to store the rest.
    for lane in &mut lanes {
        lane.parts = None;
    }
    let mut outcomes = Vec::with_capacity(lanes.len());
    for mut lane in lanes {
        let outcome = match (lane.dropped.take(), lane.task.take()) {
            (Some(reason), _) => UploadOutcome::Dropped(reason),
            (None, Some(task)) => match task.await {
                Ok(Ok(etags)) if etags.len() as u64 == parts_sent => UploadOutcome::Stored(etags),
                Ok(Ok(etags)) => {
                    UploadOutcome::Dropped(format!("stored {} of {parts_sent} parts", etags.len()))
                }
                Ok(Err(error)) => UploadOutcome::Dropped(error.to_string()),
                Err(join_error) => {
                    UploadOutcome::Dropped(format!("uploader stopped: {join_error}"))
                }
            },
            (None, None) => UploadOutcome::Dropped("uploader stopped".to_owned()),
        };
        outcomes.push((lane.upload, outcome));
    }
    Ok(outcomes)
}

/// Drop every live lane whose task has already ended: before the channel closes, a task
/// only ends on an error.
async fn reap_failed_lanes(lanes: &mut [RegionLane]) {
    for lane in lanes.iter_mut().filter(|lane| lane.is_live()) {
        if !lane.task.as_ref().is_some_and(JoinHandle::is_finished) {
            continue;
        }
        let Some(task) = lane.task.take() else {
            continue;
        };
        let reason = match task.await {
            Ok(Err(error)) => error.to_string(),
            Ok(Ok(_)) => "uploader ended early".to_owned(),
            Err(join_error) => format!("uploader stopped: {join_error}"),
        };
        lane.drop_with(reason);
    }
}

async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
