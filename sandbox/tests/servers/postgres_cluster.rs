//! PostgreSQL cluster: starts, answers, keeps its data across a restart in the same directory,
//! and leaves nothing behind when stopped or dropped.

use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Instant;

use lifeboat_sandbox::{PostgresCluster, postgres_bin_dir};

fn port_accepts_connections(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn bin_dir_holds_the_server_and_dump_binaries() {
    let bin_dir = postgres_bin_dir().expect("find the postgres binaries");
    for binary in ["initdb", "postgres", "pg_dump"] {
        assert!(
            bin_dir.join(binary).is_file(),
            "{binary} is missing from {}",
            bin_dir.display()
        );
    }
}

#[tokio::test]
async fn temporary_cluster_answers_queries_and_creates_databases() {
    let started_at = Instant::now();
    let cluster = PostgresCluster::start_temporary()
        .await
        .expect("start a temporary cluster");
    println!(
        "postgres start_temporary (initdb + start) took {:?}",
        started_at.elapsed()
    );
    assert_eq!(cluster.host(), "127.0.0.1");
    assert!(port_accepts_connections(cluster.port()));
    if nix::unistd::geteuid().is_root() {
        assert_eq!(cluster.superuser(), "postgres");
    }
    assert!(cluster.bin_dir().join("pg_dump").is_file());

    let client = cluster
        .connect("postgres")
        .await
        .expect("connect to the postgres database");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("select 1")
        .get(0);
    assert_eq!(one, 1);
    let fsync: String = client
        .query_one("SHOW fsync", &[])
        .await
        .expect("show fsync")
        .get(0);
    assert_eq!(fsync, "off", "the throwaway cluster runs without fsync");

    // A name that needs quoting both as an SQL identifier and in the connection string.
    let database_name = r"lifeboat test's \ database";
    client
        .batch_execute(&format!("CREATE DATABASE \"{database_name}\""))
        .await
        .expect("create database");
    let database_client = cluster
        .connect(database_name)
        .await
        .expect("connect to the new database");
    let current_database: String = database_client
        .query_one("SELECT current_database()", &[])
        .await
        .expect("select current_database")
        .get(0);
    assert_eq!(current_database, database_name);

    let port = cluster.port();
    let directory = cluster.directory().to_path_buf();
    assert!(directory.join("postgres.log").is_file());
    cluster.stop().await.expect("stop the cluster");
    assert!(
        !port_accepts_connections(port),
        "postgres still listens after stop"
    );
    assert!(
        !directory.exists(),
        "the temporary directory outlives the cluster"
    );
}

#[tokio::test]
async fn cluster_in_a_given_directory_keeps_its_data_across_restarts() {
    let parent_directory = tempfile::tempdir().expect("create a temporary directory");
    std::fs::set_permissions(
        parent_directory.path(),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("make the temporary directory traversable");
    let cluster_directory = parent_directory.path().join("cluster");

    let first_run = PostgresCluster::start(&cluster_directory)
        .await
        .expect("start the first time");
    let client = first_run.connect("postgres").await.expect("connect");
    client
        .batch_execute(
            "CREATE TABLE survivor (note text); INSERT INTO survivor VALUES ('still here');",
        )
        .await
        .expect("create and fill a table");
    drop(client);
    first_run.stop().await.expect("stop the first run");
    assert!(
        cluster_directory.join("data/PG_VERSION").is_file(),
        "stop must keep a given directory"
    );

    let started_at = Instant::now();
    let second_run = PostgresCluster::start(&cluster_directory)
        .await
        .expect("start again in the same directory");
    println!(
        "postgres restart on an initialised directory took {:?}",
        started_at.elapsed()
    );
    let client = second_run.connect("postgres").await.expect("connect again");
    let note: String = client
        .query_one("SELECT note FROM survivor", &[])
        .await
        .expect("read the table back")
        .get(0);
    assert_eq!(note, "still here");
}

#[tokio::test]
async fn dropping_a_cluster_stops_the_server_and_removes_its_directory() {
    let cluster = PostgresCluster::start_temporary()
        .await
        .expect("start a temporary cluster");
    let client = cluster.connect("postgres").await.expect("connect");
    let port = cluster.port();
    let directory = cluster.directory().to_path_buf();
    drop(cluster);
    assert!(
        !port_accepts_connections(port),
        "postgres still listens after drop"
    );
    assert!(
        !directory.exists(),
        "the temporary directory outlives the cluster"
    );
    assert!(
        client.query_one("SELECT 1", &[]).await.is_err(),
        "the old connection must be closed"
    );
}

#[tokio::test]
async fn a_directory_that_is_not_a_cluster_and_not_creatable_is_a_clear_error() {
    let error = PostgresCluster::start(std::path::Path::new("/proc/lifeboat-cannot-exist"))
        .await
        .expect_err("/proc cannot hold a cluster");
    let message = format!("{error:#}");
    assert!(message.contains("/proc/lifeboat-cannot-exist"), "{message}");
}

#[tokio::test]
async fn only_the_superuser_password_of_this_start_opens_the_cluster_over_tcp() {
    use secrecy::ExposeSecret as _;
    let directory = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(directory.path(), std::fs::Permissions::from_mode(0o755))
        .expect("make the directory traversable");
    let cluster = PostgresCluster::start(&directory.path().join("cluster"))
        .await
        .expect("start");
    let over_tcp = |password: &str| {
        let mut config = tokio_postgres::Config::new();
        config
            .host("127.0.0.1")
            .port(cluster.port())
            .user(cluster.superuser())
            .dbname("postgres")
            .password(password);
        async move { config.connect(tokio_postgres::NoTls).await.map(|_| ()) }
    };
    for refused in ["", "wrong"] {
        let error = over_tcp(refused).await.expect_err("a wrong password");
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
            "{refused:?}: {error:?}"
        );
    }
    let first_password = cluster.superuser_password().expose_secret().to_owned();
    assert_eq!(first_password.len(), 32);
    over_tcp(&first_password)
        .await
        .expect("this start's password");
    let (_client, connection) = tokio_postgres::connect(
        &cluster.connection_string("postgres"),
        tokio_postgres::NoTls,
    )
    .await
    .expect("the connection string carries the password");
    drop(connection);
    // The trusted socket lives in a directory no other user may enter.
    let socket_directory = cluster.directory().join("socket");
    let mode = std::fs::metadata(&socket_directory)
        .expect("socket directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "{}", socket_directory.display());

    // A restart in the same directory sets a new password; the old one no longer works.
    cluster.stop().await.expect("stop");
    let cluster = PostgresCluster::start(&directory.path().join("cluster"))
        .await
        .expect("restart");
    let second_password = cluster.superuser_password().expose_secret().to_owned();
    assert_ne!(first_password, second_password);
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(cluster.port())
        .user(cluster.superuser())
        .dbname("postgres")
        .password(first_password.as_str());
    assert!(config.connect(tokio_postgres::NoTls).await.is_err());
    config.password(second_password.as_str());
    let (_client, _connection) = config
        .connect(tokio_postgres::NoTls)
        .await
        .expect("the new password");
}
