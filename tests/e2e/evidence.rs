//! The restore evidence a tenant's people see beside each backup (`evidence::tenant_backups`,
//! behind `GET /api/v1/tenants/{tenant}/backups` and the panel): the newest drill of each
//! backup, whatever other drills it or other tenants have.

use chrono::{Duration, Utc};
use lifeboat_controller::audit::Actor;
use lifeboat_controller::backups::record_checked_backup;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::drills::{DrillOutcome, DrillRecord, record_drill};
use lifeboat_controller::evidence::tenant_backups;
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::region::Regions;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, backup};

fn drill(
    tenant: &TenantName,
    backup_id: BackupId,
    finished_minutes_ago: i64,
    outcome: DrillOutcome,
) -> DrillRecord {
    let finished_at = Utc::now() - Duration::minutes(finished_minutes_ago);
    DrillRecord {
        tenant: tenant.clone(),
        backup_id,
        region: None,
        scratch_database: "lifeboat_drill_test".to_owned(),
        started_at: finished_at - Duration::seconds(72),
        finished_at,
        outcome,
        steps: Vec::new(),
    }
}

fn verified(tables: u64) -> DrillOutcome {
    DrillOutcome::Verified {
        tables_verified: tables,
        rows_verified: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listed_backup_shows_its_own_newest_drill_and_nothing_of_other_tenants() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_catalog().await;
    let settings = Settings {
        tenants: vec![
            ("acme".to_owned(), "acme".to_owned()),
            ("globex".to_owned(), "globex".to_owned()),
        ],
        extra: CATALOG.to_owned(),
        ..Settings::default()
    };
    let config = env.config(&settings);
    let catalog = Catalog::open(&config).await.expect("open catalog");
    catalog.migrate().await.expect("migrate");
    let regions = Regions::from_config(&config);
    env.create_tenant_database("acme", 10).await;
    env.create_tenant_database("globex", 10).await;
    let mut ids = Vec::new();
    for name in ["acme", "acme", "acme", "globex"] {
        let report = backup(&config, name).await.expect("backup");
        record_checked_backup(&catalog, &regions, &report.manifest, &report.regions)
            .await
            .expect("record");
        ids.push(report.manifest.backup_id);
    }
    let (acme, globex) = (
        TenantName::parse("acme").expect("acme"),
        TenantName::parse("globex").expect("globex"),
    );
    let actor = Actor::system("test");
    // The oldest backup: failed, then verified (newest), recorded newest first so that
    // insertion order says nothing. The middle one: verified, then failed (newest). The
    // newest: never drilled, while globex's backup has a drill newer than all of them.
    for record in [
        drill(&acme, ids[0], 30, verified(7)),
        drill(
            &acme,
            ids[0],
            60,
            DrillOutcome::Failed {
                error: "old".to_owned(),
            },
        ),
        drill(&acme, ids[1], 50, verified(5)),
        drill(
            &acme,
            ids[1],
            20,
            DrillOutcome::Failed {
                error: "new".to_owned(),
            },
        ),
        drill(&globex, ids[3], 1, verified(99)),
    ] {
        record_drill(&catalog, &record, &actor)
            .await
            .expect("drill");
    }

    let connection = catalog.connection().await.expect("connection");
    let listed = tenant_backups(&connection, &acme).await.expect("list");
    let listed_ids: Vec<&str> = listed.iter().map(|backup| backup.id.as_str()).collect();
    let expected_ids: Vec<String> = ids[..3].iter().rev().map(ToString::to_string).collect();
    assert_eq!(listed_ids, expected_ids, "acme's backups, newest first");
    assert!(
        listed[0].evidence.is_none(),
        "never drilled: {:?}",
        listed[0]
    );
    let middle = listed[1].evidence.as_ref().expect("middle drilled");
    assert!(!middle.verified, "its newest drill failed: {middle:?}");
    assert_eq!(middle.error.as_deref(), Some("new"));
    let oldest = listed[2].evidence.as_ref().expect("oldest drilled");
    assert!(oldest.verified, "its newest drill verified: {oldest:?}");
    assert_eq!(oldest.tables_verified, Some(7));
    assert_eq!(oldest.duration_ms, 72_000);
    assert_eq!(
        oldest.summary,
        "restored and verified in 1 m 12 s: 7 tables, row counts match"
    );

    let listed = tenant_backups(&connection, &globex).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]
            .evidence
            .as_ref()
            .and_then(|evidence| evidence.tables_verified),
        Some(99)
    );
}
