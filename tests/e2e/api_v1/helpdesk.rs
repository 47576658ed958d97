//! Helpdesk restores through the API: staff only, signed in, with a reason, the tenant's
//! name typed again and a fresh authenticator code; audited with their own name and
//! address.

use lifeboat_controller::accounts::Role;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;

use super::{Caller, Portal, code};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helpdesk_restore_needs_a_reason_the_name_and_a_fresh_code() {
    let portal = Portal::start().await;
    let helpdesk = portal.user("desk", Role::Helpdesk, None).await;
    let desk = Caller::Session(portal.sign_in(&helpdesk).await);
    let restores = "SELECT count(*) FROM jobs WHERE kind = 'restore'";

    let (status, plan) = portal
        .call(
            &desk,
            Method::GET,
            "/api/v1/tenants/acme/restores/plan",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["tenant"], "acme");
    assert!(plan["backup"]["id"].is_string(), "{plan}");

    let request = |reason: &str, confirm: &str, code: &str| json!({"mode": "live", "reason": reason, "confirm_tenant": confirm, "code": code});
    let path = "/api/v1/tenants/acme/restores";
    let next_code = helpdesk.code(1);
    let next_code = next_code.expose_secret();
    for (body, status, expected_code) in [
        (
            request("", "acme", next_code),
            StatusCode::UNPROCESSABLE_ENTITY,
            "reason_required",
        ),
        (
            request("customer deleted orders", "globex", next_code),
            StatusCode::UNPROCESSABLE_ENTITY,
            "confirmation_mismatch",
        ),
        (
            request("customer deleted orders", "acme", "123456"),
            StatusCode::FORBIDDEN,
            "second_factor_refused",
        ),
    ] {
        let (got, answer) = portal.call(&desk, Method::POST, path, Some(body)).await;
        assert_eq!(got, status, "{answer}");
        assert_eq!(code(&answer), expected_code, "{answer}");
    }
    assert_eq!(portal.scalar(restores).await, 0, "nothing was queued");

    // An owner, and the owner's API token, cannot restore; nor can a session without CSRF.
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let owner_session = Caller::Session(portal.sign_in(&owner).await);
    let (status, _) = portal
        .call(
            &owner_session,
            Method::POST,
            path,
            Some(request("r", "acme", next_code)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    if let Caller::Session(session) = &desk {
        let (status, body) = portal
            .call(
                &Caller::CookieOnly(session.clone()),
                Method::POST,
                path,
                Some(request("r", "acme", next_code)),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(code(&body), "csrf");
    }
    assert_eq!(portal.scalar(restores).await, 0, "nothing was queued");

    let (status, accepted) = portal
        .call(
            &desk,
            Method::POST,
            path,
            Some(request("customer deleted orders", "acme", next_code)),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    assert_eq!(portal.scalar(restores).await, 1);
    let job = accepted["job_id"].as_i64().expect("job id");
    let audited = portal
        .scalar(
            "SELECT count(*) FROM audit_log WHERE tenant = 'acme' AND action LIKE 'restore%'
             AND actor = 'desk' AND actor_role = 'helpdesk' AND address = '127.0.0.1'
             AND reason = 'customer deleted orders'",
        )
        .await;
    assert_eq!(
        audited, 1,
        "the restore request is audited with the staff member's name"
    );

    // The same code again is refused (a code is good once), and a restore is underway.
    let (status, body) = portal
        .call(
            &desk,
            Method::POST,
            path,
            Some(request("again", "acme", next_code)),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(code(&body), "second_factor_refused");

    // Its status, as staff and as the tenant's owner, with steps to follow.
    for caller in [&desk, &owner_session] {
        let (status, restore) = portal
            .call(
                caller,
                Method::GET,
                &format!("/api/v1/tenants/acme/restores/{job}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{restore}");
        assert_eq!(restore["state"], "queued");
        assert_eq!(restore["requested_by"], "helpdesk:desk");
    }
}
