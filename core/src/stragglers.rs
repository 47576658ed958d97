//! Waiting on every region without letting a wedged one set the pace.
//!
//! A region that accepts connections but never answers costs the SDK's whole request
//! timeout (minutes, with retries). Wherever lifeboat asks every region the same thing,
//! it waits for all of them only until enough have answered, then gives the rest a
//! bounded allowance.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Run `requests` (one per region) at once and return their results in order. Once
/// `min_ok` have succeeded, the others get `allowance` more; one still running then is
/// given up, its result an error that says `still_doing` (e.g. "still storing the
/// object") and for how long. So a wedged region costs a bounded wait, not the SDK's
/// request timeout. If `cancel` fires first, what had not finished is an error
/// "cancelled", and the flag returned is true.
pub(crate) async fn join_bounded<T, F>(
    requests: Vec<F>,
    min_ok: usize,
    allowance: Duration,
    still_doing: &str,
    cancel: Option<&CancellationToken>,
) -> (Vec<Result<T, String>>, bool)
where
    F: Future<Output = Result<T, String>>,
{
    let mut finished: Vec<Option<Result<T, String>>> = std::iter::repeat_with(|| None)
        .take(requests.len())
        .collect();
    let mut pending: FuturesUnordered<_> = requests
        .into_iter()
        .enumerate()
        .map(|(index, request)| async move { (index, request.await) })
        .collect();
    let mut quorum_since: Option<Instant> = None;
    let cancelled = loop {
        let succeeded = finished
            .iter()
            .filter(|result| matches!(result, Some(Ok(_))))
            .count();
        if succeeded >= min_ok {
            quorum_since.get_or_insert_with(Instant::now);
        }
        let deadline = quorum_since.map(|since| since + allowance);
        tokio::select! {
            next = pending.next() => match next {
                Some((index, result)) => finished[index] = Some(result),
                None => break false,
            },
            () = sleep_until_optional(deadline) => break false,
            () = cancelled(cancel) => break true,
        }
    };
    let results = finished
        .into_iter()
        .map(|result| {
            result.unwrap_or_else(|| {
                Err(if cancelled {
                    "cancelled".to_owned()
                } else {
                    format!(
                        "{still_doing} {} s after the other regions had answered",
                        allowance.as_secs()
                    )
                })
            })
        })
        .collect();
    (results, cancelled)
}

async fn cancelled(cancel: Option<&CancellationToken>) {
    match cancel {
        Some(cancel) => cancel.cancelled().await,
        None => std::future::pending().await,
    }
}

/// Sleep until `deadline`, or for ever without one.
pub(crate) async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
