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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ids::RegionName;
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
    /// The dump or its encoding failed before anything was sent; the encoder says why.
    #[error("the dump failed before anything was sent")]
    SourceFailed,
    #[error("fewer than {min_regions} regions are still taking the backup")]
    TooFewRegions {
        min_regions: usize,
        available: usize,
        /// Why each dropped region was dropped.
        dropped: Vec<(RegionName, String)>,
    },
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct FanOutLimits {
    pub min_regions: usize,
    pub max_region_lag_parts: usize,
    pub patience: Duration,
}

impl FanOutLimits {
    /// How long the other regions get once `min_regions` have finished a step.
    pub(crate) fn straggler_allowance(&self) -> Duration {
        // Checked: both come from the configuration.
        self.patience
            .saturating_mul(u32::try_from(self.max_region_lag_parts).unwrap_or(u32::MAX))
    }
}

type UploaderResult = Result<Vec<(i32, String)>, RegionError>;

struct RegionLane {
    upload: OpenUpload,
    parts: Option<mpsc::UnboundedSender<(i32, Bytes)>>,
    stored_parts: Arc<AtomicU64>,
    /// Kept to abort the uploader; its result arrives through `result`.
    task: Option<JoinHandle<()>>,
    /// Filled by the uploader just before it notifies, so whoever is woken finds it.
    result: Arc<Mutex<Option<UploaderResult>>>,
    /// Every part's etag, once the uploader has finished.
    finished: Option<Vec<(i32, String)>>,
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
) -> UploaderResult {
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
    result?;
    etags.sort_unstable_by_key(|(number, _)| *number);
    Ok(etags)
}

/// Send `first_parts`, then every part from `parts`, to every upload; returns each
/// upload's outcome, in order. On failure every uploader is stopped and the uploads are
/// handed back to be aborted.
pub(crate) async fn fan_out(
    uploads: Vec<OpenUpload>,
    first_parts: Vec<Bytes>,
    mut parts: mpsc::Receiver<Bytes>,
    limits: FanOutLimits,
    cancel: &CancellationToken,
) -> Result<Vec<(OpenUpload, UploadOutcome)>, (Vec<OpenUpload>, FanOutError)> {
    let progress = Arc::new(Notify::new());
    let mut lanes = start_lanes(uploads, &progress);
    let sent = send_every_part(
        &mut lanes,
        first_parts,
        &mut parts,
        limits,
        &progress,
        cancel,
    )
    .await;
    let finished = match sent {
        Ok(parts_sent) => wait_for_last_parts(&mut lanes, parts_sent, limits, &progress, cancel)
            .await
            .map(|()| parts_sent),
        Err(error) => Err(error),
    };
    match finished {
        Ok(parts_sent) => Ok(outcomes(lanes, parts_sent)),
        Err(error) => {
            stop_every_uploader(&mut lanes);
            Err((lanes.into_iter().map(|lane| lane.upload).collect(), error))
        }
    }
}

/// One uploader task per upload, each reporting on `progress`.
fn start_lanes(uploads: Vec<OpenUpload>, progress: &Arc<Notify>) -> Vec<RegionLane> {
    uploads
        .into_iter()
        .map(|upload| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let stored_parts = Arc::new(AtomicU64::new(0));
            let result = Arc::new(Mutex::new(None));
            let uploader = upload_parts(
                upload.clone(),
                receiver,
                stored_parts.clone(),
                progress.clone(),
            );
            let task_result = result.clone();
            let task_progress = progress.clone();
            let task = tokio::spawn(async move {
                let outcome = uploader.await;
                if let Ok(mut slot) = task_result.lock() {
                    *slot = Some(outcome);
                }
                task_progress.notify_one();
            });
            RegionLane {
                upload,
                parts: Some(sender),
                stored_parts,
                task: Some(task),
                result,
                finished: None,
                dropped: None,
            }
        })
        .collect()
}

fn stop_every_uploader(lanes: &mut [RegionLane]) {
    for lane in lanes {
        if let Some(task) = lane.task.take() {
            task.abort();
        }
    }
}

/// Hand every part to every live lane, pacing after each part ([`wait_for_pace`]).
/// Returns how many parts were sent.
async fn send_every_part(
    lanes: &mut [RegionLane],
    first_parts: Vec<Bytes>,
    parts: &mut mpsc::Receiver<Bytes>,
    limits: FanOutLimits,
    progress: &Notify,
    cancel: &CancellationToken,
) -> Result<u64, FanOutError> {
    let mut parts_sent: u64 = 0;
    let mut first_parts = first_parts.into_iter();
    loop {
        let part = match first_parts.next() {
            Some(part) => Some(part),
            None => tokio::select! {
                part = parts.recv() => part,
                () = cancel.cancelled() => return Err(FanOutError::Cancelled),
            },
        };
        let Some(part) = part else {
            return Ok(parts_sent);
        };
        parts_sent += 1;
        let part_number = parts_sent as i32;
        for lane in lanes.iter_mut().filter(|lane| lane.is_live()) {
            if let Some(sender) = &lane.parts {
                // A closed channel means the task ended: the pacing below reaps it.
                let _ = sender.send((part_number, part.clone()));
            }
        }
        drop(part);
        wait_for_pace(lanes, parts_sent, limits, progress, cancel).await?;
    }
}

/// After a part is handed over: wait until every live lane's lag is within the in-flight
/// window, or, once `min_regions` are, at most `limits.patience` for the rest. A lane
/// more than window + `max_region_lag_parts` behind is dropped; with fewer than
/// `min_regions` left the backup cannot commit.
async fn wait_for_pace(
    lanes: &mut [RegionLane],
    parts_sent: u64,
    limits: FanOutLimits,
    progress: &Notify,
    cancel: &CancellationToken,
) -> Result<(), FanOutError> {
    let window = policy::UPLOADS_IN_FLIGHT_PER_REGION as u64;
    let drop_lag = window + limits.max_region_lag_parts as u64;
    let mut quorum_ready_since: Option<Instant> = None;
    loop {
        collect_finished_lanes(lanes, true);
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
            return Err(FanOutError::TooFewRegions {
                min_regions: limits.min_regions,
                available: lags.len(),
                dropped: lanes
                    .iter()
                    .filter_map(|lane| {
                        let reason = lane.dropped.clone()?;
                        Some((lane.upload.region.name().clone(), reason))
                    })
                    .collect(),
            });
        }
        lags.sort_unstable();
        if lags.last().is_some_and(|slowest| *slowest <= window) {
            return Ok(());
        }
        let quorum_ready = lags[limits.min_regions - 1] <= window;
        let patience_deadline = if quorum_ready {
            let since = *quorum_ready_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= limits.patience {
                return Ok(());
            }
            Some(since + limits.patience)
        } else {
            quorum_ready_since = None;
            None
        };
        tokio::select! {
            () = progress.notified() => {}
            () = crate::stragglers::sleep_until_optional(patience_deadline) => {}
            () = cancel.cancelled() => return Err(FanOutError::Cancelled),
        }
    }
}

/// All parts sent: close the channels and wait for each live lane to store the rest.
/// Once `min_regions` hold everything, the others get the straggler allowance and are
/// then dropped, so a stalled region cannot hold the commit up until its requests time
/// out. Fails only when cancelled.
async fn wait_for_last_parts(
    lanes: &mut [RegionLane],
    parts_sent: u64,
    limits: FanOutLimits,
    progress: &Notify,
    cancel: &CancellationToken,
) -> Result<(), FanOutError> {
    for lane in lanes.iter_mut() {
        lane.parts = None;
    }
    let straggler_allowance = limits.straggler_allowance();
    let mut quorum_finished_since: Option<Instant> = None;
    loop {
        collect_finished_lanes(lanes, false);
        let finished = lanes.iter().filter(|lane| lane.finished.is_some()).count();
        let pending = lanes
            .iter()
            .filter(|lane| lane.is_live() && lane.finished.is_none())
            .count();
        if pending == 0 {
            return Ok(());
        }
        let deadline = if finished >= limits.min_regions {
            let since = *quorum_finished_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= straggler_allowance {
                for lane in lanes
                    .iter_mut()
                    .filter(|lane| lane.is_live() && lane.finished.is_none())
                {
                    let lag = parts_sent - lane.stored_parts.load(Ordering::SeqCst);
                    lane.drop_with(format!(
                        "still {lag} parts behind {} s after the other regions had finished",
                        straggler_allowance.as_secs()
                    ));
                }
                return Ok(());
            }
            Some(since + straggler_allowance)
        } else {
            None
        };
        tokio::select! {
            () = progress.notified() => {}
            () = crate::stragglers::sleep_until_optional(deadline) => {}
            () = cancel.cancelled() => return Err(FanOutError::Cancelled),
        }
    }
}

/// How each lane ended: stored (every part's etag) or dropped, with the reason.
fn outcomes(lanes: Vec<RegionLane>, parts_sent: u64) -> Vec<(OpenUpload, UploadOutcome)> {
    lanes
        .into_iter()
        .map(|lane| {
            let outcome = match (lane.dropped, lane.finished) {
                (Some(reason), _) => UploadOutcome::Dropped(reason),
                (None, Some(etags)) if etags.len() as u64 == parts_sent => {
                    UploadOutcome::Stored(etags)
                }
                (None, Some(etags)) => {
                    UploadOutcome::Dropped(format!("stored {} of {parts_sent} parts", etags.len()))
                }
                (None, None) => UploadOutcome::Dropped("uploader stopped".to_owned()),
            };
            (lane.upload, outcome)
        })
        .collect()
}

/// Collect every live lane whose uploader has ended: with an error it is dropped; without
/// one it has finished, which before the last part (`more_parts`) is itself an error.
fn collect_finished_lanes(lanes: &mut [RegionLane], more_parts: bool) {
    for lane in lanes.iter_mut().filter(|lane| lane.is_live()) {
        let Some(result) = lane.result.lock().ok().and_then(|mut slot| slot.take()) else {
            continue;
        };
        lane.task = None;
        match result {
            Ok(etags) if !more_parts => lane.finished = Some(etags),
            Ok(_) => lane.drop_with("uploader ended early".to_owned()),
            Err(error) => lane.drop_with(error.to_string()),
        }
    }
}
