//! The restore path believes no bucket on its word: whoever can write one region's bucket
//! (but holds no identity) must not make one tenant's restore deliver another's data.

use lifeboat_core::ids::TenantName;
use lifeboat_core::manifest::{Manifest, ObjectKey};
use lifeboat_core::restore::BackupSelector;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, backup, read_object, restore, stderr};

fn two_tenants() -> Settings {
    Settings {
        tenants: vec![
            ("acme".to_owned(), "acme".to_owned()),
            ("globex".to_owned(), "globex".to_owned()),
        ],
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_manifest_under_this_tenants_name_is_refused_and_the_next_region_serves() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 500).await;
    env.create_tenant_database("globex", 2000).await;
    let config = env.config(&two_tenants());
    let acme = backup(&config, "acme").await.expect("backup acme");
    let globex = backup(&config, "globex").await.expect("backup globex");

    // The attacker copies globex's manifest, untouched, over acme's in the first region:
    // it names globex's object, whose SHA-256 it matches.
    let first = env.region(&config, 0);
    let acme_tenant = TenantName::parse("acme").expect("tenant");
    let globex_tenant = TenantName::parse("globex").expect("tenant");
    let globex_manifest = read_object(
        &first,
        &ObjectKey::Manifest(&globex_tenant, globex.manifest.backup_id).to_key(),
    )
    .await;
    first
        .put_object(
            &ObjectKey::Manifest(&acme_tenant, acme.manifest.backup_id).to_key(),
            globex_manifest,
        )
        .await
        .expect("overwrite acme's manifest");

    let restored = restore(
        &config,
        "acme",
        BackupSelector::Id(acme.manifest.backup_id),
        "acme_restored",
    )
    .await
    .expect("restore from the honest region");
    assert_eq!(restored.region.as_str(), "us", "{restored:?}");
    assert_eq!(restored.rows_verified, 500 + 1000 + 100, "acme's rows");
    let refusal = &restored.failed_attempts[0];
    assert_eq!(refusal.region.as_str(), "eu");
    assert!(
        refusal.error.contains("not the one asked for") && refusal.error.contains("globex"),
        "{refusal:?}"
    );
    assert_eq!(
        env.table_fingerprints("acme").await,
        env.table_fingerprints("acme_restored").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_rewritten_in_a_bucket_disagrees_with_the_catalog_and_is_not_restored() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 500).await;
    env.create_tenant_database("globex", 2000).await;
    env.create_catalog().await;
    let config_path = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..two_tenants()
    });
    let config = lifeboat_core::config::Config::load(Some(&config_path)).expect("config");
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    let migrated = run(&["controller", "migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    for tenant in ["acme", "globex"] {
        let backed_up = run(&["backup", "--tenant", tenant]);
        assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    }
    let acme_tenant = TenantName::parse("acme").expect("tenant");
    let globex_tenant = TenantName::parse("globex").expect("tenant");
    let first = env.region(&config, 0);
    let newest = |tenant: &TenantName| {
        let first = &first;
        let tenant = tenant.clone();
        async move {
            let ids = lifeboat_core::restore::list_backup_ids(first, Some(&tenant))
                .await
                .expect("list");
            ids.last().expect("one backup").1
        }
    };
    let acme_id = newest(&acme_tenant).await;
    let globex_id = newest(&globex_tenant).await;

    // Globex's object under acme's key, and a manifest that says exactly that: acme's
    // tenant, id and key, globex's size, SHA-256 and row counts. Every check a bucket can
    // answer passes; only the catalog knows acme's real SHA-256.
    let globex_object =
        read_object(&first, &ObjectKey::Dump(&globex_tenant, globex_id).to_key()).await;
    let manifest_key = ObjectKey::Manifest(&globex_tenant, globex_id).to_key();
    let mut forged = Manifest::from_json(&manifest_key, &read_object(&first, &manifest_key).await)
        .expect("globex's manifest");
    forged.tenant = acme_tenant.clone();
    forged.backup_id = acme_id;
    forged.object.key = ObjectKey::Dump(&acme_tenant, acme_id).to_key();
    first
        .put_object(&forged.object.key, globex_object)
        .await
        .expect("overwrite acme's object");
    first
        .put_object(
            &ObjectKey::Manifest(&acme_tenant, acme_id).to_key(),
            forged.to_json().into(),
        )
        .await
        .expect("overwrite acme's manifest");

    let restored = run(&[
        "restore",
        "--tenant",
        "acme",
        "--backup",
        &acme_id.to_string(),
        "--into",
        "acme_restored",
        "--json",
    ]);
    assert!(restored.status.success(), "{}", stderr(&restored));
    let report: serde_json::Value = serde_json::from_slice(&restored.stdout).expect("json");
    assert_eq!(report["region"], "us", "{report}");
    assert_eq!(report["rows_verified"], 500 + 1000 + 100, "{report}");
    let refusal = report["failed_attempts"][0]["error"]
        .as_str()
        .expect("the first region's refusal");
    assert!(refusal.contains("differs from the catalog's"), "{refusal}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_tenant_does_not_inherit_backups_left_under_its_name() {
    let env = TestEnv::start(Backend::Embedded, 2).await;
    env.create_tenant_database("acme", 100).await;
    env.create_tenant_database("globex", 100).await;
    env.create_catalog().await;
    let config_path = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        // The catalog is where tenants live; the config names none.
        tenants: vec![("unrelated".to_owned(), "unrelated".to_owned())],
        ..Settings::default()
    });
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    assert!(run(&["controller", "migrate"]).status.success());
    for tenant in ["acme", "globex"] {
        let added = run(&["tenant", "add", tenant, "--cluster", "main"]);
        assert!(added.status.success(), "{}", stderr(&added));
        let backed_up = run(&["backup", "--tenant", tenant]);
        assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    }
    // Acme leaves; its backups stay in the catalog and the regions, as removal keeps them.
    assert!(run(&["tenant", "remove", "acme"]).status.success());
    let again = run(&["tenant", "add", "acme", "--cluster", "main"]);
    assert!(!again.status.success(), "a reused name was accepted");
    let refusal = stderr(&again);
    assert!(
        refusal.contains("still has backups of an earlier tenant")
            && refusal.contains("in the catalog")
            && refusal.contains("in region eu"),
        "{refusal}"
    );

    // Backups only in a region (the catalog lost them, or never had them) count too.
    let catalog = env
        .postgres
        .connect("lifeboat_catalog")
        .await
        .expect("connect catalog");
    catalog
        .batch_execute(
            "DELETE FROM backup_copies WHERE backup_id IN (SELECT id FROM backups WHERE tenant = 'acme');
             DELETE FROM drills WHERE tenant = 'acme';
             DELETE FROM backups WHERE tenant = 'acme'",
        )
        .await
        .expect("forget acme's backups");
    let again = run(&["tenant", "add", "acme", "--cluster", "main"]);
    assert!(!again.status.success(), "a reused name was accepted");
    let refusal = stderr(&again);
    assert!(
        !refusal.contains("in the catalog") && refusal.contains("in region us"),
        "{refusal}"
    );
    let listed = run(&["tenant", "list", "--json"]);
    let tenants: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(
        tenants.len(),
        1,
        "refused adds changed nothing: {tenants:?}"
    );
    // A fresh name is fine.
    env.create_tenant_database("initech", 10).await;
    let fresh = run(&["tenant", "add", "initech", "--cluster", "main"]);
    assert!(fresh.status.success(), "{}", stderr(&fresh));
}
