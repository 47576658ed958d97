//! Database facts read from a real database, and a restore as another role that keeps
//! them.

use std::io::Write as _;
use std::process::Command;

use lifeboat_core::config::ClusterConfig;
use lifeboat_core::database_facts::DatabaseFacts;
use lifeboat_core::postgres::{PgTools, RestoreInput, spawn_pg_restore, wait_for_tool};
use lifeboat_provisioner::{
    create_database_owned, create_role, generate_password, isolate_database,
};

use crate::common::{as_role, connect, execute, start_cluster};

async fn provision(cluster: &ClusterConfig, role: &str, database: &str) -> ClusterConfig {
    let password = generate_password();
    create_role(cluster, role, Some(&password), "facts")
        .await
        .expect("role");
    create_database_owned(cluster, database, role, "facts")
        .await
        .expect("database");
    isolate_database(cluster, database, role)
        .await
        .expect("isolate");
    as_role(cluster, role, &password)
}

async fn facts(cluster: &ClusterConfig, database: &str) -> DatabaseFacts {
    DatabaseFacts::capture(&connect(cluster, database).await)
        .await
        .expect("capture")
}

#[tokio::test]
async fn a_restore_as_the_tenant_role_keeps_owners_grants_extensions_and_large_objects() {
    let (server, cluster) = start_cluster().await;
    let original_role = provision(&cluster, "acme", "original").await;
    execute(
        &original_role,
        "original",
        "CREATE EXTENSION pgcrypto;
         CREATE TABLE orders (id serial PRIMARY KEY, secret bytea DEFAULT gen_random_bytes(4));
         INSERT INTO orders DEFAULT VALUES;
         CREATE SEQUENCE invoice_numbers;
         CREATE VIEW order_ids AS SELECT id FROM orders;
         CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql AS 'SELECT count(*) FROM orders';
         CREATE TYPE mood AS ENUM ('calm', 'busy');
         SELECT lo_create(0);
         GRANT SELECT ON orders TO PUBLIC;",
    )
    .await;
    let original = facts(&cluster, "original").await;
    for object in [
        "table public.orders",
        "sequence public.orders_id_seq",
        "sequence public.invoice_numbers",
        "view public.order_ids",
        "function public.order_count()",
        "type public.mood",
        "schema public",
    ] {
        assert_eq!(
            original.owners.get(object).map(String::as_str),
            Some("acme"),
            "{object} in {:?}",
            original.owners
        );
    }
    assert!(
        !original
            .owners
            .keys()
            .any(|object| object.contains("gen_random_bytes")),
        "extension members are left out: {:?}",
        original.owners
    );
    assert!(original.grants.contains(&(
        "table public.orders".to_owned(),
        "PUBLIC".to_owned(),
        "SELECT".to_owned()
    )));
    assert!(original.extensions.contains_key("pgcrypto"));
    assert_eq!(original.large_object_owners.get("acme"), Some(&1));

    let dump = tempfile::NamedTempFile::new().expect("dump file");
    let dumped = Command::new(server.bin_dir().join("pg_dump"))
        .args(["--format=custom", "--file"])
        .arg(dump.path())
        .arg(server.connection_string("original"))
        .status()
        .expect("pg_dump");
    assert!(dumped.success());

    provision(&cluster, "acme copy", "restored").await;
    let tools = PgTools::locate(Some(server.bin_dir())).await;
    let (mut pg_restore, stderr) = spawn_pg_restore(
        &tools,
        &cluster,
        "restored",
        Some("acme copy"),
        RestoreInput::Stdin,
    )
    .expect("pg_restore");
    let mut stdin = pg_restore.stdin.take().expect("stdin");
    stdin
        .write_all(&std::fs::read(dump.path()).expect("read dump"))
        .expect("feed pg_restore");
    drop(stdin);
    wait_for_tool("pg_restore", &mut pg_restore, &stderr).expect("restore");

    let restored = facts(&cluster, "restored").await;
    assert_eq!(
        original.differences_after_restore(&restored, "acme copy"),
        Vec::<String>::new(),
        "restored: {restored:#?}"
    );

    execute(
        &cluster,
        "restored",
        "ALTER VIEW order_ids OWNER TO acme; REVOKE SELECT ON orders FROM PUBLIC",
    )
    .await;
    let tampered = facts(&cluster, "restored").await;
    assert_eq!(
        original.differences_after_restore(&tampered, "acme copy"),
        [
            "view public.order_ids: owned by acme, should be acme copy",
            "table public.orders: SELECT to PUBLIC missing",
        ]
    );
}
