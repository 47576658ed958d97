//! A client of the live tenant during a swap, as the tenant's application would be: one
//! session sending `SELECT 1` every couple of milliseconds, reconnecting as soon as it can
//! when the swap ends its session. The longest time between two answered queries is the
//! offline time as the client sees it (the swap's own figure starts when it blocks new
//! connections and ends when it allows them again).

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_postgres::NoTls;
use tokio_util::sync::CancellationToken;

/// Between two queries, and between two connection attempts.
const PROBE_INTERVAL: Duration = Duration::from_millis(2);

/// What the client saw.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProbeReport {
    pub(crate) answered_queries: u64,
    pub(crate) failed_attempts: u64,
    pub(crate) sessions: u64,
    /// The longest time between two answered queries.
    pub(crate) longest_gap: Duration,
}

/// Start probing `connection_string` until `stop` is cancelled. Returns once the first
/// query was answered, so the probe is connected before the caller goes on.
pub(crate) async fn start_probe(
    connection_string: String,
    stop: CancellationToken,
) -> anyhow::Result<JoinHandle<ProbeReport>> {
    let first = connect(&connection_string).await?;
    first.simple_query("SELECT 1").await?;
    Ok(tokio::spawn(probe(connection_string, first, stop)))
}

async fn connect(connection_string: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(connection_string, NoTls).await?;
    tokio::spawn(async move {
        // The swap terminates this session: that is what is measured, not an error.
        let _ended = connection.await;
    });
    Ok(client)
}

async fn probe(
    connection_string: String,
    first: tokio_postgres::Client,
    stop: CancellationToken,
) -> ProbeReport {
    let mut report = ProbeReport {
        sessions: 1,
        ..ProbeReport::default()
    };
    let mut client = Some(first);
    let mut last_answer = Instant::now();
    while !stop.is_cancelled() {
        match &client {
            Some(session) => match session.simple_query("SELECT 1").await {
                Ok(_) => {
                    let now = Instant::now();
                    report.longest_gap = report.longest_gap.max(now - last_answer);
                    last_answer = now;
                    report.answered_queries += 1;
                }
                Err(_) => {
                    report.failed_attempts += 1;
                    client = None;
                    continue;
                }
            },
            None => match connect(&connection_string).await {
                Ok(session) => {
                    report.sessions += 1;
                    client = Some(session);
                    continue;
                }
                Err(_) => report.failed_attempts += 1,
            },
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
    report
}
