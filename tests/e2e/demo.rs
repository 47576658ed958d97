//! `lifeboat demo`, the README's first command: the nightly through the controller's queue
//! and a drill of every backup, on servers it starts itself.

use std::process::Command;

use crate::harness::{stderr, stdout};

#[test]
fn the_demo_runs_the_nightly_through_the_queue_and_verifies_every_tenant() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("demo");
    let output = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["demo", "--dir"])
        .arg(&work)
        .env_remove("LIFEBOAT_CONFIG")
        .env_remove("LIFEBOAT_LOG")
        .output()
        .expect("run the demo");
    let (out, err) = (stdout(&output), stderr(&output));
    assert!(output.status.success(), "{out}\n{err}");
    assert!(out.contains("all 3 tenants restored and verified"), "{out}");
    assert!(
        err.contains("nightly demo: 3 tenant backups queued"),
        "{err}"
    );
    // Drilled through the queue, by the nightly's agent (it holds the demo's identity).
    assert!(err.contains("nightly demo: 3 drills queued"), "{err}");
    assert!(err.contains("scrub checked 9 copies (0 bad)"), "{err}");
    // Nothing but lifeboat's own lines on stderr: no log noise at the default level.
    assert!(!err.contains("ERROR") && !err.contains("WARN"), "{err}");
    assert!(!work.exists(), "the working directory is removed");
}
