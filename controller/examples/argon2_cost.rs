//! The cost of one password check at the production argon2id parameters
//! (`PasswordHashing::PRODUCTION`): what each sign-in costs the controller's CPU, and so how
//! many sign-ins a second one core absorbs. `cargo run -p lifeboat-controller --example
//! argon2_cost` (the figures in BENCHMARKS.md "Sign-in cost").

use std::time::Instant;

use lifeboat_controller::accounts::passwords::verify_password;
use lifeboat_controller::accounts::{PasswordHashing, generate_password};

fn main() -> anyhow::Result<()> {
    let hashing = PasswordHashing::PRODUCTION;
    let password = generate_password();
    let phc = hashing.hash(&password)?;
    const RUNS: usize = 25;
    let mut milliseconds = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let started = Instant::now();
        assert!(verify_password(&password, &phc));
        milliseconds.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    milliseconds.sort_by(f64::total_cmp);
    let median = milliseconds[RUNS / 2];
    println!(
        "argon2id m={} KiB t={} p={}: verify median {median:.1} ms (min {:.1}, max {:.1}) over {RUNS} runs; about {:.0} sign-ins a second per core",
        hashing.memory_kib,
        hashing.passes,
        hashing.lanes,
        milliseconds[0],
        milliseconds[RUNS - 1],
        1000.0 / median
    );
    Ok(())
}
