//! Random bearer secrets (agent tokens, user sessions, API tokens, recovery codes): made in
//! one place, stored only as their SHA-256.
//!
//! A token is 256 random bits from the operating system, written as 64 hex digits after a
//! short prefix that says what it is (`lbt_` agent, `lbs_` session, `lbu_` API token), so a
//! leaked one is easy to recognise and to scan for. Because it is random and long, a fast
//! hash is the right one to store: unlike a password it cannot be guessed from a
//! dictionary, and a lookup by hash costs one index probe.

use sha2::{Digest, Sha256};

/// Random bytes in a token.
pub const TOKEN_RANDOM_BYTES: usize = 32;

/// `count` random bytes from the operating system. A failure to get them is not something a
/// caller can recover from (no randomness, no secrets), so it is a panic with the reason.
pub fn random_bytes<const COUNT: usize>() -> [u8; COUNT] {
    let mut bytes = [0u8; COUNT];
    getrandom::fill(&mut bytes).expect("the operating system's random number generator");
    bytes
}

/// A new token: `prefix` then 256 random bits as hex.
pub fn generate_token(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        hex::encode(random_bytes::<TOKEN_RANDOM_BYTES>())
    )
}

/// The SHA-256 of a token, as stored.
pub fn token_sha256(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed_to_32_bytes() {
        let first = generate_token("lbx_");
        let second = generate_token("lbx_");
        assert_ne!(first, second);
        assert!(first.starts_with("lbx_"));
        assert_eq!(first.len(), 4 + 64);
        assert_eq!(token_sha256(&first).len(), 32);
        assert_ne!(token_sha256(&first), token_sha256(&second));
    }
}
