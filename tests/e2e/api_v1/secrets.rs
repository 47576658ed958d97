//! No secret reaches a log: a whole session of the API — sign-ins with codes, a wrong
//! password, a TOTP enrolment, tokens issued, used and revoked, a helpdesk restore with its
//! code, a copy's password — logged at TRACE level by every crate in the process, and then
//! no password, token, cookie, CSRF token, TOTP secret or code appears in what was logged.

use std::io::Write;
use std::sync::{Arc, Mutex};

use lifeboat_controller::accounts::Role;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{Caller, Portal};

/// Everything written to the log.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(lifeboat_core::logging::log_filter("trace"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let helpdesk = portal.user("desk", Role::Helpdesk, None).await;
    let mut secrets: Vec<String> = vec![
        owner.password.expose_secret().to_owned(),
        helpdesk.password.expose_secret().to_owned(),
        helpdesk
            .totp_secret
            .as_ref()
            .expect("enrolled")
            .expose_secret()
            .to_owned(),
    ];

    let owner_session = portal.sign_in(&owner).await;
    let desk_code = helpdesk.code(0);
    let desk_session = super::session_of(
        portal
            .sign_in_with(&helpdesk, Some(desk_code.clone()), None)
            .await,
    )
    .await;
    secrets.push(desk_code.expose_secret().to_owned());
    for session in [&owner_session, &desk_session] {
        secrets.push(session.cookie.clone());
        secrets.push(session.csrf.clone());
    }
    let owner_caller = Caller::Session(owner_session);
    let desk = Caller::Session(desk_session);

    // A wrong password is logged as refused, without the password.
    let wrong = "wrong-password-that-must-not-be-logged";
    let (status, _) = portal
        .call(
            &Caller::Nobody,
            Method::POST,
            "/api/v1/session",
            Some(json!({"login": "acme-owner", "password": wrong})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    secrets.push(wrong.to_owned());

    let (status, enrolment) = portal
        .call(&owner_caller, Method::POST, "/api/v1/session/totp", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    secrets.push(enrolment["secret"].as_str().expect("secret").to_owned());

    let (status, issued) = portal
        .call(
            &owner_caller,
            Method::POST,
            "/api/v1/tenants/acme/tokens",
            Some(json!({"name": "ci", "role": "viewer"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let token = issued["token"].as_str().expect("token").to_owned();
    secrets.push(token.clone());
    let (status, _) = portal
        .call(
            &Caller::Bearer(token.clone()),
            Method::GET,
            "/api/v1/tenants/acme/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = portal
        .call(
            &owner_caller,
            Method::DELETE,
            "/api/v1/tenants/acme/tokens/ci",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = portal
        .call(
            &Caller::Bearer(token),
            Method::GET,
            "/api/v1/tenants/acme/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let restore_code = helpdesk.code(1);
    let (status, copy) = portal
        .call(
            &desk,
            Method::POST,
            "/api/v1/tenants/acme/restores",
            Some(json!({
                "mode": "copy", "into": "acme_copy", "reason": "look at yesterday's data",
                "confirm_tenant": "acme", "code": restore_code.expose_secret(),
            })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{copy}");
    secrets.push(restore_code.expose_secret().to_owned());
    secrets.push(copy["copy_password"].as_str().expect("password").to_owned());

    let logged = String::from_utf8_lossy(&captured.0.lock().expect("log").clone()).into_owned();
    assert!(
        logged.contains("login refused") && logged.contains("acme-owner"),
        "the capture works: the refused sign-in is logged"
    );
    for secret in &secrets {
        assert!(!secret.is_empty());
        if let Some(line) = logged.lines().find(|line| line.contains(secret.as_str())) {
            panic!("a secret reached the log: {line}");
        }
    }
}
