//! The swap of a restored database onto live, its rollback, and the sessions in its way.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use lifeboat_core::config::ClusterConfig;
use lifeboat_provisioner::{
    ProvisionError, SwapReport, SwapRequest, SwapState, swap_databases, swap_state,
};

use crate::common::{connect, execute, start_cluster, texts};

const PATIENCE: Duration = Duration::from_secs(10);

/// Live: owned by `tenant`, data "old", settings, a grant to `reader`, a comment and a
/// connection limit. Shadow: data "new", nothing else.
async fn live_and_shadow(cluster: &ClusterConfig) {
    execute(
        cluster,
        "postgres",
        "CREATE ROLE tenant; CREATE ROLE reader",
    )
    .await;
    execute(cluster, "postgres", "CREATE DATABASE live OWNER tenant").await;
    execute(cluster, "postgres", "CREATE DATABASE shadow").await;
    execute(
        cluster,
        "postgres",
        r#"ALTER DATABASE live SET search_path = "$user", "we ird", public;
           ALTER DATABASE live SET work_mem = '8MB';
           ALTER DATABASE live SET app.tenant = 'it''s';
           GRANT CONNECT ON DATABASE live TO reader;
           COMMENT ON DATABASE live IS 'the live one';
           ALTER DATABASE live CONNECTION LIMIT 50"#,
    )
    .await;
    execute(
        cluster,
        "live",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('old')",
    )
    .await;
    execute(
        cluster,
        "shadow",
        "CREATE TABLE t (v text); INSERT INTO t VALUES ('new')",
    )
    .await;
}

/// Everything database-level of `database`, as one comparable text per line.
async fn database_level(cluster: &ClusterConfig, database: &str) -> Vec<String> {
    let literal = database.replace('\'', "''");
    texts(
        cluster,
        "postgres",
        &format!(
            "SELECT 'owner ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = '{literal}'
             UNION ALL SELECT 'limit ' || datconnlimit FROM pg_database WHERE datname = '{literal}'
             UNION ALL SELECT 'comment ' || coalesce(shobj_description(oid, 'pg_database'), '-') FROM pg_database WHERE datname = '{literal}'
             UNION ALL SELECT 'grant ' || CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee) END || ' ' || a.privilege_type
               FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a WHERE d.datname = '{literal}'
             UNION ALL SELECT 'set ' || unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase
               WHERE d.datname = '{literal}' AND s.setrole = 0
             ORDER BY 1"
        ),
    )
    .await
}

async fn allows_connections(cluster: &ClusterConfig, database: &str) -> bool {
    connect(cluster, "postgres")
        .await
        .query_one(
            "SELECT datallowconn FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .expect("datallowconn")
        .get(0)
}

async fn data(cluster: &ClusterConfig, database: &str) -> Vec<String> {
    texts(cluster, database, "SELECT v FROM t").await
}

async fn swap(cluster: &ClusterConfig, shadow: &str, kept: &str) -> SwapReport {
    swap_databases(
        cluster,
        SwapRequest {
            live: "live",
            shadow,
            kept,
            rename_patience: PATIENCE,
        },
    )
    .await
    .expect("swap")
}

#[tokio::test]
async fn settings_and_grants_survive_the_swap_and_rollback_twice() {
    let (_server, cluster) = start_cluster().await;
    live_and_shadow(&cluster).await;
    let live_settings = database_level(&cluster, "live").await;
    assert!(live_settings.len() > 8, "{live_settings:?}");

    assert_eq!(
        swap_state(&cluster, "live", "shadow", "kept")
            .await
            .expect("state"),
        SwapState::NotSwapped
    );
    swap(&cluster, "shadow", "kept").await;
    assert_eq!(
        swap_state(&cluster, "live", "shadow", "kept")
            .await
            .expect("state"),
        SwapState::Swapped
    );
    assert_eq!(data(&cluster, "live").await, ["new"]);
    assert_eq!(database_level(&cluster, "live").await, live_settings);
    assert!(allows_connections(&cluster, "live").await);
    assert!(
        !allows_connections(&cluster, "kept").await,
        "nobody writes to the old data"
    );
    // The setting of a list reads back exactly in a new session.
    assert_eq!(
        texts(&cluster, "live", "SHOW search_path").await,
        [r#""$user", "we ird", public"#]
    );

    // Rollback: the kept one comes back in, the restored one is kept in turn.
    swap(&cluster, "kept", "shadow").await;
    assert_eq!(data(&cluster, "live").await, ["old"]);
    assert_eq!(database_level(&cluster, "live").await, live_settings);
    assert!(allows_connections(&cluster, "live").await);
    assert!(!allows_connections(&cluster, "shadow").await);

    // The rollback of the rollback.
    swap(&cluster, "shadow", "kept").await;
    assert_eq!(data(&cluster, "live").await, ["new"]);
    assert_eq!(database_level(&cluster, "live").await, live_settings);
    assert!(allows_connections(&cluster, "live").await);
    assert!(!allows_connections(&cluster, "kept").await);

    let taken = swap_databases(
        &cluster,
        SwapRequest {
            live: "live",
            shadow: "nothing",
            kept: "kept",
            rename_patience: PATIENCE,
        },
    )
    .await
    .expect_err("no such incoming database");
    assert!(
        matches!(taken, ProvisionError::SwapRefused { .. }),
        "{taken:?}"
    );
}

#[tokio::test]
async fn sessions_open_on_live_are_terminated() {
    let (_server, cluster) = start_cluster().await;
    live_and_shadow(&cluster).await;
    let idle = connect(&cluster, "live").await;
    let in_transaction = connect(&cluster, "live").await;
    in_transaction
        .batch_execute("BEGIN; SELECT * FROM t")
        .await
        .expect("open a transaction");

    let report = swap(&cluster, "shadow", "kept").await;
    assert!(report.sessions_terminated >= 2, "{report:?}");
    assert!(idle.batch_execute("SELECT 1").await.is_err());
    assert!(in_transaction.batch_execute("SELECT 1").await.is_err());
    assert_eq!(data(&cluster, "live").await, ["new"]);
    assert!(allows_connections(&cluster, "live").await);
}

#[tokio::test]
async fn a_client_reconnecting_in_a_loop_does_not_keep_the_swap_from_happening() {
    let (_server, cluster) = start_cluster().await;
    live_and_shadow(&cluster).await;
    let stop = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (cluster, stop, connections) = (cluster.clone(), stop.clone(), connections.clone());
        clients.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(client) = lifeboat_core::postgres::connect(&cluster, "live").await {
                    connections.fetch_add(1, Ordering::Relaxed);
                    let _ = client.batch_execute("SELECT pg_sleep(0.01)").await;
                }
            }
        }));
    }
    while connections.load(Ordering::Relaxed) < 10 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = swap(&cluster, "shadow", "kept").await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("client task");
    }
    assert!(report.offline < PATIENCE, "{report:?}");
    assert_eq!(data(&cluster, "live").await, ["new"]);
    assert!(allows_connections(&cluster, "live").await);
}

#[tokio::test]
async fn a_rename_blocked_past_the_patience_leaves_live_as_before() {
    let (_server, cluster) = start_cluster().await;
    live_and_shadow(&cluster).await;
    let live_settings = database_level(&cluster, "live").await;
    // A transaction holding a lock on live's database object: the rename waits on it.
    let holder = connect(&cluster, "postgres").await;
    holder
        .batch_execute("BEGIN; COMMENT ON DATABASE live IS 'the live one'")
        .await
        .expect("hold the lock");

    let patience = Duration::from_millis(300);
    let error = swap_databases(
        &cluster,
        SwapRequest {
            live: "live",
            shadow: "shadow",
            kept: "kept",
            rename_patience: patience,
        },
    )
    .await
    .expect_err("blocked");
    assert!(
        matches!(&error, ProvisionError::SwapTimedOut { attempts, .. } if *attempts >= 1),
        "{error:?}"
    );
    holder.batch_execute("ROLLBACK").await.expect("release");
    assert_eq!(
        swap_state(&cluster, "live", "shadow", "kept")
            .await
            .expect("state"),
        SwapState::NotSwapped
    );
    assert_eq!(data(&cluster, "live").await, ["old"]);
    assert_eq!(data(&cluster, "shadow").await, ["new"]);
    assert!(allows_connections(&cluster, "live").await);
    assert!(allows_connections(&cluster, "shadow").await);
    assert_eq!(database_level(&cluster, "live").await, live_settings);
}

/// Not a check: the offline time of a swap of a small database, printed for BENCHMARKS.md
/// (`cargo nextest run -E 'test(offline_time)' --no-capture`).
#[tokio::test]
async fn offline_time_of_a_small_swap() {
    let (_server, cluster) = start_cluster().await;
    live_and_shadow(&cluster).await;
    for with_session in [false, true] {
        let mut offline = Vec::new();
        for round in 0..10 {
            let session = if with_session {
                let client = connect(&cluster, "live").await;
                client
                    .batch_execute("BEGIN; SELECT * FROM t")
                    .await
                    .expect("begin");
                Some(client)
            } else {
                None
            };
            let (incoming, kept) = if round % 2 == 0 {
                ("shadow", "kept")
            } else {
                ("kept", "shadow")
            };
            offline.push(swap(&cluster, incoming, kept).await.offline);
            drop(session);
        }
        offline.sort();
        println!(
            "swap offline, {}: median {:?}, min {:?}, max {:?}",
            if with_session {
                "one open transaction on live"
            } else {
                "no session"
            },
            offline[offline.len() / 2],
            offline[0],
            offline[offline.len() - 1]
        );
    }
}
