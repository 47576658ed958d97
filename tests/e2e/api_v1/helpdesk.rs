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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_ask_for_a_restore_and_staff_serve_or_decline_it() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let owner = Caller::Session(portal.sign_in(&owner).await);
    let viewer = portal.user("acme-viewer", Role::Viewer, Some("acme")).await;
    let viewer = Caller::Session(portal.sign_in(&viewer).await);
    let globex = portal
        .user("globex-owner", Role::Owner, Some("globex"))
        .await;
    let globex = Caller::Session(portal.sign_in(&globex).await);
    let helpdesk = portal.user("desk", Role::Helpdesk, None).await;
    let desk = Caller::Session(portal.sign_in(&helpdesk).await);
    let asks = "/api/v1/tenants/acme/restore-asks";
    let globex_backup = portal
        .scalar_text("SELECT id::text FROM backups WHERE tenant = 'globex'")
        .await;
    let open_asks = "SELECT count(*) FROM restore_asks WHERE state = 'open'";

    // Refused, and nothing recorded: a viewer, staff (they restore directly), another
    // tenant's owner (as if acme did not exist), another tenant's backup, no note,
    // a rollback.
    let ask = |target: &str, note: &str| json!({"target": target, "note": note});
    for (caller, body, status) in [
        (&viewer, ask("live", "orders gone"), StatusCode::FORBIDDEN),
        (&desk, ask("live", "orders gone"), StatusCode::FORBIDDEN),
        (&globex, ask("live", "orders gone"), StatusCode::NOT_FOUND),
        (
            &owner,
            json!({"target": "live", "note": "x", "backup": globex_backup}),
            StatusCode::NOT_FOUND,
        ),
        (&owner, ask("live", "  "), StatusCode::UNPROCESSABLE_ENTITY),
        (
            &owner,
            ask("rollback", "undo"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (got, answer) = portal.call(caller, Method::POST, asks, Some(body)).await;
        assert_eq!(got, status, "{answer}");
    }
    assert_eq!(portal.scalar(open_asks).await, 0);

    // The owner asks; one open ask at a time; staff see it in their queue.
    let (status, asked) = portal
        .call(
            &owner,
            Method::POST,
            asks,
            Some(ask("copy", "we deleted orders this morning")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    let first = asked["id"].as_i64().expect("id");
    let (status, _) = portal
        .call(&owner, Method::POST, asks, Some(ask("live", "again")))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, queue) = portal
        .call(&desk, Method::GET, "/api/v1/restore-asks", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{queue}");
    assert_eq!(queue[0]["id"], first, "{queue}");
    let (status, _) = portal
        .call(&owner, Method::GET, "/api/v1/restore-asks", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "the queue is staff's");
    let (status, _) = portal.call(&globex, Method::GET, asks, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Staff decline it with a reason; the owner asks again; a restore of acme serves it.
    let (status, declined) = portal
        .call(
            &desk,
            Method::POST,
            &format!("{asks}/{first}/close"),
            Some(json!({"reason": "the copy is already there from yesterday"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{declined}");
    assert_eq!(declined["state"], "declined");
    let (status, asked) = portal
        .call(
            &owner,
            Method::POST,
            asks,
            Some(ask("live", "please put back last night's backup")),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{asked}");
    let second = asked["id"].as_i64().expect("id");
    let (status, accepted) = portal
        .call(
            &desk,
            Method::POST,
            "/api/v1/tenants/acme/restores",
            Some(
                json!({"mode": "live", "reason": "the customer asked", "confirm_tenant": "acme",
                        "code": helpdesk.code(1).expose_secret()}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (status, listed) = portal.call(&owner, Method::GET, asks, None).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed[0]["id"], second, "{listed}");
    assert_eq!(listed[0]["state"], "served");
    assert_eq!(listed[0]["restore_job"], accepted["job_id"]);
    assert_eq!(listed[1]["state"], "declined");
    let audited = portal
        .scalar(
            "SELECT count(*) FROM audit_log WHERE tenant = 'acme'
               AND action IN ('restore.ask', 'restore.ask.decline')",
        )
        .await;
    assert_eq!(audited, 3, "two asks and a decline are audited");
}
