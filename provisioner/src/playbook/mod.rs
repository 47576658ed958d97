//! Playbooks: named, ordered steps of a fixed vocabulary, read from TOML files.
//!
//! The same steps provision tenants, restore them onto live, copy them and drill them every
//! night, so the recovery path runs daily. The binary ships the files of `playbooks/` (the
//! built-in defaults); an operator may point `playbook_dir` at a directory of edited copies
//! (e.g. with `run_sql` steps added), and a file there replaces the built-in of its name.
//!
//! - `file.rs`: reading and checking a file (errors name the file and line);
//! - `template.rs`: the `{variables}` a run fills in;
//! - `steps.rs`: the vocabulary;
//! - `run.rs`: running in order, reporting, undoing on failure, resuming after a crash;
//! - `execute.rs`: what each step does on a cluster.

mod execute;
mod file;
mod run;
mod steps;
mod template;

use std::path::Path;

pub use execute::{
    BackupHooks, ClusterExecutor, DEFAULT_RENAME_PATIENCE, RestoredBackup, RunOutputs,
};
pub use file::{PlannedStep, Playbook, PlaybookError, parse_playbook};
pub use run::{
    Executor, FailureKind, NoObserver, RunFailure, RunSummary, StepFailure, StepObserver, plan,
    run_playbook,
};
pub use steps::{Action, Step, StepName};
pub use template::{Bindings, Template, Variable};

/// The playbooks every run uses, by name.
pub mod names {
    pub const PROVISION_TENANT: &str = "provision-tenant";
    pub const RESTORE_LIVE: &str = "restore-live";
    pub const RESTORE_ROLLBACK: &str = "restore-rollback";
    pub const RESTORE_COPY: &str = "restore-copy";
    pub const DRILL_TENANT: &str = "drill-tenant";
    pub const DEPROVISION_TENANT: &str = "deprovision-tenant";
}

/// The defaults shipped in the binary: `playbooks/*.toml` as they are in the repository.
const BUILT_IN: [(&str, &str); 6] = [
    (
        names::PROVISION_TENANT,
        include_str!("../../../playbooks/provision-tenant.toml"),
    ),
    (
        names::RESTORE_LIVE,
        include_str!("../../../playbooks/restore-live.toml"),
    ),
    (
        names::RESTORE_ROLLBACK,
        include_str!("../../../playbooks/restore-rollback.toml"),
    ),
    (
        names::RESTORE_COPY,
        include_str!("../../../playbooks/restore-copy.toml"),
    ),
    (
        names::DRILL_TENANT,
        include_str!("../../../playbooks/drill-tenant.toml"),
    ),
    (
        names::DEPROVISION_TENANT,
        include_str!("../../../playbooks/deprovision-tenant.toml"),
    ),
];

/// The SQL files the built-in playbooks' `run_sql` steps name, shipped alongside.
const BUILT_IN_SQL: [(&str, &str); 1] = [(
    "sql/neutralise-copy.sql",
    include_str!("../../../playbooks/sql/neutralise-copy.sql"),
)];

/// The SQL of a built-in `run_sql` file.
pub(crate) fn built_in_sql(file: &str) -> Option<&'static str> {
    BUILT_IN_SQL
        .iter()
        .find(|(name, _)| *name == file)
        .map(|(_, sql)| *sql)
}

/// Where playbooks come from: the built-ins, overridden by `dir`'s `NAME.toml` files.
#[derive(Debug, Clone, Copy)]
pub struct PlaybookSource<'a> {
    pub dir: Option<&'a Path>,
}

/// One playbook as `lifeboat playbook list` shows it.
#[derive(Debug, Clone)]
pub struct PlaybookEntry {
    pub name: String,
    pub origin: String,
    pub description: String,
    pub steps: usize,
}

impl PlaybookSource<'_> {
    /// The playbook `name`, from the directory if it has one of that name, else built in;
    /// checked.
    pub fn load(&self, name: &str) -> Result<Playbook, PlaybookError> {
        if let Some(dir) = self.dir {
            let path = dir.join(format!("{name}.toml"));
            if path.is_file() {
                return load_file(&path);
            }
        }
        match BUILT_IN.iter().find(|(built_in, _)| *built_in == name) {
            Some((_, text)) => parse_playbook(name, &format!("built-in {name}.toml"), text, None),
            None => Err(PlaybookError::Unknown {
                name: name.to_owned(),
                known: self.names().join(", "),
            }),
        }
    }

    /// Every playbook's name: the built-ins and the directory's.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = BUILT_IN
            .iter()
            .map(|(name, _)| (*name).to_owned())
            .collect();
        if let Some(dir) = self.dir
            && let Ok(entries) = std::fs::read_dir(dir)
        {
            for entry in entries.flatten() {
                let path = entry.path();
                if path
                    .extension()
                    .is_some_and(|extension| extension == "toml")
                    && let Some(stem) = path.file_stem().and_then(|stem| stem.to_str())
                    && !names.iter().any(|name| name == stem)
                {
                    names.push(stem.to_owned());
                }
            }
        }
        names.sort();
        names
    }

    /// Every playbook, each checked; one that does not check is listed with its error.
    pub fn list(&self) -> Vec<Result<PlaybookEntry, PlaybookError>> {
        self.names()
            .into_iter()
            .map(|name| {
                self.load(&name).map(|playbook| PlaybookEntry {
                    name: playbook.name,
                    origin: playbook.origin,
                    description: playbook.description,
                    steps: playbook.steps.len(),
                })
            })
            .collect()
    }
}

/// Read and check the playbook file at `path` (its `run_sql` files are looked up next to it).
pub fn load_file(path: &Path) -> Result<Playbook, PlaybookError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| PlaybookError::Unreadable {
        origin: origin.clone(),
        message: error.to_string(),
    })?;
    let name = path
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("playbook");
    parse_playbook(name, &origin, &text, path.parent())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_playbook_checks() {
        let source = PlaybookSource { dir: None };
        for (name, _) in BUILT_IN {
            let playbook = source.load(name).unwrap_or_else(|error| panic!("{error}"));
            assert!(!playbook.steps.is_empty(), "{name}");
        }
        assert!(matches!(
            source.load("restore-everything"),
            Err(PlaybookError::Unknown { .. })
        ));
    }

    #[test]
    fn the_shipped_files_are_the_built_ins() {
        // The repository's files are what the binary embeds; a file in `playbook_dir`
        // replaces the built-in of its name.
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks");
        let source = PlaybookSource {
            dir: Some(&repository),
        };
        for (name, _) in BUILT_IN {
            let playbook = source.load(name).unwrap_or_else(|error| panic!("{error}"));
            assert!(playbook.origin.ends_with(&format!("{name}.toml")));
            assert!(
                !playbook.origin.starts_with("built-in"),
                "{}",
                playbook.origin
            );
        }
    }
}
