//! `lifeboat user …` and `lifeboat tenant freeze|unfreeze`: accounts from the command line,
//! every operation in `lifeboat_controller::accounts`. Secrets (passwords, TOTP secrets,
//! recovery codes) go to stdout once, labelled; what they are goes to stderr.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use comfy_table::Table;
use lifeboat_controller::accounts::{
    Accounts, NewUser, RecoveryCodes, Role, TotpEnrolment, generate_password,
};
use lifeboat_core::ids::TenantName;
use secrecy::{ExposeSecret, SecretString};

use lifeboat_controller::audit::Actor;

use super::catalog::{open_catalog, operator};
use super::{load_config, parse_flag, parse_optional_flag};

/// The accounts of the configured catalog, and who acts on them (the catalog's role).
async fn open_accounts(config_path: Option<&Path>) -> anyhow::Result<(Accounts, Actor)> {
    let config = load_config(config_path)?;
    let catalog = open_catalog(&config).await?;
    let actor = operator(&catalog).await?;
    Ok((Accounts::new(catalog, config.panel)?, actor))
}

/// The password in `file` (`-`: standard input), without its final line break; or a new
/// one, to be shown once, when no file is given.
fn password_from(file: Option<&Path>) -> anyhow::Result<(SecretString, bool)> {
    let Some(file) = file else {
        return Ok((generate_password(), true));
    };
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("read the password from standard input")?;
    } else {
        text = std::fs::read_to_string(file)
            .with_context(|| format!("read the password file {}", file.display()))?;
    }
    let password = text
        .strip_suffix('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .unwrap_or(&text);
    Ok((SecretString::from(password.to_owned()), false))
}

fn print_enrolment(login: &str, enrolment: &TotpEnrolment) {
    eprintln!(
        "TOTP secret of {login} (shown once): add it to an authenticator app, then confirm with `lifeboat user confirm-totp {login} CODE` or log in with a code"
    );
    println!("totp-secret: {}", enrolment.secret_base32.expose_secret());
    println!("totp-url: {}", enrolment.otpauth_url.expose_secret());
}

fn print_recovery_codes(codes: &RecoveryCodes) {
    eprintln!("recovery codes (shown once; each opens one login instead of a TOTP code):");
    for code in &codes.0 {
        println!("recovery-code: {}", code.expose_secret());
    }
}

/// `user add` arguments.
#[derive(Debug)]
pub struct AddArguments<'a> {
    pub login: &'a str,
    pub role: &'a str,
    pub tenant: Option<&'a str>,
    pub password_file: Option<&'a Path>,
}

pub async fn add(
    config_path: Option<&Path>,
    arguments: AddArguments<'_>,
) -> anyhow::Result<ExitCode> {
    let role = parse_flag("role", arguments.role, Role::parse)?;
    let tenant = parse_optional_flag("tenant", arguments.tenant, TenantName::parse)?;
    let (password, generated) = password_from(arguments.password_file)?;
    let (accounts, actor) = open_accounts(config_path).await?;
    let user = accounts
        .add_user(
            NewUser {
                login: arguments.login.to_owned(),
                role,
                tenant,
                password: password.clone(),
            },
            &actor,
        )
        .await?;
    eprintln!(
        "added {} {}{}",
        user.role,
        user.login,
        user.tenant
            .as_ref()
            .map(|tenant| format!(" of tenant {tenant}"))
            .unwrap_or_default()
    );
    if generated {
        eprintln!("password of {} (shown once):", user.login);
        println!("password: {}", password.expose_secret());
    }
    if role.is_staff() {
        let enrolment = accounts.begin_totp_enrolment(&user.login, &actor).await?;
        print_enrolment(&user.login, &enrolment);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn confirm_totp(
    config_path: Option<&Path>,
    login: &str,
    code: &str,
) -> anyhow::Result<ExitCode> {
    let (accounts, actor) = open_accounts(config_path).await?;
    let codes = accounts
        .confirm_totp_enrolment(
            login,
            &SecretString::from(code.to_owned()),
            chrono::Utc::now(),
            &actor,
        )
        .await?;
    eprintln!("TOTP confirmed for {login}");
    print_recovery_codes(&codes);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(
    config_path: Option<&Path>,
    tenant: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let tenant = parse_optional_flag("tenant", tenant, TenantName::parse)?;
    let (accounts, _) = open_accounts(config_path).await?;
    let users = accounts.list_users(tenant.as_ref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&users)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["login", "role", "tenant", "totp", "state", "created"]);
    for user in &users {
        table.add_row([
            user.login.clone(),
            user.role.to_string(),
            user.tenant
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".to_owned()),
            serde_json::to_value(user.totp)?
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            if user.disabled { "disabled" } else { "enabled" }.to_owned(),
            user.created_at.format("%Y-%m-%d %H:%M").to_string(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub async fn set_disabled(
    config_path: Option<&Path>,
    login: &str,
    disabled: bool,
) -> anyhow::Result<ExitCode> {
    let (accounts, actor) = open_accounts(config_path).await?;
    let user = accounts.set_user_disabled(login, disabled, &actor).await?;
    println!(
        "{} {}",
        if disabled { "disabled" } else { "enabled" },
        user.login
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn reset_password(
    config_path: Option<&Path>,
    login: &str,
    password_file: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let (password, generated) = password_from(password_file)?;
    let (accounts, actor) = open_accounts(config_path).await?;
    accounts.reset_password(login, &password, &actor).await?;
    eprintln!("password of {login} replaced; their sessions ended");
    if generated {
        eprintln!("new password (shown once):");
        println!("password: {}", password.expose_secret());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn reset_totp(config_path: Option<&Path>, login: &str) -> anyhow::Result<ExitCode> {
    let (accounts, actor) = open_accounts(config_path).await?;
    accounts.reset_totp(login, &actor).await?;
    eprintln!("second factor of {login} removed; their sessions ended");
    let user = accounts.user(login).await?;
    if user.role.is_staff() {
        // Staff cannot log in without one: hand over a new secret right away.
        let enrolment = accounts.begin_totp_enrolment(&user.login, &actor).await?;
        print_enrolment(&user.login, &enrolment);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn unlock(config_path: Option<&Path>, login: &str) -> anyhow::Result<ExitCode> {
    let (accounts, actor) = open_accounts(config_path).await?;
    let lifted = accounts.unlock_user(login, &actor).await?;
    println!(
        "{}",
        if lifted {
            format!("unlocked {login}")
        } else {
            format!("{login} was not throttled")
        }
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn freeze(
    config_path: Option<&Path>,
    tenant: &str,
    reason: &str,
    frozen: bool,
) -> anyhow::Result<ExitCode> {
    let tenant = parse_flag("name", tenant, TenantName::parse)?;
    let (accounts, actor) = open_accounts(config_path).await?;
    if frozen {
        accounts.freeze_tenant(&tenant, &actor, reason).await?;
        println!("froze tenant {tenant}: its users' sessions and API tokens are refused");
    } else {
        accounts.unfreeze_tenant(&tenant, &actor, reason).await?;
        println!("unfroze tenant {tenant}");
    }
    Ok(ExitCode::SUCCESS)
}
