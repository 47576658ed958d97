//! `lifeboat config check`: every problem with its key, or a one-line summary.

use std::path::Path;
use std::process::ExitCode;

use lifeboat_core::config::Config;

pub fn run(path: Option<&Path>) -> anyhow::Result<ExitCode> {
    let checked = Config::load_raw(path).and_then(|raw| raw.validate());
    match checked {
        Ok(config) => {
            println!(
                "configuration is valid: {} region(s) (backups need {}), {} cluster(s), {} tenant(s), {} recipient(s), restores {}",
                config.regions.len(),
                config.min_regions,
                config.clusters.len(),
                config.tenants.len(),
                config.recipients.len(),
                if config.identity_file.is_some() {
                    "enabled"
                } else {
                    "disabled (no identity_file)"
                }
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            for problem in &error.problems {
                eprintln!("{problem}");
            }
            eprintln!("{} problem(s) found", error.problems.len());
            Ok(ExitCode::FAILURE)
        }
    }
}
