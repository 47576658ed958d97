//! Passwords: argon2id hashes, the policy new passwords must meet, and the strength meter
//! the panel shows as a password is typed.
//!
//! Hashes are PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`): the parameters
//! travel with each hash, so they can be raised later and old hashes still verify. The
//! production parameters are OWASP's first recommendation for argon2id (19 MiB, 2 passes,
//! 1 lane); their cost on the reference machine is in ARCHITECTURE.md ("Accounts").
//!
//! The policy: at least [`MIN_PASSWORD_CHARS`] characters and a zxcvbn score of at least
//! [`MIN_SCORE`] (about 10^10 guesses), with the login and the tenant's name counted as
//! known to an attacker. A refusal says why, in zxcvbn's words, and never repeats the
//! password.

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::AccountError;
use crate::secret_tokens::random_bytes;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// The longest: beyond it a password is a pasted file, and hashing it is wasted work.
pub const MAX_PASSWORD_CHARS: usize = 256;
/// The lowest zxcvbn score accepted (0 to 4; 3 is "safely unguessable", ~10^10 guesses).
pub const MIN_SCORE: u8 = 3;

/// argon2id parameters for new hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordHashing {
    /// Memory per hash, KiB.
    pub memory_kib: u32,
    /// Passes over the memory.
    pub passes: u32,
    /// Lanes (threads of the algorithm; 1 here, the controller runs one hash per login).
    pub lanes: u32,
}

impl PasswordHashing {
    /// OWASP's recommendation: m = 19 MiB, t = 2, p = 1.
    pub const PRODUCTION: PasswordHashing = PasswordHashing {
        memory_kib: 19 * 1024,
        passes: 2,
        lanes: 1,
    };

    /// Far cheaper, for tests only: they hash many passwords and test behaviour, not cost.
    pub const FOR_TESTS_ONLY: PasswordHashing = PasswordHashing {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };

    fn hasher(&self) -> Result<argon2::Argon2<'static>, AccountError> {
        let params = argon2::Params::new(self.memory_kib, self.passes, self.lanes, None)
            .map_err(|error| AccountError::Hashing(error.to_string()))?;
        Ok(argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            params,
        ))
    }

    /// The PHC string of `password`, with a new random salt. CPU-bound for tens of
    /// milliseconds: async callers use [`PasswordHashing::hash_blocking`].
    pub fn hash(&self, password: &SecretString) -> Result<String, AccountError> {
        let hash = self
            .hasher()?
            .hash_password(password.expose_secret().as_bytes())
            .map_err(|error| AccountError::Hashing(error.to_string()))?;
        Ok(hash.to_string())
    }

    /// [`PasswordHashing::hash`] on a blocking thread.
    pub async fn hash_blocking(&self, password: &SecretString) -> Result<String, AccountError> {
        let hashing = *self;
        let password = password.clone();
        tokio::task::spawn_blocking(move || hashing.hash(&password))
            .await
            .map_err(|error| AccountError::Hashing(error.to_string()))?
    }
}

/// Whether `password` matches `phc`, verified with the parameters written in `phc`. A
/// malformed hash matches nothing.
pub fn verify_password(password: &SecretString, phc: &str) -> bool {
    argon2::Argon2::default()
        .verify_password(password.expose_secret().as_bytes(), phc)
        .is_ok()
}

/// How many password verifications run at once in this process. Each takes the memory of
/// its parameters (19 MiB in production) and a core for ~25 ms: a burst of sign-ins waits
/// its turn here instead of taking every blocking thread and all that memory.
pub const CONCURRENT_VERIFICATIONS: usize = 4;

static VERIFICATIONS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(CONCURRENT_VERIFICATIONS);

/// How long a sign-in waits for its turn to check a password before it is told to come
/// back later: a flood of sign-ins is answered (429), not queued without end.
pub const VERIFICATION_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// [`verify_password`] on a blocking thread, at most [`CONCURRENT_VERIFICATIONS`] at once;
/// `None` when no turn came within [`VERIFICATION_WAIT`] (nothing was checked).
pub(crate) async fn verify_password_blocking(password: &SecretString, phc: &str) -> Option<bool> {
    verify_password_waiting(password, phc, VERIFICATION_WAIT).await
}

async fn verify_password_waiting(
    password: &SecretString,
    phc: &str,
    wait: std::time::Duration,
) -> Option<bool> {
    let _permit = tokio::time::timeout(wait, VERIFICATIONS.acquire())
        .await
        .ok()?
        .ok()?;
    let password = password.clone();
    let phc = phc.to_owned();
    Some(
        tokio::task::spawn_blocking(move || verify_password(&password, &phc))
            .await
            .unwrap_or(false),
    )
}

/// How guessable a password is, for the panel's meter and for the policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Strength {
    /// zxcvbn's score, 0 (guessable in a thousand tries) to 4 (more than 10^10).
    pub score: u8,
    /// What is wrong and how to do better, when zxcvbn has something to say.
    pub feedback: Option<String>,
}

/// The strength of `password`, given words an attacker knows (`user_inputs`: the login,
/// the tenant's name). zxcvbn looks at the first 100 characters only, so this is cheap.
pub fn password_strength(password: &str, user_inputs: &[&str]) -> Strength {
    let entropy = zxcvbn::zxcvbn(password, user_inputs);
    let feedback = entropy.feedback().map(|feedback| {
        let mut parts: Vec<String> = feedback
            .warning()
            .map(|warning| warning.to_string())
            .into_iter()
            .collect();
        parts.extend(
            feedback
                .suggestions()
                .iter()
                .map(|suggestion| suggestion.to_string()),
        );
        parts.join(" ")
    });
    Strength {
        score: u8::from(entropy.score()),
        feedback: feedback.filter(|text| !text.is_empty()),
    }
}

/// Refuse a password that is too short, too long, or too guessable, saying why.
pub fn check_password_policy(
    password: &SecretString,
    user_inputs: &[&str],
) -> Result<(), AccountError> {
    let password = password.expose_secret();
    let length = password.chars().count();
    if length < MIN_PASSWORD_CHARS {
        return Err(AccountError::WeakPassword(format!(
            "it has {length} characters; at least {MIN_PASSWORD_CHARS} are required"
        )));
    }
    if length > MAX_PASSWORD_CHARS {
        return Err(AccountError::WeakPassword(format!(
            "it has more than {MAX_PASSWORD_CHARS} characters"
        )));
    }
    if password.chars().any(char::is_control) {
        return Err(AccountError::WeakPassword(
            "it contains control characters".to_owned(),
        ));
    }
    let strength = password_strength(password, user_inputs);
    if strength.score < MIN_SCORE {
        return Err(AccountError::WeakPassword(format!(
            "it is too easy to guess (strength {} of 4, at least {MIN_SCORE} required){}",
            strength.score,
            strength
                .feedback
                .map(|feedback| format!(": {feedback}"))
                .unwrap_or_default()
        )));
    }
    Ok(())
}

/// Characters of generated passwords and codes: lowercase letters and digits without the
/// look-alikes (0/o, 1/l); 32 of them, so one random byte picks one without bias.
pub(crate) const CODE_ALPHABET: &[u8; 32] = b"abcdefghijkmnpqrstuvwxyz23456789";

/// `groups` groups of `group_length` random characters of [`CODE_ALPHABET`], joined by '-'.
pub(crate) fn random_code(groups: usize, group_length: usize) -> String {
    let bytes = random_bytes::<64>();
    let mut characters = bytes
        .iter()
        .map(|byte| char::from(CODE_ALPHABET[usize::from(byte % 32)]));
    (0..groups)
        .map(|_| characters.by_ref().take(group_length).collect::<String>())
        .collect::<Vec<_>>()
        .join("-")
}

/// A new random password: 5 groups of 5 characters (125 bits), easy to type from a screen.
pub fn generate_password() -> SecretString {
    SecretString::from(random_code(5, 5))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With every turn taken for longer than it may wait, a check gives up (`None`)
    /// instead of waiting for ever; once a turn is free it checks.
    #[tokio::test]
    async fn a_password_check_waits_for_its_turn_a_bounded_time() {
        let wait = std::time::Duration::from_millis(200);
        let phc = PasswordHashing::FOR_TESTS_ONLY
            .hash(&SecretString::from("a right horse battery"))
            .expect("hash");
        let all = VERIFICATIONS
            .acquire_many(CONCURRENT_VERIFICATIONS as u32)
            .await
            .expect("every turn");
        let password = SecretString::from("a right horse battery");
        let started = std::time::Instant::now();
        assert_eq!(verify_password_waiting(&password, &phc, wait).await, None);
        assert!(started.elapsed() >= wait);
        drop(all);
        assert_eq!(
            verify_password_waiting(&password, &phc, wait).await,
            Some(true)
        );
    }

    #[test]
    fn weak_passwords_are_refused_with_zxcvbn_reason_and_strong_ones_pass() {
        let short = check_password_policy(&SecretString::from("abc12"), &[]);
        assert!(
            short
                .as_ref()
                .is_err_and(|error| error.to_string().contains("at least 10")),
            "{short:?}"
        );
        let common = check_password_policy(&SecretString::from("password1234"), &[]);
        let message = common.expect_err("refused").to_string();
        assert!(message.contains("too easy to guess"), "{message}");
        assert!(!message.contains("password1234"), "{message}");
        // The login counts as known to an attacker.
        let own_login =
            check_password_policy(&SecretString::from("alice-acme-2024"), &["alice-acme"]);
        assert!(own_login.is_err(), "{own_login:?}");
        check_password_policy(&generate_password(), &["alice"]).expect("generated passes");
        let meter = password_strength("correct horse battery staple", &[]);
        assert!(meter.score >= 3, "{meter:?}");
    }

    #[test]
    fn hashes_are_argon2id_phc_and_verify_only_the_right_password() {
        let hashing = PasswordHashing::FOR_TESTS_ONLY;
        let password = SecretString::from("quiet-otter-rides-17");
        let phc = hashing.hash(&password).expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify_password(&password, &phc));
        assert!(!verify_password(
            &SecretString::from("quiet-otter-rides-18"),
            &phc
        ));
        assert!(!verify_password(&password, "not a hash"));
        assert_ne!(phc, hashing.hash(&password).expect("hash"), "salted");
    }
}
