//! The user-facing API (`/api/v1`, issue 10) over real HTTP against a real catalog,
//! PostgreSQL and region: who may see and do what to which tenant ([`access`]), sessions
//! and their CSRF tokens ([`sessions`]), helpdesk restores ([`helpdesk`]), the OpenAPI
//! document and malformed requests ([`document`]).

mod access;
mod document;
mod helpdesk;
mod secrets;
mod sessions;
mod users;

use std::sync::Arc;

use chrono::Utc;
use lifeboat_controller::accounts::totp::current_code;
use lifeboat_controller::accounts::{Accounts, NewUser, PasswordHashing, Role, generate_password};
use lifeboat_controller::audit::{Actor, ActorRole};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::server::{self, Controller};
use lifeboat_core::config::Config;
use lifeboat_core::ids::TenantName;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, api_options, stderr};

fn settings() -> Settings {
    Settings {
        min_regions: Some(1),
        tenants: vec![
            ("acme".to_owned(), "acme".to_owned()),
            ("globex".to_owned(), "globex".to_owned()),
        ],
        extra: CATALOG.to_owned(),
        ..Settings::default()
    }
}

fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).expect("tenant")
}

/// Tenants `acme` and `globex`, each with one backup; the controller's API in this process.
pub struct Portal {
    pub env: TestEnv,
    pub config: Config,
    pub catalog: Catalog,
    pub accounts: Accounts,
    pub base: String,
    pub http: reqwest::Client,
    cancel: CancellationToken,
}

impl Drop for Portal {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// A user the tests made: their password and, for those enrolled, TOTP secret.
pub struct TestUser {
    pub login: String,
    pub password: SecretString,
    pub totp_secret: Option<SecretString>,
}

impl TestUser {
    /// A code from the user's authenticator, `steps_ahead` 30-second steps from now (the
    /// server accepts one step of skew; a code is accepted once, so a second use in the
    /// same step takes the next step's code).
    pub fn code(&self, steps_ahead: i64) -> SecretString {
        let secret = self.totp_secret.as_ref().expect("enrolled");
        let at = Utc::now() + chrono::Duration::seconds(30 * steps_ahead);
        SecretString::from(current_code(secret.expose_secret(), &self.login, at).expect("code"))
    }
}

/// A signed-in session: the cookie and the CSRF token.
#[derive(Clone)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

/// How a request authenticates.
#[derive(Clone)]
pub enum Caller {
    Nobody,
    Session(Session),
    /// A session's cookie without its CSRF token.
    CookieOnly(Session),
    Bearer(String),
}

fn admin_actor() -> Actor {
    Actor {
        name: "test-admin".to_owned(),
        role: ActorRole::Admin,
        address: None,
    }
}

impl Portal {
    pub async fn start() -> Portal {
        let env = TestEnv::start(Backend::Embedded, 1).await;
        env.create_catalog().await;
        let config_path = env.config_file(&settings());
        let migrated = env.lifeboat(&config_path, &["controller", "migrate"]);
        assert!(migrated.status.success(), "{}", stderr(&migrated));
        let config = env.config(&settings());
        let catalog = Catalog::open(&config).await.expect("open catalog");
        for name in ["acme", "globex"] {
            env.create_tenant_database(name, 20).await;
            let backed_up = env.lifeboat(&config_path, &["backup", "--tenant", name]);
            assert!(backed_up.status.success(), "{}", stderr(&backed_up));
        }
        catalog
            .connection()
            .await
            .expect("connection")
            .batch_execute(
                "INSERT INTO tenants (name, cluster, database_name)
                 VALUES ('acme', 'main', 'acme'), ('globex', 'main', 'globex')
                 ON CONFLICT (name) DO NOTHING",
            )
            .await
            .expect("tenants");
        let accounts = Accounts::with_password_hashing(
            catalog.clone(),
            config.panel,
            PasswordHashing::FOR_TESTS_ONLY,
        )
        .expect("accounts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let cancel = CancellationToken::new();
        tokio::spawn(server::serve(
            catalog.clone(),
            listener,
            api_options(&config, QueuePolicy::default()),
            None,
            Controller {
                work_ready: Arc::default(),
            },
            cancel.clone(),
        ));
        Portal {
            env,
            config,
            catalog,
            accounts,
            base,
            http: reqwest::Client::new(),
            cancel,
        }
    }

    /// Add a user; staff are enrolled in TOTP (they cannot sign in otherwise).
    pub async fn user(&self, login: &str, role: Role, tenant_name: Option<&str>) -> TestUser {
        let password = generate_password();
        self.accounts
            .add_user(
                NewUser {
                    login: login.to_owned(),
                    role,
                    tenant: tenant_name.map(tenant),
                    password: password.clone(),
                },
                &admin_actor(),
            )
            .await
            .expect("add user");
        let mut user = TestUser {
            login: login.to_owned(),
            password,
            totp_secret: None,
        };
        if role.is_staff() {
            let enrolment = self
                .accounts
                .begin_totp_enrolment(login, &admin_actor())
                .await
                .expect("begin TOTP");
            user.totp_secret = Some(enrolment.secret_base32);
            // Confirmed with the previous step's code, so that the sign-in may use this one.
            self.accounts
                .confirm_totp_enrolment(login, &user.code(-1), Utc::now(), &admin_actor())
                .await
                .expect("confirm TOTP");
        }
        user
    }

    /// A tenant API token (`lbu_…`).
    pub async fn api_token(&self, tenant_name: &str, role: Role, name: &str) -> String {
        self.accounts
            .issue_api_token(
                &tenant(tenant_name),
                role,
                name,
                std::time::Duration::from_secs(24 * 3600),
                Utc::now(),
                &admin_actor(),
            )
            .await
            .expect("issue token")
            .token
            .expose_secret()
            .to_owned()
    }

    /// Sign in over HTTP, presenting `old_cookie` if given.
    pub async fn sign_in_with(
        &self,
        user: &TestUser,
        code: Option<SecretString>,
        old_cookie: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/api/v1/session", self.base))
            .json(&serde_json::json!({
                "login": user.login,
                "password": user.password.expose_secret(),
                "code": code.as_ref().map(|code| code.expose_secret().to_owned()),
            }));
        if let Some(cookie) = old_cookie {
            request = request.header("cookie", format!("lifeboat_session={cookie}"));
        }
        request.send().await.expect("sign in")
    }

    /// Sign in (staff with their current TOTP code) and keep the session.
    pub async fn sign_in(&self, user: &TestUser) -> Session {
        let code = user.totp_secret.as_ref().map(|_| user.code(0));
        let response = self.sign_in_with(user, code, None).await;
        session_of(response).await
    }

    pub async fn call(
        &self,
        caller: &Caller,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        match caller {
            Caller::Nobody => {}
            Caller::Session(session) => {
                request = request
                    .header("cookie", format!("lifeboat_session={}", session.cookie))
                    .header("x-csrf-token", &session.csrf);
            }
            Caller::CookieOnly(session) => {
                request = request.header("cookie", format!("lifeboat_session={}", session.cookie));
            }
            Caller::Bearer(token) => request = request.bearer_auth(token),
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn scalar(&self, sql: &str) -> i64 {
        let client = self.catalog.connection().await.expect("connection");
        client.query_one(sql, &[]).await.expect(sql).get(0)
    }

    pub async fn scalar_text(&self, sql: &str) -> String {
        let client = self.catalog.connection().await.expect("connection");
        client.query_one(sql, &[]).await.expect(sql).get(0)
    }
}

/// The session a successful sign-in response set.
pub async fn session_of(response: reqwest::Response) -> Session {
    assert_eq!(response.status(), StatusCode::OK, "sign-in refused");
    let set_cookie = response
        .headers()
        .get("set-cookie")
        .expect("a session cookie")
        .to_str()
        .expect("ascii")
        .to_owned();
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(
            set_cookie.contains(attribute),
            "{set_cookie} lacks {attribute}"
        );
    }
    let cookie = set_cookie
        .split(';')
        .next()
        .and_then(|pair| pair.strip_prefix("lifeboat_session="))
        .expect("lifeboat_session cookie")
        .to_owned();
    let body: Value = response.json().await.expect("json");
    Session {
        cookie,
        csrf: body["csrf_token"].as_str().expect("csrf token").to_owned(),
    }
}

/// The `code` of a JSON error body.
pub fn code(body: &Value) -> &str {
    body["code"].as_str().unwrap_or("<no code>")
}
