//! Per-tenant keys and crypto-shredding (issue 11, part 3), through the `lifeboat` binary
//! against a real catalog, PostgreSQL and versioned, object-locked SeaweedFS regions: backups through the queue are
//! encrypted to the tenant's own key, which only the organisation's identity unwraps;
//! drills, restores, downloads and the stock-tool break-glass open them; a rotation keeps
//! old backups readable; a shred of a removed tenant leaves its backups unreadable, every
//! version of its identity object gone, while other tenants still restore.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr as _;
use std::sync::Arc;

use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::downloads;
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::server::{self, Controller};
use lifeboat_core::config::Config;
use lifeboat_core::download::DownloadFormat;
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::keys::Recipient;
use lifeboat_core::region::{Region, Regions};
use lifeboat_core::tenant_keys::identity_object_key;
use secrecy::ExposeSecret as _;
use tokio_util::sync::CancellationToken;

use crate::harness::{
    Backend, CATALOG, Settings, TestEnv, api_options, read_object, stderr, stdout,
};

fn settings() -> Settings {
    Settings {
        min_regions: Some(2),
        tenants: vec![
            ("acme".to_owned(), "acme".to_owned()),
            ("globex".to_owned(), "globex".to_owned()),
        ],
        extra: CATALOG.to_owned(),
        ..Settings::default()
    }
}

/// Two SeaweedFS regions with versioning on, a migrated catalog, and tenants acme and
/// globex added with `tenant add` (each gets its key there).
struct Keyed {
    env: TestEnv,
    config_path: PathBuf,
    config: Config,
    catalog: Catalog,
}

impl Keyed {
    async fn start() -> Keyed {
        // Versioned and object-locked buckets, writer keys that may not delete, manager
        // keys for the controller: the shred must destroy every version with the latter.
        let env = TestEnv::start(Backend::SeaweedLocked, 2).await;
        env.create_catalog().await;
        let config_path = env.config_file(&settings());
        let config = env.config(&settings());
        let keyed = Keyed {
            config_path,
            catalog: Catalog::open(&config).await.expect("open catalog"),
            config,
            env,
        };
        keyed.ok(&["controller", "migrate"]);
        for tenant in ["acme", "globex"] {
            keyed.env.create_tenant_database(tenant, 300).await;
            keyed.ok(&["tenant", "add", tenant, "--cluster", "main"]);
        }
        keyed
    }

    fn run(&self, arguments: &[&str]) -> std::process::Output {
        self.env.lifeboat(&self.config_path, arguments)
    }

    fn ok(&self, arguments: &[&str]) -> String {
        let output = self.run(arguments);
        assert!(
            output.status.success(),
            "lifeboat {arguments:?}\n{}\n{}",
            stdout(&output),
            stderr(&output)
        );
        stdout(&output)
    }

    /// A nightly run (backups of every catalog tenant through the queue and the embedded
    /// agent, then drills of them); every backup and drill must succeed.
    fn nightly(&self, run: &str) {
        let summary: serde_json::Value =
            serde_json::from_str(&self.ok(&["nightly", "--drill", "--json", "--run", run]))
                .expect("json");
        assert_eq!(summary["failed"], 0, "{summary}");
    }

    async fn scalar<T: for<'a> tokio_postgres::types::FromSql<'a>>(&self, sql: &str) -> T {
        let client = self.catalog.connection().await.expect("connection");
        client.query_one(sql, &[]).await.expect(sql).get(0)
    }

    async fn newest_backup(&self, tenant: &str) -> (BackupId, serde_json::Value) {
        let client = self.catalog.connection().await.expect("connection");
        let row = client
            .query_one(
                "SELECT id, manifest FROM backups WHERE tenant = $1 ORDER BY started_at DESC LIMIT 1",
                &[&tenant],
            )
            .await
            .expect("a backup");
        (BackupId::from_uuid(row.get(0)).expect("id"), row.get(1))
    }

    async fn current_fingerprint(&self, tenant: &str) -> String {
        self.scalar(&format!(
            "SELECT fingerprint FROM tenant_keys WHERE tenant = '{tenant}' AND retired_at IS NULL AND shredded_at IS NULL"
        ))
        .await
    }

    /// Region `index` with its manager key (listing versions).
    fn region(&self, index: usize) -> Region {
        Regions::from_config(&self.config).managers(&self.config)[index].clone()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.env.dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn restore(
        &self,
        config: &Path,
        tenant: &str,
        backup: &BackupId,
        into: &str,
    ) -> std::process::Output {
        self.env.lifeboat(
            config,
            &[
                "restore",
                "--tenant",
                tenant,
                "--backup",
                &backup.to_string(),
                "--into",
                into,
            ],
        )
    }

    /// A config like this one whose identity file is another organisation key.
    fn config_with_other_org_identity(&self) -> PathBuf {
        let other = self.env.dir.path().join("other-org.txt");
        if !other.exists() {
            lifeboat_core::keys::generate_identity_file(&other).expect("keygen");
        }
        self.env.config_file(&Settings {
            identity_file: Some(other),
            ..settings()
        })
    }
}

fn manifest_fingerprints(manifest: &serde_json::Value) -> Vec<String> {
    manifest["pipeline"]["recipient_fingerprints"]
        .as_array()
        .expect("fingerprints")
        .iter()
        .map(|value| value.as_str().expect("text").to_owned())
        .collect()
}

/// `bash -c SCRIPT` with the cluster's libpq variables; its output.
fn shell(env: &TestEnv, script: &str, variables: &[(&str, &Path)]) -> std::process::Output {
    Command::new("bash")
        .arg("-c")
        .arg(script)
        .envs(
            variables
                .iter()
                .map(|(name, path)| (*name, path.as_os_str())),
        )
        .env("PG_RESTORE", env.postgres.bin_dir().join("pg_restore"))
        .envs(env.postgres.libpq_environment())
        .output()
        .expect("run bash")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_tenant_backups_open_only_through_the_tenant_key_the_org_identity_unwraps() {
    let keyed = Keyed::start().await;
    // Each tenant's key is in the catalog, wrapped (never in the clear), and its identity
    // file is in both regions from `tenant add` on.
    let clear: i64 = keyed
        .scalar("SELECT count(*) FROM tenant_keys WHERE position('AGE-SECRET-KEY'::bytea IN wrapped_identity) > 0")
        .await;
    assert_eq!(clear, 0, "identities are never stored in the clear");
    let acme_key = keyed.current_fingerprint("acme").await;
    assert_ne!(acme_key, keyed.current_fingerprint("globex").await);
    let acme = TenantName::parse("acme").expect("name");
    for index in 0..2 {
        read_object(&keyed.region(index), &identity_object_key(&acme)).await;
    }

    keyed.nightly("r1");
    // The backup names acme's key alone, not the organisation's recipient.
    let (backup_id, manifest) = keyed.newest_backup("acme").await;
    assert_eq!(
        manifest_fingerprints(&manifest),
        std::slice::from_ref(&acme_key)
    );
    let org_fingerprint = Recipient::from_str(&keyed.env.recipient)
        .expect("recipient")
        .fingerprint();
    assert_ne!(acme_key, org_fingerprint);
    // The nightly's drill of it, through a drill job carrying the wrapped identities, verified.
    let verified: i64 = keyed
        .scalar(&format!(
            "SELECT count(*) FROM drills WHERE backup_id = '{backup_id}' AND outcome = 'verified'"
        ))
        .await;
    assert_eq!(verified, 1, "the drill of the per-tenant backup verified");

    // The organisation's identity alone does not open the dump; the tenant key it unwraps
    // from identity.age does, with stock tools only (break-glass).
    let object_key = manifest["object"]["key"].as_str().expect("key").to_owned();
    let dump = keyed.write(
        "acme.dump.zst.age",
        &read_object(&keyed.region(1), &object_key).await,
    );
    let identity_file = keyed.write(
        "identity.age",
        &read_object(&keyed.region(1), &identity_object_key(&acme)).await,
    );
    let org_alone = shell(
        &keyed.env,
        r#"age -d -i "$ORG" "$DUMP" > /dev/null"#,
        &[("ORG", &keyed.env.identity_path), ("DUMP", &dump)],
    );
    assert!(
        !org_alone.status.success(),
        "the org identity alone opened a per-tenant dump"
    );
    keyed
        .env
        .postgres
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("CREATE DATABASE break_glass")
        .await
        .expect("create");
    let tenant_key = keyed.env.dir.path().join("acme.key");
    let break_glass = shell(
        &keyed.env,
        r#"set -o pipefail
           umask 077
           age -d -i "$ORG" "$IDENTITY" > "$TENANT_KEY"
           age -d -i "$TENANT_KEY" "$DUMP" | zstd -d | "$PG_RESTORE" -d break_glass"#,
        &[
            ("ORG", &keyed.env.identity_path),
            ("IDENTITY", &identity_file),
            ("TENANT_KEY", &tenant_key),
            ("DUMP", &dump),
        ],
    );
    assert!(
        break_glass.status.success(),
        "{}",
        String::from_utf8_lossy(&break_glass.stderr)
    );
    assert!(
        std::fs::read_to_string(&tenant_key)
            .expect("tenant key")
            .contains("AGE-SECRET-KEY-1"),
        "identity.age holds the tenant's identity file"
    );
    assert_eq!(
        keyed.env.table_fingerprints("acme").await,
        keyed.env.table_fingerprints("break_glass").await
    );

    // `lifeboat restore` unwraps the tenant key with the org identity.
    let restored = keyed.restore(&keyed.config_path, "acme", &backup_id, "acme_restored");
    assert!(restored.status.success(), "{}", stderr(&restored));
    assert_eq!(
        keyed.env.table_fingerprints("acme").await,
        keyed.env.table_fingerprints("acme_restored").await
    );
    // A wrong organisation identity: one clear error, no database left behind.
    let wrong = keyed.restore(
        &keyed.config_with_other_org_identity(),
        "acme",
        &backup_id,
        "acme_wrong",
    );
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("identity"), "{}", stderr(&wrong));
    assert!(
        !stderr(&wrong).contains("AGE-SECRET-KEY"),
        "{}",
        stderr(&wrong)
    );
    assert!(!keyed.env.database_exists("acme_wrong").await);

    // A download of the per-tenant backup: the controller unwraps the tenant key too.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let cancel = CancellationToken::new();
    tokio::spawn(server::serve(
        keyed.catalog.clone(),
        listener,
        api_options(&keyed.config, QueuePolicy::default()),
        None,
        Controller {
            work_ready: Arc::default(),
        },
        cancel.clone(),
    ));
    let link = downloads::issue_download_link(
        &keyed.catalog,
        &lifeboat_controller::audit::Actor::system("test"),
        &acme,
        backup_id,
        DownloadFormat::Custom,
        None,
    )
    .await
    .expect("a link");
    let response = reqwest::get(format!(
        "{base}/api/v1/downloads/{}",
        link.token.expose_secret()
    ))
    .await
    .expect("download");
    assert_eq!(response.status(), 200);
    let body = response.bytes().await.expect("body");
    cancel.cancel();
    let downloaded = keyed.write("acme.dump", &body);
    keyed
        .env
        .postgres
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("CREATE DATABASE downloaded")
        .await
        .expect("create");
    let loaded = shell(
        &keyed.env,
        r#""$PG_RESTORE" -d downloaded "$FILE""#,
        &[("FILE", &downloaded)],
    );
    assert!(
        loaded.status.success(),
        "{}",
        String::from_utf8_lossy(&loaded.stderr)
    );
    assert_eq!(
        keyed.env.table_fingerprints("acme").await,
        keyed.env.table_fingerprints("downloaded").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_and_the_org_key_all_still_open_their_backups() {
    let keyed = Keyed::start().await;
    let acme = TenantName::parse("acme").expect("name");
    // Before per-tenant keys: the command-line backup, to the organisation's recipient.
    keyed.ok(&["backup", "--tenant", "acme"]);
    let (org_backup, org_manifest) = keyed.newest_backup("acme").await;
    let org_fingerprint = Recipient::from_str(&keyed.env.recipient)
        .expect("recipient")
        .fingerprint();
    assert_eq!(manifest_fingerprints(&org_manifest), [org_fingerprint]);

    keyed.nightly("r1");
    let (first_backup, first_manifest) = keyed.newest_backup("acme").await;
    let first_key = keyed.current_fingerprint("acme").await;
    assert_eq!(
        manifest_fingerprints(&first_manifest),
        std::slice::from_ref(&first_key)
    );
    let identity_before = read_object(&keyed.region(0), &identity_object_key(&acme)).await;

    // Rotation with a wrong organisation identity changes nothing.
    let refused = keyed.env.lifeboat(
        &keyed.config_with_other_org_identity(),
        &["tenant", "rotate-key", "acme"],
    );
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("does not open tenant acme's wrapped identities"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(keyed.current_fingerprint("acme").await, first_key);
    let keys: i64 = keyed
        .scalar("SELECT count(*) FROM tenant_keys WHERE tenant = 'acme'")
        .await;
    assert_eq!(keys, 1);

    let rotated = keyed.ok(&["tenant", "rotate-key", "acme", "--json"]);
    let rotated: serde_json::Value = serde_json::from_str(&rotated).expect("json");
    let second_key = keyed.current_fingerprint("acme").await;
    assert_ne!(second_key, first_key);
    assert_eq!(
        rotated["retired"],
        serde_json::json!(std::slice::from_ref(&first_key))
    );
    assert_eq!(
        rotated["publish"]["failed"].as_array().map(Vec::len),
        Some(0),
        "{rotated}"
    );
    let identity_after = read_object(&keyed.region(0), &identity_object_key(&acme)).await;
    assert_ne!(identity_before, identity_after, "identity.age is rewritten");
    let audited: i64 = keyed
        .scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'tenant.key.rotate' AND tenant = 'acme'",
        )
        .await;
    assert_eq!(audited, 1);

    // identity.age is not locked: a writer key may overwrite it. The check each backup's
    // claim starts in the background writes the catalog's copy back.
    let writer = keyed.env.region(&keyed.config, 0);
    writer
        .put_object(
            &identity_object_key(&acme),
            bytes::Bytes::from_static(b"ransom note"),
        )
        .await
        .expect("overwrite");
    let refreshed = lifeboat_controller::tenant_keys::refresh(
        &keyed.catalog,
        &Regions::from_config(&keyed.config),
        &acme,
    )
    .await
    .expect("refresh");
    assert_eq!(refreshed.written.len(), 1, "{refreshed:?}");
    assert_eq!(
        read_object(&writer, &identity_object_key(&acme)).await,
        identity_after
    );
    // Each region's copy is recorded as written or found right just now, so the claims of
    // the coming week do not read it again (`IDENTITY_CHECK_INTERVAL`).
    let checked: i64 = keyed
        .scalar(
            "SELECT count(*) FROM tenant_identity_objects
             WHERE tenant = 'acme' AND written_at IS NOT NULL
               AND checked_at > now() - interval '1 minute'",
        )
        .await;
    assert_eq!(checked, keyed.config.regions.len() as i64);

    keyed.nightly("r2");
    let (second_backup, second_manifest) = keyed.newest_backup("acme").await;
    assert_eq!(
        manifest_fingerprints(&second_manifest),
        std::slice::from_ref(&second_key)
    );

    // All three restore: the org key's, the retired key's and the current key's.
    for (index, backup) in [org_backup, first_backup, second_backup].iter().enumerate() {
        let into = format!("acme_{index}");
        let restored = keyed.restore(&keyed.config_path, "acme", backup, &into);
        assert!(
            restored.status.success(),
            "backup {index}: {}",
            stderr(&restored)
        );
    }
    // `keys status` names the tenant keys and what they are wrapped to.
    let status = keyed.ok(&["keys", "status"]);
    assert!(
        status.contains(&format!("{second_key} (tenant key of acme, current")),
        "{status}"
    );
    assert!(
        status.contains(&format!("{first_key} (tenant key of acme, retired")),
        "{status}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shredding_a_removed_tenant_leaves_its_backups_unreadable_while_others_restore() {
    let keyed = Keyed::start().await;
    let acme = TenantName::parse("acme").expect("name");
    keyed.nightly("r1");
    // A rotation, so the versioned identity object has several versions to destroy.
    keyed.ok(&["tenant", "rotate-key", "acme"]);
    keyed.nightly("r2");
    let (acme_backup, _) = keyed.newest_backup("acme").await;
    let (globex_backup, _) = keyed.newest_backup("globex").await;
    let versions = keyed
        .region(0)
        .list_versions(&identity_object_key(&acme))
        .await
        .expect("list versions");
    assert!(versions.len() >= 2, "{versions:?}");
    let wrapped =
        "SELECT count(*) FROM tenant_keys WHERE tenant = 'acme' AND wrapped_identity IS NOT NULL";
    assert_eq!(keyed.scalar::<i64>(wrapped).await, 2);

    // Refused: a tenant that still exists, no or a wrong confirmation, a legal hold.
    let existing = keyed.run(&["tenant", "shred", "acme", "--confirm", "acme"]);
    assert!(!existing.status.success());
    assert!(
        stderr(&existing).contains("still exists"),
        "{}",
        stderr(&existing)
    );
    keyed.ok(&["tenant", "remove", "acme"]);
    let unconfirmed = keyed.run(&["tenant", "shred", "acme"]);
    assert!(!unconfirmed.status.success());
    assert!(
        stderr(&unconfirmed).contains("--confirm acme"),
        "{}",
        stderr(&unconfirmed)
    );
    let mistyped = keyed.run(&["tenant", "shred", "acme", "--confirm", "globex"]);
    assert!(!mistyped.status.success());
    keyed
        .catalog
        .connection()
        .await
        .expect("connection")
        .execute(
            "UPDATE backups SET legal_hold = true WHERE id = $1",
            &[&acme_backup.as_uuid()],
        )
        .await
        .expect("hold");
    let held = keyed.run(&["tenant", "shred", "acme", "--confirm", "acme"]);
    assert!(!held.status.success());
    assert!(stderr(&held).contains("legal hold"), "{}", stderr(&held));
    assert_eq!(keyed.scalar::<i64>(wrapped).await, 2, "nothing changed");
    assert!(
        !keyed
            .region(0)
            .list_versions(&identity_object_key(&acme))
            .await
            .expect("list")
            .is_empty()
    );
    keyed
        .catalog
        .connection()
        .await
        .expect("connection")
        .execute("UPDATE backups SET legal_hold = false", &[])
        .await
        .expect("unhold");

    let shredded = keyed.ok(&["tenant", "shred", "acme", "--confirm", "acme", "--json"]);
    let shredded: serde_json::Value = serde_json::from_str(&shredded).expect("json");
    assert_eq!(shredded["complete"], true, "{shredded}");
    assert_eq!(shredded["keys_shredded"], 2, "{shredded}");
    assert_eq!(keyed.scalar::<i64>(wrapped).await, 0);
    let file_left: i64 = keyed
        .scalar("SELECT count(*) FROM tenant_identity_files WHERE tenant = 'acme' AND contents IS NOT NULL")
        .await;
    assert_eq!(file_left, 0);
    for index in 0..2 {
        let left = keyed
            .region(index)
            .list_versions("tenants/acme/")
            .await
            .expect("list versions")
            .into_iter()
            .filter(|version| version.key.ends_with("identity.age"))
            .count();
        assert_eq!(
            left, 0,
            "region {index} still holds a version of identity.age"
        );
    }
    let audited: i64 = keyed
        .scalar("SELECT count(*) FROM audit_log WHERE action IN ('tenant.shred', 'tenant.shred.regions') AND tenant = 'acme'")
        .await;
    assert_eq!(audited, 2);

    // acme's backups remain in the regions but open with no key lifeboat holds; globex's
    // still restore.
    let unreadable = keyed.restore(&keyed.config_path, "acme", &acme_backup, "acme_after");
    assert!(!unreadable.status.success());
    assert!(
        stderr(&unreadable).contains("identity"),
        "{}",
        stderr(&unreadable)
    );
    let restored = keyed.restore(&keyed.config_path, "globex", &globex_backup, "globex_after");
    assert!(restored.status.success(), "{}", stderr(&restored));
    // `keys status` says so, without counting it as a key this host lacks.
    let status = keyed.ok(&["keys", "status"]);
    assert!(status.contains("no (shredded)"), "{status}");

    // A rerun finishes nothing more and says it is complete.
    let again: serde_json::Value = serde_json::from_str(&keyed.ok(&[
        "tenant",
        "shred",
        "acme",
        "--confirm",
        "acme",
        "--json",
    ]))
    .expect("json");
    assert_eq!(again["complete"], true);
    assert_eq!(again["keys_shredded"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shred_on_a_store_without_versions_deletes_the_identity_object() {
    // The embedded s3s-fs store (the demo's) has no ListObjectVersions: a plain delete.
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_catalog().await;
    let one_region = Settings {
        min_regions: Some(1),
        ..settings()
    };
    let config_path = env.config_file(&one_region);
    let config = env.config(&one_region);
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    assert!(run(&["controller", "migrate"]).status.success());
    env.create_tenant_database("acme", 10).await;
    let added = run(&["tenant", "add", "acme", "--cluster", "main"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let acme = TenantName::parse("acme").expect("name");
    let region = env.region(&config, 0);
    read_object(&region, &identity_object_key(&acme)).await;
    assert!(run(&["tenant", "remove", "acme"]).status.success());
    let shredded = run(&["tenant", "shred", "acme", "--confirm", "acme", "--json"]);
    assert!(shredded.status.success(), "{}", stderr(&shredded));
    let report: serde_json::Value = serde_json::from_slice(&shredded.stdout).expect("json");
    assert_eq!(report["complete"], true, "{report}");
    assert_eq!(report["regions"][0]["versions_deleted"], 1, "{report}");
    assert_eq!(
        region
            .object_size(&identity_object_key(&acme))
            .await
            .expect("head"),
        None
    );
}
