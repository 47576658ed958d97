//! `/metrics` in the Prometheus text format (version 0.0.4), computed from the catalog at
//! each scrape.
//!
//! Every value is read from the catalog, so two controllers report the same values and a
//! restart loses nothing. The gauges describe the catalog as it is now; the one counter,
//! `lifeboat_scrub_bad_copies_total`, is a running total the catalog itself keeps
//! (`scrub_findings`, added to by [`crate::scrub::apply_scrub_result`]), because the copies'
//! states forget a bad copy as soon as repair replaces it.
//!
//! The values are read first (async queries), then handed to prometheus-client as a
//! [`Collector`] of constant metrics, which writes the HELP and TYPE lines, the `_total`
//! suffix of counters and the escaping of label values. Samples come in a stable order
//! (tenants by name, regions as configured, job kinds as declared), so two scrapes diff
//! cleanly.

use lifeboat_core::api::JobKind;
use lifeboat_core::ids::RegionName;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio_postgres::Row;

use crate::catalog::{Catalog, CatalogError, query_error};

/// The `Content-Type` of what [`render`] returns: the Prometheus text format, version 0.0.4.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Render every metric.
pub async fn render(catalog: &Catalog, regions: &[RegionName]) -> Result<String, CatalogError> {
    let families = read_families(catalog, regions).await?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(CatalogFigures { families }));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).map_err(
        |error| CatalogError::Inconsistent(format!("encoding the metrics failed: {error}")),
    )?;
    Ok(text)
}

/// The values of one metric, each with the value of the metric's one label.
#[derive(Debug)]
enum Samples {
    /// A gauge of a count or of bytes.
    WholeGauge(Vec<(String, i64)>),
    /// A gauge of a time or a duration, in seconds.
    SecondsGauge(Vec<(String, f64)>),
    /// A counter: only ever grows.
    Counter(Vec<(String, u64)>),
}

/// One metric: name, help and its samples.
#[derive(Debug)]
struct MetricFamily {
    /// The exposed name; for a counter, without the `_total` the encoder appends.
    name: &'static str,
    help: &'static str,
    /// The one label each sample carries: `tenant`, `region` or `kind`.
    label: &'static str,
    samples: Samples,
}

impl MetricFamily {
    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        match &self.samples {
            Samples::WholeGauge(samples) => self.encode_samples(encoder, samples, ConstGauge::new),
            Samples::SecondsGauge(samples) => {
                self.encode_samples(encoder, samples, ConstGauge::new)
            }
            Samples::Counter(samples) => self.encode_samples(encoder, samples, ConstCounter::new),
        }
    }

    /// The HELP and TYPE lines, then one line per sample.
    fn encode_samples<Value: Copy, Metric: EncodeMetric + TypedMetric>(
        &self,
        encoder: &mut DescriptorEncoder,
        samples: &[(String, Value)],
        metric_of: impl Fn(Value) -> Metric,
    ) -> Result<(), std::fmt::Error> {
        let mut metric_encoder =
            encoder.encode_descriptor(self.name, self.help, None, Metric::TYPE)?;
        for (label_value, value) in samples {
            let labels = [(self.label, label_value.as_str())];
            metric_of(*value).encode(metric_encoder.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// What one scrape read from the catalog, ready to encode.
#[derive(Debug)]
struct CatalogFigures {
    families: Vec<MetricFamily>,
}

impl Collector for CatalogFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.families {
            family.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// Read every metric's samples from the catalog.
async fn read_families(
    catalog: &Catalog,
    regions: &[RegionName],
) -> Result<Vec<MetricFamily>, CatalogError> {
    let connection = catalog.connection().await?;
    let mut families = Vec::new();

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
    families.push(tenant_family(
        "lifeboat_tenant_last_backup_timestamp_seconds",
        "When the tenant's newest backup was committed (Unix time).",
        Samples::SecondsGauge(by_tenant(&newest, 1)),
    ));
    families.push(tenant_family(
        "lifeboat_tenant_last_backup_duration_seconds",
        "How long the tenant's newest backup took.",
        Samples::SecondsGauge(by_tenant(&newest, 2)),
    ));
    families.push(tenant_family(
        "lifeboat_tenant_last_backup_stored_bytes",
        "Bytes of the tenant's newest backup, as stored in each region.",
        Samples::WholeGauge(by_tenant(&newest, 3)),
    ));

    let verified = connection
        .query(
            "SELECT DISTINCT ON (tenant) tenant, extract(epoch FROM started_at)::float8
             FROM backups WHERE trashed_at IS NULL AND verified_at IS NOT NULL
             ORDER BY tenant, started_at DESC",
            &[],
        )
        .await
        .map_err(query_error("metrics: newest verified backups"))?;
    families.push(tenant_family(
        "lifeboat_tenant_last_verified_backup_timestamp_seconds",
        "When the tenant's newest backup that a drill verified was taken (Unix time).",
        Samples::SecondsGauge(by_tenant(&verified, 1)),
    ));
    let recovery = crate::drills::recovery_health(&**connection, None).await?;
    let per_tenant = |value: fn(&crate::drills::RecoveryHealth) -> f64| -> Vec<(String, f64)> {
        recovery
            .iter()
            .map(|health| (health.tenant.clone(), value(health)))
            .collect()
    };
    families.push(tenant_family(
        "lifeboat_tenant_last_drill_duration_seconds",
        "How long the tenant's newest verified drill took to restore and verify (the measured recovery time).",
        Samples::SecondsGauge(per_tenant(|health| health.recovery_seconds)),
    ));
    families.push(tenant_family(
        "lifeboat_tenant_last_restorable_timestamp_seconds",
        "When a drill last proved the tenant restorable (Unix time).",
        Samples::SecondsGauge(per_tenant(|health| {
            health.last_verified_at.timestamp_millis() as f64 / 1000.0
        })),
    ));
    families.push(tenant_family(
        "lifeboat_tenant_drill_duration_median_seconds",
        "The median recovery time of the tenant's last 7 verified drills (the trend).",
        Samples::SecondsGauge(per_tenant(|health| health.median_seconds)),
    ));
    families.push(tenant_family(
        "lifeboat_tenant_drill_slow",
        "1 when the tenant's newest verified drill took over 1.5 times the median of the ones before it.",
        Samples::WholeGauge(
            recovery
                .iter()
                .map(|health| (health.tenant.clone(), i64::from(health.slow)))
                .collect(),
        ),
    ));

    let failures = connection
        .query(
            "SELECT c.region, count(*) FROM backup_copies c JOIN backups b ON b.id = c.backup_id
             WHERE c.state <> 'present' AND b.trashed_at IS NULL GROUP BY c.region",
            &[],
        )
        .await
        .map_err(query_error("metrics: copy failures"))?;
    families.push(MetricFamily {
        name: "lifeboat_region_copy_failures",
        help: "Live backups whose copy in the region is missing or corrupt.",
        label: "region",
        samples: Samples::WholeGauge(by_configured_region(regions, &failures)),
    });
    let findings = connection
        .query("SELECT region, bad_copies_found FROM scrub_findings", &[])
        .await
        .map_err(query_error("metrics: scrub findings"))?;
    let bad_copies_found = by_configured_region(regions, &findings)
        .into_iter()
        .map(|(region, found)| (region, u64::try_from(found).unwrap_or(0)))
        .collect();
    families.push(MetricFamily {
        name: "lifeboat_scrub_bad_copies",
        help: "Copies in the region that a scrub found missing or corrupt, ever: every \
               finding counts, a copy found bad again by a later scrub included.",
        label: "region",
        samples: Samples::Counter(bad_copies_found),
    });

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
        let samples = JobKind::ALL
            .iter()
            .map(|kind| {
                let count: i64 = jobs
                    .iter()
                    .find(|row| {
                        row.get::<_, &str>(0) == kind.as_str() && row.get::<_, &str>(1) == state
                    })
                    .map_or(0, |row| row.get(2));
                (kind.as_str().to_owned(), count)
            })
            .collect();
        families.push(MetricFamily {
            name,
            help,
            label: "kind",
            samples: Samples::WholeGauge(samples),
        });
    }
    Ok(families)
}

fn tenant_family(name: &'static str, help: &'static str, samples: Samples) -> MetricFamily {
    MetricFamily {
        name,
        help,
        label: "tenant",
        samples,
    }
}

/// `(tenant, value)` pairs: the tenant's name is column 0 of each row, the value `column`.
fn by_tenant<Value>(rows: &[Row], column: usize) -> Vec<(String, Value)>
where
    Value: for<'a> tokio_postgres::types::FromSql<'a>,
{
    rows.iter()
        .map(|row| (row.get(0), row.get(column)))
        .collect()
}

/// One count per configured region, 0 where no row names it: the region's name is column 0
/// of each row, the count column 1.
fn by_configured_region(regions: &[RegionName], rows: &[Row]) -> Vec<(String, i64)> {
    regions
        .iter()
        .map(|region| {
            let count: i64 = rows
                .iter()
                .find(|row| row.get::<_, &str>(0) == region.as_str())
                .map_or(0, |row| row.get(1));
            (region.as_str().to_owned(), count)
        })
        .collect()
}
