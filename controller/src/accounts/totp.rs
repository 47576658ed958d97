//! The second factor: TOTP (RFC 6238) as authenticator apps speak it — SHA-1, 6 digits,
//! 30-second steps, one step of clock skew either way — and single-use recovery codes.
//!
//! Enrolment has two steps. [`Accounts::begin_totp_enrolment`] makes a secret, keeps it as
//! pending and returns it once (base32 text, otpauth:// URL, QR code as SVG);
//! [`Accounts::confirm_totp_enrolment`] checks a first code from the app, makes the secret
//! the active one, and returns [`RECOVERY_CODE_COUNT`] recovery codes, once: only their
//! SHA-256 is kept (they are random, 80 bits, so a fast hash is enough). The secret itself
//! is kept in the catalog (the server must compute codes from it) and never returned again.
//!
//! A code is accepted once: the last accepted time step is stored and a code of that step
//! or an earlier one is refused (RFC 6238 §5.2), even on another controller.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use tokio_postgres::GenericClient;

use super::passwords::random_code;
use super::users::{audit_user_change, end_sessions_of, lock_user};
use super::{AccountError, Accounts, TotpState};
use crate::audit::Actor;
use crate::catalog::query_error;
use crate::secret_tokens::{random_bytes, token_sha256};

/// The issuer shown in authenticator apps.
pub const TOTP_ISSUER: &str = "lifeboat";
/// Recovery codes made at each confirmation.
pub const RECOVERY_CODE_COUNT: usize = 10;
/// Bytes of a TOTP secret (RFC 4226's recommended 160 bits).
const SECRET_BYTES: usize = 20;

/// A begun enrolment: the secret, shown once, in the three forms a user may need.
#[derive(Debug)]
pub struct TotpEnrolment {
    /// For typing into an app by hand.
    pub secret_base32: SecretString,
    /// `otpauth://totp/lifeboat:LOGIN?secret=…&issuer=lifeboat…`
    pub otpauth_url: SecretString,
    /// The URL as a QR code, an SVG document.
    pub qr_svg: SecretString,
}

/// Recovery codes, shown once; each opens one login instead of a TOTP code.
#[derive(Debug)]
pub struct RecoveryCodes(pub Vec<SecretString>);

fn totp_for(secret: &[u8], login: &str) -> Result<totp_rs::Totp, AccountError> {
    totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(1)
        .with_secret(secret.to_vec())
        .with_account_name(login)
        .with_issuer(Some(TOTP_ISSUER))
        .build()
        .map_err(|error| AccountError::Inconsistent(format!("a TOTP secret is unusable: {error}")))
}

/// The time step `code` belongs to, if it is right for `secret` at `now` (± one step).
pub(crate) fn matching_step(
    secret: &[u8],
    login: &str,
    code: &str,
    now: DateTime<Utc>,
) -> Result<Option<i64>, AccountError> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|byte| byte.is_ascii_digit()) {
        return Ok(None);
    }
    let Ok(seconds) = u64::try_from(now.timestamp()) else {
        return Ok(None);
    };
    Ok(totp_for(secret, login)?
        .check(code, seconds)
        .and_then(|step| i64::try_from(step).ok()))
}

/// The code for `secret` at `now`, as an app would show it (tests and the demo).
pub fn current_code(secret_base32: &str, login: &str, now: DateTime<Utc>) -> Option<String> {
    let secret = totp_rs::Secret::try_from_base32(secret_base32).ok()?;
    let seconds = u64::try_from(now.timestamp()).ok()?;
    Some(
        totp_for(secret.as_bytes(), login)
            .ok()?
            .generate(seconds)
            .to_string(),
    )
}

/// Accept `step` for user `user_id` unless it, or a later one, was accepted before.
pub(crate) async fn accept_step_once<C: GenericClient>(
    client: &C,
    user_id: i64,
    step: i64,
) -> Result<bool, AccountError> {
    let updated = client
        .execute(
            "UPDATE users SET totp_last_step = $2
             WHERE id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
            &[&user_id, &step],
        )
        .await
        .map_err(query_error("record the TOTP step"))?;
    Ok(updated == 1)
}

/// A recovery code as compared: lowercase, without separators or spaces.
fn normalized_recovery_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// Use recovery code `code` of user `user_id`: true once, false ever after.
pub(crate) async fn use_recovery_code<C: GenericClient>(
    client: &C,
    user_id: i64,
    code: &str,
) -> Result<bool, AccountError> {
    let used = client
        .execute(
            "UPDATE recovery_codes SET used_at = now()
             WHERE user_id = $1 AND code_sha256 = $2 AND used_at IS NULL",
            &[&user_id, &token_sha256(&normalized_recovery_code(code))],
        )
        .await
        .map_err(query_error("use a recovery code"))?;
    Ok(used == 1)
}

/// Make the pending secret of `user_id` the active one and replace its recovery codes.
pub(crate) async fn activate_pending<C: GenericClient>(
    client: &C,
    user_id: i64,
    step: i64,
) -> Result<RecoveryCodes, AccountError> {
    client
        .execute(
            "UPDATE users SET totp_secret = totp_pending_secret, totp_pending_secret = NULL,
                 totp_last_step = $2
             WHERE id = $1",
            &[&user_id, &step],
        )
        .await
        .map_err(query_error("activate the TOTP secret"))?;
    client
        .execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&user_id])
        .await
        .map_err(query_error("replace the recovery codes"))?;
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    for _ in 0..RECOVERY_CODE_COUNT {
        let code = random_code(4, 4);
        client
            .execute(
                "INSERT INTO recovery_codes (user_id, code_sha256) VALUES ($1, $2)",
                &[&user_id, &token_sha256(&normalized_recovery_code(&code))],
            )
            .await
            .map_err(query_error("store a recovery code"))?;
        codes.push(SecretString::from(code));
    }
    Ok(RecoveryCodes(codes))
}

/// The pending secret of `user_id`, if any.
pub(crate) async fn pending_secret<C: GenericClient>(
    client: &C,
    user_id: i64,
) -> Result<Option<Vec<u8>>, AccountError> {
    Ok(client
        .query_one(
            "SELECT totp_pending_secret FROM users WHERE id = $1",
            &[&user_id],
        )
        .await
        .map_err(query_error("read the pending TOTP secret"))?
        .get(0))
}

impl Accounts {
    /// Begin (or begin again) `login`'s TOTP enrolment: a new secret, pending until a code
    /// confirms it. Returned once. Refused while an authenticator is active: replacing it
    /// goes through an admin's `reset_totp`, so a stolen session cannot enrol its own.
    pub async fn begin_totp_enrolment(
        &self,
        login: &str,
        actor: &Actor,
    ) -> Result<TotpEnrolment, AccountError> {
        let secret = random_bytes::<SECRET_BYTES>();
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let user = lock_user(&*transaction, login).await?;
        if user.totp == TotpState::Active {
            return Err(AccountError::TotpActive(user.login));
        }
        transaction
            .execute(
                "UPDATE users SET totp_pending_secret = $2 WHERE id = $1",
                &[&user.id, &secret.as_slice()],
            )
            .await
            .map_err(query_error("store the pending TOTP secret"))?;
        audit_user_change(&*transaction, actor, "user.totp-begin", &user).await?;
        let totp = totp_for(&secret, &user.login)?;
        let otpauth_url = totp
            .to_url()
            .map_err(|error| AccountError::Inconsistent(format!("otpauth URL: {error}")))?;
        let qr_svg = qrcode::QrCode::new(otpauth_url.as_bytes())
            .map_err(|error| AccountError::Inconsistent(format!("QR code: {error}")))?
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .build();
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(TotpEnrolment {
            secret_base32: SecretString::from(totp_rs::Secret::new(secret.into()).to_base32()),
            otpauth_url: SecretString::from(otpauth_url),
            qr_svg: SecretString::from(qr_svg),
        })
    }

    /// Confirm `login`'s pending enrolment with a `code` from the app at `now`: the secret
    /// becomes the active one and new recovery codes are returned, once.
    pub async fn confirm_totp_enrolment(
        &self,
        login: &str,
        code: &SecretString,
        now: DateTime<Utc>,
        actor: &Actor,
    ) -> Result<RecoveryCodes, AccountError> {
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let user = lock_user(&*transaction, login).await?;
        let secret = pending_secret(&*transaction, user.id)
            .await?
            .ok_or_else(|| AccountError::NoPendingTotp(user.login.clone()))?;
        let step = matching_step(&secret, &user.login, code.expose_secret(), now)?
            .ok_or(AccountError::WrongTotpCode)?;
        if !accept_step_once(&*transaction, user.id, step).await? {
            return Err(AccountError::WrongTotpCode);
        }
        let codes = activate_pending(&*transaction, user.id, step).await?;
        audit_user_change(&*transaction, actor, "user.totp-confirm", &user).await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(codes)
    }

    /// Check a fresh TOTP code from `login`'s app before a sensitive action (a helpdesk
    /// restore, a rollback): the code must be right at `now` and of a time step not used
    /// before (so the login's own code does not count twice). Wrong codes count against
    /// the login's throttle like wrong passwords, so a stolen session cannot guess its way
    /// through the million codes. Recovery codes are not accepted here: they open a login,
    /// not an action.
    pub async fn confirm_second_factor(
        &self,
        login: &str,
        code: &SecretString,
        client_address: std::net::IpAddr,
        now: DateTime<Utc>,
    ) -> Result<(), super::LoginError> {
        use super::throttle::{self, PER_ADDRESS, PER_LOGIN, Refusal};
        let login_subject = throttle::login_subject(login);
        let address_subject = throttle::address_subject(client_address);
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let admitted = throttle::admit(
            &*transaction,
            &[(&login_subject, PER_LOGIN), (&address_subject, PER_ADDRESS)],
            now,
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        match admitted {
            Ok(()) => {}
            Err(Refusal::Delayed(until)) => return Err(super::LoginError::Delayed(until)),
            Err(Refusal::Locked(until)) => return Err(super::LoginError::Locked(until)),
        }
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let user = lock_user(&*transaction, login).await?;
        let secret: Option<Vec<u8>> = transaction
            .query_one("SELECT totp_secret FROM users WHERE id = $1", &[&user.id])
            .await
            .map_err(query_error("read the TOTP secret"))?
            .get(0);
        let refused = super::LoginError::Refused;
        let secret = secret.ok_or(refused(super::RefusalReason::SecondFactorMissing))?;
        let step = matching_step(&secret, &user.login, code.expose_secret(), now)?
            .ok_or(refused(super::RefusalReason::WrongSecondFactor))?;
        if !accept_step_once(&*transaction, user.id, step).await? {
            return Err(refused(super::RefusalReason::ReplayedCode));
        }
        throttle::succeeded(&*transaction, &login_subject, &address_subject).await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(())
    }

    /// Remove `login`'s second factor (lost phone): secrets and recovery codes go, and
    /// their sessions end. Staff cannot log in again until they enrol anew.
    pub async fn reset_totp(&self, login: &str, actor: &Actor) -> Result<(), AccountError> {
        let mut connection = self.catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        let user = lock_user(&*transaction, login).await?;
        transaction
            .execute(
                "UPDATE users SET totp_secret = NULL, totp_pending_secret = NULL WHERE id = $1",
                &[&user.id],
            )
            .await
            .map_err(query_error("clear the TOTP secret"))?;
        transaction
            .execute("DELETE FROM recovery_codes WHERE user_id = $1", &[&user.id])
            .await
            .map_err(query_error("delete the recovery codes"))?;
        end_sessions_of(&*transaction, user.id).await?;
        audit_user_change(&*transaction, actor, "user.reset-totp", &user).await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        Ok(())
    }
}
