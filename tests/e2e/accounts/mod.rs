//! Accounts (issue 10's library layer) against a real catalog: users, passwords, TOTP,
//! throttling, sessions, API tokens, freezes; and `lifeboat user …` ([`cli`]).

mod cli;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use lifeboat_controller::accounts::totp::current_code;
use lifeboat_controller::accounts::{
    AccountError, Accounts, AuthenticatedUser, LoginAttempt, LoginError, NewUser, PasswordHashing,
    RefusalReason, Role, generate_password,
};
use lifeboat_controller::audit::{Actor, ActorRole};
use lifeboat_controller::catalog::Catalog;
use lifeboat_core::config::Config;
use lifeboat_core::ids::TenantName;
use lifeboat_core::service_config::PanelSettings;
use secrecy::{ExposeSecret, SecretString};

use crate::harness::{Backend, CATALOG, Settings, TestEnv};

/// A migrated catalog with tenants `acme` and `globex`.
async fn catalog_with_tenants(env: &TestEnv) -> (Config, Catalog) {
    env.create_catalog().await;
    let config = env.config(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    let catalog = Catalog::open(&config).await.expect("open catalog");
    catalog.migrate().await.expect("migrate");
    catalog
        .connection()
        .await
        .expect("connection")
        .batch_execute(
            "INSERT INTO tenants (name, cluster, database_name) VALUES ('acme', 'main', 'acme'), ('globex', 'main', 'globex')",
        )
        .await
        .expect("add tenants");
    (config, catalog)
}

async fn accounts_with(env: &TestEnv, panel: PanelSettings) -> Accounts {
    let (_, catalog) = catalog_with_tenants(env).await;
    Accounts::with_password_hashing(catalog, panel, PasswordHashing::FOR_TESTS_ONLY)
        .expect("accounts")
}

/// The admin the tests act as.
fn staff() -> Actor {
    Actor {
        name: "root".to_owned(),
        role: ActorRole::Admin,
        address: None,
    }
}

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).expect("tenant name")
}

fn address(text: &str) -> IpAddr {
    text.parse().expect("address")
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0)
        .single()
        .expect("time")
}

fn seconds(count: i64) -> chrono::Duration {
    chrono::Duration::seconds(count)
}

async fn add(
    accounts: &Accounts,
    login: &str,
    role: Role,
    tenant_name: Option<&str>,
) -> SecretString {
    let password = generate_password();
    accounts
        .add_user(
            NewUser {
                login: login.to_owned(),
                role,
                tenant: tenant_name.map(tenant),
                password: password.clone(),
            },
            &staff(),
        )
        .await
        .expect("add user");
    password
}

async fn login(
    accounts: &Accounts,
    login: &str,
    password: &SecretString,
    code: Option<&str>,
    now: DateTime<Utc>,
) -> Result<AuthenticatedUser, LoginError> {
    let code = code.map(|code| SecretString::from(code.to_owned()));
    accounts
        .authenticate(LoginAttempt {
            login,
            password,
            second_factor: code.as_ref(),
            client_address: address("192.0.2.10"),
            now,
        })
        .await
}

fn refused(result: Result<AuthenticatedUser, LoginError>) -> RefusalReason {
    match result {
        Err(LoginError::Refused(reason)) => {
            assert_eq!(
                LoginError::Refused(reason).to_string(),
                "wrong login, password or code",
                "one message for every refusal"
            );
            reason
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn audit_actions(accounts: &Accounts) -> (Vec<String>, String) {
    let connection = accounts.catalog().connection().await.expect("connection");
    let rows = connection
        .query(
            "SELECT action, details::text || coalesce(reason, '') FROM audit_log ORDER BY id",
            &[],
        )
        .await
        .expect("audit log");
    let actions = rows.iter().map(|row| row.get(0)).collect();
    let details = rows
        .iter()
        .map(|row| row.get::<_, String>(1))
        .collect::<Vec<_>>()
        .join("\n");
    (actions, details)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_check_password_and_second_factor_and_refuse_replayed_codes() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let accounts = accounts_with(&env, PanelSettings::default()).await;
    let alice_password = add(&accounts, "Alice@acme.example", Role::Owner, Some("acme")).await;

    // Bad users are refused with their reason, and nothing is added.
    let new = |login: &str, role: Role, tenant_name: Option<&str>, password: &str| NewUser {
        login: login.to_owned(),
        role,
        tenant: tenant_name.map(tenant),
        password: SecretString::from(password.to_owned()),
    };
    let strong = "violet-harbour-quartz-91";
    let weak = accounts
        .add_user(
            new("bob", Role::Viewer, Some("acme"), "password1234"),
            &staff(),
        )
        .await
        .expect_err("weak password");
    assert!(
        matches!(&weak, AccountError::WeakPassword(reason) if reason.contains("too easy to guess") && !reason.contains("password1234")),
        "{weak}"
    );
    for (refusal, expected) in [
        (
            new("alice@ACME.example", Role::Viewer, Some("acme"), strong),
            "already exists",
        ),
        (
            new("root", Role::Admin, Some("acme"), strong),
            "belongs to no tenant",
        ),
        (new("bob", Role::Owner, None, strong), "give --tenant"),
        (
            new("bad\nname", Role::Owner, Some("acme"), strong),
            "is not valid",
        ),
        (
            new("bob", Role::Owner, Some("initech"), strong),
            "tenant initech does not exist",
        ),
        (
            new("bob", Role::Owner, Some("acme"), "short"),
            "at least 10",
        ),
    ] {
        let error = accounts
            .add_user(refusal, &staff())
            .await
            .expect_err("refused");
        assert!(error.to_string().contains(expected), "{error} ~ {expected}");
    }
    assert_eq!(accounts.list_users(None).await.expect("list").len(), 1);

    // A customer without TOTP: the password alone, whatever the login's case.
    let alice = login(&accounts, "alice@acme.example", &alice_password, None, t0())
        .await
        .expect("alice logs in");
    assert_eq!(
        (alice.role, alice.tenant.as_ref()),
        (Role::Owner, Some(&tenant("acme")))
    );
    let wrong = SecretString::from("violet-harbour-quartz-92".to_owned());
    assert_eq!(
        refused(login(&accounts, "alice@acme.example", &wrong, None, t0()).await),
        RefusalReason::WrongPassword
    );
    assert_eq!(
        refused(login(&accounts, "nobody", &wrong, None, t0()).await),
        RefusalReason::UnknownLogin
    );

    // Staff: no TOTP, no login; a pending enrolment is confirmed by the first login.
    let root_password = add(&accounts, "root", Role::Admin, None).await;
    assert_eq!(
        refused(login(&accounts, "root", &root_password, None, t0()).await),
        RefusalReason::StaffWithoutTotp
    );
    let enrolment = accounts
        .begin_totp_enrolment("root", &staff())
        .await
        .expect("enrol");
    let secret = enrolment.secret_base32.expose_secret().to_owned();
    assert!(
        enrolment
            .otpauth_url
            .expose_secret()
            .starts_with("otpauth://totp/")
    );
    assert!(enrolment.otpauth_url.expose_secret().contains(&secret));
    assert!(enrolment.qr_svg.expose_secret().contains("<svg"));
    assert!(
        !format!("{enrolment:?}").contains(&secret),
        "Debug hides the secret"
    );
    assert_eq!(
        refused(login(&accounts, "root", &root_password, None, t0()).await),
        RefusalReason::SecondFactorMissing
    );
    let code = current_code(&secret, "root", t0()).expect("code");
    let root = login(&accounts, "root", &root_password, Some(&code), t0())
        .await
        .expect("first login confirms the enrolment");
    let recovery = root
        .new_recovery_codes
        .as_ref()
        .expect("recovery codes")
        .0
        .clone();
    assert_eq!(recovery.len(), 10);
    let first_recovery = recovery[0].expose_secret().to_owned();
    assert!(
        !format!("{root:?}").contains(&first_recovery),
        "Debug hides recovery codes"
    );
    // The same code again, even within its step: refused.
    assert_eq!(
        refused(
            login(
                &accounts,
                "root",
                &root_password,
                Some(&code),
                t0() + seconds(5)
            )
            .await
        ),
        RefusalReason::ReplayedCode
    );
    let next_code = current_code(&secret, "root", t0() + seconds(30)).expect("code");
    login(
        &accounts,
        "root",
        &root_password,
        Some(&next_code),
        t0() + seconds(30),
    )
    .await
    .expect("the next step's code");
    assert_eq!(
        refused(
            login(
                &accounts,
                "root",
                &root_password,
                Some("000000"),
                t0() + seconds(60)
            )
            .await
        ),
        RefusalReason::WrongSecondFactor
    );
    // A recovery code opens one login, once; case and dashes do not matter.
    let typed = first_recovery.to_uppercase().replace('-', " ");
    let recovered = login(
        &accounts,
        "root",
        &root_password,
        Some(&typed),
        t0() + seconds(60),
    )
    .await
    .expect("recovery code");
    assert!(recovered.used_recovery_code);
    assert_eq!(
        refused(
            login(
                &accounts,
                "root",
                &root_password,
                Some(&first_recovery),
                t0() + seconds(61)
            )
            .await
        ),
        RefusalReason::WrongSecondFactor
    );
    // A reset second factor: staff are out until they enrol again.
    accounts
        .reset_totp("root", &staff())
        .await
        .expect("reset totp");
    let later_code = current_code(&secret, "root", t0() + seconds(90)).expect("code");
    assert_eq!(
        refused(
            login(
                &accounts,
                "root",
                &root_password,
                Some(&later_code),
                t0() + seconds(90)
            )
            .await
        ),
        RefusalReason::StaffWithoutTotp
    );

    // A customer may enrol; then the code is required.
    let enrolment = accounts
        .begin_totp_enrolment("alice@acme.example", &staff())
        .await
        .expect("enrol");
    let alice_secret = enrolment.secret_base32.expose_secret().to_owned();
    let refusal = accounts
        .confirm_totp_enrolment(
            "alice@acme.example",
            &SecretString::from("123456".to_owned()),
            t0() + seconds(120),
            &staff(),
        )
        .await
        .expect_err("wrong code");
    assert!(matches!(refusal, AccountError::WrongTotpCode), "{refusal}");
    let alice_code =
        current_code(&alice_secret, "alice@acme.example", t0() + seconds(120)).expect("code");
    accounts
        .confirm_totp_enrolment(
            "alice@acme.example",
            &SecretString::from(alice_code),
            t0() + seconds(120),
            &staff(),
        )
        .await
        .expect("confirmed");
    assert_eq!(
        refused(
            login(
                &accounts,
                "alice@acme.example",
                &alice_password,
                None,
                t0() + seconds(150)
            )
            .await
        ),
        RefusalReason::SecondFactorMissing
    );

    // Disabled: refused after the password, like a wrong one.
    accounts
        .set_user_disabled("alice@acme.example", true, &staff())
        .await
        .expect("disable");
    let alice_code =
        current_code(&alice_secret, "alice@acme.example", t0() + seconds(180)).expect("code");
    assert_eq!(
        refused(
            login(
                &accounts,
                "alice@acme.example",
                &alice_password,
                Some(&alice_code),
                t0() + seconds(180)
            )
            .await
        ),
        RefusalReason::Disabled
    );
    accounts
        .set_user_disabled("alice@acme.example", false, &staff())
        .await
        .expect("enable");
    login(
        &accounts,
        "alice@acme.example",
        &alice_password,
        Some(&alice_code),
        t0() + seconds(180),
    )
    .await
    .expect("enabled again");

    let (actions, details) = audit_actions(&accounts).await;
    for expected in [
        "user.add",
        "user.totp-begin",
        "user.login",
        "user.reset-totp",
        "user.totp-confirm",
        "user.disable",
        "user.enable",
    ] {
        assert!(
            actions.iter().any(|action| action == expected),
            "{expected} in {actions:?}"
        );
    }
    for secret_text in [
        alice_password.expose_secret(),
        root_password.expose_secret(),
        &secret,
        &first_recovery,
    ] {
        assert!(!details.contains(secret_text), "no secret in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_wait_longer_and_longer_then_lock_until_an_admin_unlocks() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let accounts = accounts_with(&env, PanelSettings::default()).await;
    let password = add(&accounts, "bob", Role::Viewer, Some("acme")).await;
    let wrong = SecretString::from("not-bobs-password-at-all".to_owned());

    let mut now = t0();
    let mut delays = Vec::new();
    let mut failures = 0;
    let locked_until = loop {
        match login(&accounts, "bob", &wrong, None, now).await {
            Err(LoginError::Refused(RefusalReason::WrongPassword)) => failures += 1,
            Err(LoginError::Delayed(until)) => {
                delays.push((until - now).num_seconds());
                // Even the right password waits.
                assert!(matches!(
                    login(&accounts, "bob", &password, None, now).await,
                    Err(LoginError::Delayed(_))
                ));
                now = until;
            }
            Err(LoginError::Locked(until)) => break until,
            other => panic!("unexpected {other:?}"),
        }
        assert!(failures <= 10, "locked by the 10th failure");
    };
    assert_eq!(failures, 10);
    assert_eq!(delays, [1, 2, 4, 8, 16, 32], "delays grow");
    assert_eq!((locked_until - now).num_minutes(), 15);
    assert!(
        matches!(
            login(&accounts, "bob", &password, None, now + seconds(60)).await,
            Err(LoginError::Locked(_))
        ),
        "locked even for the right password"
    );

    // An unknown login is throttled the same way, so throttling reveals nothing.
    for _ in 0..4 {
        assert!(matches!(
            login(&accounts, "ghost", &wrong, None, now).await,
            Err(LoginError::Refused(RefusalReason::UnknownLogin))
        ));
    }
    assert!(matches!(
        login(&accounts, "ghost", &wrong, None, now).await,
        Err(LoginError::Delayed(_))
    ));

    assert!(accounts.unlock_user("BOB", &staff()).await.expect("unlock"));
    login(&accounts, "bob", &password, None, now + seconds(60))
        .await
        .expect("unlocked");
    let refusal = accounts
        .unlock_user("nobody", &staff())
        .await
        .expect_err("unknown");
    assert!(matches!(refusal, AccountError::UnknownUser(_)), "{refusal}");
    assert!(
        audit_actions(&accounts)
            .await
            .0
            .contains(&"user.unlock".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_new_at_each_login_expire_when_idle_or_old_and_end_at_logout() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let accounts = accounts_with(&env, PanelSettings::default()).await;
    let password = add(&accounts, "carol", Role::Owner, Some("globex")).await;
    let client = address("2001:db8::7");
    let carol = login(&accounts, "carol", &password, None, t0())
        .await
        .expect("login");

    let first = accounts
        .start_session(&carol, client, t0())
        .await
        .expect("session");
    let first_token = first.token.expose_secret().to_owned();
    assert!(first_token.starts_with("lbs_"));
    assert!(
        !format!("{first:?}").contains(&first_token),
        "Debug hides the token"
    );
    let session = accounts
        .session_from_token(&first_token, t0() + chrono::Duration::minutes(20))
        .await
        .expect("lookup")
        .expect("live after 20 minutes");
    assert_eq!(
        (session.login.as_str(), session.role),
        ("carol", Role::Owner)
    );
    assert!(session.csrf_matches(first.csrf_token.expose_secret()));
    assert!(!session.csrf_matches("forged"));
    // 20 minutes of use moved the idle clock: 45 minutes after login is 25 idle.
    assert!(
        accounts
            .session_from_token(&first_token, t0() + chrono::Duration::minutes(45))
            .await
            .expect("lookup")
            .is_some()
    );
    assert!(
        accounts
            .session_from_token(&first_token, t0() + chrono::Duration::minutes(76))
            .await
            .expect("lookup")
            .is_none(),
        "31 minutes idle"
    );
    assert!(
        accounts
            .session_from_token(&first_token, t0() + chrono::Duration::minutes(77))
            .await
            .expect("lookup")
            .is_none(),
        "ended for good"
    );

    // Each login gets a new token; logout ends it.
    let second = accounts
        .start_session(&carol, client, t0())
        .await
        .expect("session");
    assert_ne!(second.token.expose_secret(), first_token);
    assert!(
        accounts
            .end_session(second.token.expose_secret())
            .await
            .expect("logout")
    );
    assert!(
        accounts
            .session_from_token(second.token.expose_secret(), t0())
            .await
            .expect("lookup")
            .is_none()
    );

    // Used every 20 minutes, a session still ends after 12 hours.
    let busy = accounts
        .start_session(&carol, client, t0())
        .await
        .expect("session");
    let mut now = t0();
    while now < t0() + chrono::Duration::hours(12) {
        assert!(
            accounts
                .session_from_token(busy.token.expose_secret(), now)
                .await
                .expect("lookup")
                .is_some(),
            "live at {now}"
        );
        now += chrono::Duration::minutes(20);
    }
    let past_twelve_hours = now + chrono::Duration::minutes(1);
    assert!(
        accounts
            .session_from_token(busy.token.expose_secret(), past_twelve_hours)
            .await
            .expect("lookup")
            .is_none(),
        "over after 12 hours"
    );

    // Disabling a user ends their sessions; with single_session a login ends the others.
    let third = accounts
        .start_session(&carol, client, t0())
        .await
        .expect("session");
    accounts
        .set_user_disabled("carol", true, &staff())
        .await
        .expect("disable");
    accounts
        .set_user_disabled("carol", false, &staff())
        .await
        .expect("enable");
    assert!(
        accounts
            .session_from_token(third.token.expose_secret(), t0())
            .await
            .expect("lookup")
            .is_none()
    );
    let single = Accounts::with_password_hashing(
        accounts.catalog().clone(),
        PanelSettings {
            single_session: true,
            ..PanelSettings::default()
        },
        PasswordHashing::FOR_TESTS_ONLY,
    )
    .expect("accounts");
    let here = single
        .start_session(&carol, client, t0())
        .await
        .expect("session");
    let there = single
        .start_session(&carol, address("198.51.100.4"), t0())
        .await
        .expect("session");
    assert!(
        single
            .session_from_token(here.token.expose_secret(), t0())
            .await
            .expect("lookup")
            .is_none(),
        "signed in elsewhere"
    );
    assert!(
        single
            .session_from_token(there.token.expose_secret(), t0())
            .await
            .expect("lookup")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_tenant_is_refused_at_once_and_api_tokens_are_revocable_and_expire() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let accounts = accounts_with(&env, PanelSettings::default()).await;
    let password = add(&accounts, "dave", Role::Owner, Some("acme")).await;
    let gina_password = add(&accounts, "gina", Role::Viewer, Some("globex")).await;
    let dave = login(&accounts, "dave", &password, None, t0())
        .await
        .expect("login");
    let session = accounts
        .start_session(&dave, address("192.0.2.1"), t0())
        .await
        .expect("session");
    let session_token = session.token.expose_secret().to_owned();
    let month = Duration::from_secs(30 * 24 * 3600);
    let issued = accounts
        .issue_api_token(
            &tenant("acme"),
            Role::Owner,
            "nightly-export",
            month,
            t0(),
            &staff(),
        )
        .await
        .expect("issue");
    let token = issued.token.expose_secret().to_owned();
    assert!(token.starts_with("lbu_"));
    assert!(
        !format!("{issued:?}").contains(&token),
        "Debug hides the token"
    );
    let short = accounts
        .issue_api_token(
            &tenant("acme"),
            Role::Viewer,
            "probe",
            Duration::from_secs(3600),
            t0(),
            &staff(),
        )
        .await
        .expect("issue");
    let globex = accounts
        .issue_api_token(
            &tenant("globex"),
            Role::Viewer,
            "probe",
            month,
            t0(),
            &staff(),
        )
        .await
        .expect("issue");
    let listed = serde_json::to_string(
        &accounts
            .list_api_tokens(&tenant("acme"))
            .await
            .expect("list"),
    )
    .expect("json");
    assert!(
        listed.contains("nightly-export") && !listed.contains(&token),
        "{listed}"
    );
    for (refusal, expected) in [
        (
            accounts
                .issue_api_token(
                    &tenant("acme"),
                    Role::Owner,
                    "nightly-export",
                    month,
                    t0(),
                    &staff(),
                )
                .await,
            "already has",
        ),
        (
            accounts
                .issue_api_token(&tenant("acme"), Role::Admin, "x", month, t0(), &staff())
                .await,
            "not for admin",
        ),
        (
            accounts
                .issue_api_token(
                    &tenant("acme"),
                    Role::Owner,
                    "x",
                    Duration::from_secs(60),
                    t0(),
                    &staff(),
                )
                .await,
            "lifetime",
        ),
        (
            accounts
                .issue_api_token(&tenant("acme"), Role::Owner, "a b", month, t0(), &staff())
                .await,
            "not valid",
        ),
    ] {
        let error = refusal.expect_err("refused");
        assert!(error.to_string().contains(expected), "{error} ~ {expected}");
    }

    let principal = accounts
        .api_token_principal(&token, t0())
        .await
        .expect("lookup")
        .expect("valid");
    assert_eq!(
        (principal.tenant.as_str(), principal.role),
        ("acme", Role::Owner)
    );
    assert!(
        accounts
            .api_token_principal(
                short.token.expose_secret(),
                t0() + chrono::Duration::hours(2)
            )
            .await
            .expect("lookup")
            .is_none(),
        "expired"
    );

    // Frozen: sessions, tokens and logins of acme refused at once; globex untouched.
    accounts
        .freeze_tenant(&tenant("acme"), &staff(), "unpaid invoice")
        .await
        .expect("freeze");
    // A login that finished just before the freeze gets a session that is refused anyway:
    // the lookup reads the freeze, it does not rely on the sessions the freeze ended.
    let raced = accounts
        .start_session(&dave, address("192.0.2.1"), t0())
        .await
        .expect("session");
    assert!(
        accounts
            .session_from_token(raced.token.expose_secret(), t0())
            .await
            .expect("lookup")
            .is_none(),
        "a frozen tenant's session is refused at lookup"
    );
    assert!(
        accounts
            .session_from_token(&session_token, t0())
            .await
            .expect("lookup")
            .is_none()
    );
    assert!(
        accounts
            .api_token_principal(&token, t0())
            .await
            .expect("lookup")
            .is_none()
    );
    assert_eq!(
        refused(login(&accounts, "dave", &password, None, t0()).await),
        RefusalReason::TenantFrozen
    );
    assert!(
        accounts
            .api_token_principal(globex.token.expose_secret(), t0())
            .await
            .expect("lookup")
            .is_some()
    );
    let again = accounts
        .freeze_tenant(&tenant("acme"), &staff(), "again")
        .await
        .expect_err("already");
    assert!(matches!(again, AccountError::AlreadyFrozen(_)), "{again}");
    let no_reason = accounts
        .freeze_tenant(&tenant("globex"), &staff(), "  ")
        .await
        .expect_err("reason");
    assert!(
        matches!(no_reason, AccountError::InvalidReason),
        "{no_reason}"
    );
    accounts
        .unfreeze_tenant(&tenant("acme"), &staff(), "paid")
        .await
        .expect("unfreeze");
    assert!(
        accounts
            .api_token_principal(&token, t0())
            .await
            .expect("lookup")
            .is_some(),
        "tokens work again"
    );
    assert!(
        accounts
            .session_from_token(&session_token, t0())
            .await
            .expect("lookup")
            .is_none(),
        "sessions stay ended"
    );

    accounts
        .revoke_api_token(&tenant("acme"), "nightly-export", &staff())
        .await
        .expect("revoke");
    assert!(
        accounts
            .api_token_principal(&token, t0())
            .await
            .expect("lookup")
            .is_none(),
        "revoked"
    );
    let unknown = accounts
        .revoke_api_token(&tenant("acme"), "nightly-export", &staff())
        .await
        .expect_err("gone");
    assert!(
        matches!(unknown, AccountError::UnknownToken { .. }),
        "{unknown}"
    );

    // Removing a tenant removes its users and tokens: nobody is left to log in.
    accounts
        .catalog()
        .connection()
        .await
        .expect("connection")
        .execute("DELETE FROM tenants WHERE name = 'globex'", &[])
        .await
        .expect("remove globex");
    assert_eq!(
        refused(login(&accounts, "gina", &gina_password, None, t0()).await),
        RefusalReason::UnknownLogin
    );
    assert!(
        accounts
            .api_token_principal(globex.token.expose_secret(), t0())
            .await
            .expect("lookup")
            .is_none()
    );

    let (actions, details) = audit_actions(&accounts).await;
    for expected in [
        "tenant.freeze",
        "tenant.unfreeze",
        "api-token.issue",
        "api-token.revoke",
    ] {
        assert!(
            actions.iter().any(|action| action == expected),
            "{expected} in {actions:?}"
        );
    }
    assert!(details.contains("unpaid invoice"));
    assert!(!details.contains(&token) && !details.contains(&session_token));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_login_costs_about_as_much_as_a_known_one() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let (config, catalog) = catalog_with_tenants(&env).await;
    // Production parameters: the point is the cost of the hash.
    let accounts = Accounts::new(catalog, config.panel).expect("accounts");
    let started = Instant::now();
    for _ in 0..5 {
        PasswordHashing::PRODUCTION
            .hash(&generate_password())
            .expect("hash");
    }
    eprintln!(
        "argon2id m=19 MiB t=2 p=1: {:?} per hash",
        started.elapsed() / 5
    );
    add(&accounts, "erin", Role::Owner, Some("acme")).await;
    let wrong = SecretString::from("not-erins-password-at-all".to_owned());
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    // Seven rounds, compared by their medians: one round slowed by other work on the
    // machine must not decide.
    for round in 0..7 {
        let now = t0() + chrono::Duration::minutes(round);
        let started = Instant::now();
        refused(login(&accounts, "erin", &wrong, None, now).await);
        known.push(started.elapsed());
        let started = Instant::now();
        refused(login(&accounts, &format!("ghost-{round}"), &wrong, None, now).await);
        unknown.push(started.elapsed());
    }
    known.sort();
    unknown.sort();
    let ratio = unknown[3].as_secs_f64() / known[3].as_secs_f64();
    eprintln!(
        "median login refusal: known {:?}, unknown {:?}",
        known[3], unknown[3]
    );
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown/known = {ratio:.2} ({unknown:?} vs {known:?})"
    );
}
