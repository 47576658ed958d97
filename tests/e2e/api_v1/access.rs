//! Who may see and do what to which tenant: every tenant route × every role × their own
//! tenant, another one and one that does not exist; freezing; the manual backup limit.

use lifeboat_controller::accounts::Role;
use lifeboat_controller::audit::Actor;
use lifeboat_controller::restores;
use lifeboat_core::restore::BackupSelector;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{Caller, Portal, code, tenant};

/// Every route under `/api/v1/tenants/{tenant}` a customer could call, with a body that
/// would be accepted; `{job}` is filled in by the test.
fn tenant_routes(job: i64) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, "/backups".to_owned(), None),
        (Method::POST, "/backups".to_owned(), None),
        (Method::GET, "/drills".to_owned(), None),
        (Method::GET, "/audit".to_owned(), None),
        (Method::GET, "/restores".to_owned(), None),
        (Method::GET, format!("/restores/{job}"), None),
        (Method::GET, "/restores/plan".to_owned(), None),
        (
            Method::POST,
            "/restores".to_owned(),
            Some(json!({"mode": "live", "reason": "r", "confirm_tenant": "x", "code": "000000"})),
        ),
        (
            Method::POST,
            "/rollback".to_owned(),
            Some(json!({"reason": "r", "confirm_tenant": "x", "code": "000000"})),
        ),
        (
            Method::POST,
            "/freeze".to_owned(),
            Some(json!({"reason": "r"})),
        ),
        (
            Method::DELETE,
            "/freeze".to_owned(),
            Some(json!({"reason": "r"})),
        ),
        (Method::GET, "/users".to_owned(), None),
        (
            Method::POST,
            "/users".to_owned(),
            Some(
                json!({"login": "mallory", "role": "owner", "password": "violet tractor sings 42 under moonlight"}),
            ),
        ),
        (Method::POST, "/users/globex-owner/disable".to_owned(), None),
        (Method::POST, "/users/globex-owner/enable".to_owned(), None),
        (Method::GET, "/tokens".to_owned(), None),
        (
            Method::POST,
            "/backups/00000000-0000-0000-0000-000000000000/download-link".to_owned(),
            Some(json!({"format": "custom"})),
        ),
        (
            Method::POST,
            "/tokens".to_owned(),
            Some(json!({"name": "stolen", "role": "owner"})),
        ),
        (Method::DELETE, "/tokens/ci".to_owned(), None),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_reach_their_own_tenant_only_and_others_look_like_none() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let viewer = portal.user("acme-viewer", Role::Viewer, Some("acme")).await;
    let owner_session = Caller::Session(portal.sign_in(&owner).await);
    let viewer_session = Caller::Session(portal.sign_in(&viewer).await);
    let owner_token = Caller::Bearer(portal.api_token("acme", Role::Owner, "ci").await);
    let viewer_token = Caller::Bearer(portal.api_token("acme", Role::Viewer, "dash").await);
    // A restore of globex's, whose job id an acme customer might try.
    let globex_job = restores::request_live_restore(
        &portal.catalog,
        &portal.config,
        &tenant("globex"),
        BackupSelector::Latest,
        "the test needs a restore of globex",
        &Actor::system("test"),
    )
    .await
    .expect("restore of globex")
    .job_id;

    for (who, caller) in [
        ("owner session", &owner_session),
        ("viewer session", &viewer_session),
        ("owner token", &owner_token),
        ("viewer token", &viewer_token),
    ] {
        for (method, route, body) in tenant_routes(globex_job) {
            let (other_status, other) = portal
                .call(
                    caller,
                    method.clone(),
                    &format!("/api/v1/tenants/globex{route}"),
                    body.clone(),
                )
                .await;
            let (none_status, none) = portal
                .call(
                    caller,
                    method.clone(),
                    &format!("/api/v1/tenants/nosuch{route}"),
                    body.clone(),
                )
                .await;
            // Staff routes refuse customers before looking at the tenant (403), the others
            // answer as for a tenant that does not exist (404): either way, alike.
            assert!(
                [StatusCode::NOT_FOUND, StatusCode::FORBIDDEN].contains(&other_status),
                "{who} {method} globex{route}: {other}"
            );
            assert_eq!(
                other_status, none_status,
                "{who} {method} {route}: {other} / {none}"
            );
            // The same answer, but for the name the caller gave.
            assert_eq!(
                other["error"]
                    .as_str()
                    .map(|text| text.replace("globex", "NAME")),
                none["error"]
                    .as_str()
                    .map(|text| text.replace("nosuch", "NAME")),
                "{who} {method} {route}: another tenant must look like none"
            );
            assert_eq!(code(&other), code(&none));
        }
        // A job of another tenant through one's own tenant's path.
        let (status, body) = portal
            .call(
                caller,
                Method::GET,
                &format!("/api/v1/tenants/acme/restores/{globex_job}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{who}: {body}");
        // Their own tenant: readable.
        let (status, backups) = portal
            .call(caller, Method::GET, "/api/v1/tenants/acme/backups", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{who}: {backups}");
        assert_eq!(
            backups.as_array().map(Vec::len),
            Some(1),
            "{who}: {backups}"
        );
        let (status, listed) = portal
            .call(caller, Method::GET, "/api/v1/tenants", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{who}: {listed}");
        assert_eq!(listed[0]["name"], "acme");
        assert!(
            listed[0]["cluster"].is_null(),
            "customers are not shown clusters"
        );
        // Staff routes, on their own tenant: refused.
        for (method, route, body) in [
            (Method::GET, "/restores/plan", None),
            (
                Method::POST,
                "/restores",
                Some(
                    json!({"mode": "live", "reason": "r", "confirm_tenant": "acme", "code": "000000"}),
                ),
            ),
            (Method::POST, "/freeze", Some(json!({"reason": "r"}))),
        ] {
            let (status, refused) = portal
                .call(
                    caller,
                    method.clone(),
                    &format!("/api/v1/tenants/acme{route}"),
                    body,
                )
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{who} {method} {route}: {refused}"
            );
        }
    }

    // Viewers look; owners change.
    for viewer in [&viewer_session, &viewer_token] {
        let (status, body) = portal
            .call(viewer, Method::POST, "/api/v1/tenants/acme/backups", None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = portal
            .call(viewer, Method::GET, "/api/v1/tenants/acme/audit", None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let (status, body) = portal
        .call(
            &owner_session,
            Method::POST,
            "/api/v1/tenants/acme/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (status, audit) = portal
        .call(
            &owner_token,
            Method::GET,
            "/api/v1/tenants/acme/audit",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit.as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|entry| entry["action"] == "backup.manual"
                && entry["actor"] == "acme-owner"
                && entry["address"] == "127.0.0.1"),
        "{audit}"
    );
    assert!(
        !audit.to_string().contains("globex"),
        "acme's audit shows nothing of globex: {audit}"
    );

    // Staff see every tenant.
    let helpdesk = portal.user("desk", Role::Helpdesk, None).await;
    let desk = Caller::Session(portal.sign_in(&helpdesk).await);
    let (status, listed) = portal
        .call(&desk, Method::GET, "/api/v1/tenants?q=glob", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    let (status, body) = portal
        .call(&desk, Method::GET, "/api/v1/tenants/globex/backups", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = portal
        .call(&desk, Method::GET, "/api/v1/tenants/nosuch/backups", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Helpdesk is not admin.
    let (status, body) = portal
        .call(
            &desk,
            Method::POST,
            "/api/v1/tenants/acme/freeze",
            Some(json!({"reason": "r"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_and_users_each_keep_to_their_own_routes() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let session = Caller::Session(portal.sign_in(&owner).await);
    let token = Caller::Bearer(portal.api_token("acme", Role::Owner, "ci").await);
    for caller in [&session, &token] {
        let (status, body) = portal
            .call(
                caller,
                Method::POST,
                "/api/v1/agent/claim",
                Some(json!({"clusters": [], "wait_seconds": 0, "can_decrypt": false})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
    let created = portal.env.lifeboat(
        &portal.env.config_file(&super::settings()),
        &["agent", "token", "create", "a1", "--all-clusters"],
    );
    assert!(
        created.status.success(),
        "{}",
        crate::harness::stderr(&created)
    );
    let agent_token = crate::harness::stdout(&created).trim().to_owned();
    let (status, body) = portal
        .call(
            &Caller::Bearer(agent_token),
            Method::GET,
            "/api/v1/tenants/acme/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_tenants_sessions_and_tokens_are_refused_at_once() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let session = Caller::Session(portal.sign_in(&owner).await);
    let token = Caller::Bearer(portal.api_token("acme", Role::Owner, "ci").await);
    let globex_owner = portal
        .user("globex-owner", Role::Owner, Some("globex"))
        .await;
    let globex = Caller::Session(portal.sign_in(&globex_owner).await);
    let admin_user = portal.user("root", Role::Admin, None).await;
    let admin = Caller::Session(portal.sign_in(&admin_user).await);
    for caller in [&session, &token] {
        let (status, _) = portal
            .call(caller, Method::GET, "/api/v1/tenants/acme/backups", None)
            .await;
        assert_eq!(status, StatusCode::OK);
    }

    let (status, body) = portal
        .call(
            &admin,
            Method::POST,
            "/api/v1/tenants/acme/freeze",
            Some(json!({"reason": "unpaid invoice"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    for caller in [&session, &token] {
        let (status, body) = portal
            .call(caller, Method::GET, "/api/v1/tenants/acme/backups", None)
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
    // And no new sign-in either; globex is untouched.
    let refused = portal.sign_in_with(&owner, None, None).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = portal
        .call(&globex, Method::GET, "/api/v1/tenants/globex/backups", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let frozen_entries = portal
        .scalar(
            "SELECT count(*) FROM audit_log WHERE action = 'tenant.freeze' AND tenant = 'acme'
             AND actor = 'root' AND actor_role = 'admin' AND address = '127.0.0.1'
             AND reason = 'unpaid invoice'",
        )
        .await;
    assert_eq!(frozen_entries, 1);

    let (status, body) = portal
        .call(
            &admin,
            Method::DELETE,
            "/api/v1/tenants/acme/freeze",
            Some(json!({"reason": "paid"})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (status, _) = portal
        .call(&token, Method::GET, "/api/v1/tenants/acme/backups", None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_backups_are_limited_per_tenant_and_day() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let session = Caller::Session(portal.sign_in(&owner).await);
    for remaining in (0..5).rev() {
        let (status, body) = portal
            .call(&session, Method::POST, "/api/v1/tenants/acme/backups", None)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["remaining_today"], remaining);
    }
    let (status, body) = portal
        .call(&session, Method::POST, "/api/v1/tenants/acme/backups", None)
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(code(&body), "rate_limited");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|text| text.contains("5 manual backups")),
        "{body}"
    );
    let manual_jobs = portal
        .scalar(
            "SELECT count(*) FROM jobs WHERE tenant = 'acme' AND kind = 'backup'
             AND params->>'backup_kind' = 'manual'",
        )
        .await;
    assert_eq!(manual_jobs, 5, "the refused request queued nothing");
    // Another tenant's limit is its own.
    let globex_owner = portal
        .user("globex-owner", Role::Owner, Some("globex"))
        .await;
    let globex = Caller::Session(portal.sign_in(&globex_owner).await);
    let (status, body) = portal
        .call(
            &globex,
            Method::POST,
            "/api/v1/tenants/globex/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}
