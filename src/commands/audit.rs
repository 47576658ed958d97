//! `lifeboat audit verify|export|keygen`: check the audit log's hash chain, write it out as
//! JSON lines, and make the key that chains it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use lifeboat_controller::audit::{self, AuditKey, ExportFilter};
use lifeboat_core::ids::TenantName;
use tokio::io::AsyncWriteExt;

use super::catalog::open_catalog;
use super::{load_config, parse_flag};

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the whole chain with the configured audit key; exit non-zero on any break.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Write entries as JSON lines, oldest first, with their hashes.
    Export {
        /// Only entries about this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only entries at or after this time (RFC 3339, or a date: YYYY-MM-DD, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Write here (must not exist) instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Write a new audit key (mode 0600) for `audit_key_file`.
    Keygen {
        /// Where to write the key; must not exist.
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run(config_path: Option<&Path>, command: AuditCommand) -> anyhow::Result<ExitCode> {
    match command {
        AuditCommand::Verify { json } => verify(config_path, json).await,
        AuditCommand::Export {
            tenant,
            since,
            output,
        } => {
            export(
                config_path,
                tenant.as_deref(),
                since.as_deref(),
                output.as_deref(),
            )
            .await
        }
        AuditCommand::Keygen { out } => {
            let key = audit::generate_key_file(&out)
                .with_context(|| format!("write the audit key {}", out.display()))?;
            eprintln!(
                "wrote audit key {} (mode 0600, key id {}); set audit_key_file to it wherever the catalog is written, and keep a copy: without it `audit verify` cannot vouch for the entries it chained",
                out.display(),
                key.id()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn verify(config_path: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let key = config
        .audit_key_file
        .as_deref()
        .map(AuditKey::load)
        .transpose()?;
    let catalog = open_catalog(&config).await?;
    let report = audit::verify(&catalog, key.as_ref()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(problem) = &report.problem {
        eprintln!(
            "error: the audit log is broken: {problem} ({} chained entries checked before it)",
            report.chained_entries
        );
    } else {
        let head = match (report.head_id, &report.head_hash) {
            (Some(id), Some(hash)) => format!("; head: entry {id}, hash {hash}"),
            _ => String::new(),
        };
        println!(
            "audit log intact: {} chained entries{head}",
            report.chained_entries
        );
        if report.unkeyed_entries > 0 {
            println!(
                "warning: {} entries are chained without a key (no audit_key_file when they were written): anyone with the catalog's credentials could have rewritten them",
                report.unkeyed_entries
            );
        }
        if report.legacy_entries > 0 {
            println!(
                "note: {} entries from before the chain (migration V11) are not chained",
                report.legacy_entries
            );
        }
    }
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn export(
    config_path: Option<&Path>,
    tenant: Option<&str>,
    since: Option<&str>,
    output: Option<&Path>,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let filter = ExportFilter {
        tenant: tenant
            .map(|tenant| parse_flag("tenant", tenant, TenantName::parse))
            .transpose()?
            .map(|tenant| tenant.as_str().to_owned()),
        since: since.map(parse_since).transpose()?,
    };
    let catalog = open_catalog(&config).await?;
    let written = match output {
        Some(path) => {
            let file = tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .await
                .with_context(|| format!("create {}", path.display()))?;
            let mut writer = tokio::io::BufWriter::new(file);
            let written = audit::export(&catalog, &filter, &mut writer).await?;
            writer.into_inner().sync_all().await?;
            eprintln!("wrote {written} audit entries to {}", path.display());
            written
        }
        None => {
            let mut writer = tokio::io::BufWriter::new(tokio::io::stdout());
            let written = audit::export(&catalog, &filter, &mut writer).await?;
            writer.flush().await?;
            written
        }
    };
    tracing::debug!(entries = written, "audit export done");
    Ok(ExitCode::SUCCESS)
}

fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").with_context(|| {
        format!(
            "--since {text:?}: give an RFC 3339 time (2026-11-28T15:00:00Z) or a date (2026-11-28)"
        )
    })?;
    Ok(date.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}
