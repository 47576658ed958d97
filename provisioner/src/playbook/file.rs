//! Reading a playbook file: TOML in, a checked [`Playbook`] out, or one error naming the
//! file and line of the first thing wrong.
//!
//! A playbook is a description and an ordered list of `[[steps]]` tables, each naming a step
//! of the fixed vocabulary ([`StepName`]) and its parameters. Everything is checked before
//! anything runs: an unknown step, an unknown, missing or mistyped parameter, a `{variable}`
//! no run supplies, a `run_sql` file that cannot be read. Operators edit these files, so the
//! errors are written for them.
//!
//! ```toml
//! description = "Create a tenant's role and database, isolated from every other tenant."
//!
//! [[steps]]
//! step = "create_role"
//! role = "{role}"
//! login = true
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use lifeboat_core::manifest::BackupKind;
use serde::Deserialize;
use toml::Spanned;

use super::steps::{Step, StepName};
use super::template::Template;

/// A checked playbook, ready to run.
#[derive(Debug, Clone)]
pub struct Playbook {
    /// The file name without `.toml`, e.g. `restore-live`.
    pub name: String,
    /// Where it was read from: a path, or `built-in` for the defaults in the binary.
    pub origin: String,
    pub description: String,
    pub steps: Vec<PlannedStep>,
}

/// One step of a playbook, where it was written.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    /// From 1, in playbook order.
    pub number: u32,
    /// The line of its `[[steps]]` header.
    pub line: usize,
    pub step: Step,
}

/// A playbook that could not be read or is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlaybookError {
    #[error("{origin}:{line}: {message}")]
    Invalid {
        origin: String,
        line: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Unreadable { origin: String, message: String },
    #[error("no playbook named {name:?} (known: {known})")]
    Unknown { name: String, known: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlaybook {
    description: String,
    steps: Vec<Spanned<BTreeMap<Spanned<String>, Spanned<toml::Value>>>>,
}

/// Parse and check `text`, read from `origin` (a path, for messages). `sql_dir` is where
/// `run_sql` files are looked up (the playbook's directory); `None` for built-in playbooks,
/// whose SQL files are built in too.
pub fn parse_playbook(
    name: &str,
    origin: &str,
    text: &str,
    sql_dir: Option<&Path>,
) -> Result<Playbook, PlaybookError> {
    let raw: RawPlaybook = toml::from_str(text).map_err(|error| {
        let line = error
            .span()
            .map(|span| line_of(text, span.start))
            .unwrap_or(1);
        PlaybookError::Invalid {
            origin: origin.to_owned(),
            line,
            message: error.message().to_owned(),
        }
    })?;
    if raw.steps.is_empty() {
        return Err(PlaybookError::Invalid {
            origin: origin.to_owned(),
            line: 1,
            message: "a playbook needs at least one [[steps]] table".to_owned(),
        });
    }
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (index, table) in raw.steps.into_iter().enumerate() {
        let line = line_of(text, table.span().start);
        let invalid = |message: String| PlaybookError::Invalid {
            origin: origin.to_owned(),
            line,
            message,
        };
        let mut parameters = Parameters {
            values: table
                .into_inner()
                .into_iter()
                .map(|(key, value)| {
                    let key_line = line_of(text, key.span().start);
                    (key.into_inner(), (key_line, value.into_inner()))
                })
                .collect(),
            origin,
            table_line: line,
        };
        let step_name = parameters.string("step")?;
        let step_name = StepName::parse(&step_name).ok_or_else(|| {
            invalid(format!(
                "unknown step {step_name:?} (known: {})",
                StepName::ALL.map(StepName::as_str).join(", ")
            ))
        })?;
        let step = read_step(step_name, &mut parameters, sql_dir)?;
        parameters.refuse_leftovers(step_name)?;
        steps.push(PlannedStep {
            number: u32::try_from(index + 1).unwrap_or(u32::MAX),
            line,
            step,
        });
    }
    Ok(Playbook {
        name: name.to_owned(),
        origin: origin.to_owned(),
        description: raw.description,
        steps,
    })
}

fn read_step(
    step_name: StepName,
    parameters: &mut Parameters<'_>,
    sql_dir: Option<&Path>,
) -> Result<Step, PlaybookError> {
    Ok(match step_name {
        StepName::CreateRole => Step::CreateRole {
            role: parameters.template("role")?,
            login: parameters.boolean("login")?,
        },
        StepName::EnsureRole => Step::EnsureRole {
            role: parameters.template("role")?,
        },
        StepName::CreateDatabase => Step::CreateDatabase {
            database: parameters.template("database")?,
            owner: parameters.template("owner")?,
        },
        StepName::IsolateDatabase => Step::IsolateDatabase {
            database: parameters.template("database")?,
            role: parameters.template("role")?,
        },
        StepName::TakeBackup => {
            let kind = parameters.string("kind")?;
            let kind = match kind.as_str() {
                "pre-restore" => BackupKind::PreRestore,
                "pre-destroy" => BackupKind::PreDestroy,
                "manual" => BackupKind::Manual,
                other => {
                    return Err(parameters.invalid_value(
                        "kind",
                        &format!(
                            "{other:?} is not a backup kind (pre-restore, pre-destroy, manual)"
                        ),
                    ));
                }
            };
            Step::TakeBackup {
                database: parameters.template("database")?,
                kind,
            }
        }
        StepName::RestoreBackup => Step::RestoreBackup {
            database: parameters.template("database")?,
            owner: parameters.template("owner")?,
        },
        StepName::Verify => Step::Verify {
            database: parameters.template("database")?,
            owner: parameters.template("owner")?,
        },
        StepName::RunSql => {
            let database = parameters.template("database")?;
            let file = parameters.string("file")?;
            let relative = Path::new(&file);
            if relative.is_absolute()
                || relative
                    .components()
                    .any(|component| matches!(component, std::path::Component::ParentDir))
            {
                return Err(parameters.invalid_value(
                    "file",
                    &format!("{file:?} must be a path inside the playbooks directory"),
                ));
            }
            let sql = match sql_dir {
                Some(sql_dir) => {
                    let path = sql_dir.join(relative);
                    std::fs::read_to_string(&path).map_err(|error| {
                        parameters.invalid_value(
                            "file",
                            &format!("cannot read {}: {error}", path.display()),
                        )
                    })?
                }
                None => super::built_in_sql(&file)
                    .ok_or_else(|| {
                        parameters
                            .invalid_value("file", &format!("{file:?} is not a built-in SQL file"))
                    })?
                    .to_owned(),
            };
            Step::RunSql {
                database,
                file: PathBuf::from(file),
                sql,
            }
        }
        StepName::BlockConnections => Step::BlockConnections {
            database: parameters.template("database")?,
        },
        StepName::SwapDatabases => Step::SwapDatabases {
            live: parameters.template("live")?,
            incoming: parameters.template("incoming")?,
            previous: parameters.template("previous")?,
        },
        StepName::KeepPrevious => Step::KeepPrevious {
            database: parameters.template("database")?,
        },
        StepName::DropDatabase => Step::DropDatabase {
            database: parameters.template("database")?,
        },
        StepName::DropRole => Step::DropRole {
            role: parameters.template("role")?,
            only_if_made_by_this_run: parameters.optional_boolean("only_if_made_by_this_run")?,
        },
    })
}

/// The parameters of one `[[steps]]` table, taken one by one; what is left is unknown.
struct Parameters<'a> {
    values: BTreeMap<String, (usize, toml::Value)>,
    origin: &'a str,
    table_line: usize,
}

impl Parameters<'_> {
    fn take(&mut self, key: &str) -> Result<(usize, toml::Value), PlaybookError> {
        self.values
            .remove(key)
            .ok_or_else(|| PlaybookError::Invalid {
                origin: self.origin.to_owned(),
                line: self.table_line,
                message: format!("missing parameter {key:?}"),
            })
    }

    fn invalid_at(&self, line: usize, key: &str, message: &str) -> PlaybookError {
        PlaybookError::Invalid {
            origin: self.origin.to_owned(),
            line,
            message: format!("parameter {key:?}: {message}"),
        }
    }

    fn invalid_value(&self, key: &str, message: &str) -> PlaybookError {
        self.invalid_at(self.table_line, key, message)
    }

    fn string(&mut self, key: &str) -> Result<String, PlaybookError> {
        match self.take(key)? {
            (_, toml::Value::String(text)) => Ok(text),
            (line, other) => Err(self.invalid_at(
                line,
                key,
                &format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    fn template(&mut self, key: &str) -> Result<Template, PlaybookError> {
        let (line, value) = self.take(key)?;
        let toml::Value::String(text) = value else {
            return Err(self.invalid_at(
                line,
                key,
                &format!("expected a string, found {}", value.type_str()),
            ));
        };
        Template::parse(&text).map_err(|message| self.invalid_at(line, key, &message))
    }

    fn boolean(&mut self, key: &str) -> Result<bool, PlaybookError> {
        match self.take(key)? {
            (_, toml::Value::Boolean(value)) => Ok(value),
            (line, other) => Err(self.invalid_at(
                line,
                key,
                &format!("expected true or false, found {}", other.type_str()),
            )),
        }
    }

    fn optional_boolean(&mut self, key: &str) -> Result<bool, PlaybookError> {
        if self.values.contains_key(key) {
            self.boolean(key)
        } else {
            Ok(false)
        }
    }

    fn refuse_leftovers(&self, step: StepName) -> Result<(), PlaybookError> {
        match self.values.iter().next() {
            None => Ok(()),
            Some((key, (line, _))) => Err(PlaybookError::Invalid {
                origin: self.origin.to_owned(),
                line: *line,
                message: format!(
                    "unknown parameter {key:?} for step {} (it takes: {})",
                    step.as_str(),
                    step.parameters().join(", ")
                ),
            }),
        }
    }
}

/// The 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|byte| **byte == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> String {
        parse_playbook("broken", "playbooks/broken.toml", text, None)
            .expect_err("the playbook was accepted")
            .to_string()
    }

    #[test]
    fn a_valid_playbook_parses_with_its_lines() {
        let playbook = parse_playbook(
            "tiny",
            "tiny.toml",
            "description = \"x\"\n\n[[steps]]\nstep = \"create_role\"\nrole = \"{role}\"\nlogin = false\n\n[[steps]]\nstep = \"drop_role\"\nrole = \"{role}\"\n",
            None,
        )
        .expect("valid");
        assert_eq!(playbook.steps.len(), 2);
        assert_eq!(playbook.steps[0].line, 3);
        assert_eq!(playbook.steps[1].line, 8);
        assert_eq!(playbook.steps[1].number, 2);
    }

    #[test]
    fn a_malformed_playbook_is_refused_naming_its_file_and_line() {
        let unknown_step = error_of(
            "description = \"x\"\n\n[[steps]]\nstep = \"create_role\"\nrole = \"r\"\nlogin = true\n\n[[steps]]\nstep = \"swap_database\"\n",
        );
        assert!(
            unknown_step.starts_with("playbooks/broken.toml:8: unknown step \"swap_database\""),
            "{unknown_step}"
        );
        let unknown_parameter = error_of(
            "description = \"x\"\n[[steps]]\nstep = \"drop_database\"\ndatabase = \"{scratch}\"\ncascade = true\n",
        );
        assert!(
            unknown_parameter.starts_with("playbooks/broken.toml:5: unknown parameter \"cascade\""),
            "{unknown_parameter}"
        );
        let missing = error_of("description = \"x\"\n[[steps]]\nstep = \"drop_database\"\n");
        assert_eq!(
            missing,
            "playbooks/broken.toml:2: missing parameter \"database\""
        );
        let unknown_variable = error_of(
            "description = \"x\"\n[[steps]]\nstep = \"drop_database\"\ndatabase = \"{databse}\"\n",
        );
        assert!(
            unknown_variable.starts_with(
                "playbooks/broken.toml:4: parameter \"database\": unknown variable {databse}"
            ),
            "{unknown_variable}"
        );
        let wrong_type = error_of(
            "description = \"x\"\n[[steps]]\nstep = \"create_role\"\nrole = \"r\"\nlogin = \"yes\"\n",
        );
        assert!(
            wrong_type.starts_with(
                "playbooks/broken.toml:5: parameter \"login\": expected true or false"
            ),
            "{wrong_type}"
        );
        let not_toml = error_of("description = \"x\"\n[[steps]\n");
        assert!(
            not_toml.starts_with("playbooks/broken.toml:2: "),
            "{not_toml}"
        );
        let no_steps = error_of("description = \"x\"\nsteps = []\n");
        assert!(no_steps.contains("at least one"), "{no_steps}");
        let outside = parse_playbook(
            "x",
            "x.toml",
            "description = \"x\"\n[[steps]]\nstep = \"run_sql\"\ndatabase = \"{copy}\"\nfile = \"../../etc/passwd\"\n",
            Some(Path::new("/tmp")),
        )
        .expect_err("a path outside the directory was accepted")
        .to_string();
        assert!(
            outside.contains("inside the playbooks directory"),
            "{outside}"
        );
    }
}
