//! Sessions over HTTP: CSRF tokens on every change, a new session at every sign-in (no
//! fixation), sign-out, the second factor at the door, throttled guessing.

use lifeboat_controller::accounts::Role;
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::json;

use super::{Caller, Portal, code, session_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_need_the_sessions_csrf_token() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let session = portal.sign_in(&owner).await;
    let (status, body) = portal
        .call(
            &Caller::CookieOnly(session.clone()),
            Method::POST,
            "/api/v1/tenants/acme/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "csrf");
    let mut wrong = session.clone();
    wrong.csrf = "0".repeat(64);
    let (status, body) = portal
        .call(
            &Caller::Session(wrong),
            Method::POST,
            "/api/v1/tenants/acme/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(
        portal
            .scalar("SELECT count(*) FROM jobs WHERE params->>'backup_kind' = 'manual'")
            .await,
        0,
        "nothing was queued by a request without the CSRF token"
    );
    // Reading needs none; the right one lets the change through.
    let (status, _) = portal
        .call(
            &Caller::CookieOnly(session.clone()),
            Method::GET,
            "/api/v1/session",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = portal
        .call(
            &Caller::Session(session),
            Method::POST,
            "/api/v1/tenants/acme/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_never_keeps_a_session_the_browser_brought_and_sign_out_ends_it() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let planted = portal.sign_in(&owner).await;
    // Signing in with that cookie present makes a new session and ends the old one.
    let fresh = session_of(
        portal
            .sign_in_with(&owner, None, Some(&planted.cookie))
            .await,
    )
    .await;
    assert_ne!(fresh.cookie, planted.cookie);
    let (status, body) = portal
        .call(
            &Caller::Session(planted),
            Method::GET,
            "/api/v1/session",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(code(&body), "session_ended");
    let (status, me) = portal
        .call(
            &Caller::Session(fresh.clone()),
            Method::GET,
            "/api/v1/session",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["login"], "acme-owner");
    assert_eq!(me["tenant"], "acme");

    let (status, _) = portal
        .call(
            &Caller::Session(fresh.clone()),
            Method::DELETE,
            "/api/v1/session",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = portal
        .call(
            &Caller::Session(fresh),
            Method::GET,
            "/api/v1/session",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_need_their_second_factor_and_guessing_is_throttled() {
    let portal = Portal::start().await;
    let helpdesk = portal.user("desk", Role::Helpdesk, None).await;
    let without_code = portal.sign_in_with(&helpdesk, None, None).await;
    assert_eq!(without_code.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = without_code.json().await.expect("json");
    assert_eq!(code(&body), "login_refused");
    let wrong_code = portal
        .sign_in_with(&helpdesk, Some(SecretString::from("000000")), None)
        .await;
    assert_eq!(wrong_code.status(), StatusCode::UNAUTHORIZED);
    // The same answer for a login that does not exist.
    let (status, unknown) = portal
        .call(
            &Caller::Nobody,
            Method::POST,
            "/api/v1/session",
            Some(json!({"login": "nobody", "password": "whatever-it-is-123"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown["error"], body["error"]);

    // Wrong passwords: after the free ones, the login waits.
    let mut throttled = false;
    for _ in 0..4 {
        let (status, body) = portal
            .call(
                &Caller::Nobody,
                Method::POST,
                "/api/v1/session",
                Some(json!({"login": "desk", "password": "not-the-password-1"})),
            )
            .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(code(&body), "login_throttled");
            throttled = true;
            break;
        }
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    assert!(throttled, "repeated wrong passwords were never throttled");
    // Even the right password waits now.
    let right = portal
        .sign_in_with(&helpdesk, Some(helpdesk.code(0)), None)
        .await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
}
