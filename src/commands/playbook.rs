//! `lifeboat playbook list|show NAME|check FILE|run NAME --tenant T [--dry-run]`: the
//! playbooks the binary ships and the operator's edited copies (`playbook_dir`).

use std::path::Path;
use std::process::ExitCode;

use lifeboat_agent::playbook_job::{self, RunContext};
use lifeboat_core::ids::TenantName;
use lifeboat_core::region::Regions;
use lifeboat_provisioner::playbook::{self, NoObserver, Playbook, PlaybookSource, names};

use super::{cancel_on_signal, load_config, parse_flag, resolve_tenant};

fn print_steps(playbook: &Playbook) {
    for planned in &playbook.steps {
        println!(
            "  {:>2}. {:<18} {}   (line {})",
            planned.number,
            planned.step.name().as_str(),
            planned.step.describe_parameters(),
            planned.line
        );
        println!("      {}", planned.step.name().summary());
    }
}

pub async fn list(config_path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let source = PlaybookSource {
        dir: config.playbook_dir.as_deref(),
    };
    let mut invalid = false;
    for entry in source.list() {
        match entry {
            Ok(entry) => println!(
                "{:<20} {:>2} steps  {}\n{:<20}           {}",
                entry.name, entry.steps, entry.origin, "", entry.description
            ),
            Err(error) => {
                invalid = true;
                println!("INVALID  {error}");
            }
        }
    }
    Ok(if invalid {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn show(config_path: Option<&Path>, name: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let source = PlaybookSource {
        dir: config.playbook_dir.as_deref(),
    };
    let playbook = source.load(name)?;
    println!(
        "{} ({})\n{}\n",
        playbook.name, playbook.origin, playbook.description
    );
    print_steps(&playbook);
    Ok(ExitCode::SUCCESS)
}

pub fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let playbook = playbook::load_file(file)?;
    println!("{}: valid, {} steps", playbook.origin, playbook.steps.len());
    Ok(ExitCode::SUCCESS)
}

/// `playbook run`: the drill playbook (or an operator's own) for one tenant, directly on
/// its cluster; `--dry-run` prints each step with the tenant's names filled in. The
/// playbooks behind `tenant provision|deprovision` and `restore live|rollback|copy` run
/// only through those commands, which add their checks, the catalog and the audit log.
pub async fn run(
    config_path: Option<&Path>,
    name: &str,
    tenant: &str,
    dry_run: bool,
) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let tenant = parse_flag("tenant", tenant, TenantName::parse)?;
    let source = PlaybookSource {
        dir: config.playbook_dir.as_deref(),
    };
    let playbook = source.load(name)?;
    let tenant_config = resolve_tenant(&config, &tenant).await?;
    let run_tag = format!("cli-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let bindings = playbook_job::standard_bindings(&config, &tenant_config, &run_tag).await?;
    if dry_run {
        let actions = playbook::plan(&playbook, &bindings)?;
        println!(
            "{} for tenant {} on cluster {} (dry run: nothing is done)",
            playbook.name, tenant, tenant_config.cluster
        );
        for (planned, action) in playbook.steps.iter().zip(&actions) {
            println!(
                "  {:>2}. {:<18} {:?}",
                planned.number,
                planned.step.name().as_str(),
                action
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    let guarded = [
        (names::PROVISION_TENANT, "lifeboat tenant provision"),
        (names::DEPROVISION_TENANT, "lifeboat tenant deprovision"),
        (names::RESTORE_LIVE, "lifeboat restore live"),
        (names::RESTORE_ROLLBACK, "lifeboat restore rollback"),
        (names::RESTORE_COPY, "lifeboat restore copy"),
    ];
    if let Some((_, command)) = guarded.iter().find(|(guarded, _)| *guarded == name) {
        anyhow::bail!(
            "playbook {name} runs only through `{command}`, which adds its checks, the catalog and the audit log (`--dry-run` shows its steps)"
        );
    }
    let regions = Regions::from_config(&config);
    let cancel = cancel_on_signal();
    let outcome = playbook_job::run_for_tenant(
        &config,
        &regions,
        &playbook,
        &tenant_config,
        &bindings,
        RunContext {
            run_tag: &run_tag,
            resume: false,
            observer: &NoObserver,
            cancel: &cancel,
            tenant_keys: None,
        },
    )
    .await;
    match outcome {
        Ok(summary) => {
            for step in &summary.steps {
                println!("{}", crate::output::step_line(step));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(failure) => {
            eprintln!("error: {failure}");
            Ok(ExitCode::FAILURE)
        }
    }
}
