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

/// Run `requests` (one per region) at once. Once `min_ok` have succeeded, the others get
/// `allowance` more, and those still running then are given up (`None`): a wedged region
/// costs a bounded wait, not the SDK's request timeout. Also returns whether `cancel`
/// stopped it, with what had finished by then.
pub(crate) async fn join_bounded<T, F>(
    requests: Vec<F>,
    min_ok: usize,
    allowance: Duration,
    cancel: &CancellationToken,
) -> (Vec<Option<Result<T, String>>>, bool)
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
    loop {
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
                None => return (finished, false),
            },
            () = sleep_until_optional(deadline) => return (finished, false),
            () = cancel.cancelled() => return (finished, true),
        }
    }
}

/// Sleep until `deadline`, or for ever without one.
pub(crate) async fn sleep_until_optional(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
