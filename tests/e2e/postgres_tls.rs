//! TLS to PostgreSQL: lifeboat's own connections (catalog, row counts) and its libpq tools
//! (pg_dump, pg_restore) follow a cluster's `sslmode` and `ssl_root_cert`, against a real
//! server that serves TLS with a certificate from a test authority and takes TCP only over
//! TLS (`hostssl`), so a connection that skipped TLS would be refused.

use lifeboat_core::config::{ClusterConfig, ClusterTls, SslMode};
use lifeboat_core::ids::ClusterName;
use lifeboat_core::postgres::PostgresError;
use lifeboat_sandbox::{PostgresCluster, PostgresOptions, ServerTls, TestCertificateAuthority};

use crate::harness::{Backend, CATALOG, Settings, TestEnv, stderr};

fn tls_only(server_names: &[&str]) -> PostgresOptions {
    PostgresOptions {
        tls: Some(ServerTls {
            server_names: server_names.iter().map(|name| (*name).to_owned()).collect(),
            hostssl_only: true,
        }),
    }
}

fn cluster_settings(sslmode: &str, root: Option<&std::path::Path>) -> String {
    let mut text = format!("sslmode = {sslmode:?}\n");
    if let Some(root) = root {
        text.push_str(&format!(
            "ssl_root_cert = {:?}\n",
            root.display().to_string()
        ));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backups_restores_and_the_catalog_go_over_verified_tls_and_a_wrong_ca_is_refused() {
    let env = TestEnv::start_with_postgres(Backend::Embedded, 1, &tls_only(&["127.0.0.1"])).await;
    env.create_tenant_database("acme", 200).await;
    env.create_catalog().await;
    let root = env.postgres.tls_root_certificate().expect("a TLS cluster");
    let verified = Settings {
        min_regions: Some(1),
        extra: CATALOG.to_owned(),
        cluster_extra: cluster_settings("verify-full", Some(root)),
        ..Settings::default()
    };
    let config = env.config_file(&verified);
    let run = |config: &std::path::Path, arguments: &[&str]| env.lifeboat(config, arguments);

    // The catalog's pool, pg_dump and the row counts, pg_restore and its verification.
    let migrated = run(&config, &["controller", "migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let backed_up = run(&config, &["backup", "--tenant", "acme"]);
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    let restored = run(
        &config,
        &[
            "restore",
            "--tenant",
            "acme",
            "--into",
            "acme_copy",
            "--latest",
        ],
    );
    assert!(restored.status.success(), "{}", stderr(&restored));
    let copy = env.postgres.connect("acme_copy").await.expect("connect");
    let tables: i64 = copy
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .expect("count tables")
        .get(0);
    assert_eq!(tables, 3, "the restored copy has the tenant's tables");

    // Without TLS the server turns lifeboat away (it takes TCP only over TLS): the
    // successes above went over TLS.
    let plain = Settings {
        cluster_extra: cluster_settings("disable", None),
        ..verified.clone()
    };
    let refused = run(&env.config_file(&plain), &["backup", "--tenant", "acme"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("no encryption"),
        "the server refuses a plain connection: {}",
        stderr(&refused)
    );

    // A CA that did not sign the server's certificate: one clear error naming the cluster,
    // the mode and the file, for the catalog as for a backup; nothing is uploaded.
    let other_authority = TestCertificateAuthority::generate("another CA").expect("CA");
    let other_root = env.dir.path().join("other-ca.pem");
    other_authority
        .write_certificate(&other_root)
        .expect("write the other CA");
    let wrong_ca = Settings {
        cluster_extra: cluster_settings("verify-full", Some(&other_root)),
        ..verified.clone()
    };
    let wrong_ca = env.config_file(&wrong_ca);
    for arguments in [
        &["backup", "--tenant", "acme"][..],
        &["controller", "migrate"][..],
    ] {
        let refused = run(&wrong_ca, arguments);
        assert!(!refused.status.success(), "{arguments:?}");
        let message = stderr(&refused);
        assert!(
            message.contains("TLS to cluster main")
                && message.contains("sslmode verify-full")
                && message.contains("not signed by a CA in ssl_root_cert")
                && message.contains("other-ca.pem"),
            "{arguments:?}: {message}"
        );
    }
    let listed = run(&config, &["backups", "list", "--tenant", "acme", "--json"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    let backups: serde_json::Value =
        serde_json::from_slice(&listed.stdout).expect("backups list --json");
    assert_eq!(
        backups.as_array().map(Vec::len),
        Some(1),
        "the refused backup left nothing: {backups}"
    );
}

/// Whether `client`'s connection is encrypted, as the server sees it.
async fn uses_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0)
}

fn cluster_config(server: &PostgresCluster, host: &str, tls: ClusterTls) -> ClusterConfig {
    ClusterConfig {
        name: ClusterName::parse("main").expect("name"),
        host: host.to_owned(),
        port: server.port(),
        user: server.superuser().to_owned(),
        password: Some(server.superuser_password().clone()),
        maintenance_database: "postgres".to_owned(),
        tls,
    }
}

#[tokio::test]
async fn verify_full_checks_the_host_name_verify_ca_only_the_chain() {
    let server = PostgresCluster::start_temporary_with(&tls_only(&["db.internal"]))
        .await
        .expect("start a TLS cluster");
    let root = server
        .tls_root_certificate()
        .expect("a TLS cluster")
        .to_path_buf();
    let with_mode = |mode| {
        cluster_config(
            &server,
            "127.0.0.1",
            ClusterTls {
                mode,
                root_cert_file: Some(root.clone()),
            },
        )
    };
    let error = lifeboat_core::postgres::connect(&with_mode(SslMode::VerifyFull), "postgres")
        .await
        .expect_err("the certificate names db.internal, not 127.0.0.1");
    assert!(matches!(error, PostgresError::Tls(_)), "{error:?}");
    assert!(error.is_permanent(), "no retry mends a certificate");
    assert!(
        error
            .to_string()
            .contains("not valid for host \"127.0.0.1\""),
        "{error}"
    );
    for mode in [SslMode::VerifyCa, SslMode::Require] {
        let client = lifeboat_core::postgres::connect(&with_mode(mode), "postgres")
            .await
            .unwrap_or_else(|error| panic!("{mode}: the chain holds: {error}"));
        let encrypted = uses_tls(&client).await;
        assert!(encrypted, "{mode}");
    }
}

#[tokio::test]
async fn required_tls_is_refused_by_a_server_without_it_and_prefer_falls_back() {
    let server = PostgresCluster::start_temporary()
        .await
        .expect("start a plain cluster");
    let with_mode = |mode| {
        cluster_config(
            &server,
            "127.0.0.1",
            ClusterTls {
                mode,
                root_cert_file: None,
            },
        )
    };
    let error = lifeboat_core::postgres::connect(&with_mode(SslMode::Require), "postgres")
        .await
        .expect_err("the server has no TLS");
    assert!(
        error
            .to_string()
            .contains("does not accept TLS connections, and sslmode require requires TLS"),
        "{error}"
    );
    for mode in [SslMode::Prefer, SslMode::Disable] {
        let client = lifeboat_core::postgres::connect(&with_mode(mode), "postgres")
            .await
            .unwrap_or_else(|error| panic!("{mode}: {error}"));
        let encrypted = uses_tls(&client).await;
        assert!(!encrypted, "{mode}");
    }
}
