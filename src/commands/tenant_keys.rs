//! `lifeboat tenant shred NAME --confirm NAME` and `lifeboat tenant rotate-key NAME`:
//! parsing and printing only; the operations are `lifeboat_controller::tenant_keys`.

use std::path::Path;
use std::process::ExitCode;

use lifeboat_controller::tenant_keys;
use lifeboat_core::ids::TenantName;
use lifeboat_core::keys::Identities;
use lifeboat_core::region::Regions;

use super::catalog::{open_catalog, operator};
use super::{load_config, parse_flag};

pub async fn shred(
    config_path: Option<&Path>,
    name: &str,
    confirm: Option<&str>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("name", name, TenantName::parse)?;
    let Some(confirmation) = confirm else {
        anyhow::bail!(
            "shredding destroys every key that opens tenant {tenant}'s backups, for good: give --confirm {tenant}; nothing was changed"
        );
    };
    let catalog = open_catalog(&config).await?;
    // Deleting versions takes the regions' manager keys: writer keys may not delete.
    let report = tenant_keys::shred_tenant(
        &catalog,
        &Regions::from_config(&config).managers(&config),
        &tenant,
        confirmation,
        &operator(&catalog).await?,
    )
    .await?;
    let exit = if report.complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(exit);
    }
    println!(
        "tenant {tenant}: {} wrapped identit{} deleted from the catalog{}",
        report.keys_shredded,
        if report.keys_shredded == 1 {
            "y"
        } else {
            "ies"
        },
        if report.keys_shredded == 0 {
            " (already shredded)"
        } else {
            ""
        }
    );
    for region in &report.regions {
        match &region.error {
            None => println!(
                "  region {}: every version of the identity object deleted ({} now)",
                region.region, region.versions_deleted
            ),
            Some(error) => println!(
                "  region {}: NOT done ({error}); run the shred again when it answers",
                region.region
            ),
        }
    }
    if report.complete {
        println!(
            "shredded: the tenant's remaining backups cannot be opened by any key lifeboat holds; purge removes them as their locks release"
        );
    } else {
        eprintln!("warning: the shred is not complete in every region");
    }
    Ok(exit)
}

pub async fn rotate(
    config_path: Option<&Path>,
    name: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("name", name, TenantName::parse)?;
    let Some(identity_file) = config.identity_file.as_deref() else {
        return Err(tenant_keys::TenantKeysError::NoOrgIdentity.into());
    };
    let org_identities = Identities::load(identity_file)?;
    let catalog = open_catalog(&config).await?;
    let rotated = tenant_keys::rotate_key(
        &catalog,
        &Regions::from_config(&config),
        &config.recipients,
        &org_identities,
        &tenant,
        &operator(&catalog).await?,
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rotated)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "tenant {tenant}: new backups are encrypted to key {} ({})",
        rotated.current.fingerprint, rotated.current.recipient
    );
    if !rotated.retired.is_empty() {
        println!(
            "  kept (retired, still opening older backups): {}",
            rotated.retired.join(", ")
        );
    }
    for (region, error) in &rotated.publish.failed {
        println!(
            "  region {region}: identity.age not rewritten yet ({error}); it is written again at the tenant's next backup"
        );
    }
    Ok(ExitCode::SUCCESS)
}
