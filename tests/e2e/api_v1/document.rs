//! The OpenAPI document matches what the server serves, and malformed requests get one
//! clear JSON error with the right status.

use std::collections::BTreeSet;

use lifeboat_controller::accounts::Role;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Caller, Portal, code};

/// Every operation of `/api/v1`, as the router's documentation lists them.
const OPERATIONS: &[(&str, &str)] = &[
    ("post", "/api/v1/agent/claim"),
    ("post", "/api/v1/jobs/{id}/heartbeat"),
    ("post", "/api/v1/jobs/{id}/report"),
    ("post", "/api/v1/session"),
    ("get", "/api/v1/session"),
    ("delete", "/api/v1/session"),
    ("get", "/api/v1/tenants"),
    ("get", "/api/v1/tenants/{tenant}/backups"),
    ("post", "/api/v1/tenants/{tenant}/backups"),
    ("get", "/api/v1/tenants/{tenant}/drills"),
    ("get", "/api/v1/tenants/{tenant}/audit"),
    ("post", "/api/v1/tenants/{tenant}/freeze"),
    ("delete", "/api/v1/tenants/{tenant}/freeze"),
    ("get", "/api/v1/tenants/{tenant}/restores"),
    ("post", "/api/v1/tenants/{tenant}/restores"),
    ("get", "/api/v1/tenants/{tenant}/restores/plan"),
    ("get", "/api/v1/tenants/{tenant}/restores/{job}"),
    ("post", "/api/v1/tenants/{tenant}/rollback"),
    ("get", "/api/v1/tenants/{tenant}/restore-asks"),
    ("post", "/api/v1/tenants/{tenant}/restore-asks"),
    ("post", "/api/v1/tenants/{tenant}/restore-asks/{ask}/close"),
    ("get", "/api/v1/restore-asks"),
    ("get", "/api/v1/tenants/{tenant}/users"),
    ("post", "/api/v1/tenants/{tenant}/users"),
    ("post", "/api/v1/tenants/{tenant}/users/{login}/disable"),
    ("post", "/api/v1/tenants/{tenant}/users/{login}/enable"),
    ("get", "/api/v1/users"),
    ("post", "/api/v1/users"),
    ("get", "/api/v1/tenants/{tenant}/tokens"),
    ("post", "/api/v1/tenants/{tenant}/tokens"),
    ("delete", "/api/v1/tenants/{tenant}/tokens/{name}"),
    ("post", "/api/v1/session/totp"),
    ("post", "/api/v1/session/totp/confirm"),
    ("post", "/api/v1/password-strength"),
    ("get", "/api/v1/trash"),
    ("post", "/api/v1/trash/{backup}/restore"),
    ("get", "/api/v1/downloads/{token}"),
    (
        "post",
        "/api/v1/tenants/{tenant}/backups/{backup}/download-link",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_exactly_the_routes_served() {
    let portal = Portal::start().await;
    let (status, document) = portal
        .call(&Caller::Nobody, Method::GET, "/api/v1/openapi.json", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.clone(), path.clone()));
            }
        }
    }
    let expected: BTreeSet<(String, String)> = OPERATIONS
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect();
    assert_eq!(documented, expected);
    assert!(document["components"]["schemas"]["BackupView"].is_object());

    // Every documented operation is served: without credentials it asks for them (or, for
    // the sign-in, for a body), never 404 or 405.
    for (method, path) in &documented {
        let concrete = path
            .replace("{tenant}", "acme")
            .replace("{id}", "1")
            .replace("{job}", "1")
            .replace("{ask}", "1")
            .replace("{login}", "someone")
            .replace("{name}", "ci")
            .replace("{backup}", "00000000-0000-0000-0000-000000000000")
            .replace("{token}", "lbd_unknown");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let (status, body) = portal
            .call(&Caller::Nobody, method.clone(), &concrete, Some(json!({})))
            .await;
        assert!(
            status == StatusCode::UNAUTHORIZED
                || (path == "/api/v1/session" && status == StatusCode::UNPROCESSABLE_ENTITY)
                // The link is the credential: an unknown one is not found (or, without an
                // identity to decrypt with, the controller says it cannot serve downloads).
                || (path == "/api/v1/downloads/{token}"
                    && [StatusCode::NOT_FOUND, StatusCode::SERVICE_UNAVAILABLE].contains(&status)),
            "{method} {concrete}: {status} {body}"
        );
    }
    // And what is not documented is not served.
    let (status, body) = portal
        .call(
            &Caller::Nobody,
            Method::GET,
            "/api/v1/tenants/acme/secrets",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(code(&body), "not_found");
    let (status, body) = portal
        .call(&Caller::Nobody, Method::PUT, "/api/v1/session", None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(code(&body), "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_one_clear_json_error_and_change_nothing() {
    let portal = Portal::start().await;
    let admin_user = portal.user("root", Role::Admin, None).await;
    let admin = Caller::Session(portal.sign_in(&admin_user).await);
    let raw = |body: &'static str| {
        let portal = &portal;
        let Caller::Session(session) = &admin else {
            unreachable!()
        };
        let session = session.clone();
        async move {
            let response = portal
                .http
                .post(format!("{}/api/v1/tenants/acme/freeze", portal.base))
                .header("cookie", format!("lifeboat_session={}", session.cookie))
                .header("x-csrf-token", session.csrf)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request");
            let status = response.status();
            (
                status,
                response.json::<Value>().await.expect("a JSON error"),
            )
        }
    };
    for (body, expected) in [
        ("{\"reason\": ", StatusCode::UNPROCESSABLE_ENTITY),
        ("{\"reason\": 42}", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "{\"reason\": \"x\", \"also\": 1}",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("[]", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (status, answer) = raw(body).await;
        assert_eq!(status, expected, "{body}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|text| !text.is_empty()),
            "{answer}"
        );
    }
    let oversized = format!("{{\"reason\": \"{}\"}}", "x".repeat(64 * 1024));
    let (status, answer) = portal
        .call(
            &admin,
            Method::POST,
            "/api/v1/tenants/acme/freeze",
            Some(serde_json::from_str(&oversized).expect("json")),
        )
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(code(&answer), "body_too_large");
    // A reason too long for the audit log, a hostile tenant name, an unknown one.
    let (status, answer) = portal
        .call(
            &admin,
            Method::POST,
            "/api/v1/tenants/acme/freeze",
            Some(json!({"reason": "x".repeat(600)})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    for hostile in ["..%2F..%2Fetc", "acme%00", "%E2%80%AEacme", "ACME", "a%20b"] {
        let (status, answer) = portal
            .call(
                &admin,
                Method::GET,
                &format!("/api/v1/tenants/{hostile}/backups"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{hostile}: {answer}");
    }
    let (status, answer) = portal
        .call(
            &admin,
            Method::GET,
            "/api/v1/tenants/acme/restores/plan?backup=not-a-uuid",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (status, answer) = portal
        .call(
            &admin,
            Method::GET,
            "/api/v1/tenants/acme/restores/notanumber",
            None,
        )
        .await;
    assert!(status.is_client_error(), "{answer}");
    assert_eq!(
        portal
            .scalar("SELECT count(*) FROM tenants WHERE frozen_at IS NOT NULL")
            .await,
        0,
        "no malformed request froze anything"
    );
}
