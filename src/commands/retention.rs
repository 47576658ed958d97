//! `lifeboat retention run`, `lifeboat trash list|restore|purge`, and the legal holds
//! (`lifeboat backups hold|unhold`, `lifeboat tenant hold|unhold`).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Subcommand;
use comfy_table::Table;
use lifeboat_controller::retention::{self, RetentionReport};
use lifeboat_core::ids::{BackupId, TenantName};
use lifeboat_core::region::Regions;

use super::catalog::{open_catalog, operator};
use super::{load_config, parse_flag, parse_optional_flag};

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Plan every tenant's backups (grandfather-father-son, legal holds) and move the
    /// ones the plan does not keep to the trash.
    Run {
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Days trashed backups wait before `trash purge` deletes them; default
        /// `[retention] trash_days` (14).
        #[arg(long)]
        trash_days: Option<u32>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TrashCommand {
    /// List trashed backups.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Take a backup out of the trash.
    Restore {
        backup: String,
        /// Also put it under legal hold, so retention does not trash it again.
        #[arg(long)]
        hold: bool,
    },
    /// Delete trashed backups whose purge time has passed from every region, then from
    /// the catalog.
    Purge {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(
    config_path: Option<&Path>,
    command: RetentionCommand,
) -> anyhow::Result<ExitCode> {
    let RetentionCommand::Run {
        tenant,
        dry_run,
        trash_days,
        json,
    } = command;
    let config = load_config(config_path)?;
    let tenant = parse_optional_flag("tenant", tenant.as_deref(), TenantName::parse)?;
    let trash_period = trash_days.map_or(config.trash_period, |days| {
        Duration::from_secs(u64::from(days) * 24 * 60 * 60)
    });
    let catalog = open_catalog(&config).await?;
    let report = retention::apply(
        &catalog,
        tenant.as_ref(),
        SystemTime::now().into(),
        dry_run,
        trash_period,
        &operator(&catalog).await?,
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_plan(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_plan(report: &RetentionReport) {
    let mut trashed = 0;
    for tenant in &report.tenants {
        let retention = tenant.policy.retention;
        println!(
            "tenant {} (keep daily {}, weekly {}, monthly {}, yearly {}{})",
            tenant.tenant,
            retention.keep_daily,
            retention.keep_weekly,
            retention.keep_monthly,
            retention.keep_yearly,
            if tenant.policy.legal_hold {
                "; legal hold"
            } else {
                ""
            }
        );
        let mut table = Table::new();
        table.load_preset(comfy_table::presets::NOTHING);
        for kept in &tenant.keep {
            let reasons: Vec<String> = kept.reasons.iter().map(ToString::to_string).collect();
            table.add_row([
                "  keep".to_owned(),
                kept.backup_id.to_string(),
                kept.started_at.format("%Y-%m-%d %H:%M").to_string(),
                kept.kind.as_str().to_owned(),
                reasons.join(", "),
            ]);
        }
        for backup in &tenant.trash {
            table.add_row([
                "  trash".to_owned(),
                backup.backup_id.to_string(),
                backup.started_at.format("%Y-%m-%d %H:%M").to_string(),
                backup.kind.as_str().to_owned(),
                backup.reason.clone(),
            ]);
        }
        trashed += tenant.trash.len();
        if !tenant.keep.is_empty() || !tenant.trash.is_empty() {
            println!("{table}");
        }
    }
    if report.dry_run {
        println!("dry run: {trashed} backups would be moved to the trash; nothing changed");
    } else {
        println!(
            "{trashed} backups moved to the trash; `lifeboat trash purge` deletes them after {}",
            report.purge_after.format("%Y-%m-%d %H:%M UTC")
        );
    }
}

pub async fn trash(config_path: Option<&Path>, command: TrashCommand) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    match command {
        TrashCommand::List { json } => {
            let catalog = open_catalog(&config).await?;
            let trashed = retention::list_trash(&catalog).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&trashed)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut table = Table::new();
            table.load_preset(comfy_table::presets::NOTHING);
            table.set_header([
                "backup",
                "tenant",
                "kind",
                "started",
                "purge after",
                "held",
                "reason",
            ]);
            for backup in &trashed {
                table.add_row([
                    backup.backup_id.to_string(),
                    backup.tenant.to_string(),
                    backup.kind.as_str().to_owned(),
                    backup.started_at.format("%Y-%m-%d %H:%M").to_string(),
                    backup.purge_after.format("%Y-%m-%d %H:%M").to_string(),
                    if backup.legal_hold { "yes" } else { "no" }.to_owned(),
                    backup.trash_reason.clone().unwrap_or_default(),
                ]);
            }
            println!("{table}");
            Ok(ExitCode::SUCCESS)
        }
        TrashCommand::Restore { backup, hold } => {
            let backup_id = parse_flag("backup", &backup, BackupId::parse)?;
            let catalog = open_catalog(&config).await?;
            let tenant =
                retention::restore_from_trash(&catalog, backup_id, &operator(&catalog).await?)
                    .await?;
            if hold {
                retention::set_backup_legal_hold(
                    &catalog,
                    backup_id,
                    true,
                    &operator(&catalog).await?,
                )
                .await?;
                println!(
                    "restored backup {backup_id} of tenant {tenant} from the trash and put it under legal hold"
                );
            } else {
                println!(
                    "restored backup {backup_id} of tenant {tenant} from the trash; retention trashes it again at its next run unless it is held (lifeboat backups hold {backup_id})"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TrashCommand::Purge { json } => {
            let catalog = open_catalog(&config).await?;
            let regions = Regions::from_config(&config).managers(&config);
            let report = retention::purge_due(
                &catalog,
                &regions,
                SystemTime::now().into(),
                &operator(&catalog).await?,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                for purged in &report.purged {
                    println!(
                        "purged backup {} of tenant {} from every region",
                        purged.backup_id, purged.tenant
                    );
                }
                for failed in &report.failed {
                    println!(
                        "kept backup {} of tenant {} in the trash, to retry: {}",
                        failed.backup_id,
                        failed.tenant,
                        failed.errors.join("; ")
                    );
                }
                for skipped in &report.skipped {
                    println!(
                        "kept backup {} of tenant {} in the trash: {}",
                        skipped.backup_id, skipped.tenant, skipped.reason
                    );
                }
                println!(
                    "{} purged, {} to retry, {} kept as the last restorable",
                    report.purged.len(),
                    report.failed.len(),
                    report.skipped.len()
                );
            }
            Ok(if report.failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// `lifeboat backups hold|unhold <id>`.
pub async fn hold_backup(
    config_path: Option<&Path>,
    backup: &str,
    hold: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let backup_id = parse_flag("backup", backup, BackupId::parse)?;
    let catalog = open_catalog(&config).await?;
    let tenant =
        retention::set_backup_legal_hold(&catalog, backup_id, hold, &operator(&catalog).await?)
            .await?;
    if hold {
        println!("backup {backup_id} of tenant {tenant} is under legal hold");
    } else {
        println!("backup {backup_id} of tenant {tenant} is no longer under legal hold");
    }
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat tenant hold|unhold <name>`.
pub async fn hold_tenant(
    config_path: Option<&Path>,
    name: &str,
    hold: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("name", name, TenantName::parse)?;
    let catalog = open_catalog(&config).await?;
    retention::set_tenant_legal_hold(&catalog, &tenant, hold, &operator(&catalog).await?).await?;
    if hold {
        println!("tenant {tenant} is under legal hold: none of its backups is trashed or purged");
    } else {
        println!("tenant {tenant} is no longer under legal hold");
    }
    Ok(ExitCode::SUCCESS)
}
