//! `lifeboat tenant provision NAME --cluster C` and `lifeboat tenant deprovision NAME`:
//! a tenant's database and role made (or dropped) by their playbooks, and the tenant
//! registered in (or removed from) the catalog in the same step.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use lifeboat_agent::playbook_job::{self, Provisioned, RunContext};
use lifeboat_controller::audit::Actor;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::tenant_keys;
use lifeboat_controller::tenants::{self, NewTenant, Retention, Tenant};
use lifeboat_core::api::TenantKeyGrant;
use lifeboat_core::config::Config;
use lifeboat_core::ids::{ClusterName, TenantName};
use lifeboat_core::region::Regions;
use lifeboat_provisioner::playbook::NoObserver;
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use super::catalog::{open_catalog, operator};
use super::{cancel_on_signal, load_config, parse_flag};

/// `tenant provision` arguments.
#[derive(Debug)]
pub struct ProvisionArguments<'a> {
    pub name: &'a str,
    pub cluster: &'a str,
    pub database: Option<&'a str>,
    pub schedule: Option<&'a str>,
    pub retention: Retention,
    /// Write the role's password to this new file (mode 0600) instead of printing it.
    pub password_file: Option<&'a Path>,
}

fn run_tag() -> String {
    format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The `provision-tenant` playbook for `new`, run inside its registration in the catalog
/// (`tenants::add_tenant_with`): `tenant provision` and the demo.
pub(crate) async fn provision_and_register(
    config: &Config,
    regions: &Regions,
    catalog: &Catalog,
    new: NewTenant,
    actor: &Actor,
    cancel: &CancellationToken,
) -> anyhow::Result<(Tenant, Provisioned)> {
    let known_clusters: Vec<ClusterName> = config.clusters.keys().cloned().collect();
    let run_tag = run_tag();
    Ok(tenants::add_tenant_with(
        catalog,
        new,
        &known_clusters,
        regions,
        &config.recipients,
        actor,
        |tenant| {
            let run_tag = &run_tag;
            async move {
                let cluster =
                    ClusterName::parse(&tenant.cluster).map_err(|error| error.to_string())?;
                playbook_job::provision_tenant(
                    config,
                    regions,
                    &tenant.name,
                    &cluster,
                    &tenant.database,
                    RunContext {
                        run_tag,
                        resume: false,
                        observer: &NoObserver,
                        cancel,
                        tenant_keys: None,
                    },
                )
                .await
            }
        },
    )
    .await?)
}

pub async fn provision(
    config_path: Option<&Path>,
    arguments: ProvisionArguments<'_>,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let name = parse_flag("name", arguments.name, TenantName::parse)?;
    let cluster = parse_flag("cluster", arguments.cluster, ClusterName::parse)?;
    if let Some(path) = arguments.password_file
        && path.exists()
    {
        anyhow::bail!(
            "--password-file {}: the file exists; name a new file",
            path.display()
        );
    }
    let catalog = open_catalog(&config).await?;
    let regions = Regions::from_config(&config);
    let (tenant, provisioned) = provision_and_register(
        &config,
        &regions,
        &catalog,
        NewTenant {
            name,
            cluster,
            database: arguments.database.map(str::to_owned),
            schedule: arguments.schedule.map(str::to_owned),
            retention: arguments.retention,
        },
        &operator(&catalog).await?,
        &cancel_on_signal(),
    )
    .await?;
    println!(
        "provisioned tenant {} on cluster {}: database {:?} owned by role {:?}, which alone may connect to it",
        tenant.name, tenant.cluster, tenant.database, provisioned.role
    );
    match arguments.password_file {
        Some(path) => {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("create --password-file {}", path.display()))?;
            writeln!(file, "{}", provisioned.password.expose_secret())
                .with_context(|| format!("write {}", path.display()))?;
            println!(
                "the role's password is in {} (mode 0600); lifeboat keeps no copy",
                path.display()
            );
        }
        None => {
            println!(
                "password for role {:?} (shown once; lifeboat keeps no copy, the cluster only its SCRAM hash):\n{}",
                provisioned.role,
                provisioned.password.expose_secret()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn deprovision(
    config_path: Option<&Path>,
    name: &str,
    trash_backups: bool,
    yes: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let name = parse_flag("name", name, TenantName::parse)?;
    let catalog = open_catalog(&config).await?;
    let tenant = tenants::show_tenant(&catalog, &name).await?;
    if !yes {
        eprintln!(
            "This takes a final backup of tenant {name}, then DROPS its database {:?} and its role on cluster {}.",
            tenant.database, tenant.cluster
        );
        if !super::confirmed_by_typing(&name).await? {
            eprintln!("cancelled: the name did not match; nothing was done");
            return Ok(ExitCode::FAILURE);
        }
    }
    let regions = Regions::from_config(&config);
    let cancel = cancel_on_signal();
    let run_tag = run_tag();
    let trash = super::catalog::trash_from_flag(trash_backups, &config)?;
    // The final backup is encrypted to the tenant's own key, like every job's, so that a
    // later `tenant shred` covers it too.
    let current_key =
        tenant_keys::ensure_current_key(&catalog, &regions, &name, &config.recipients).await?;
    let grant = TenantKeyGrant {
        recipient: Some(current_key.recipient),
        wrapped_identities_hex: None,
    };
    let deprovisioned = tenants::deprovision_tenant(
        &catalog,
        &regions,
        &name,
        trash,
        &operator(&catalog).await?,
        |tenant| {
            let (config, regions, run_tag, cancel, grant) =
                (&config, &regions, &run_tag, &cancel, &grant);
            async move {
                let cluster = match ClusterName::parse(&tenant.cluster) {
                    Ok(cluster) => cluster,
                    Err(error) => return (None, Err(error.to_string())),
                };
                playbook_job::deprovision_tenant(
                    config,
                    regions,
                    &tenant.name,
                    &cluster,
                    &tenant.database,
                    RunContext {
                        run_tag,
                        resume: false,
                        observer: &NoObserver,
                        cancel,
                        tenant_keys: Some(grant),
                    },
                )
                .await
            }
        },
    )
    .await?;
    println!(
        "deprovisioned tenant {name}: final backup {}, database and role dropped",
        deprovisioned
            .final_backup
            .map_or_else(|| "none".to_owned(), |backup| backup.to_string())
    );
    println!(
        "its backups: {} trashed, {} left (retention no longer applies to them)",
        deprovisioned.removed.backups_trashed, deprovisioned.removed.backups_left
    );
    Ok(ExitCode::SUCCESS)
}
