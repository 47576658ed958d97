//! Login throttling, per login name and per client address, in the catalog so that every
//! controller sees the same counts.
//!
//! An attempt is counted as a failure *before* the password is checked ([`admit`]) and
//! forgiven if it succeeds ([`succeeded`]): a burst of parallel guesses cannot all slip in
//! before the first is counted. After a few free failures each one imposes a growing delay
//! (1 s, 2 s, 4 s … capped) before the next attempt is even looked at; at
//! [`ThrottlePolicy::lock_after`] failures the subject is locked for
//! [`ThrottlePolicy::lock_for`], and each failure after the lock locks it again, until a
//! success, an admin's `lifeboat user unlock`, or an hour without failures.
//!
//! Login names are throttled whether or not such a user exists, so throttling tells an
//! attacker nothing about which logins are real. Addresses get a far higher allowance:
//! many honest users may share one (NAT, a company proxy).

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use super::AccountError;
use crate::catalog::query_error;

/// How one kind of subject is throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures allowed without any delay.
    pub free_failures: i32,
    /// Failures that lock the subject.
    pub lock_after: i32,
    /// How long a lock lasts.
    pub lock_for: Duration,
    /// The longest delay between two attempts before the lock.
    pub max_delay: Duration,
}

/// Per login name: 3 free failures, then 1 s, 2 s … 32 s, locked at the 10th for 15 min.
pub const PER_LOGIN: ThrottlePolicy = ThrottlePolicy {
    free_failures: 3,
    lock_after: 10,
    lock_for: Duration::from_secs(15 * 60),
    max_delay: Duration::from_secs(60),
};

/// Per client address: 20 free failures, then growing delays, locked at the 100th.
pub const PER_ADDRESS: ThrottlePolicy = ThrottlePolicy {
    free_failures: 20,
    lock_after: 100,
    lock_for: Duration::from_secs(15 * 60),
    max_delay: Duration::from_secs(60),
};

/// Failures older than this (and no lock in force) are forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);

impl ThrottlePolicy {
    /// The delay the `failures`-th failure imposes before the next attempt.
    pub fn delay_after(&self, failures: i32) -> Duration {
        let beyond_free = failures - self.free_failures;
        if beyond_free <= 0 {
            return Duration::ZERO;
        }
        let exponent = u32::try_from(beyond_free - 1).unwrap_or(0).min(16);
        Duration::from_secs(1u64 << exponent).min(self.max_delay)
    }
}

/// Why an attempt was not even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too soon after the last failure: try again at this time.
    Delayed(DateTime<Utc>),
    /// Locked until this time, or until an admin unlocks it.
    Locked(DateTime<Utc>),
}

/// The throttle row of a login name (any case).
pub fn login_subject(login: &str) -> String {
    format!("login:{}", login.to_lowercase())
}

/// The throttle row of a client address.
pub fn address_subject(address: IpAddr) -> String {
    format!("address:{address}")
}

fn chrono_duration(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// Admit an attempt on `subjects` (each with its policy, always in the same order so two
/// attempts never wait for each other crosswise) at `now`, counting it as a failure; or
/// refuse it, counting nothing, when any subject is delayed or locked.
pub(crate) async fn admit<C: GenericClient>(
    client: &C,
    subjects: &[(&str, ThrottlePolicy)],
    now: DateTime<Utc>,
) -> Result<Result<(), Refusal>, AccountError> {
    let mut counts = Vec::with_capacity(subjects.len());
    for (subject, _) in subjects {
        client
            .execute(
                "INSERT INTO login_throttle (subject, failures, last_failure_at) VALUES ($1, 0, $2)
                 ON CONFLICT (subject) DO NOTHING",
                &[subject, &now],
            )
            .await
            .map_err(query_error("record a login attempt"))?;
        let row = client
            .query_one(
                "SELECT failures, last_failure_at, not_before, locked_until FROM login_throttle
                 WHERE subject = $1 FOR UPDATE",
                &[subject],
            )
            .await
            .map_err(query_error("read the login throttle"))?;
        let failures: i32 = row.get(0);
        let last_failure_at: DateTime<Utc> = row.get(1);
        let not_before: Option<DateTime<Utc>> = row.get(2);
        let locked_until: Option<DateTime<Utc>> = row.get(3);
        if let Some(until) = locked_until
            && until > now
        {
            return Ok(Err(Refusal::Locked(until)));
        }
        if let Some(not_before) = not_before
            && not_before > now
        {
            return Ok(Err(Refusal::Delayed(not_before)));
        }
        let forgotten = now - last_failure_at > chrono_duration(FORGET_AFTER);
        counts.push(if forgotten { 0 } else { failures });
    }
    for ((subject, policy), failures) in subjects.iter().zip(counts) {
        let failures = failures.saturating_add(1);
        let delay = policy.delay_after(failures);
        let not_before = (!delay.is_zero()).then(|| now + chrono_duration(delay));
        let locked_until =
            (failures >= policy.lock_after).then(|| now + chrono_duration(policy.lock_for));
        client
            .execute(
                "UPDATE login_throttle SET failures = $2, last_failure_at = $3, not_before = $4,
                     locked_until = $5
                 WHERE subject = $1",
                &[subject, &failures, &now, &not_before, &locked_until],
            )
            .await
            .map_err(query_error("count a login attempt"))?;
    }
    Ok(Ok(()))
}

/// Forgive a successful attempt: the login name starts afresh; the address only loses
/// this attempt's count (one good account must not launder an address's guesses).
pub(crate) async fn succeeded<C: GenericClient>(
    client: &C,
    login_subject: &str,
    address_subject: &str,
) -> Result<(), AccountError> {
    client
        .execute(
            "DELETE FROM login_throttle WHERE subject = $1",
            &[&login_subject],
        )
        .await
        .map_err(query_error("reset the login throttle"))?;
    client
        .execute(
            "UPDATE login_throttle SET failures = greatest(failures - 1, 0), not_before = NULL
             WHERE subject = $1 AND locked_until IS NULL",
            &[&address_subject],
        )
        .await
        .map_err(query_error("reset the address throttle"))?;
    Ok(())
}

/// Lift the delays and lock of `subject`; whether there was anything to lift.
pub(crate) async fn lift<C: GenericClient>(
    client: &C,
    subject: &str,
) -> Result<bool, AccountError> {
    Ok(client
        .execute("DELETE FROM login_throttle WHERE subject = $1", &[&subject])
        .await
        .map_err(query_error("unlock"))?
        == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_after_the_free_failures_and_are_capped() {
        let delays: Vec<u64> = (1..=12)
            .map(|failures| PER_LOGIN.delay_after(failures).as_secs())
            .collect();
        assert_eq!(delays, [0, 0, 0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }
}
