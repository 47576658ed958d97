//! What the provisioner's tests share: a throwaway cluster and connections to it as the
//! superuser or as a tenant role with its password.

use lifeboat_core::config::ClusterConfig;
use lifeboat_core::ids::ClusterName;
use lifeboat_sandbox::PostgresCluster;
use secrecy::SecretString;

pub async fn start_cluster() -> (PostgresCluster, ClusterConfig) {
    let server = PostgresCluster::start_temporary()
        .await
        .expect("start postgres");
    let cluster = ClusterConfig {
        name: ClusterName::parse("main").expect("cluster name"),
        host: server.host().to_owned(),
        port: server.port(),
        user: server.superuser().to_owned(),
        password: Some(server.superuser_password().clone()),
        maintenance_database: "postgres".to_owned(),
        tls: lifeboat_core::config::ClusterTls::default(),
    };
    (server, cluster)
}

/// The same cluster, as `role` with `password` over TCP.
pub fn as_role(cluster: &ClusterConfig, role: &str, password: &SecretString) -> ClusterConfig {
    ClusterConfig {
        user: role.to_owned(),
        password: Some(password.clone()),
        ..cluster.clone()
    }
}

pub async fn connect(cluster: &ClusterConfig, database: &str) -> tokio_postgres::Client {
    lifeboat_core::postgres::connect(cluster, database)
        .await
        .expect("connect")
}

/// Run `sql` in `database` as the cluster's user.
pub async fn execute(cluster: &ClusterConfig, database: &str, sql: &str) {
    connect(cluster, database)
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
}

/// The texts of `query`'s first column.
pub async fn texts(cluster: &ClusterConfig, database: &str, query: &str) -> Vec<String> {
    connect(cluster, database)
        .await
        .query(query, &[])
        .await
        .unwrap_or_else(|error| panic!("{query}: {error:?}"))
        .into_iter()
        .map(|row| row.get(0))
        .collect()
}
