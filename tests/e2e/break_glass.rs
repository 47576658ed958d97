//! The break-glass procedure of the README: a stored object restores with stock tools
//! alone (Debian's `age`, `zstd` and PostgreSQL's `pg_restore`).

use std::process::Command;

use crate::harness::{Backend, Settings, TestEnv, backup, read_object};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_object_restores_with_stock_age_zstd_and_pg_restore() {
    for tool in ["age", "zstd"] {
        let found = Command::new(tool).arg("--version").output().is_ok();
        assert!(found, "{tool} is not installed: run ci/install-test-deps");
    }
    let env = TestEnv::start(Backend::Seaweed, 1).await;
    env.create_tenant_database("acme", 2000).await;
    let config = env.config(&Settings::default());
    let report = backup(&config, "acme").await.expect("backup");
    let object = read_object(&env.region(&config, 0), &report.manifest.object.key).await;
    let object_path = env.dir.path().join("backup.dump.zst.age");
    std::fs::write(&object_path, object).expect("write object");
    let admin = env.postgres.connect("postgres").await.expect("connect");
    admin
        .batch_execute("CREATE DATABASE break_glass")
        .await
        .expect("create");

    let output = Command::new("bash")
        .arg("-c")
        .arg(
            r#"set -o pipefail; age -d -i "$KEY" "$FILE" | zstd -d | "$PG_RESTORE" -d break_glass"#,
        )
        .env("KEY", &env.identity_path)
        .env("FILE", &object_path)
        .env("PG_RESTORE", env.postgres.bin_dir().join("pg_restore"))
        .envs(env.postgres.libpq_environment())
        .output()
        .expect("run the pipeline");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        env.table_fingerprints("acme").await,
        env.table_fingerprints("break_glass").await
    );
}
