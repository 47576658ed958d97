//! `{variable}` templates in playbook parameters, and the values a run binds to them.
//!
//! The variables are a fixed set ([`Variable`]); a template naming another is refused when
//! the playbook is read. The values are names of databases and roles, used as identifiers
//! (always quoted), never pasted into SQL text.

use std::collections::BTreeMap;

/// The variables a playbook may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Variable {
    /// The tenant's name (a slug).
    Tenant,
    /// The tenant's live database.
    Database,
    /// The role that owns the tenant's database and everything in it.
    Role,
    /// The database a live restore restores into before the swap.
    Shadow,
    /// The name the live database is kept under after a swap.
    Previous,
    /// A drill's scratch database.
    Scratch,
    /// A restored copy's database, and its own role.
    Copy,
    CopyRole,
    /// The run's tag (e.g. `job-42`), unique per job and shared by its attempts.
    Run,
}

impl Variable {
    pub const ALL: [Variable; 9] = [
        Variable::Tenant,
        Variable::Database,
        Variable::Role,
        Variable::Shadow,
        Variable::Previous,
        Variable::Scratch,
        Variable::Copy,
        Variable::CopyRole,
        Variable::Run,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Variable::Tenant => "tenant",
            Variable::Database => "database",
            Variable::Role => "role",
            Variable::Shadow => "shadow",
            Variable::Previous => "previous",
            Variable::Scratch => "scratch",
            Variable::Copy => "copy",
            Variable::CopyRole => "copy_role",
            Variable::Run => "run",
        }
    }

    fn parse(name: &str) -> Option<Variable> {
        Variable::ALL
            .into_iter()
            .find(|variable| variable.as_str() == name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Variable(Variable),
}

/// A parameter value with `{variable}` placeholders (`{{` and `}}` for literal braces).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// The values of a run's variables.
pub type Bindings = BTreeMap<Variable, String>;

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut characters = text.chars().peekable();
        while let Some(character) = characters.next() {
            match character {
                '{' if characters.peek() == Some(&'{') => {
                    characters.next();
                    literal.push('{');
                }
                '}' if characters.peek() == Some(&'}') => {
                    characters.next();
                    literal.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match characters.next() {
                            Some('}') => break,
                            Some(character) => name.push(character),
                            None => return Err(format!("unclosed {{ in {text:?}")),
                        }
                    }
                    let variable = Variable::parse(&name).ok_or_else(|| {
                        format!(
                            "unknown variable {{{name}}} (known: {})",
                            Variable::ALL.map(Variable::as_str).join(", ")
                        )
                    })?;
                    if !literal.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Variable(variable));
                }
                '}' => return Err(format!("unmatched }} in {text:?}")),
                character => literal.push(character),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Text(literal));
        }
        if parts.is_empty() {
            return Err("must not be empty".to_owned());
        }
        Ok(Template { parts })
    }

    /// The variables it uses.
    pub fn variables(&self) -> impl Iterator<Item = Variable> + '_ {
        self.parts.iter().filter_map(|part| match part {
            Part::Variable(variable) => Some(*variable),
            Part::Text(_) => None,
        })
    }

    /// The value with `bindings` filled in, or the first variable the run does not bind.
    pub fn render(&self, bindings: &Bindings) -> Result<String, Variable> {
        let mut rendered = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => rendered.push_str(text),
                Part::Variable(variable) => {
                    rendered.push_str(bindings.get(variable).ok_or(*variable)?)
                }
            }
        }
        Ok(rendered)
    }
}

impl std::fmt::Display for Template {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => {
                    formatter.write_str(&text.replace('{', "{{").replace('}', "}}"))?
                }
                Part::Variable(variable) => write!(formatter, "{{{}}}", variable.as_str())?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_their_variables_and_keep_any_characters() {
        let template = Template::parse("{copy}_owner").expect("template");
        let bindings = Bindings::from([(Variable::Copy, "staging \"ü\"".to_owned())]);
        assert_eq!(
            template.render(&bindings).expect("render"),
            "staging \"ü\"_owner"
        );
        assert_eq!(template.to_string(), "{copy}_owner");
        assert_eq!(
            Template::parse("{role}")
                .expect("t")
                .render(&Bindings::new()),
            Err(Variable::Role)
        );
        assert!(Template::parse("{nope}").is_err());
        assert!(Template::parse("{role").is_err());
        assert!(Template::parse("").is_err());
        assert_eq!(
            Template::parse("{{x}}")
                .expect("t")
                .render(&Bindings::new())
                .expect("r"),
            "{x}"
        );
    }
}
