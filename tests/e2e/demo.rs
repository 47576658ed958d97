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
    // Tenants are provisioned by the playbook, and the helpdesk restore brings the deleted
    // orders back, then the rollback the mistaken state.
    assert!(err.contains("(playbook provision-tenant)"), "{err}");
    assert!(
        out.contains("orders 40000 at the backup, 10000 after the customer's mistake, 40000 after the restore"),
        "{out}"
    );
    assert!(out.contains("10000 after the rollback"), "{out}");
    assert!(err.contains("scrub checked 9 copies (0 bad)"), "{err}");
    // Nothing but lifeboat's own lines on stderr: no log noise at the default level.
    assert!(!err.contains("ERROR") && !err.contains("WARN"), "{err}");
    assert!(!work.exists(), "the working directory is removed");
}
