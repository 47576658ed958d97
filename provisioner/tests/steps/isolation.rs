//! Provisioning: a role and a database per tenant, and one tenant's credentials open
//! nothing of another's.

use lifeboat_core::config::ClusterConfig;
use lifeboat_core::postgres::PostgresError;
use lifeboat_provisioner::{
    Made, ProvisionError, create_database_owned, create_role, database_comment, drop_role,
    generate_password, isolate_database, role_exists,
};
use secrecy::SecretString;

use crate::common::{as_role, connect, execute, start_cluster, texts};

async fn provision(cluster: &ClusterConfig, role: &str, database: &str) -> SecretString {
    let password = generate_password();
    let made = create_role(cluster, role, Some(&password), "run-1")
        .await
        .expect("create role");
    assert_eq!(made, Made::Now);
    let made = create_database_owned(cluster, database, role, "run-1")
        .await
        .expect("create database");
    assert_eq!(made, Made::Now);
    isolate_database(cluster, database, role)
        .await
        .expect("isolate");
    // Idempotent: a second run changes nothing and fails on nothing.
    isolate_database(cluster, database, role)
        .await
        .expect("isolate again");
    password
}

async fn connection_refusal(cluster: &ClusterConfig, database: &str) -> String {
    match lifeboat_core::postgres::connect(cluster, database).await {
        Ok(_) => panic!("{} connected to {database:?}", cluster.user),
        Err(PostgresError::Unreachable { message, .. }) => message,
        Err(other) => panic!("unexpected error: {other:?}"),
    }
}

#[tokio::test]
async fn a_tenant_reaches_its_own_database_and_no_other() {
    let (_server, cluster) = start_cluster().await;
    let role_a = "tenant \"a\" ü";
    let database_a = "shop a's";
    let password_a = provision(&cluster, role_a, database_a).await;
    let password_b = provision(&cluster, "tenant_b", "shop_b").await;

    let tenant_a = as_role(&cluster, role_a, &password_a);
    execute(
        &tenant_a,
        database_a,
        "CREATE TABLE orders (id int); INSERT INTO orders VALUES (1), (2)",
    )
    .await;
    assert_eq!(
        texts(&tenant_a, database_a, "SELECT count(*)::text FROM orders").await,
        ["2"]
    );
    assert_eq!(
        texts(
            &cluster,
            database_a,
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE relname = 'orders'"
        )
        .await,
        [role_a]
    );

    let refusal = connection_refusal(&tenant_a, "shop_b").await;
    assert!(
        refusal.contains("permission denied for database"),
        "{refusal}"
    );
    let tenant_b = as_role(&cluster, "tenant_b", &password_b);
    let refusal = connection_refusal(&tenant_b, database_a).await;
    assert!(
        refusal.contains("permission denied for database"),
        "{refusal}"
    );

    // A role with no grants at all: only what PUBLIC has.
    let outsider_password = SecretString::from("outsider-password".to_owned());
    create_role(&cluster, "outsider", Some(&outsider_password), "run-1")
        .await
        .expect("create outsider");
    let outsider = as_role(&cluster, "outsider", &outsider_password);
    for database in [database_a, "shop_b"] {
        let refusal = connection_refusal(&outsider, database).await;
        assert!(
            refusal.contains("permission denied for database"),
            "{refusal}"
        );
    }

    let wrong_password = as_role(
        &cluster,
        role_a,
        &SecretString::from("not the password".to_owned()),
    );
    let refusal = connection_refusal(&wrong_password, database_a).await;
    assert!(
        refusal.contains("password authentication failed"),
        "{refusal}"
    );

    let stored = texts(
        &cluster,
        "postgres",
        "SELECT rolname || ' ' || left(rolpassword, 14) FROM pg_authid \
         WHERE rolname IN ('tenant \"a\" ü', 'tenant_b') ORDER BY rolname",
    )
    .await;
    assert_eq!(
        stored,
        ["tenant \"a\" ü SCRAM-SHA-256$", "tenant_b SCRAM-SHA-256$"]
    );
    assert_eq!(
        texts(
            &cluster,
            "postgres",
            "SELECT rolsuper::text || rolcreatedb::text || rolcreaterole::text || rolreplication::text || rolbypassrls::text \
             FROM pg_roles WHERE rolname = 'tenant_b'"
        )
        .await,
        ["falsefalsefalsefalsefalse"]
    );
    // The schema public of a tenant's database is the tenant's alone.
    assert_eq!(
        texts(
            &cluster,
            "shop_b",
            "SELECT pg_get_userbyid(nspowner) || ' ' || nspacl::text FROM pg_namespace WHERE nspname = 'public'"
        )
        .await,
        ["tenant_b {tenant_b=UC/tenant_b}"]
    );
}

#[tokio::test]
async fn a_retried_run_adopts_what_it_made_and_refuses_what_it_did_not() {
    let (_server, cluster) = start_cluster().await;
    let first_password = generate_password();
    assert_eq!(
        create_role(&cluster, "acme", Some(&first_password), "run-7")
            .await
            .expect("create"),
        Made::Now
    );
    assert_eq!(
        create_database_owned(&cluster, "acme_db", "acme", "run-7")
            .await
            .expect("create database"),
        Made::Now
    );
    assert_eq!(
        database_comment(&cluster, "acme_db")
            .await
            .expect("comment"),
        Some("lifeboat run run-7".to_owned())
    );
    assert_eq!(
        texts(
            &cluster,
            "postgres",
            "SELECT coalesce(datacl::text, 'default') || ' ' || datallowconn::text FROM pg_database WHERE datname = 'acme_db'"
        )
        .await,
        ["{acme=CTc/acme} true"],
        "PUBLIC may not connect, the database accepts its owner"
    );

    // The retry hands out its own password: the adopted role takes it.
    let second_password = generate_password();
    assert_eq!(
        create_role(&cluster, "acme", Some(&second_password), "run-7")
            .await
            .expect("adopt"),
        Made::EarlierByThisRun
    );
    assert_eq!(
        create_database_owned(&cluster, "acme_db", "acme", "run-7")
            .await
            .expect("adopt database"),
        Made::EarlierByThisRun
    );
    connect(&as_role(&cluster, "acme", &second_password), "acme_db").await;

    let foreign_role = create_role(&cluster, "acme", None, "run-8")
        .await
        .expect_err("another run's role");
    assert!(
        matches!(&foreign_role, ProvisionError::RoleExists { role, .. } if role == "acme"),
        "{foreign_role:?}"
    );
    execute(&cluster, "postgres", "CREATE ROLE someone").await;
    execute(&cluster, "postgres", "CREATE DATABASE theirs").await;
    let unmarked_role = create_role(&cluster, "someone", None, "run-7")
        .await
        .expect_err("an unmarked role");
    assert!(matches!(unmarked_role, ProvisionError::RoleExists { .. }));
    let foreign_database = create_database_owned(&cluster, "theirs", "acme", "run-7")
        .await
        .expect_err("an unmarked database");
    assert!(
        matches!(&foreign_database, ProvisionError::DatabaseExists { database, .. } if database == "theirs"),
        "{foreign_database:?}"
    );
    let other_run = create_database_owned(&cluster, "acme_db", "acme", "run-8")
        .await
        .expect_err("another run's database");
    assert!(matches!(other_run, ProvisionError::DatabaseExists { .. }));

    // A role that still owns a database cannot be dropped, and says what it owns.
    let still_owns = drop_role(&cluster, "acme").await.expect_err("owns acme_db");
    assert!(
        still_owns.to_string().contains("owner of database acme_db"),
        "{still_owns}"
    );
    lifeboat_provisioner::drop_database(&cluster, "acme_db")
        .await
        .expect("drop database");
    drop_role(&cluster, "acme").await.expect("drop role");
    drop_role(&cluster, "acme").await.expect("drop role again");
    assert!(!role_exists(&cluster, "acme").await.expect("exists"));
}
