//! `lifeboat keys status`: which backups need which age identity.

use std::path::Path;
use std::process::ExitCode;

use comfy_table::Table;
use lifeboat_controller::keys::{self, RecipientState};
use lifeboat_core::keys::Identities;

use super::catalog::open_catalog;
use super::load_config;

pub async fn status(config_path: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let identities = config
        .identity_file
        .as_deref()
        .map(Identities::load)
        .transpose()?;
    let catalog = open_catalog(&config).await?;
    let connection = catalog.connection().await?;
    let status = keys::key_status(&**connection, &config, identities.as_ref()).await?;
    let unreadable_here = status
        .sets
        .iter()
        .filter(|set| set.readable_here == Some(false) && !set.shredded)
        .map(|set| set.backups)
        .sum::<i64>();
    // Exit 2 when this host cannot open some backups, with --json too (for monitoring).
    let exit = if unreadable_here > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(exit);
    }
    let describe = |recipient: &RecipientState| {
        if let Some(tenant_key) = &recipient.tenant_key {
            let state = if tenant_key.shredded {
                "shredded"
            } else if tenant_key.retired {
                "retired"
            } else {
                "current"
            };
            let mut words = vec![state.to_owned()];
            if !tenant_key.shredded {
                words.push(format!(
                    "wrapped to org recipients {}",
                    tenant_key.wrapped_to.join(", ")
                ));
            }
            match recipient.identity_here {
                Some(true) => words.push("unwraps here".to_owned()),
                Some(false) => words.push("does not unwrap here".to_owned()),
                None => {}
            }
            return format!(
                "{} (tenant key of {}, {})",
                recipient.fingerprint,
                tenant_key.tenant,
                words.join(", ")
            );
        }
        let mut words = vec![if recipient.current {
            "current"
        } else {
            "retired"
        }];
        match recipient.identity_here {
            Some(true) => words.push("identity here"),
            Some(false) => words.push("no identity here"),
            None => {}
        }
        format!("{} ({})", recipient.fingerprint, words.join(", "))
    };
    println!("new backups are encrypted to (tenants with their own key: that key):");
    for recipient in &status.current {
        println!("  {}", describe(recipient));
    }
    let mut table = Table::new();
    table.set_header([
        "encrypted to (any one opens)",
        "backups",
        "tenants",
        "trashed",
        "oldest",
        "newest",
        "opens here",
    ]);
    for set in &status.sets {
        table.add_row([
            set.recipients
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join("\n"),
            set.backups.to_string(),
            set.tenants.to_string(),
            set.trashed.to_string(),
            set.oldest.format("%Y-%m-%d %H:%M").to_string(),
            set.newest.format("%Y-%m-%d %H:%M").to_string(),
            match set.readable_here {
                _ if set.shredded => "no (shredded)".to_owned(),
                Some(true) => "yes".to_owned(),
                Some(false) => "NO".to_owned(),
                None => "no identity file".to_owned(),
            },
        ]);
    }
    println!("{table}");
    let needed = status.retired_but_needed();
    if needed.is_empty() {
        println!("every backup opens with a current recipient's identity");
    } else {
        println!(
            "keep the identities of {}: some backups are encrypted to no current recipient",
            needed.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
    if unreadable_here > 0 {
        eprintln!(
            "warning: {unreadable_here} backups cannot be opened with this host's identity file"
        );
    }
    Ok(exit)
}
