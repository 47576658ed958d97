//! `lifeboat user …` and `lifeboat tenant freeze|unfreeze`, run as a person would.

use chrono::Utc;
use lifeboat_controller::accounts::totp::current_code;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, stderr, stdout};

/// The value of the first `label: value` line of `text`.
fn labelled<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{label}: ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_commands_add_confirm_disable_reset_unlock_and_freeze() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_catalog().await;
    let config = env.config_file(&Settings {
        extra: CATALOG.to_owned(),
        ..Settings::default()
    });
    let run = |arguments: &[&str]| env.lifeboat(&config, arguments);
    assert!(run(&["controller", "migrate"]).status.success());
    let added = run(&["tenant", "add", "acme", "--cluster", "main"]);
    assert!(added.status.success(), "{}", stderr(&added));

    // Staff: a generated password and a TOTP secret, each shown once.
    let root = run(&["user", "add", "root", "--role", "admin"]);
    assert!(root.status.success(), "{}", stderr(&root));
    let root_out = stdout(&root);
    let root_password = labelled(&root_out, "password").expect("password shown");
    let secret = labelled(&root_out, "totp-secret").expect("secret shown");
    assert!(labelled(&root_out, "totp-url").is_some_and(|url| url.starts_with("otpauth://totp/")));
    assert!(stderr(&root).contains("shown once"));
    let wrong_code = run(&["user", "confirm-totp", "root", "000000"]);
    assert!(!wrong_code.status.success());
    assert!(
        stderr(&wrong_code).contains("does not match"),
        "{}",
        stderr(&wrong_code)
    );
    let code = current_code(secret, "root", Utc::now()).expect("code");
    let confirmed = run(&["user", "confirm-totp", "root", &code]);
    assert!(confirmed.status.success(), "{}", stderr(&confirmed));
    assert_eq!(stdout(&confirmed).matches("recovery-code: ").count(), 10);

    // A customer with a password from a file: nothing secret printed.
    let password_file = env.dir.path().join("alice-password");
    std::fs::write(&password_file, "violet-harbour-quartz-91\n").expect("write");
    let password_path = password_file.to_str().expect("utf-8 path");
    let alice = run(&[
        "user",
        "add",
        "alice",
        "--role",
        "owner",
        "--tenant",
        "acme",
        "--password-file",
        password_path,
    ]);
    assert!(alice.status.success(), "{}", stderr(&alice));
    assert!(labelled(&stdout(&alice), "password").is_none());
    assert!(
        labelled(&stdout(&alice), "totp-secret").is_none(),
        "TOTP optional for customers"
    );

    // Bad input: one clear error, a non-zero exit, nothing changed.
    let weak_file = env.dir.path().join("weak");
    std::fs::write(&weak_file, "password1234").expect("write");
    let weak_path = weak_file.to_str().expect("utf-8 path");
    for (arguments, expected) in [
        (
            vec!["user", "add", "bob", "--role", "owner"],
            "give --tenant",
        ),
        (
            vec!["user", "add", "bob", "--role", "boss"],
            "not one of admin",
        ),
        (
            vec![
                "user",
                "add",
                "bob",
                "--role",
                "viewer",
                "--tenant",
                "acme",
                "--password-file",
                weak_path,
            ],
            "too easy to guess",
        ),
        (
            vec![
                "user", "add", "ALICE", "--role", "viewer", "--tenant", "acme",
            ],
            "already exists",
        ),
        (
            vec![
                "user",
                "add",
                "bob",
                "--role",
                "viewer",
                "--tenant",
                "Not A Slug",
            ],
            "--tenant",
        ),
        (
            vec!["user", "disable", "nobody"],
            "no user with login \"nobody\"",
        ),
        (
            vec!["tenant", "freeze", "acme", "--reason", ""],
            "a reason is required",
        ),
        (
            vec!["tenant", "unfreeze", "acme", "--reason", "x"],
            "is not frozen",
        ),
    ] {
        let output = run(&arguments);
        assert!(!output.status.success(), "{arguments:?} succeeded");
        assert!(
            stderr(&output).contains(expected),
            "{arguments:?}: {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("password1234"),
            "the password is not repeated"
        );
    }
    let listed = run(&["user", "list", "--json"]);
    let users: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(users.len(), 2, "{users:?}");
    assert_eq!(
        (users[0]["login"].as_str(), users[0]["totp"].as_str()),
        (Some("root"), Some("active"))
    );
    assert_eq!(
        (users[1]["login"].as_str(), users[1]["tenant"].as_str()),
        (Some("alice"), Some("acme"))
    );

    for (arguments, expected) in [
        (vec!["user", "disable", "alice"], "disabled alice"),
        (vec!["user", "enable", "alice"], "enabled alice"),
        (vec!["user", "unlock", "alice"], "alice was not throttled"),
        (
            vec!["tenant", "freeze", "acme", "--reason", "unpaid invoice"],
            "froze tenant acme",
        ),
        (
            vec!["tenant", "unfreeze", "acme", "--reason", "paid"],
            "unfroze tenant acme",
        ),
    ] {
        let output = run(&arguments);
        assert!(
            output.status.success(),
            "{arguments:?}: {}",
            stderr(&output)
        );
        assert!(
            stdout(&output).contains(expected),
            "{arguments:?}: {}",
            stdout(&output)
        );
    }
    let reset = run(&["user", "reset-password", "alice"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let new_password = labelled(&stdout(&reset), "password")
        .expect("new password shown")
        .to_owned();
    let reset_totp = run(&["user", "reset-totp", "root"]);
    assert!(reset_totp.status.success(), "{}", stderr(&reset_totp));
    let new_secret = labelled(&stdout(&reset_totp), "totp-secret")
        .expect("staff re-enrol")
        .to_owned();
    assert_ne!(new_secret, secret);

    let catalog = env
        .postgres
        .connect("lifeboat_catalog")
        .await
        .expect("connect");
    let rows = catalog
        .query("SELECT action, details::text FROM audit_log WHERE action LIKE 'user.%' OR action LIKE 'tenant.%freeze' ORDER BY id", &[])
        .await
        .expect("audit");
    let actions: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        actions,
        [
            "user.add",
            "user.totp-begin",
            "user.totp-confirm",
            "user.add",
            "user.disable",
            "user.enable",
            "user.unlock",
            "tenant.freeze",
            "tenant.unfreeze",
            "user.reset-password",
            "user.reset-totp",
            "user.totp-begin",
        ]
    );
    let details: String = rows.iter().map(|row| row.get::<_, String>(1)).collect();
    for secret_text in [
        root_password,
        secret,
        new_password.as_str(),
        new_secret.as_str(),
        "violet-harbour-quartz-91",
    ] {
        assert!(!details.contains(secret_text), "no secret in the audit log");
    }
}
