//! The catalog the benchmark lists: the tenant under test and a few neighbours, each with a
//! history of daily backups (copies in two regions) and a drill of each, recorded through
//! the library's own functions (`tenants::add_tenant`, `backups::record_backup`,
//! `drills::record_drill`) as the controller records real ones. Nothing is uploaded: the
//! listing reads the catalog only, so the objects the rows name need not exist.

use anyhow::Context as _;
use chrono::{DateTime, Duration, Utc};
use lifeboat_controller::audit::Actor;
use lifeboat_controller::backups;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::drills::{self, DrillOutcome, DrillRecord};
use lifeboat_controller::tenants::{self, NewTenant, Retention};
use lifeboat_core::api::CopyState;
use lifeboat_core::ids::{BackupId, ClusterName, RegionName, TenantName};
use lifeboat_core::manifest::{
    BackupKind, MANIFEST_VERSION, Manifest, ObjectKey, Pipeline, Source, StoredObject,
    TableRowCount,
};

/// The regions every seeded backup has a copy in (names only: nothing is stored).
pub const REGIONS: [&str; 2] = ["eu", "us"];

/// Add `tenant` with `backups` daily backups, newest yesterday at 02:00 UTC, each drilled
/// the next morning (every tenth drill failed, the rest verified).
pub async fn seed_tenant(
    catalog: &Catalog,
    cluster: &ClusterName,
    tenant: &TenantName,
    backups: usize,
    actor: &Actor,
) -> anyhow::Result<()> {
    tenants::add_tenant(
        catalog,
        NewTenant {
            name: tenant.clone(),
            cluster: cluster.clone(),
            database: None,
            schedule: None,
            retention: Retention::default(),
        },
        std::slice::from_ref(cluster),
        &[],
        // A throwaway organisation recipient: the bench never restores.
        &[lifeboat_core::tenant_keys::TenantIdentity::generate().recipient()],
        actor,
    )
    .await
    .with_context(|| format!("add tenant {tenant}"))?;
    let regions: Vec<RegionName> = REGIONS
        .iter()
        .map(|name| RegionName::parse(name))
        .collect::<Result<_, _>>()?;
    let copies: Vec<(RegionName, CopyState)> = regions
        .iter()
        .map(|region| (region.clone(), CopyState::Present))
        .collect();
    let last_night = (Utc::now() - Duration::days(1))
        .date_naive()
        .and_hms_opt(2, 0, 0)
        .context("02:00")?
        .and_utc();
    for day in 0..backups {
        let started_at = last_night - Duration::days(i64::try_from(day)?);
        let manifest = manifest(tenant, cluster, &regions, started_at, day)?;
        let connection = catalog.connection().await?;
        backups::record_backup(&**connection, &manifest, &copies)
            .await
            .with_context(|| format!("record backup {} of {tenant}", manifest.backup_id))?;
        drop(connection);
        let drill_started = started_at + Duration::hours(4);
        let outcome = if day % 10 == 9 {
            DrillOutcome::Failed {
                error: "pg_restore: error: could not read from input file: end of file".to_owned(),
            }
        } else {
            DrillOutcome::Verified {
                tables_verified: 38,
                rows_verified: 1_250_000 + 1_000 * u64::try_from(day)?,
            }
        };
        drills::record_drill(
            catalog,
            &DrillRecord {
                tenant: tenant.clone(),
                backup_id: manifest.backup_id,
                region: Some(regions[day % regions.len()].clone()),
                scratch_database: format!(
                    "lifeboat_drill_{}",
                    manifest.backup_id.as_uuid().simple()
                ),
                started_at: drill_started,
                finished_at: drill_started + Duration::seconds(72),
                outcome,
                steps: Vec::new(),
            },
            actor,
        )
        .await
        .with_context(|| format!("record the drill of {}", manifest.backup_id))?;
    }
    Ok(())
}

/// The manifest of a scheduled backup of `tenant` that started at `started_at`.
fn manifest(
    tenant: &TenantName,
    cluster: &ClusterName,
    regions: &[RegionName],
    started_at: DateTime<Utc>,
    day: usize,
) -> anyhow::Result<Manifest> {
    let seconds = u64::try_from(started_at.timestamp())?;
    let backup_id = BackupId::from_uuid(uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
        uuid::NoContext,
        seconds,
        0,
    )))
    .context("a UUIDv7")?;
    let dump_bytes = 480_000_000 + 250_000 * u64::try_from(day)?;
    Ok(Manifest {
        version: MANIFEST_VERSION,
        tenant: tenant.clone(),
        backup_id,
        kind: BackupKind::Scheduled,
        started_at,
        finished_at: started_at + Duration::seconds(41),
        source: Source {
            cluster: cluster.clone(),
            database: tenant.to_string(),
            server_version: "15.18".to_owned(),
            pg_dump_version: "15.18".to_owned(),
        },
        pipeline: Pipeline {
            format: "custom".to_owned(),
            compression: "zstd".to_owned(),
            compression_level: 2,
            encryption: "age".to_owned(),
            recipient_fingerprints: Vec::new(),
        },
        object: StoredObject {
            key: ObjectKey::Dump(tenant, backup_id).to_key(),
            dump_bytes,
            stored_bytes: dump_bytes / 3,
            sha256: format!("{:064x}", u128::from(seconds)),
            part_size_bytes: 16 * 1024 * 1024,
            part_count: (dump_bytes / 3).div_ceil(16 * 1024 * 1024),
        },
        regions: regions.to_vec(),
        row_counts: vec![TableRowCount {
            schema: "public".to_owned(),
            table: "events".to_owned(),
            rows: 1_250_000,
        }],
        database_facts: None,
    })
}
