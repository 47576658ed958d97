//! Key rotation: new backups go to the configured recipients, old ones stay readable with
//! the identities that made them, and `lifeboat keys status` says which backups need which
//! identity, and whether this host's identity file opens them.

use std::os::unix::fs::PermissionsExt as _;
use std::str::FromStr as _;

use lifeboat_core::keys::Recipient;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, stderr, stdout};

fn fingerprint(recipient: &str) -> String {
    Recipient::from_str(recipient)
        .expect("a recipient")
        .fingerprint()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_status_says_which_backups_need_which_identity_through_a_rotation() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env.create_tenant_database("acme", 50).await;
    env.create_catalog().await;
    let old = env.recipient.clone();
    let new_identity = env.dir.path().join("new-identity.txt");
    let new = lifeboat_core::keys::generate_identity_file(&new_identity)
        .expect("keygen")
        .to_string();
    // Both identities in one file, as an operator keeps them during a rotation.
    let both_identities = env.dir.path().join("both-identities.txt");
    std::fs::write(
        &both_identities,
        std::fs::read_to_string(&env.identity_path).expect("old identity")
            + &std::fs::read_to_string(&new_identity).expect("new identity"),
    )
    .expect("write both");
    std::fs::set_permissions(&both_identities, std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    let settings = |recipients: &[&str], identity_file: &std::path::Path| Settings {
        min_regions: Some(1),
        extra: CATALOG.to_owned(),
        recipients: recipients.iter().map(|text| (*text).to_owned()).collect(),
        identity_file: Some(identity_file.to_path_buf()),
        ..Settings::default()
    };
    let before = env.config_file(&settings(&[&old], &env.identity_path));
    let during = env.config_file(&settings(&[&old, &new], &both_identities));
    let after = env.config_file(&settings(&[&new], &both_identities));
    let after_new_key_only = env.config_file(&settings(&[&new], &new_identity));
    let run = |config: &std::path::Path, arguments: &[&str]| env.lifeboat(config, arguments);
    assert!(run(&before, &["controller", "migrate"]).status.success());
    let mut backup_ids = Vec::new();
    for config in [&before, &during, &after] {
        let backed_up = run(config, &["backup", "--tenant", "acme", "--json"]);
        assert!(backed_up.status.success(), "{}", stderr(&backed_up));
        let summary: serde_json::Value =
            serde_json::from_slice(&backed_up.stdout).expect("backup --json");
        backup_ids.push(summary["backup_id"].as_str().expect("id").to_owned());
    }

    let status = run(&after, &["keys", "status", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        status["current"],
        serde_json::json!([{"fingerprint": fingerprint(&new), "current": true, "identity_here": true}])
    );
    let sets = status["sets"].as_array().expect("sets");
    let set_of = |fingerprints: &[&str]| {
        let mut wanted: Vec<String> = fingerprints.iter().map(|text| fingerprint(text)).collect();
        wanted.sort();
        sets.iter()
            .find(|set| {
                let mut have: Vec<String> = set["recipients"]
                    .as_array()
                    .expect("recipients")
                    .iter()
                    .map(|recipient| recipient["fingerprint"].as_str().expect("fp").to_owned())
                    .collect();
                have.sort();
                have == wanted
            })
            .unwrap_or_else(|| panic!("no set {fingerprints:?} in {sets:?}"))
    };
    assert_eq!(sets.len(), 3, "{sets:?}");
    let old_only = set_of(&[&old]);
    assert_eq!(old_only["backups"], 1);
    assert_eq!(old_only["readable_with_current_keys"], false);
    assert_eq!(old_only["readable_here"], true);
    assert_eq!(old_only["recipients"][0]["current"], false);
    assert_eq!(set_of(&[&old, &new])["readable_with_current_keys"], true);
    assert_eq!(set_of(&[&new])["readable_with_current_keys"], true);

    // In words: the old identity must be kept.
    let text = run(&after, &["keys", "status"]);
    assert!(text.status.success(), "{}", stderr(&text));
    assert!(
        stdout(&text).contains(&format!("keep the identities of {}", fingerprint(&old))),
        "{}",
        stdout(&text)
    );
    // A host with only the new identity is told it cannot open the oldest backup (exit 2,
    // with --json too).
    let short_json = run(&after_new_key_only, &["keys", "status", "--json"]);
    assert_eq!(short_json.status.code(), Some(2), "{}", stdout(&short_json));
    let short = run(&after_new_key_only, &["keys", "status"]);
    assert_eq!(short.status.code(), Some(2), "{}", stdout(&short));
    assert!(
        stderr(&short).contains("1 backups cannot be opened with this host's identity file"),
        "{}",
        stderr(&short)
    );

    // The oldest backup, made before the rotation, still restores with the old identity.
    let restored = run(
        &after,
        &[
            "restore",
            "--tenant",
            "acme",
            "--backup",
            &backup_ids[0],
            "--into",
            "acme_old",
        ],
    );
    assert!(restored.status.success(), "{}", stderr(&restored));
    // And the newest, written to the new recipient only, does not open with the old one.
    let refused = run(
        &before,
        &[
            "restore",
            "--tenant",
            "acme",
            "--backup",
            &backup_ids[2],
            "--into",
            "acme_new",
        ],
    );
    assert!(!refused.status.success(), "{}", stdout(&refused));
}
