//! `/metrics` in the Prometheus text format, computed from the catalog at each scrape.
//!
//! Everything is a gauge read from the catalog, so two controllers report the same values
//! and a restart loses nothing. Label values are tenant, region and job-kind names, all
//! slugs (validated where they enter), so they need no escaping beyond what `label` does.

use std::fmt::Write as _;

use lifeboat_core::api::JobKind;
use lifeboat_core::ids::RegionName;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::catalog::{Catalog, CatalogError, query_error};

/// A label value, escaped as the text format requires.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
}

/// One gauge with a `tenant` label: the tenant's name is column 0 of each row, the value
/// column `column`.
fn tenant_gauge<V>(out: &mut String, name: &str, help: &str, rows: &[Row], column: usize)
where
    V: for<'a> FromSql<'a> + std::fmt::Display,
{
    header(out, name, help);
    for row in rows {
        let value: V = row.get(column);
        let _ = writeln!(out, "{name}{{tenant=\"{}\"}} {value}", label(row.get(0)));
    }
}

/// Render every metric.
pub async fn render(catalog: &Catalog, regions: &[RegionName]) -> Result<String, CatalogError> {
    let connection = catalog.connection().await?;
    let mut out = String::new();

    let newest = connection
        .query(
            "SELECT DISTINCT ON (tenant) tenant,
                    extract(epoch FROM finished_at)::float8,
                    extract(epoch FROM finished_at - started_at)::float8,
                    stored_bytes
             FROM backups WHERE trashed_at IS NULL
             ORDER BY tenant, finished_at DESC",
            &[],
        )
        .await
        .map_err(query_error("metrics: newest backups"))?;
    tenant_gauge::<f64>(
        &mut out,
        "lifeboat_tenant_last_backup_timestamp_seconds",
        "When the tenant's newest backup was committed (Unix time).",
        &newest,
        1,
    );
    tenant_gauge::<f64>(
        &mut out,
        "lifeboat_tenant_last_backup_duration_seconds",
        "How long the tenant's newest backup took.",
        &newest,
        2,
    );
    tenant_gauge::<i64>(
        &mut out,
        "lifeboat_tenant_last_backup_stored_bytes",
        "Bytes of the tenant's newest backup, as stored in each region.",
        &newest,
        3,
    );

    let verified = connection
        .query(
            "SELECT DISTINCT ON (tenant) tenant, extract(epoch FROM started_at)::float8
             FROM backups WHERE trashed_at IS NULL AND verified_at IS NOT NULL
             ORDER BY tenant, started_at DESC",
            &[],
        )
        .await
        .map_err(query_error("metrics: newest verified backups"))?;
    let drilled = connection
        .query(
            "SELECT DISTINCT ON (tenant) tenant,
                    extract(epoch FROM finished_at - started_at)::float8
             FROM drills WHERE outcome = 'verified'
             ORDER BY tenant, finished_at DESC",
            &[],
        )
        .await
        .map_err(query_error("metrics: newest drills"))?;
    tenant_gauge::<f64>(
        &mut out,
        "lifeboat_tenant_last_verified_backup_timestamp_seconds",
        "When the tenant's newest backup that a drill verified was taken (Unix time).",
        &verified,
        1,
    );
    tenant_gauge::<f64>(
        &mut out,
        "lifeboat_tenant_last_drill_duration_seconds",
        "How long the tenant's newest verified drill took to restore and verify.",
        &drilled,
        1,
    );

    let failures = connection
        .query(
            "SELECT c.region, count(*) FROM backup_copies c JOIN backups b ON b.id = c.backup_id
             WHERE c.state <> 'present' AND b.trashed_at IS NULL GROUP BY c.region",
            &[],
        )
        .await
        .map_err(query_error("metrics: copy failures"))?;
    header(
        &mut out,
        "lifeboat_region_copy_failures",
        "Live backups whose copy in the region is missing or corrupt.",
    );
    for region in regions {
        let count: i64 = failures
            .iter()
            .find(|row| row.get::<_, &str>(0) == region.as_str())
            .map_or(0, |row| row.get(1));
        let _ = writeln!(
            out,
            "lifeboat_region_copy_failures{{region=\"{}\"}} {count}",
            label(region.as_str())
        );
    }

    let jobs = connection
        .query(
            "SELECT kind, state, count(*) FROM jobs
             WHERE state IN ('queued', 'running')
                OR (state = 'failed' AND finished_at > now() - interval '1 day')
             GROUP BY kind, state",
            &[],
        )
        .await
        .map_err(query_error("metrics: jobs"))?;
    for (name, help, state) in [
        (
            "lifeboat_queue_depth",
            "Jobs waiting to be claimed, by kind.",
            "queued",
        ),
        (
            "lifeboat_jobs_running",
            "Jobs being worked on, by kind.",
            "running",
        ),
        (
            "lifeboat_jobs_failed",
            "Jobs that failed after their last attempt in the last 24 hours, by kind.",
            "failed",
        ),
    ] {
        header(&mut out, name, help);
        for kind in JobKind::ALL {
            let count: i64 = jobs
                .iter()
                .find(|row| {
                    row.get::<_, &str>(0) == kind.as_str() && row.get::<_, &str>(1) == state
                })
                .map_or(0, |row| row.get(2));
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {count}");
        }
    }
    Ok(out)
}
