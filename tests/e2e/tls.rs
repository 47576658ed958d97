//! TLS: the API over HTTPS from certificate files, agents that trust a private CA with
//! `--ca-file` and nothing else, no plain HTTP on the network unless asked for, and a
//! `/metrics` that wants its token when one is configured.

use std::sync::Arc;

use lifeboat_agent::worker::{AgentError, ControllerClient};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::server::{self, Controller, ControllerOptions};
use lifeboat_controller::tls::{self, ApiListener, ListenError};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, api_options, stderr};

fn token() -> SecretString {
    SecretString::from("lbt_not-a-real-token".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_serves_https_and_a_client_needs_the_ca_to_reach_it() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_catalog().await;
    let settings = Settings {
        min_regions: Some(1),
        extra: CATALOG.to_owned(),
        ..Settings::default()
    };
    let config_path = env.config_file(&settings);
    let migrated = env.lifeboat(&config_path, &["controller", "migrate"]);
    assert!(migrated.status.success(), "{}", stderr(&migrated));
    let config = env.config(&settings);
    let catalog = Catalog::open(&config).await.expect("open catalog");
    let files = tls::write_self_signed(env.dir.path()).expect("self-signed certificate");
    let listener = ApiListener::bind(
        "127.0.0.1:0".parse().expect("address"),
        Some(&files),
        false,
        false,
    )
    .await
    .expect("bind with TLS");
    assert_eq!(listener.scheme(), "https");
    let address = listener.local_addr().expect("address");
    let metrics_token = "metrics-token-for-the-test";
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    tokio::spawn(server::serve(
        catalog,
        listener,
        ControllerOptions {
            metrics_token: Some(SecretString::from(metrics_token.to_owned())),
            ..api_options(&config, QueuePolicy::default())
        },
        None,
        Controller {
            work_ready: Arc::default(),
        },
        cancel.clone(),
    ));

    let https = format!("https://{address}");
    let trusting = ControllerClient::new(&https, token(), Some(&files.cert_file), false)
        .expect("client with the CA");
    trusting.healthz().await.expect("healthz over TLS");

    // Without the CA the certificate is unknown: the client refuses before sending its token.
    let untrusting = ControllerClient::new(&https, token(), None, false).expect("client");
    let error = untrusting.healthz().await.expect_err("unknown certificate");
    assert!(matches!(error, AgentError::Unreachable { .. }), "{error}");
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );

    // Plain HTTP to the TLS port gets no answer.
    let plain =
        ControllerClient::new(&format!("http://{address}"), token(), None, false).expect("client");
    assert!(plain.healthz().await.is_err());

    // /metrics names tenants: with a token configured, even loopback must present it.
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&files.cert_file).expect("read"))
                .expect("certificate"),
        )
        .build()
        .expect("reqwest");
    let without = http
        .get(format!("{https}/metrics"))
        .send()
        .await
        .expect("send");
    assert_eq!(without.status(), reqwest::StatusCode::UNAUTHORIZED);
    let with = http
        .get(format!("{https}/metrics"))
        .bearer_auth(metrics_token)
        .send()
        .await
        .expect("send");
    assert_eq!(with.status(), reqwest::StatusCode::OK);
}

#[tokio::test]
async fn plain_http_stays_on_loopback_unless_insecure_http_says_otherwise() {
    let network = "0.0.0.0:0".parse().expect("address");
    let refused = ApiListener::bind(network, None, false, false)
        .await
        .expect_err("plain HTTP on the network");
    assert!(
        matches!(refused, ListenError::PlainOnNetwork(_)),
        "{refused}"
    );
    assert!(refused.to_string().contains("tls_cert_file"), "{refused}");
    let allowed = ApiListener::bind(network, None, true, false)
        .await
        .expect("--insecure-http");
    assert_eq!(allowed.scheme(), "http");
    ApiListener::bind("127.0.0.1:0".parse().expect("address"), None, false, false)
        .await
        .expect("plain HTTP on loopback");

    // The agent's side of the same rule: its token never crosses the network in the clear.
    let error = ControllerClient::new("http://192.0.2.10:7070", token(), None, false)
        .expect_err("plain HTTP to a remote controller");
    assert!(matches!(error, AgentError::PlainHttp(_)), "{error}");
    ControllerClient::new("http://192.0.2.10:7070", token(), None, true).expect("insecure");
    ControllerClient::new("http://[::1]:7070", token(), None, false).expect("loopback");
    ControllerClient::new("https://192.0.2.10:7070", token(), None, false).expect("https");
}
