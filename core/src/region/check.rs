//! `lifeboat regions check`: what each region's bucket says of versioning and object lock,
//! and whether its writer key (the agents') is refused a delete.
//!
//! The probe writes a small object under [`PROBE_PREFIX`] with the writer key, without a
//! retention, and asks the writer key to delete it plainly (no version id). A plain delete
//! is never stopped by a lock (on a versioned bucket it only adds a delete marker), so a
//! refusal there is the key's policy, not the lock: S3 answers both with the same 403. The
//! manager key then removes every version of the probe (unless the bucket's default
//! retention locked it, which the report says).

use serde::Serialize;

use super::{Region, RegionErrorKind};
use crate::config::{LockMode, RegionConfig};

/// Where the probe objects go; never under `tenants/`.
pub const PROBE_PREFIX: &str = "lifeboat-check/";

/// What one region's check found.
#[derive(Debug, Clone, Serialize)]
pub struct RegionCheck {
    pub region: String,
    /// `Enabled`, `Suspended`, or `None` (never enabled); `None` too if it could not be read.
    pub versioning: Option<String>,
    pub object_lock_enabled: bool,
    /// The bucket's default retention, e.g. `COMPLIANCE 30 days`.
    pub default_retention: Option<String>,
    /// `[regions.X] object_lock`: the mode lifeboat writes retentions in.
    pub configured_lock: Option<&'static str>,
    pub require_lock: bool,
    /// Whether a manager key other than the writer's is configured.
    pub separate_manager_key: bool,
    /// `Some(true)`: the writer key was refused a delete (as it should be);
    /// `Some(false)`: it deleted; `None`: the probe could not tell (see `problems`).
    pub writer_delete_refused: Option<bool>,
    /// Things that make the region unfit as configured: `regions check` exits 1.
    pub problems: Vec<String>,
    /// Things an operator should know and fix.
    pub warnings: Vec<String>,
}

impl RegionCheck {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check one region: `writer` and `manager` are its two handles (see [`Region::manager`]).
pub async fn check_region(config: &RegionConfig, writer: &Region, manager: &Region) -> RegionCheck {
    let mut check = RegionCheck {
        region: config.name.to_string(),
        versioning: None,
        object_lock_enabled: false,
        default_retention: None,
        configured_lock: config.object_lock.map(LockMode::as_str),
        require_lock: config.require_lock,
        separate_manager_key: config.manager.is_some(),
        writer_delete_refused: None,
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    if config.manager.is_none() {
        check.warnings.push(
            "no manager key (manager_access_key_id): the controller purges with the writer's key, which agents hold".to_owned(),
        );
    }
    match manager.bucket_lock().await {
        Ok(lock) => {
            check.versioning = lock.versioning;
            check.object_lock_enabled = lock.lock_enabled;
            check.default_retention = lock
                .default_retention
                .map(|(mode, days)| format!("{mode} {days} days"));
        }
        Err(error) => check.problems.push(format!(
            "the bucket's versioning and lock cannot be read: {error}"
        )),
    }
    let versioned = check.versioning.as_deref() == Some("Enabled");
    if config.object_lock.is_some() && !(versioned && check.object_lock_enabled) {
        check.problems.push(format!(
            "object_lock = {:?} is configured, but bucket {:?} has {}: create it with object lock (versioning comes with it)",
            config.object_lock.map_or("", LockMode::as_str),
            config.bucket,
            if versioned { "no object lock" } else { "no versioning" }
        ));
    }
    if config.object_lock.is_none() && check.object_lock_enabled {
        check.warnings.push(
            "the bucket has object lock, but object_lock is not configured: backups get only the bucket's default retention".to_owned(),
        );
    }
    probe_writer_delete(writer, manager, versioned, &mut check).await;
    match check.writer_delete_refused {
        Some(false) if config.require_lock => check.problems.push(
            "the writer key (access_key_id) can delete objects, and require_lock = true: give agents a key whose policy denies deletes (see the README)".to_owned(),
        ),
        Some(false) => check.warnings.push(
            "the writer key (access_key_id) can delete objects: a stolen agent key can destroy backups (see the README for a writer policy)".to_owned(),
        ),
        None if config.require_lock => check
            .problems
            .push("require_lock = true, but the writer key's delete could not be probed".to_owned()),
        _ => {}
    }
    check
}

async fn probe_writer_delete(
    writer: &Region,
    manager: &Region,
    versioned: bool,
    check: &mut RegionCheck,
) {
    let key = format!("{PROBE_PREFIX}{}", uuid::Uuid::new_v4());
    // Without a retention: `writer` has none set (`retaining_until`).
    if let Err(error) = writer
        .put_object(&key, bytes::Bytes::from_static(b"lifeboat regions check\n"))
        .await
    {
        check
            .problems
            .push(format!("the writer key cannot write: {error}"));
        return;
    }
    match writer.delete_object(&key).await {
        Ok(()) => check.writer_delete_refused = Some(false),
        Err(error) if error.kind == RegionErrorKind::AccessDenied => {
            check.writer_delete_refused = Some(true);
        }
        Err(error) => check
            .problems
            .push(format!("the writer key's delete probe failed: {error}")),
    }
    // Clean up with the manager key: every version (and marker) of the probe.
    let cleaned = if versioned {
        match manager.list_versions(&key).await {
            Ok(versions) => {
                let mut left = 0;
                for version in versions.iter().filter(|version| version.key == key) {
                    if manager
                        .delete_version(&key, &version.version_id)
                        .await
                        .is_err()
                    {
                        left += 1;
                    }
                }
                left == 0
            }
            Err(_) => false,
        }
    } else {
        match manager.delete_object(&key).await {
            Ok(()) => true,
            Err(error) => error.kind == RegionErrorKind::NotFound,
        }
    };
    if !cleaned {
        check.warnings.push(format!(
            "the probe object {key} could not be removed with the manager key (a default retention keeps it until it ends)"
        ));
    }
}

/// For every region with `require_lock = true`, [`check_region`] must find nothing wrong;
/// otherwise one line per problem, naming the region. Run before a process writes backups
/// (controller, nightly, `lifeboat backup`).
pub async fn check_required_locks(
    config: &crate::config::Config,
    writers: &super::Regions,
) -> Result<(), String> {
    let managers = writers.managers(config);
    let mut problems = Vec::new();
    for (region, (writer, manager)) in config
        .regions
        .iter()
        .zip(writers.iter().zip(managers.iter()))
        .filter(|(region, _)| region.require_lock)
    {
        let check = check_region(region, writer, manager).await;
        problems.extend(
            check
                .problems
                .iter()
                .map(|problem| format!("region {}: {problem}", region.name)),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "require_lock is set, and {} (see `lifeboat regions check`)",
            problems.join("; ")
        ))
    }
}
