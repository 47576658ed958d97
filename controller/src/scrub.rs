//! Scrub and repair: the controller's half. It plans the jobs from the catalog and applies
//! what agents report; the agents do the reading and copying (`agent::maintenance`).
//!
//! What is stored, in `backup_copies`, per backup and region: `state` (present, missing,
//! corrupt), `checked_at` (last scrub that looked: manifest and size), `hashed_at` (last time
//! the whole object was read and its SHA-256 compared), `detail` (what was wrong). Only live
//! backups count: trashed ones are on their way out of every region.
//!
//! - [`plan_scrub`]: one scrub job per configured region, over every live backup whose copy
//!   there is believed present or was never recorded. A daily budget of copies is read in
//!   full, the ones hashed longest ago (or never) first, so every copy is re-hashed in turn.
//! - [`apply_scrub_result`]: record what the scrub saw. A copy the agent could not check is
//!   absent from the result and keeps its state: an unreachable region is not a lost copy.
//!   Each bad copy found is also added to the region's running total (`scrub_findings`),
//!   which repair never lowers.
//! - [`plan_repairs`]: a replicate job for every live backup lacking a good copy in a
//!   configured region, from the regions holding one.
//! - [`apply_replicate_result`]: the copy is present again.
//! - [`degraded_backups`]: which backups lack a good copy somewhere, for reports.
//! - [`recover_locked_copies`]: in regions with object lock, a copy scrub found missing or
//!   corrupt (a delete marker, an overwrite) is made current again from its locked
//!   version (`lifeboat_core::recover`), by the controller with the manager's key, before
//!   repair would copy it from another region. Each recovery is audited (`copy.recover`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use lifeboat_core::api::{CopyCheck, CopyState, JobWork, ScrubTarget};
use lifeboat_core::ids::{BackupId, RegionName, TenantName};
use serde::Serialize;

use crate::catalog::{Catalog, CatalogError, query_error};

/// A full read is due once a copy's last one is this old.
const HASH_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// Every live backup with its copies, oldest backup first.
const LIVE_BACKUPS_SQL: &str = "
    SELECT b.id, b.tenant, b.stored_bytes, b.sha256,
           c.region, c.state, c.checked_at, c.hashed_at, c.detail
    FROM backups b
    LEFT JOIN backup_copies c ON c.backup_id = b.id
    WHERE b.trashed_at IS NULL
    ORDER BY b.id, c.region";

/// Upsert the scrub's findings and add the bad copies among them to the region's running
/// total (`scrub_findings`, behind `lifeboat_scrub_bad_copies_total`), in one statement (all
/// or nothing). A backup deleted since the job was planned matches no row of `backups` and is
/// skipped, in both. Every bad copy reported counts, also one already recorded as bad: the
/// total counts findings, not copies.
const APPLY_SCRUB_SQL: &str = "
    WITH recorded AS (
        INSERT INTO backup_copies (backup_id, region, state, checked_at, hashed_at, detail)
        SELECT b.id, $1, found.state, now(), CASE WHEN found.hashed THEN now() END, found.detail
        FROM unnest($2::uuid[], $3::text[], $4::bool[], $5::text[])
             AS found (backup_id, state, hashed, detail)
        JOIN backups b ON b.id = found.backup_id
        ON CONFLICT (backup_id, region) DO UPDATE SET
            state = EXCLUDED.state,
            checked_at = EXCLUDED.checked_at,
            hashed_at = COALESCE(EXCLUDED.hashed_at, backup_copies.hashed_at),
            detail = EXCLUDED.detail
        RETURNING backup_copies.state
    )
    INSERT INTO scrub_findings (region, bad_copies_found)
    SELECT $1, count(*) FROM recorded WHERE recorded.state <> 'present'
    ON CONFLICT (region) DO UPDATE SET
        bad_copies_found = scrub_findings.bad_copies_found + EXCLUDED.bad_copies_found";

/// A replicated copy is present. `hashed_at` is cleared: the bytes were hashed as they were
/// sent, not as the region stored them, so the next scrub reads this copy back first.
const APPLY_REPLICATE_SQL: &str = "
    INSERT INTO backup_copies (backup_id, region, state, checked_at, hashed_at, detail)
    SELECT id, $2, 'present', now(), NULL, NULL FROM backups WHERE id = $1
    ON CONFLICT (backup_id, region) DO UPDATE SET
        state = 'present', checked_at = now(), hashed_at = NULL, detail = NULL";

/// One copy row of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CopyRow {
    state: CopyState,
    checked_at: Option<DateTime<Utc>>,
    hashed_at: Option<DateTime<Utc>>,
    detail: Option<String>,
}

/// A live backup and its recorded copies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveBackup {
    backup_id: BackupId,
    tenant: TenantName,
    stored_bytes: u64,
    sha256: String,
    copies: BTreeMap<RegionName, CopyRow>,
}

/// A backup without a good copy in some configured region.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DegradedBackup {
    pub tenant: TenantName,
    pub backup_id: BackupId,
    /// Configured regions holding a good copy.
    pub present: Vec<RegionName>,
    pub lacking: Vec<LackingCopy>,
}

/// A configured region without a good copy of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LackingCopy {
    pub region: RegionName,
    /// `None`: the catalog has no row for this region (never stored there, or not recorded).
    pub state: Option<CopyState>,
    pub detail: Option<String>,
}

fn parse_state(text: &str) -> Option<CopyState> {
    [CopyState::Present, CopyState::Missing, CopyState::Corrupt]
        .into_iter()
        .find(|state| state.as_str() == text)
}

async fn load_live_backups(catalog: &Catalog) -> Result<Vec<LiveBackup>, CatalogError> {
    let connection = catalog.connection().await?;
    let rows = connection
        .query(LIVE_BACKUPS_SQL, &[])
        .await
        .map_err(query_error("list live backups and their copies"))?;
    let mut backups: Vec<LiveBackup> = Vec::new();
    for row in rows {
        let id: uuid::Uuid = row.get(0);
        let tenant: String = row.get(1);
        let (Ok(backup_id), Ok(tenant)) =
            (BackupId::parse(&id.to_string()), TenantName::parse(&tenant))
        else {
            tracing::warn!(backup = %id, %tenant, "catalog backup with an invalid id or tenant skipped");
            continue;
        };
        if backups.last().map(|backup| backup.backup_id) != Some(backup_id) {
            let stored_bytes: i64 = row.get(2);
            backups.push(LiveBackup {
                backup_id,
                tenant,
                stored_bytes: u64::try_from(stored_bytes).unwrap_or(0),
                sha256: row.get(3),
                copies: BTreeMap::new(),
            });
        }
        let (Some(region), Some(state)) = (
            row.get::<_, Option<String>>(4),
            row.get::<_, Option<String>>(5),
        ) else {
            continue;
        };
        let (Ok(region), Some(state)) = (RegionName::parse(&region), parse_state(&state)) else {
            tracing::warn!(backup = %backup_id, %region, %state, "catalog copy with an invalid region or state skipped");
            continue;
        };
        if let Some(backup) = backups.last_mut() {
            backup.copies.insert(
                region,
                CopyRow {
                    state,
                    checked_at: row.get(6),
                    hashed_at: row.get(7),
                    detail: row.get(8),
                },
            );
        }
    }
    Ok(backups)
}

/// One scrub job per configured region (even one with nothing to check: the scrub also
/// aborts the region's stale uploads).
///
/// Each covers every live backup whose copy there is present or unrecorded. Up to
/// `full_sample_per_day` copies per region, less those already hashed in the last day, are
/// marked `full`: never hashed first, then the longest ago.
pub async fn plan_scrub(
    catalog: &Catalog,
    configured_regions: &[RegionName],
    full_sample_per_day: usize,
    now: DateTime<Utc>,
) -> Result<Vec<JobWork>, CatalogError> {
    let backups = load_live_backups(catalog).await?;
    let keep = backup_ids_to_keep(catalog).await?;
    Ok(scrub_jobs(
        &backups,
        &keep,
        configured_regions,
        full_sample_per_day,
        now,
    ))
}

/// Every backup, trashed or not, and every id handed to a backup job that is still queued
/// or running: their objects are never deleted as orphans, nor their uploads aborted as
/// stale (a backup may run longer than a day).
async fn backup_ids_to_keep(catalog: &Catalog) -> Result<Vec<BackupId>, CatalogError> {
    Ok(catalog
        .connection()
        .await?
        .query(
            "SELECT id FROM backups
             UNION
             SELECT unnest(attempt_backup_ids) FROM jobs
             WHERE kind = 'backup' AND state IN ('queued', 'running')",
            &[],
        )
        .await
        .map_err(query_error("list every backup id"))?
        .iter()
        .filter_map(|row| BackupId::from_uuid(row.get(0)))
        .collect())
}

/// In each region with object lock, abort the multipart uploads under `tenants/` opened
/// before `initiated_before` by a backup the catalog does not keep. Scrub does this
/// elsewhere, but agents scrub with the writer key, which a locked region refuses aborts;
/// `regions` sign with the manager's. Returns how many were aborted; a region that cannot
/// list its uploads is a problem.
pub async fn abort_stale_uploads_in_locked_regions(
    catalog: &Catalog,
    regions: &[lifeboat_core::region::Region],
    initiated_before: DateTime<Utc>,
) -> Result<(usize, Vec<String>), CatalogError> {
    let locked: Vec<&lifeboat_core::region::Region> = regions
        .iter()
        .filter(|region| region.lock_mode().is_some())
        .collect();
    if locked.is_empty() {
        return Ok((0, Vec::new()));
    }
    let keep: std::collections::HashSet<BackupId> =
        backup_ids_to_keep(catalog).await?.into_iter().collect();
    let prefix = lifeboat_core::manifest::listing_prefix(None);
    let mut aborted = 0;
    let mut problems = Vec::new();
    for region in locked {
        match lifeboat_core::copy::abort_stale_uploads(region, &prefix, initiated_before, &keep)
            .await
        {
            Ok(count) => aborted += count,
            Err(error) => problems.push(format!(
                "stale uploads in region {} not listed: {error}",
                region.name()
            )),
        }
    }
    Ok((aborted, problems))
}

fn scrub_jobs(
    backups: &[LiveBackup],
    keep: &[BackupId],
    configured_regions: &[RegionName],
    full_sample_per_day: usize,
    now: DateTime<Utc>,
) -> Vec<JobWork> {
    let hash_due_before = now - HASH_INTERVAL;
    configured_regions
        .iter()
        .map(|region| {
            let mut hashed_recently = 0usize;
            let mut candidates: Vec<(&LiveBackup, Option<DateTime<Utc>>)> = Vec::new();
            for backup in backups {
                match backup.copies.get(region) {
                    None => candidates.push((backup, None)),
                    Some(copy) => {
                        if copy
                            .hashed_at
                            .is_some_and(|hashed| hashed > hash_due_before)
                        {
                            hashed_recently += 1;
                        }
                        if copy.state == CopyState::Present {
                            candidates.push((backup, copy.hashed_at));
                        }
                    }
                }
            }
            // Oldest hash first; `None` (never hashed) sorts before every time.
            let mut by_hash_age: Vec<usize> = (0..candidates.len()).collect();
            by_hash_age.sort_by_key(|&index| (candidates[index].1, candidates[index].0.backup_id));
            let budget = full_sample_per_day.saturating_sub(hashed_recently);
            let mut full = vec![false; candidates.len()];
            for &index in by_hash_age
                .iter()
                .filter(|&&index| {
                    candidates[index]
                        .1
                        .is_none_or(|hashed| hashed <= hash_due_before)
                })
                .take(budget)
            {
                full[index] = true;
            }
            let copies = candidates
                .iter()
                .zip(full)
                .map(|((backup, _), full)| ScrubTarget {
                    tenant: backup.tenant.clone(),
                    backup_id: backup.backup_id,
                    stored_bytes: backup.stored_bytes,
                    sha256: backup.sha256.clone(),
                    full,
                })
                .collect();
            JobWork::Scrub {
                region: region.clone(),
                copies,
                keep: keep.to_vec(),
            }
        })
        .collect()
}

/// Record what a scrub of `region` found; copies not yet recorded get a row. Every copy
/// reported missing or corrupt adds one to the region's count of bad copies found.
pub async fn apply_scrub_result<C: tokio_postgres::GenericClient>(
    client: &C,
    region: &RegionName,
    copies: &[CopyCheck],
) -> Result<(), CatalogError> {
    if copies.is_empty() {
        return Ok(());
    }
    let backup_ids: Vec<uuid::Uuid> = copies.iter().map(|copy| copy.backup_id.as_uuid()).collect();
    let states: Vec<&str> = copies.iter().map(|copy| copy.state.as_str()).collect();
    let hashed: Vec<bool> = copies.iter().map(|copy| copy.hashed).collect();
    let details: Vec<Option<&str>> = copies
        .iter()
        .map(|copy| match copy.state {
            CopyState::Present => None,
            CopyState::Missing | CopyState::Corrupt => copy.detail.as_deref(),
        })
        .collect();
    client
        .execute(
            APPLY_SCRUB_SQL,
            &[&region.as_str(), &backup_ids, &states, &hashed, &details],
        )
        .await
        .map_err(query_error("record scrub result"))?;
    for copy in copies
        .iter()
        .filter(|copy| copy.state != CopyState::Present)
    {
        tracing::warn!(
            region = %region, backup = %copy.backup_id, state = copy.state.as_str(),
            detail = copy.detail.as_deref().unwrap_or(""), "scrub found a bad copy"
        );
    }
    Ok(())
}

/// A replicate job for every live backup lacking a good copy in a configured region that
/// some other configured region holds.
///
/// Sources are ordered by trust: the copy hashed most recently first (it was read whole and
/// matched), then the one checked most recently, then the configured order. A backup with no
/// good copy anywhere cannot be repaired and is left to [`degraded_backups`].
pub async fn plan_repairs(
    catalog: &Catalog,
    configured_regions: &[RegionName],
) -> Result<Vec<JobWork>, CatalogError> {
    let backups = load_live_backups(catalog).await?;
    Ok(repair_jobs(&backups, configured_regions))
}

fn repair_jobs(backups: &[LiveBackup], configured_regions: &[RegionName]) -> Vec<JobWork> {
    let mut jobs = Vec::new();
    for backup in backups {
        let mut sources: Vec<(usize, &RegionName, &CopyRow)> = configured_regions
            .iter()
            .enumerate()
            .filter_map(|(position, region)| {
                let copy = backup.copies.get(region)?;
                (copy.state == CopyState::Present).then_some((position, region, copy))
            })
            .collect();
        if sources.is_empty() {
            continue;
        }
        sources.sort_by_key(|(position, _, copy)| {
            (
                std::cmp::Reverse(copy.hashed_at),
                std::cmp::Reverse(copy.checked_at),
                *position,
            )
        });
        let sources: Vec<RegionName> = sources
            .into_iter()
            .map(|(_, region, _)| region.clone())
            .collect();
        for region in configured_regions {
            if backup
                .copies
                .get(region)
                .is_some_and(|copy| copy.state == CopyState::Present)
            {
                continue;
            }
            jobs.push(JobWork::Replicate {
                tenant: backup.tenant.clone(),
                backup_id: backup.backup_id,
                sources: sources.clone(),
                to: region.clone(),
                stored_bytes: backup.stored_bytes,
                sha256: backup.sha256.clone(),
            });
        }
    }
    jobs
}

/// A replicate job put the backup's copy into `region`.
pub async fn apply_replicate_result<C: tokio_postgres::GenericClient>(
    client: &C,
    backup_id: BackupId,
    region: &RegionName,
) -> Result<(), CatalogError> {
    client
        .execute(
            APPLY_REPLICATE_SQL,
            &[&backup_id.as_uuid(), &region.as_str()],
        )
        .await
        .map_err(query_error("record replicated copy"))?;
    Ok(())
}

/// Live backups without a good copy in some configured region, oldest first.
pub async fn degraded_backups(
    catalog: &Catalog,
    configured_regions: &[RegionName],
) -> Result<Vec<DegradedBackup>, CatalogError> {
    let backups = load_live_backups(catalog).await?;
    Ok(degraded(&backups, configured_regions))
}

fn degraded(backups: &[LiveBackup], configured_regions: &[RegionName]) -> Vec<DegradedBackup> {
    backups
        .iter()
        .filter_map(|backup| {
            let mut present = Vec::new();
            let mut lacking = Vec::new();
            for region in configured_regions {
                match backup.copies.get(region) {
                    Some(copy) if copy.state == CopyState::Present => present.push(region.clone()),
                    copy => lacking.push(LackingCopy {
                        region: region.clone(),
                        state: copy.map(|copy| copy.state),
                        detail: copy.and_then(|copy| copy.detail.clone()),
                    }),
                }
            }
            (!lacking.is_empty()).then(|| DegradedBackup {
                tenant: backup.tenant.clone(),
                backup_id: backup.backup_id,
                present,
                lacking,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(name: &str) -> RegionName {
        RegionName::parse(name).expect("region")
    }

    fn copy(state: CopyState, hashed_at: Option<DateTime<Utc>>) -> CopyRow {
        CopyRow {
            state,
            checked_at: hashed_at,
            hashed_at,
            detail: None,
        }
    }

    fn backup(copies: Vec<(&str, CopyRow)>) -> LiveBackup {
        LiveBackup {
            backup_id: BackupId::new(),
            tenant: TenantName::parse("acme").expect("tenant"),
            stored_bytes: 42,
            sha256: "0".repeat(64),
            copies: copies
                .into_iter()
                .map(|(name, row)| (region(name), row))
                .collect(),
        }
    }

    fn targets(job: &JobWork) -> Vec<(BackupId, bool)> {
        match job {
            JobWork::Scrub { copies, .. } => copies
                .iter()
                .map(|target| (target.backup_id, target.full))
                .collect(),
            other => panic!("not a scrub job: {other:?}"),
        }
    }

    #[test]
    fn scrub_plan_hashes_never_hashed_then_oldest_within_the_daily_budget() {
        let now = Utc::now();
        let old = Some(now - chrono::TimeDelta::days(10));
        let older = Some(now - chrono::TimeDelta::days(20));
        let recent = Some(now - chrono::TimeDelta::hours(2));
        let backups = vec![
            backup(vec![("eu", copy(CopyState::Present, old))]),
            backup(vec![("eu", copy(CopyState::Present, older))]),
            backup(vec![]),
            backup(vec![("eu", copy(CopyState::Present, recent))]),
            backup(vec![("eu", copy(CopyState::Missing, None))]),
        ];
        let jobs = scrub_jobs(&backups, &[], &[region("eu")], 3, now);
        assert_eq!(jobs.len(), 1);
        // The missing copy is repair's business; the unrecorded one is checked. Budget 3
        // minus one hashed today: the never-hashed one and the older one.
        assert_eq!(
            targets(&jobs[0]),
            vec![
                (backups[0].backup_id, false),
                (backups[1].backup_id, true),
                (backups[2].backup_id, true),
                (backups[3].backup_id, false),
            ]
        );
        let none_full = scrub_jobs(&backups, &[], &[region("eu"), region("us")], 0, now);
        assert_eq!(none_full.len(), 2, "one job per configured region");
        assert!(targets(&none_full[1]).iter().all(|(_, full)| !full));
        assert_eq!(
            targets(&none_full[1]).len(),
            5,
            "nothing recorded in us: all checked"
        );
    }

    #[test]
    fn replicate_plan_repairs_lacking_copies_from_the_most_recently_hashed_source() {
        let now = Utc::now();
        let lost = backup(vec![("eu", copy(CopyState::Corrupt, None))]);
        let healthy = backup(vec![
            ("eu", copy(CopyState::Present, None)),
            ("us", copy(CopyState::Present, None)),
        ]);
        let degraded_one = backup(vec![
            (
                "eu",
                copy(CopyState::Present, Some(now - chrono::TimeDelta::days(3))),
            ),
            ("us", copy(CopyState::Present, Some(now))),
            ("ap", copy(CopyState::Missing, None)),
            ("gone", copy(CopyState::Present, Some(now))),
        ]);
        let backups = vec![lost, healthy, degraded_one];
        let regions = [region("eu"), region("us"), region("ap")];
        let jobs = repair_jobs(&backups, &regions);
        let expected_sources = vec![region("us"), region("eu")];
        assert_eq!(
            jobs,
            vec![
                JobWork::Replicate {
                    tenant: backups[1].tenant.clone(),
                    backup_id: backups[1].backup_id,
                    sources: vec![region("eu"), region("us")],
                    to: region("ap"),
                    stored_bytes: 42,
                    sha256: "0".repeat(64),
                },
                JobWork::Replicate {
                    tenant: backups[2].tenant.clone(),
                    backup_id: backups[2].backup_id,
                    sources: expected_sources,
                    to: region("ap"),
                    stored_bytes: 42,
                    sha256: "0".repeat(64),
                },
            ]
        );
        let report = degraded(&backups, &regions);
        assert_eq!(report.len(), 3, "all three lack a copy in ap");
        assert!(
            report[0].present.is_empty(),
            "the lost one has no good copy"
        );
        assert_eq!(report[0].lacking[0].state, Some(CopyState::Corrupt));
        assert_eq!(report[1].lacking[0].state, None);
    }
}

/// What [`recover_locked_copies`] did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct LockedRecovery {
    /// `(backup, region, what had hidden it)` of each copy made present again.
    pub recovered: Vec<(BackupId, RegionName, String)>,
    /// Copies that could not be recovered, and why.
    pub problems: Vec<String>,
}

/// Bring back, from its locked version, every live copy in a region with object lock
/// that scrub found missing or corrupt. `regions` sign with the manager's keys.
pub async fn recover_locked_copies(
    catalog: &Catalog,
    regions: &[lifeboat_core::region::Region],
    actor: &crate::audit::Actor,
) -> Result<LockedRecovery, CatalogError> {
    use lifeboat_core::recover::{ExpectedCopy, VersionFix, recover_copy};
    let locked: Vec<&str> = regions
        .iter()
        .filter(|region| region.lock_mode().is_some())
        .map(|region| region.name().as_str())
        .collect();
    let mut report = LockedRecovery::default();
    if locked.is_empty() {
        return Ok(report);
    }
    let connection = catalog.connection().await?;
    let rows = connection
        .query(
            "SELECT b.id, b.tenant, c.region, b.stored_bytes, b.sha256, b.manifest
             FROM backup_copies c JOIN backups b ON b.id = c.backup_id
             WHERE c.state IN ('missing', 'corrupt') AND c.region = ANY($1)
               AND coalesce(c.detail, '') <> 'purged' AND b.trashed_at IS NULL
             ORDER BY b.started_at",
            &[&locked],
        )
        .await
        .map_err(query_error(
            "find copies to recover from their locked versions",
        ))?;
    drop(connection);
    for row in rows {
        let Some((backup_id, tenant, region)) = crate::backups::copy_of_row(&row, regions) else {
            continue;
        };
        let region_text = region.name().as_str();
        let stored_bytes: i64 = row.get(3);
        let sha256: String = row.get(4);
        let manifest: serde_json::Value = row.get(5);
        let expected = ExpectedCopy {
            tenant: &tenant,
            backup_id,
            stored_bytes: u64::try_from(stored_bytes).unwrap_or(0),
            sha256: &sha256,
            manifest: &manifest,
        };
        let recovered = match recover_copy(region, &expected).await {
            Ok(recovered) => recovered,
            Err(error) => {
                report.problems.push(format!(
                    "backup {backup_id} in region {region_text}: {error}"
                ));
                continue;
            }
        };
        let hidden: Vec<String> = [
            ("dump", &recovered.object),
            ("manifest", &recovered.manifest),
        ]
        .into_iter()
        .filter_map(|(what, fix)| match fix {
            VersionFix::Restored { hidden_by } => Some(format!("{what}: {hidden_by}")),
            VersionFix::AlreadyCurrent => None,
        })
        .collect();
        let detail = if hidden.is_empty() {
            "its current versions were right".to_owned()
        } else {
            hidden.join("; ")
        };
        let mut connection = catalog.connection().await?;
        let transaction = connection
            .transaction()
            .await
            .map_err(query_error("begin"))?;
        transaction
            .execute(
                "UPDATE backup_copies SET state = 'present', detail = NULL, checked_at = now()
                 WHERE backup_id = $1 AND region = $2",
                &[&backup_id.as_uuid(), &region_text],
            )
            .await
            .map_err(query_error("record a recovered copy"))?;
        crate::audit::record(
            &*transaction,
            actor,
            "copy.recover",
            Some(tenant.as_str()),
            None,
            serde_json::json!({
                "backup": backup_id.to_string(),
                "region": region_text,
                "hidden_by": detail,
            }),
        )
        .await?;
        transaction.commit().await.map_err(query_error("commit"))?;
        tracing::warn!(
            backup = %backup_id, region = %region_text, hidden_by = %detail,
            "a copy hidden in a locked region was brought back from its locked version"
        );
        report
            .recovered
            .push((backup_id, region.name().clone(), detail));
    }
    Ok(report)
}
