//! Users and tokens through the API: owners manage their own tenant's, a token cannot make
//! more, revocation and disabling take effect at once, customers enrol their own TOTP.

use chrono::Utc;
use lifeboat_controller::accounts::Role;
use lifeboat_controller::accounts::totp::current_code;
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{Caller, Portal, code, session_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_manage_their_tenants_users_and_tokens_and_nobody_elses() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let globex_owner = portal
        .user("globex-owner", Role::Owner, Some("globex"))
        .await;
    let session = Caller::Session(portal.sign_in(&owner).await);
    let globex = Caller::Session(portal.sign_in(&globex_owner).await);

    // A weak password is refused with the reason; a strong one is accepted.
    let (status, body) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/tenants/acme/users",
            Some(json!({"login": "bob", "role": "viewer", "password": "password1"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(code(&body), "weak_password");
    let (status, strength) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/password-strength",
            Some(json!({"password": "password1"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(strength["acceptable"], false, "{strength}");
    let strong = "violet tractor sings 42 under moonlight";
    let (status, body) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/tenants/acme/users",
            Some(json!({"login": "bob", "role": "viewer", "password": strong})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["tenant"], "acme");
    // An owner cannot make staff.
    let (status, _) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/tenants/acme/users",
            Some(json!({"login": "eve", "role": "admin", "password": strong})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Another tenant's user, named under one's own tenant, does not exist.
    let (status, _) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/tenants/acme/users/globex-owner/disable",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = portal
        .call(&globex, Method::GET, "/api/v1/tenants/globex/backups", None)
        .await;
    assert_eq!(status, StatusCode::OK, "globex's owner is untouched");

    // Tokens: issued once by a signed-in owner, refused once revoked; a token cannot issue.
    let (status, issued) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/tenants/acme/tokens",
            Some(json!({"name": "ci", "role": "viewer", "days": 30})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    let token = Caller::Bearer(issued["token"].as_str().expect("token").to_owned());
    let (status, _) = portal
        .call(&token, Method::GET, "/api/v1/tenants/acme/backups", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let owner_token = Caller::Bearer(portal.api_token("acme", Role::Owner, "deploy").await);
    let (status, body) = portal
        .call(
            &owner_token,
            Method::POST,
            "/api/v1/tenants/acme/tokens",
            Some(json!({"name": "more", "role": "owner"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, listed) = portal
        .call(&session, Method::GET, "/api/v1/tenants/acme/tokens", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !listed.to_string().contains("lbu_"),
        "no secret is listed: {listed}"
    );
    let used = |name: &str| {
        listed
            .as_array()
            .and_then(|tokens| tokens.iter().find(|token| token["name"] == name))
            .map(|token| token["last_used_at"].clone())
    };
    assert!(
        used("ci").is_some_and(|at| at.is_string()),
        "a token's use is recorded: {listed}"
    );
    let (status, _) = portal
        .call(
            &session,
            Method::DELETE,
            "/api/v1/tenants/acme/tokens/ci",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = portal
        .call(&token, Method::GET, "/api/v1/tenants/acme/backups", None)
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused at once"
    );

    // Disabling a user ends their sessions at once.
    let bob = super::TestUser {
        login: "bob".to_owned(),
        password: secrecy::SecretString::from(strong.to_owned()),
        totp_secret: None,
    };
    let bob_session = Caller::Session(portal.sign_in(&bob).await);
    let (status, _) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/tenants/acme/users/bob/disable",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = portal
        .call(
            &bob_session,
            Method::GET,
            "/api/v1/tenants/acme/backups",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_enrols_their_own_second_factor() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let session = Caller::Session(portal.sign_in(&owner).await);
    let (status, enrolment) = portal
        .call(&session, Method::POST, "/api/v1/session/totp", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{enrolment}");
    let secret = enrolment["secret"].as_str().expect("secret").to_owned();
    assert!(
        enrolment["qr_svg"]
            .as_str()
            .is_some_and(|svg| svg.contains("<svg"))
    );
    let (status, body) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/session/totp/confirm",
            Some(json!({"code": "000000"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let code_now = current_code(&secret, "acme-owner", Utc::now()).expect("code");
    let (status, recovery) = portal
        .call(
            &session,
            Method::POST,
            "/api/v1/session/totp/confirm",
            Some(json!({"code": code_now})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{recovery}");
    assert_eq!(recovery.as_array().map(Vec::len), Some(10));
    // A session (perhaps a stolen one) cannot enrol another authenticator over this one.
    let (status, body) = portal
        .call(&session, Method::POST, "/api/v1/session/totp", None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // From now on their sign-in needs a code.
    let without = portal.sign_in_with(&owner, None, None).await;
    assert_eq!(without.status(), StatusCode::UNAUTHORIZED);
    let next = current_code(
        &secret,
        "acme-owner",
        Utc::now() + chrono::Duration::seconds(30),
    )
    .expect("code");
    session_of(
        portal
            .sign_in_with(&owner, Some(secrecy::SecretString::from(next)), None)
            .await,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_bring_a_backup_back_from_the_trash() {
    let portal = Portal::start().await;
    let admin_user = portal.user("root", Role::Admin, None).await;
    let admin = Caller::Session(portal.sign_in(&admin_user).await);
    let helpdesk = portal.user("desk", Role::Helpdesk, None).await;
    let desk = Caller::Session(portal.sign_in(&helpdesk).await);
    portal
        .catalog
        .connection()
        .await
        .expect("connection")
        .batch_execute(
            "UPDATE backups SET trashed_at = now(), trash_reason = 'retention',
                    purge_after = now() + interval '7 days' WHERE tenant = 'acme'",
        )
        .await
        .expect("trash acme's backup");
    let (status, _) = portal.call(&desk, Method::GET, "/api/v1/trash", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "helpdesk is not admin");
    let (status, trash) = portal
        .call(&admin, Method::GET, "/api/v1/trash", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{trash}");
    let backup = trash[0]["backup_id"]
        .as_str()
        .expect("a trashed backup")
        .to_owned();
    let path = format!("/api/v1/trash/{backup}/restore");
    let (status, body) = portal.call(&admin, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tenant"], "acme");
    let (status, body) = portal.call(&admin, Method::POST, &path, None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(
        portal
            .scalar("SELECT count(*) FROM audit_log WHERE action = 'trash.restore' AND actor = 'root' AND address = '127.0.0.1'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_download_links_are_forgotten_and_live_ones_kept() {
    let portal = Portal::start().await;
    let owner = portal.user("acme-owner", Role::Owner, Some("acme")).await;
    let session = Caller::Session(portal.sign_in(&owner).await);
    let (status, backups) = portal
        .call(&session, Method::GET, "/api/v1/tenants/acme/backups", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let backup = backups[0]["id"].as_str().expect("a backup").to_owned();
    let (status, link) = portal
        .call(
            &session,
            Method::POST,
            &format!("/api/v1/tenants/acme/backups/{backup}/download-link"),
            Some(json!({"format": "custom"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{link}");
    assert!(
        link["url"]
            .as_str()
            .is_some_and(|url| url.starts_with("/api/v1/downloads/lbd_"))
    );
    let forget =
        |before| lifeboat_controller::downloads::forget_spent_links(&portal.catalog, before);
    assert_eq!(
        forget(Utc::now()).await.expect("forget"),
        0,
        "a live link is kept"
    );
    assert_eq!(
        forget(Utc::now() + chrono::Duration::hours(1))
            .await
            .expect("forget"),
        1,
        "an expired link is forgotten"
    );
}
