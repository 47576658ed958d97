//! The control panel in a real browser (headless Chromium through chromedriver): a
//! customer signs in with TOTP and takes a manual backup; a helpdesk user restores the
//! tenant onto live and rolls it back, following the progress pages; a frozen customer is
//! turned away. The controller, an agent, PostgreSQL and the region are real; the tenants
//! were provisioned by the playbooks.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use fantoccini::{Client, ClientBuilder, Locator};
use lifeboat_agent::worker::{AgentOptions, run_agent};
use lifeboat_controller::accounts::totp::current_code;
use lifeboat_controller::accounts::{Accounts, NewUser, PasswordHashing, Role, generate_password};
use lifeboat_controller::audit::{Actor, ActorRole};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::server::{self, Controller};
use lifeboat_core::ids::TenantName;
use lifeboat_core::region::Regions;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, api_options, stderr, stdout};

/// chromedriver on a free loopback port, stopped on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let port = lifeboat_sandbox::ports::free_loopback_port().expect("a free port");
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver (ci/install-test-deps installs chromium-driver)");
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { child, url }
}

async fn browser(driver: &Driver, downloads: &std::path::Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".to_owned(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=412,915"],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
            },
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

struct Person {
    login: String,
    password: SecretString,
    totp: SecretString,
}

impl Person {
    /// The authenticator's code for the step `steps_ahead` steps from now.
    fn code(&self, steps_ahead: i64) -> String {
        current_code(
            self.totp.expose_secret(),
            &self.login,
            Utc::now() + chrono::Duration::seconds(30 * steps_ahead),
        )
        .expect("code")
    }
}

fn admin() -> Actor {
    Actor {
        name: "test-admin".to_owned(),
        role: ActorRole::Admin,
        address: None,
    }
}

async fn enrolled(accounts: &Accounts, login: &str, role: Role, tenant: Option<&str>) -> Person {
    let password = generate_password();
    accounts
        .add_user(
            NewUser {
                login: login.to_owned(),
                role,
                tenant: tenant.map(|name| TenantName::parse(name).expect("tenant")),
                password: password.clone(),
            },
            &admin(),
        )
        .await
        .expect("add user");
    let enrolment = accounts
        .begin_totp_enrolment(login, &admin())
        .await
        .expect("begin TOTP");
    let person = Person {
        login: login.to_owned(),
        password,
        totp: enrolment.secret_base32,
    };
    accounts
        .confirm_totp_enrolment(
            login,
            &SecretString::from(person.code(-1)),
            Utc::now(),
            &admin(),
        )
        .await
        .expect("confirm TOTP");
    person
}

async fn fill(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.expect(id);
    field.clear().await.expect("clear");
    field.send_keys(text).await.expect("type");
}

/// Click the submit button `id` and wait for the page the form leads to.
async fn click(browser: &Client, id: &str) {
    submit(browser, Locator::Id(id)).await;
}

/// Click a form's button and wait until the browser has left the page it was on: the old
/// document's root goes stale once the answer to the form is loaded. Reading the page
/// before that would read the form itself, and reloading would send the form again.
async fn submit(browser: &Client, button: Locator<'_>) {
    let before = browser
        .find(Locator::Css("html"))
        .await
        .expect("the page's root");
    browser
        .find(button)
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
    let deadline = Instant::now() + Duration::from_secs(60);
    while before.tag_name().await.is_ok() {
        assert!(Instant::now() < deadline, "the form's answer never loaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(browser: &Client, base: &str, person: &Person, code: &str) {
    browser
        .goto(&format!("{base}/login"))
        .await
        .expect("login page");
    fill(browser, "login", &person.login).await;
    fill(browser, "password", person.password.expose_secret()).await;
    fill(browser, "code", code).await;
    submit(browser, Locator::Css("form button[type=submit]")).await;
}

/// Reload until `done` says the page shows what is awaited.
async fn wait_for_page(browser: &Client, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let source = browser.source().await.expect("page source");
        if done(&source) {
            return source;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{source}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.refresh().await.expect("reload");
    }
}

/// The controller's API and panel, in this process, on the catalog `config` names.
struct Served {
    catalog: Catalog,
    accounts: Accounts,
    base: String,
    cancel: CancellationToken,
    _stop: tokio_util::sync::DropGuard,
}

async fn serve(config: &lifeboat_core::config::Config) -> Served {
    let catalog = Catalog::open(config).await.expect("catalog");
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
        api_options(config, QueuePolicy::default()),
        None,
        Controller {
            work_ready: Arc::default(),
        },
        cancel.clone(),
    ));
    Served {
        catalog,
        accounts,
        base,
        _stop: cancel.clone().drop_guard(),
        cancel,
    }
}

async fn count_orders(env: &TestEnv) -> i64 {
    let client = env.postgres.connect("acme").await.expect("connect to acme");
    client
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .expect("count")
        .get(0)
}

/// One embedded region, PostgreSQL and a migrated catalog; the settings and file of their
/// configuration.
async fn migrated_env() -> (TestEnv, Settings, std::path::PathBuf) {
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
    (env, settings, config_path)
}

async fn execute_in_acme(env: &TestEnv, sql: &str) {
    let client = env.postgres.connect("acme").await.expect("connect to acme");
    client.batch_execute(sql).await.expect(sql);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_and_helpdesk_use_the_panel_in_a_browser() {
    let (env, settings, config_path) = migrated_env().await;
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    for name in ["acme", "globex"] {
        let provisioned = run(&["tenant", "provision", name, "--cluster", "main"]);
        assert!(provisioned.status.success(), "{}", stderr(&provisioned));
    }
    execute_in_acme(
        &env,
        "SET ROLE acme; CREATE TABLE orders (id int PRIMARY KEY, item text);
         INSERT INTO orders SELECT n, 'item ' || n FROM generate_series(1, 500) AS n;",
    )
    .await;
    let backed_up = run(&["backup", "--tenant", "acme"]);
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));

    let config = env.config(&settings);
    // The controller and an agent, in this process.
    let served = serve(&config).await;
    let (catalog, accounts, base, cancel) = (
        &served.catalog,
        &served.accounts,
        &served.base,
        served.cancel.clone(),
    );
    let owner = enrolled(accounts, "alice", Role::Owner, Some("acme")).await;
    let helpdesk = enrolled(accounts, "hank", Role::Helpdesk, None).await;
    let token = run(&[
        "agent",
        "token",
        "create",
        "a1",
        "--all-clusters",
        "--can-decrypt",
    ]);
    assert!(token.status.success(), "{}", stderr(&token));
    tokio::spawn(run_agent(
        Arc::new(config.clone()),
        Regions::from_config(&config),
        AgentOptions {
            controller: base.clone(),
            token: SecretString::from(stdout(&token).trim().to_owned()),
            clusters: Vec::new(),
            concurrency: 2,
            claim_wait: Duration::from_secs(1),
            ca_file: None,
            insecure_http: false,
        },
        cancel.clone(),
    ));

    let driver = start_driver().await;
    let downloads = tempfile::tempdir().expect("download directory");
    let browser = browser(&driver, downloads.path()).await;

    // A wrong code: the sign-in page again, with the one generic message.
    sign_in(&browser, base, &owner, "000000").await;
    let source = browser.source().await.expect("source");
    assert!(
        source.contains("id=\"login-error\"") && source.contains("wrong login, password or code"),
        "{source}"
    );
    // A customer signs in with TOTP and lands on their tenant's page.
    sign_in(&browser, base, &owner, &owner.code(0)).await;
    let page = wait_for_page(&browser, "acme's page", |source| {
        source.contains("Tenant acme")
    })
    .await;
    assert!(
        page.contains("data-backup="),
        "the backup is listed:\n{page}"
    );
    assert!(!page.contains("globex"), "nothing of another tenant");
    // They take a manual backup; the agent takes it; the page lists it.
    click(&browser, "take-backup").await;
    let page = wait_for_page(&browser, "the manual backup", |source| {
        source.matches("data-backup=").count() == 2
    })
    .await;
    assert!(page.contains("manual"), "{page}");
    // They download the newest backup (the manual one) as a pg_restore file: the browser
    // follows the single-use link the form asked for, and the file restores with pg_restore.
    browser
        .find(Locator::Css("tr[data-backup] button.download"))
        .await
        .expect("a download button")
        .click()
        .await
        .expect("download");
    let deadline = Instant::now() + Duration::from_secs(60);
    let file = loop {
        let finished = std::fs::read_dir(downloads.path())
            .expect("read the download directory")
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .find(|path| {
                path.extension()
                    .is_some_and(|extension| extension == "dump")
            });
        if let Some(file) = finished {
            break file;
        }
        assert!(Instant::now() < deadline, "the download did not finish");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    env.postgres
        .connect("postgres")
        .await
        .expect("connect")
        .batch_execute("CREATE DATABASE acme_download")
        .await
        .expect("create database");
    let restored = Command::new(env.postgres.bin_dir().join("pg_restore"))
        .arg("--exit-on-error")
        .arg("--no-owner")
        .envs(env.postgres.libpq_environment())
        .arg("--dbname=acme_download")
        .arg(&file)
        .output()
        .expect("pg_restore");
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    let downloaded: i64 = env
        .postgres
        .connect("acme_download")
        .await
        .expect("connect")
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(
        downloaded, 500,
        "the downloaded file holds the tenant's data"
    );
    // Another tenant's page is not there for them.
    browser
        .goto(&format!("{base}/tenants/globex"))
        .await
        .expect("goto");
    let source = browser.source().await.expect("source");
    assert!(source.contains("does not exist"), "{source}");
    assert!(
        source.contains("<h1>Not Found</h1>"),
        "errors are pages: {source}"
    );
    // The owner asks helpdesk for a restore onto live.
    browser
        .goto(&format!("{base}/tenants/acme"))
        .await
        .expect("acme's page");
    browser
        .find(Locator::Id("ask-target"))
        .await
        .expect("the ask form")
        .select_by_value("live")
        .await
        .expect("choose live");
    fill(
        &browser,
        "ask-note-field",
        "we lost most orders this morning",
    )
    .await;
    click(&browser, "ask-restore").await;
    let page = browser.source().await.expect("source");
    assert!(
        page.contains("id=\"open-ask\"") && page.contains("we lost most orders this morning"),
        "{page}"
    );
    browser.goto(&format!("{base}/")).await.expect("home");
    click(&browser, "sign-out").await;

    // Helpdesk restores acme onto live after the customer lost most orders.
    execute_in_acme(&env, "DELETE FROM orders WHERE id > 100").await;
    assert_eq!(count_orders(&env).await, 100);
    sign_in(&browser, base, &helpdesk, &helpdesk.code(0)).await;
    let list = wait_for_page(&browser, "the tenant list", |source| {
        source.contains("Find a tenant")
    })
    .await;
    assert!(
        list.contains("id=\"ask-queue\"") && list.contains("restore asked"),
        "staff see the customer's ask: {list}"
    );
    browser
        .goto(&format!("{base}/tenants/acme/restore"))
        .await
        .expect("restore form");
    let form = browser.source().await.expect("source");
    assert!(
        form.contains("expected-offline"),
        "the expected offline time is shown:\n{form}"
    );
    // The newest backup is the manual one, taken before the orders were deleted.
    fill(&browser, "reason", "customer deleted 400 orders by mistake").await;
    fill(&browser, "confirm_tenant", "acme").await;
    let restore_code = helpdesk.code(1);
    fill(&browser, "code", &restore_code).await;
    click(&browser, "restore").await;
    let page = wait_for_page(&browser, "the restore to finish", |source| {
        source.contains("id=\"restore-state\">succeeded")
            || source.contains("id=\"restore-state\">failed")
    })
    .await;
    assert!(page.contains("id=\"restore-state\">succeeded"), "{page}");
    assert!(page.contains("swap"), "the steps are shown:\n{page}");
    assert_eq!(
        count_orders(&env).await,
        500,
        "the restore brought the orders back"
    );
    let ask_state: String = catalog
        .connection()
        .await
        .expect("catalog")
        .query_one("SELECT state FROM restore_asks", &[])
        .await
        .expect("the ask")
        .get(0);
    assert_eq!(ask_state, "served", "the restore served the customer's ask");

    // Roll it back, with a code of a later step than the restore's.
    while helpdesk.code(1) == restore_code {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    fill(
        &browser,
        "reason",
        "the customer wants the state before the restore",
    )
    .await;
    fill(&browser, "confirm_tenant", "acme").await;
    fill(&browser, "code", &helpdesk.code(1)).await;
    click(&browser, "rollback").await;
    let page = wait_for_page(&browser, "the rollback to finish", |source| {
        source.contains("(rollback)")
            && (source.contains("id=\"restore-state\">succeeded")
                || source.contains("id=\"restore-state\">failed"))
    })
    .await;
    assert!(page.contains("id=\"restore-state\">succeeded"), "{page}");
    assert_eq!(
        count_orders(&env).await,
        100,
        "the rollback returned the state before"
    );
    click(&browser, "sign-out").await;

    // A frozen customer is turned away at once, signed in or not.
    sign_in(&browser, base, &owner, &owner.code(1)).await;
    wait_for_page(&browser, "acme's page", |source| {
        source.contains("Tenant acme")
    })
    .await;
    accounts
        .freeze_tenant(
            &TenantName::parse("acme").expect("tenant"),
            &admin(),
            "unpaid",
        )
        .await
        .expect("freeze");
    browser.refresh().await.expect("reload");
    let source = browser.source().await.expect("source");
    assert!(
        source.contains("Sign in"),
        "a frozen customer's session is over:\n{source}"
    );
    assert!(!source.contains("data-backup="), "{source}");
    browser.close().await.expect("close the browser");
}

/// The text of the element `id`, waiting (without reloading) until `done` accepts it.
async fn wait_for_text(browser: &Client, id: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = browser
            .find(Locator::Id(id))
            .await
            .expect(id)
            .text()
            .await
            .expect("text");
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "#{id} still says {text:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_manage_users_and_tokens_people_enrol_an_authenticator_and_admins_empty_the_trash() {
    let (env, settings, config_path) = migrated_env().await;
    let run = |arguments: &[&str]| env.lifeboat(&config_path, arguments);
    let added = run(&["tenant", "add", "acme", "--cluster", "main"]);
    assert!(added.status.success(), "{}", stderr(&added));
    let config = env.config(&settings);
    let served = serve(&config).await;
    let (catalog, accounts, base) = (&served.catalog, &served.accounts, &served.base);
    let owner = enrolled(accounts, "olga", Role::Owner, Some("acme")).await;
    let driver = start_driver().await;
    let downloads = tempfile::tempdir().expect("download directory");
    let browser = browser(&driver, downloads.path()).await;

    sign_in(&browser, base, &owner, &owner.code(0)).await;
    wait_for_page(&browser, "acme's page", |source| {
        source.contains("Tenant acme")
    })
    .await;
    browser
        .goto(&format!("{base}/tenants/acme/users"))
        .await
        .expect("users page");
    // The strength shows as the password is typed, in the policy's words.
    fill(&browser, "new-login", "bob").await;
    fill(&browser, "new-password", "password123").await;
    wait_for_text(&browser, "password-strength", |text| {
        text.contains("not accepted")
    })
    .await;
    // Sent anyway (the browser's own checks pass): the form comes back with the reason.
    click(&browser, "add-user").await;
    let refused = wait_for_text(&browser, "user-error", |text| !text.is_empty()).await;
    assert!(refused.to_lowercase().contains("password"), "{refused}");
    assert!(
        accounts.user("bob").await.is_err(),
        "a refused user is not added"
    );
    fill(&browser, "new-password", "lantern-quiet-harbour-91").await;
    wait_for_text(&browser, "password-strength", |text| {
        text.contains("accepted") && !text.contains("not accepted")
    })
    .await;
    click(&browser, "add-user").await;
    let page = browser.source().await.expect("source");
    assert!(page.contains("data-user=\"bob\""), "{page}");
    let bob = accounts.user("bob").await.expect("bob was added");
    assert_eq!(bob.role, Role::Viewer);
    click(&browser, "disable-bob").await;
    assert!(accounts.user("bob").await.expect("bob").disabled);

    // A token, shown once, works against the API until it is revoked.
    fill(&browser, "token-name", "ci").await;
    click(&browser, "issue-token").await;
    let token = browser
        .find(Locator::Id("issued-token"))
        .await
        .expect("the token is shown")
        .text()
        .await
        .expect("text");
    assert!(token.starts_with("lbu_"), "{token}");
    let http = reqwest::Client::new();
    let list_backups = || {
        http.get(format!("{base}/api/v1/tenants/acme/backups"))
            .bearer_auth(&token)
            .send()
    };
    assert_eq!(list_backups().await.expect("GET").status(), 200);
    browser
        .goto(&format!("{base}/tenants/acme/users"))
        .await
        .expect("users page");
    click(&browser, "revoke-ci").await;
    assert_eq!(list_backups().await.expect("GET").status(), 401);
    click(&browser, "sign-out").await;

    // A customer without an authenticator enrols one from their account page.
    let password = generate_password();
    accounts
        .add_user(
            NewUser {
                login: "vera".to_owned(),
                role: Role::Viewer,
                tenant: Some(TenantName::parse("acme").expect("tenant")),
                password: password.clone(),
            },
            &admin(),
        )
        .await
        .expect("add vera");
    let mut vera = Person {
        login: "vera".to_owned(),
        password,
        totp: SecretString::from(String::new()),
    };
    sign_in(&browser, base, &vera, "").await;
    wait_for_page(&browser, "acme's page", |source| {
        source.contains("Tenant acme")
    })
    .await;
    browser
        .goto(&format!("{base}/account"))
        .await
        .expect("account page");
    click(&browser, "begin-totp").await;
    let qr = browser
        .find(Locator::Id("totp-qr"))
        .await
        .expect("the QR code")
        .html(true)
        .await
        .expect("html");
    assert!(qr.contains("<svg"), "{qr}");
    let secret = browser
        .find(Locator::Id("totp-secret"))
        .await
        .expect("the key as text")
        .text()
        .await
        .expect("text");
    vera.totp = SecretString::from(secret);
    fill(&browser, "totp-code", &vera.code(0)).await;
    click(&browser, "confirm-totp").await;
    let codes = browser
        .find_all(Locator::Css("#recovery-codes li"))
        .await
        .expect("recovery codes");
    assert!(!codes.is_empty(), "recovery codes are shown once");
    click(&browser, "sign-out").await;
    // From now on her sign-in needs a code.
    sign_in(&browser, base, &vera, "").await;
    let source = browser.source().await.expect("source");
    assert!(source.contains("id=\"login-error\""), "{source}");
    sign_in(&browser, base, &vera, &vera.code(1)).await;
    wait_for_page(&browser, "acme's page", |source| {
        source.contains("Tenant acme")
    })
    .await;
    assert!(
        !browser
            .source()
            .await
            .expect("source")
            .contains("trash-link"),
        "the trash is for admins"
    );
    click(&browser, "sign-out").await;

    // An admin brings a trashed backup back from the trash page.
    env.create_tenant_database("acme", 10).await;
    let backed_up = run(&["backup", "--tenant", "acme"]);
    assert!(backed_up.status.success(), "{}", stderr(&backed_up));
    let trashed_state = |trashed: bool| {
        let catalog = catalog.clone();
        async move {
            let connection = catalog.connection().await.expect("catalog");
            let count: i64 = connection
                .query_one(
                    "SELECT count(*) FROM backups WHERE (trashed_at IS NOT NULL) = $1",
                    &[&trashed],
                )
                .await
                .expect("count")
                .get(0);
            count
        }
    };
    catalog
        .connection()
        .await
        .expect("catalog")
        .batch_execute(
            "UPDATE backups SET trashed_at = now(), trash_reason = 'retention',
                    purge_after = now() + interval '14 days'",
        )
        .await
        .expect("trash the backup");
    assert_eq!(trashed_state(true).await, 1);
    let admin_person = enrolled(accounts, "ada", Role::Admin, None).await;
    sign_in(&browser, base, &admin_person, &admin_person.code(0)).await;
    wait_for_page(&browser, "the tenant list", |source| {
        source.contains("Find a tenant")
    })
    .await;
    browser
        .goto(&format!("{base}/trash"))
        .await
        .expect("trash page");
    submit(&browser, Locator::Css("#trash button[type=submit]")).await;
    let page = browser.source().await.expect("source");
    assert!(page.contains("The trash is empty."), "{page}");
    assert_eq!(
        trashed_state(true).await,
        0,
        "the backup is out of the trash"
    );
    browser.close().await.expect("close the browser");
}
