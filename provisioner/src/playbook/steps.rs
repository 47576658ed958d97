//! The fixed vocabulary of playbook steps.
//!
//! A [`Step`] is what a playbook file says (names as [`Template`]s); an [`Action`] is the
//! same step with a run's names filled in. What each step does, checks first and undoes is
//! in `execute.rs`; here are only their names and parameters.

use std::path::PathBuf;

use lifeboat_core::manifest::BackupKind;

use super::template::{Bindings, Template, Variable};

/// A step's name in a playbook file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepName {
    CreateRole,
    EnsureRole,
    CreateDatabase,
    IsolateDatabase,
    TakeBackup,
    RestoreBackup,
    Verify,
    RunSql,
    BlockConnections,
    SwapDatabases,
    KeepPrevious,
    DropDatabase,
    DropRole,
}

impl StepName {
    pub const ALL: [StepName; 13] = [
        StepName::CreateRole,
        StepName::EnsureRole,
        StepName::CreateDatabase,
        StepName::IsolateDatabase,
        StepName::TakeBackup,
        StepName::RestoreBackup,
        StepName::Verify,
        StepName::RunSql,
        StepName::BlockConnections,
        StepName::SwapDatabases,
        StepName::KeepPrevious,
        StepName::DropDatabase,
        StepName::DropRole,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepName::CreateRole => "create_role",
            StepName::EnsureRole => "ensure_role",
            StepName::CreateDatabase => "create_database",
            StepName::IsolateDatabase => "isolate_database",
            StepName::TakeBackup => "take_backup",
            StepName::RestoreBackup => "restore_backup",
            StepName::Verify => "verify",
            StepName::RunSql => "run_sql",
            StepName::BlockConnections => "block_connections",
            StepName::SwapDatabases => "swap_databases",
            StepName::KeepPrevious => "keep_previous",
            StepName::DropDatabase => "drop_database",
            StepName::DropRole => "drop_role",
        }
    }

    pub fn parse(name: &str) -> Option<StepName> {
        StepName::ALL.into_iter().find(|step| step.as_str() == name)
    }

    /// The parameters it takes (besides `step`), for error messages.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            StepName::CreateRole => &["role", "login"],
            StepName::EnsureRole => &["role"],
            StepName::CreateDatabase => &["database", "owner"],
            StepName::IsolateDatabase => &["database", "role"],
            StepName::TakeBackup => &["database", "kind"],
            StepName::RestoreBackup | StepName::Verify => &["database", "owner"],
            StepName::RunSql => &["database", "file"],
            StepName::BlockConnections | StepName::KeepPrevious | StepName::DropDatabase => {
                &["database"]
            }
            StepName::SwapDatabases => &["live", "incoming", "previous"],
            StepName::DropRole => &["role", "only_if_made_by_this_run"],
        }
    }

    /// What it does, checks and undoes, for `lifeboat playbook show`.
    pub fn summary(self) -> &'static str {
        match self {
            StepName::CreateRole => {
                "create the role (LOGIN with a generated password shown once, or NOLOGIN); undo: drop it if this run made it"
            }
            StepName::EnsureRole => {
                "create the role NOLOGIN unless it exists; undo: drop it if this run made it"
            }
            StepName::CreateDatabase => {
                "create an empty database owned by the role, CONNECT revoked from PUBLIC; refuses an existing one; undo: drop it if this run made it"
            }
            StepName::IsolateDatabase => {
                "CONNECT and TEMP only for the role, the public schema the role's; idempotent"
            }
            StepName::TakeBackup => {
                "back up the database to every region (a safety or final backup)"
            }
            StepName::RestoreBackup => {
                "restore the chosen backup into the database, every object owned by the role (region fallback)"
            }
            StepName::Verify => {
                "row counts, owners, grants, extensions and large objects against the manifest"
            }
            StepName::RunSql => "run an SQL file in the database (e.g. neutralise a copy)",
            StepName::BlockConnections => {
                "no new connections to the database, sessions terminated; undo: allow them again"
            }
            StepName::SwapDatabases => {
                "block, terminate, rename live away and incoming to live in one transaction, re-apply database settings, allow; undo: swap back"
            }
            StepName::KeepPrevious => {
                "keep the previous database, blocked, for the grace period (daily maintenance drops it)"
            }
            StepName::DropDatabase => "drop the database (sessions terminated); no undo",
            StepName::DropRole => "drop the role; no undo",
        }
    }
}

/// A step as written (`N` = [`Template`]) or as run (`N` = `String`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<N = Template> {
    CreateRole {
        role: N,
        login: bool,
    },
    EnsureRole {
        role: N,
    },
    CreateDatabase {
        database: N,
        owner: N,
    },
    IsolateDatabase {
        database: N,
        role: N,
    },
    TakeBackup {
        database: N,
        kind: BackupKind,
    },
    RestoreBackup {
        database: N,
        owner: N,
    },
    Verify {
        database: N,
        owner: N,
    },
    RunSql {
        database: N,
        /// As written, relative to the playbooks directory.
        file: PathBuf,
        /// Read when the playbook was.
        sql: String,
    },
    BlockConnections {
        database: N,
    },
    SwapDatabases {
        live: N,
        incoming: N,
        previous: N,
    },
    KeepPrevious {
        database: N,
    },
    DropDatabase {
        database: N,
    },
    DropRole {
        role: N,
        only_if_made_by_this_run: bool,
    },
}

/// A step with a run's names filled in.
pub type Action = Step<String>;

impl<N> Step<N> {
    pub fn name(&self) -> StepName {
        match self {
            Step::CreateRole { .. } => StepName::CreateRole,
            Step::EnsureRole { .. } => StepName::EnsureRole,
            Step::CreateDatabase { .. } => StepName::CreateDatabase,
            Step::IsolateDatabase { .. } => StepName::IsolateDatabase,
            Step::TakeBackup { .. } => StepName::TakeBackup,
            Step::RestoreBackup { .. } => StepName::RestoreBackup,
            Step::Verify { .. } => StepName::Verify,
            Step::RunSql { .. } => StepName::RunSql,
            Step::BlockConnections { .. } => StepName::BlockConnections,
            Step::SwapDatabases { .. } => StepName::SwapDatabases,
            Step::KeepPrevious { .. } => StepName::KeepPrevious,
            Step::DropDatabase { .. } => StepName::DropDatabase,
            Step::DropRole { .. } => StepName::DropRole,
        }
    }

    /// The step with each name mapped by `map` (the first error stops).
    fn try_map<M, E>(&self, mut map: impl FnMut(&N) -> Result<M, E>) -> Result<Step<M>, E> {
        Ok(match self {
            Step::CreateRole { role, login } => Step::CreateRole {
                role: map(role)?,
                login: *login,
            },
            Step::EnsureRole { role } => Step::EnsureRole { role: map(role)? },
            Step::CreateDatabase { database, owner } => Step::CreateDatabase {
                database: map(database)?,
                owner: map(owner)?,
            },
            Step::IsolateDatabase { database, role } => Step::IsolateDatabase {
                database: map(database)?,
                role: map(role)?,
            },
            Step::TakeBackup { database, kind } => Step::TakeBackup {
                database: map(database)?,
                kind: *kind,
            },
            Step::RestoreBackup { database, owner } => Step::RestoreBackup {
                database: map(database)?,
                owner: map(owner)?,
            },
            Step::Verify { database, owner } => Step::Verify {
                database: map(database)?,
                owner: map(owner)?,
            },
            Step::RunSql {
                database,
                file,
                sql,
            } => Step::RunSql {
                database: map(database)?,
                file: file.clone(),
                sql: sql.clone(),
            },
            Step::BlockConnections { database } => Step::BlockConnections {
                database: map(database)?,
            },
            Step::SwapDatabases {
                live,
                incoming,
                previous,
            } => Step::SwapDatabases {
                live: map(live)?,
                incoming: map(incoming)?,
                previous: map(previous)?,
            },
            Step::KeepPrevious { database } => Step::KeepPrevious {
                database: map(database)?,
            },
            Step::DropDatabase { database } => Step::DropDatabase {
                database: map(database)?,
            },
            Step::DropRole {
                role,
                only_if_made_by_this_run,
            } => Step::DropRole {
                role: map(role)?,
                only_if_made_by_this_run: *only_if_made_by_this_run,
            },
        })
    }
}

impl Step<Template> {
    /// The step with `bindings` filled in, or the first variable they lack.
    pub fn resolve(&self, bindings: &Bindings) -> Result<Action, Variable> {
        self.try_map(|template| template.render(bindings))
    }

    /// `name = "value"` pairs as written, for `lifeboat playbook show`.
    pub fn describe_parameters(&self) -> String {
        let mut parameters = Vec::new();
        let _ = self.try_map(|template| {
            parameters.push(template.to_string());
            Ok::<(), ()>(())
        });
        let names = self.name().parameters();
        let mut described: Vec<String> = names
            .iter()
            .zip(parameters)
            .map(|(name, value)| format!("{name} = {value:?}"))
            .collect();
        match self {
            Step::CreateRole { login, .. } => described.push(format!("login = {login}")),
            Step::TakeBackup { kind, .. } => described.push(format!("kind = {:?}", kind.as_str())),
            Step::RunSql { file, .. } => described.push(format!("file = {:?}", file.display())),
            Step::DropRole {
                only_if_made_by_this_run: true,
                ..
            } => described.push("only_if_made_by_this_run = true".to_owned()),
            _ => {}
        }
        described.join(", ")
    }
}
