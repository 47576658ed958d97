//! `lifeboat controller migrate` and `lifeboat tenant add|list|show|remove`: the catalog
//! from the command line.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use comfy_table::Table;
use lifeboat_controller::audit::Actor;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::tenants::{self, NewTenant, Retention, Tenant, TrashBackups};
use lifeboat_core::config::Config;
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::region::Regions;

use super::{load_config, parse_flag};

pub(crate) async fn open_catalog(config: &Config) -> anyhow::Result<Catalog> {
    Ok(Catalog::open(config).await?)
}

/// Who is acting, for the audit log: the PostgreSQL role the catalog connection
/// authenticated as (never an environment variable, which anyone can set).
pub(crate) async fn operator(catalog: &Catalog) -> anyhow::Result<Actor> {
    Ok(Actor::catalog_operator(catalog).await?)
}

pub async fn migrate(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let catalog = open_catalog(&config).await?;
    let report = catalog.migrate().await?;
    if report.applied_now.is_empty() {
        println!(
            "catalog is up to date (version {})",
            report.latest_version.unwrap_or(0)
        );
    } else {
        println!("applied {}", report.applied_now.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// `tenant add` arguments.
#[derive(Debug)]
pub struct AddArguments<'a> {
    pub name: &'a str,
    pub cluster: &'a str,
    pub database: Option<&'a str>,
    pub schedule: Option<&'a str>,
    pub retention: Retention,
}

pub async fn add(
    config_path: Option<&Path>,
    arguments: AddArguments<'_>,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let name = parse_flag("name", arguments.name, TenantName::parse)?;
    let cluster = parse_flag("cluster", arguments.cluster, ClusterName::parse)?;
    let catalog = open_catalog(&config).await?;
    let known_clusters: Vec<ClusterName> = config.clusters.keys().cloned().collect();
    let tenant = tenants::add_tenant(
        &catalog,
        NewTenant {
            name,
            cluster,
            database: arguments.database.map(str::to_owned),
            schedule: arguments.schedule.map(str::to_owned),
            retention: arguments.retention,
        },
        &known_clusters,
        &Regions::from_config(&config),
        &config.recipients,
        &operator(&catalog).await?,
    )
    .await?;
    println!(
        "added tenant {} (cluster {}, database {:?}, schedule {})",
        tenant.name,
        tenant.cluster,
        tenant.database,
        tenant.effective_schedule(config.backup_window)
    );
    Ok(ExitCode::SUCCESS)
}

/// A tenant as `tenant list --json` and `tenant show` print it: with the schedule the
/// scheduler uses, for the configured backup window.
#[derive(serde::Serialize)]
struct TenantView<'a> {
    #[serde(flatten)]
    tenant: &'a Tenant,
    effective_schedule: String,
}

impl<'a> TenantView<'a> {
    fn new(tenant: &'a Tenant, config: &Config) -> Self {
        TenantView {
            tenant,
            effective_schedule: tenant.effective_schedule(config.backup_window),
        }
    }
}

pub async fn list(config_path: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let catalog = open_catalog(&config).await?;
    let all = tenants::list_tenants(&catalog).await?;
    if json {
        let views: Vec<TenantView<'_>> = all
            .iter()
            .map(|tenant| TenantView::new(tenant, &config))
            .collect();
        println!("{}", serde_json::to_string_pretty(&views)?);
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header([
        "tenant",
        "cluster",
        "database",
        "schedule",
        "keep d/w/m/y",
        "legal hold",
    ]);
    for tenant in &all {
        let retention = tenant.retention;
        table.add_row([
            tenant.name.to_string(),
            tenant.cluster.clone(),
            tenant.database.clone(),
            tenant.effective_schedule(config.backup_window),
            format!(
                "{}/{}/{}/{}",
                retention.keep_daily,
                retention.keep_weekly,
                retention.keep_monthly,
                retention.keep_yearly
            ),
            if tenant.legal_hold { "yes" } else { "no" }.to_owned(),
        ]);
    }
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub async fn show(config_path: Option<&Path>, name: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let name = parse_flag("name", name, TenantName::parse)?;
    let catalog = open_catalog(&config).await?;
    let tenant = tenants::show_tenant(&catalog, &name).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&TenantView::new(&tenant, &config))?
    );
    Ok(ExitCode::SUCCESS)
}

/// `--trash-backups`: the tenant's backups go to the trash now.
pub(crate) fn trash_from_flag(
    trash_backups: bool,
    config: &Config,
) -> anyhow::Result<Option<TrashBackups>> {
    if !trash_backups {
        return Ok(None);
    }
    TrashBackups::starting_now(config.trash_period)
        .map(Some)
        .context("[retention] trash_days is too long to add to today's date")
}

pub async fn remove(
    config_path: Option<&Path>,
    name: &str,
    trash_backups: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let name = parse_flag("name", name, TenantName::parse)?;
    let trash = trash_from_flag(trash_backups, &config)?;
    let catalog = open_catalog(&config).await?;
    let removed =
        tenants::remove_tenant(&catalog, &name, trash, &operator(&catalog).await?).await?;
    println!("removed tenant {name} from the catalog");
    if removed.backup_jobs_cancelled > 0 {
        println!(
            "{} queued backup and drill jobs cancelled",
            removed.backup_jobs_cancelled
        );
    }
    if let Some(purge_after) = removed.purge_after {
        println!(
            "{} backups moved to the trash, purged after {} unless brought back (lifeboat trash list)",
            removed.backups_trashed,
            purge_after.format("%Y-%m-%d %H:%M UTC")
        );
    }
    if removed.backups_left > 0 {
        println!(
            "{} backups stay in the regions{}; no retention applies to them any more",
            removed.backups_left,
            if trash_backups {
                " under their own legal hold"
            } else {
                " (--trash-backups would move them to the trash)"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
