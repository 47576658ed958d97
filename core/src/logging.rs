//! The log filter every lifeboat process uses: the operator's (`LIFEBOAT_LOG`), with the
//! directives that keep secrets out of the log whatever level was asked for.
//!
//! tokio-postgres logs every statement's parameters at DEBUG (`tokio_postgres::query`),
//! and our statements carry session CSRF tokens, TOTP secrets and role password
//! verifiers; so that target never goes below INFO, even under `LIFEBOAT_LOG=trace`.

use tracing_subscriber::EnvFilter;

/// Directives added after the operator's, so they win.
pub const SECRET_SAFE_DIRECTIVES: &[&str] = &["tokio_postgres::query=info"];

/// The default when `LIFEBOAT_LOG` is not set: warnings, without the embedded demo
/// regions' own request logs (s3s logs every 501 it answers as an error).
pub const DEFAULT_FILTER: &str = "warn,s3s=off";

/// `spec` (an `EnvFilter` directive list) made safe; an unparsable one falls back to the
/// default, made safe too.
pub fn log_filter(spec: &str) -> EnvFilter {
    let safe = |spec: &str| {
        let mut full = spec.to_owned();
        for directive in SECRET_SAFE_DIRECTIVES {
            if !full.is_empty() {
                full.push(',');
            }
            full.push_str(directive);
        }
        EnvFilter::try_new(full)
    };
    safe(spec)
        .or_else(|_| safe(DEFAULT_FILTER))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// The filter from `LIFEBOAT_LOG`, or the default.
pub fn log_filter_from_env() -> EnvFilter {
    log_filter(&std::env::var("LIFEBOAT_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_owned()))
}
