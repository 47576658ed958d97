//! The `lifeboat` binary: one command line, many roles. This file is the clap definition
//! and the wiring; each command's work is in `commands/` and the crates it calls.

mod commands;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Encrypted PostgreSQL backups to several S3-compatible regions, restored and verified.
#[derive(Debug, Parser)]
#[command(name = "lifeboat", version, about)]
struct Cli {
    /// Configuration file (TOML); `LIFEBOAT_*` variables override it.
    #[arg(long, global = true, env = "LIFEBOAT_CONFIG")]
    config: Option<PathBuf>,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "LIFEBOAT_LOG_FORMAT")]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum RegionsCommand {
    /// Versioning, object lock and its default retention, the configured lock mode, and
    /// whether the writer key can delete (a probe object under `lifeboat-check/`, removed
    /// with the manager key).
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// The recipients new backups are encrypted to, and the catalog's backups by the set of
    /// recipients they were written to: how many, whether a current recipient opens them,
    /// whether this host's identity file does (exit 2 when it does not open some). To
    /// rotate, add the new recipient to `recipients`, later remove the old one; keep the
    /// old identity until no backup needs it alone.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new age identity (private key, mode 0600) and print its recipient.
    Keygen {
        /// Where to write the identity; must not exist.
        #[arg(long)]
        out: PathBuf,
    },
    /// Check the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Back up one tenant to every configured region.
    Backup {
        #[arg(long)]
        tenant: String,
        /// Print the result as JSON, without progress.
        #[arg(long)]
        json: bool,
    },
    /// Restore a backup into a new database in this process, then verify its row counts
    /// (`restore --tenant T --into NEW`); or, through the job queue, onto the live database
    /// (`restore live`), back (`restore rollback`), into a copy with its own role
    /// (`restore copy`), and follow them (`restore status`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Restore {
        #[command(subcommand)]
        command: Option<RestoreCommand>,
        #[arg(long, required = true)]
        tenant: Option<String>,
        #[command(flatten)]
        which: Option<WhichBackup>,
        /// The database to create; it must not exist.
        #[arg(long, required = true)]
        into: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Drill a backup: restore it into a new scratch database, verify its row counts
    /// against the manifest, drop the database, and record the drill in the catalog (if
    /// configured; a verified drill marks the backup verified). Exits 1 if it fails, is
    /// cancelled, cannot be recorded or cannot drop its scratch database.
    Drill {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        which: WhichBackup,
        #[arg(long)]
        json: bool,
    },
    /// Drills recorded in the catalog.
    Drills {
        #[command(subcommand)]
        command: DrillsCommand,
    },
    /// Backups: list them from a region's manifests (no catalog needed), or hold them.
    Backups {
        #[command(subcommand)]
        command: BackupsCommand,
    },
    /// Run the controller (catalog migrations, scheduler, job queue, the agents' API,
    /// /metrics, /healthz and an embedded agent), or `controller migrate`.
    #[command(args_conflicts_with_subcommands = true)]
    Controller {
        #[command(subcommand)]
        command: Option<ControllerCommand>,
        #[command(flatten)]
        flags: commands::controller::ServeFlags,
    },
    /// Run jobs for a controller (`lifeboat agent --controller URL`), or manage agent tokens.
    #[command(args_conflicts_with_subcommands = true)]
    Agent {
        #[command(subcommand)]
        command: Option<AgentCommand>,
        #[command(flatten)]
        flags: commands::controller::AgentFlags,
    },
    /// Back up every tenant in the catalog through the job queue, wait, summarise; exits
    /// non-zero if any tenant lacks a good backup from this run. Meant for cron.
    Nightly(commands::nightly::NightlyFlags),
    /// Playbooks: the steps that provision, restore, copy, drill and deprovision tenants.
    Playbook {
        #[command(subcommand)]
        command: PlaybookCommand,
    },
    /// Tenants in the catalog.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Users of the panel and the API: staff (admin, helpdesk) and customers (owner,
    /// viewer of one tenant).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// The catalog's backups, rebuilt from a region's manifests.
    Catalog {
        #[command(subcommand)]
        command: commands::rebuild::CatalogCommand,
    },
    /// Retention: trash the backups each tenant's policy no longer keeps.
    Retention {
        #[command(subcommand)]
        command: commands::retention::RetentionCommand,
    },
    /// The audit log: verify its hash chain, export it, make its key.
    Audit {
        #[command(subcommand)]
        command: commands::audit::AuditCommand,
    },
    /// Regions: `regions check` reports each bucket's versioning and object lock and
    /// probes that the writer key (the agents') is refused a delete. Exits 1 if a region
    /// is unfit as configured (lock configured but missing, or `require_lock` with a
    /// writer key that can delete).
    Regions {
        #[command(subcommand)]
        command: RegionsCommand,
    },
    /// age keys: which backups need which identity (`keys status`).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Trashed backups: list, restore, purge.
    Trash {
        #[command(subcommand)]
        command: commands::retention::TrashCommand,
    },
    /// Run everything on this machine: a PostgreSQL cluster, three regions, three
    /// tenants; back up, restore, verify and print a summary.
    Demo {
        /// Working directory; emptied at start.
        #[arg(long, default_value = "lifeboat-demo")]
        dir: PathBuf,
        /// Keep the working directory (data, keys, config) afterwards.
        #[arg(long)]
        keep: bool,
        /// Afterwards, keep the control panel running on ADDRESS over HTTPS (self-signed)
        /// with demo logins, until Ctrl-C.
        #[arg(long, value_name = "ADDRESS", num_args = 0..=1, default_missing_value = "127.0.0.1:8443")]
        serve: Option<std::net::SocketAddr>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Report every problem in the configuration, with its key.
    Check,
}

#[derive(Debug, Subcommand)]
enum ControllerCommand {
    /// Apply the catalog's migrations (safe to repeat).
    Migrate,
}

#[derive(Debug, Subcommand)]
enum AgentCommand {
    /// Agent tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token for an agent; it is printed once and stored hashed.
    Create {
        name: String,
        #[command(flatten)]
        scope: commands::controller::TokenScopeFlags,
    },
    /// Revoke an agent's token; its next request is refused.
    Revoke { name: String },
}

/// A new tenant's database name, schedule and retention (`tenant add` and `tenant provision`).
#[derive(Debug, clap::Args)]
struct NewTenantFlags {
    /// Default: the tenant's name.
    #[arg(long)]
    database: Option<String>,
    /// Cron expression (UTC); default: daily, spread over the backup window by the name.
    #[arg(long)]
    schedule: Option<String>,
    #[arg(long, default_value_t = 7)]
    keep_daily: u32,
    #[arg(long, default_value_t = 4)]
    keep_weekly: u32,
    #[arg(long, default_value_t = 12)]
    keep_monthly: u32,
    #[arg(long, default_value_t = 0)]
    keep_yearly: u32,
}

impl NewTenantFlags {
    fn retention(&self) -> lifeboat_controller::tenants::Retention {
        lifeboat_controller::tenants::Retention {
            keep_daily: self.keep_daily,
            keep_weekly: self.keep_weekly,
            keep_monthly: self.keep_monthly,
            keep_yearly: self.keep_yearly,
        }
    }
}

#[derive(Debug, Subcommand)]
enum PlaybookCommand {
    /// Every playbook: built in, or replaced by a file in `playbook_dir`.
    List,
    /// A playbook's steps, with what each does and undoes.
    Show { name: String },
    /// Check a playbook file; errors name the file and line.
    Check { file: PathBuf },
    /// Run a playbook for one tenant on its cluster (drill-tenant or your own), or print
    /// its steps with the tenant's names filled in (`--dry-run`).
    Run {
        name: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant's role and database (the `provision-tenant` playbook) and add it to
    /// the catalog. The role's password is shown once (or written to a new 0600 file);
    /// lifeboat keeps no copy.
    Provision {
        /// A slug: lowercase letters, digits and '-'; also the role's name.
        name: String,
        /// A configured cluster.
        #[arg(long)]
        cluster: String,
        /// Write the password to this new file (mode 0600) instead of printing it.
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[command(flatten)]
        tenant: NewTenantFlags,
    },
    /// Take a final backup (kind pre-destroy), drop the tenant's database and role (the
    /// `deprovision-tenant` playbook), and remove it from the catalog. Refused under
    /// legal hold.
    Deprovision {
        name: String,
        /// Move its backups to the trash (else they stay, outside retention).
        #[arg(long)]
        trash_backups: bool,
        /// Do not ask to type the tenant's name.
        #[arg(long)]
        yes: bool,
    },
    /// Add a tenant.
    Add {
        /// A slug: lowercase letters, digits and '-'.
        name: String,
        /// A configured cluster.
        #[arg(long)]
        cluster: String,
        #[command(flatten)]
        tenant: NewTenantFlags,
    },
    /// List tenants.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant as JSON.
    Show { name: String },
    /// Remove a tenant from the catalog. Its backups stay, outside retention, unless
    /// --trash-backups moves them to the trash (purged after [retention] trash_days).
    /// A tenant under legal hold is not removed.
    Remove {
        name: String,
        /// Also move every backup of the tenant that is not under legal hold to the trash.
        #[arg(long)]
        trash_backups: bool,
    },
    /// Put a tenant under legal hold: none of its backups is trashed or purged.
    Hold { name: String },
    /// Lift a tenant's legal hold.
    Unhold { name: String },
    /// Freeze a tenant: its users' sessions and API tokens are refused at once, and their
    /// logins, until unfrozen. Audited with the reason.
    Freeze {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Lift a tenant's freeze.
    Unfreeze {
        name: String,
        #[arg(long)]
        reason: String,
    },
    /// Crypto-shred a removed tenant: delete its wrapped age identities from the catalog
    /// and every version of tenants/NAME/identity.age from every region. Its backups that
    /// remain can then be opened by no key lifeboat holds. Refused for a tenant still in
    /// the catalog and under legal hold; audited. Run again to finish a region that did
    /// not answer (exit 2 until every region is done).
    Shred {
        name: String,
        /// The tenant's name again, to confirm.
        #[arg(long)]
        confirm: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Give a tenant a new age key: new backups are encrypted to it; its older keys are
    /// kept (retired) and still open older backups. Needs identity_file (the old keys are
    /// rewrapped with the new one into tenants/NAME/identity.age). Audited.
    RotateKey {
        name: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user. Without --password-file a strong password is generated and shown once;
    /// staff also get a TOTP secret, shown once, to confirm with `user confirm-totp` or at
    /// their first login.
    Add {
        /// Letters, digits and . _ - @ +; unique whatever its case.
        login: String,
        /// admin or helpdesk (staff), owner or viewer (of --tenant).
        #[arg(long)]
        role: String,
        /// The tenant of an owner or viewer.
        #[arg(long)]
        tenant: Option<String>,
        /// Read the password from this file (`-`: standard input).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Confirm a pending TOTP enrolment with a code from the authenticator app; prints the
    /// recovery codes once.
    ConfirmTotp { login: String, code: String },
    /// List users.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Disable a user: refused at login, sessions ended.
    Disable { login: String },
    /// Enable a disabled user.
    Enable { login: String },
    /// Replace a user's password (generated and shown once without --password-file); their
    /// sessions end.
    ResetPassword {
        login: String,
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Remove a user's second factor and recovery codes; staff get a new TOTP secret to
    /// enrol, shown once.
    ResetTotp { login: String },
    /// Lift a user's login throttle (delays and lock after failed logins).
    Unlock { login: String },
}

#[derive(Debug, Subcommand)]
enum BackupsCommand {
    /// Put a backup under legal hold (catalog): never trashed or purged.
    Hold { backup: String },
    /// Lift a backup's legal hold.
    Unhold { backup: String },
    /// List backups.
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// The region to read; default: the first that answers, in configured order.
        #[arg(long)]
        region: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// `--backup ID` or `--latest`, exactly one.
#[derive(Debug, clap::Args)]
#[group(required = true, multiple = false)]
struct WhichBackup {
    /// The backup, by id.
    #[arg(long)]
    backup: Option<String>,
    /// The newest backup in any region.
    #[arg(long)]
    latest: bool,
}

/// Confirmation and following, for the restores that go through the job queue.
#[derive(Debug, clap::Args)]
struct FollowFlags {
    /// Do not ask to type the tenant's name.
    #[arg(long)]
    yes: bool,
    /// Print the job id and return instead of following the job to its end.
    #[arg(long)]
    no_wait: bool,
    #[arg(long)]
    json: bool,
}

impl FollowFlags {
    fn follow(&self) -> commands::restores::Follow {
        commands::restores::Follow {
            yes: self.yes,
            no_wait: self.no_wait,
            json: self.json,
        }
    }
}

#[derive(Debug, Subcommand)]
enum RestoreCommand {
    /// Restore a backup onto the tenant's live database: a safety backup first, the backup
    /// restored beside it and verified, then swapped in; the live database is kept for
    /// `[restore] keep_previous_days` (7). Says how long the tenant will be offline and
    /// the whole restore should take, and asks to type the tenant's name.
    Live {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        which: WhichBackup,
        /// Why (written to the audit log).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        follow: FollowFlags,
    },
    /// Swap the database the tenant's last restore kept back in (the current one is kept
    /// in turn).
    Rollback {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        follow: FollowFlags,
    },
    /// Restore a backup into a new database with its own role (staging); prints the role's
    /// password once.
    Copy {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        which: WhichBackup,
        /// The database to create.
        #[arg(long)]
        into: String,
        /// Drop the copy (and its role) after this many days; default: keep it.
        #[arg(long)]
        expires_days: Option<u32>,
        #[command(flatten)]
        follow: FollowFlags,
    },
    /// The newest 20 restores, their steps and state.
    Status {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DrillsCommand {
    /// The newest 100 drills, newest first.
    List {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging(matches!(cli.log_format, LogFormat::Json));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let config_path = cli.config.as_deref();
    let result = runtime.block_on(async {
        match cli.command {
            Command::Keygen { out } => commands::keygen::run(&out),
            Command::Config {
                command: ConfigCommand::Check,
            } => commands::config_check::run(config_path),
            Command::Backup { tenant, json } => {
                commands::backup::run(config_path, &tenant, json).await
            }
            Command::Restore {
                command: None,
                tenant,
                which,
                into,
                json,
            } => {
                // clap requires both flags without a subcommand.
                let (Some(tenant), Some(into)) = (tenant, into) else {
                    anyhow::bail!("--tenant and --into are required");
                };
                let backup = which.and_then(|which| which.backup);
                commands::restore::run(config_path, &tenant, backup.as_deref(), &into, json).await
            }
            Command::Restore {
                command: Some(command),
                ..
            } => match command {
                RestoreCommand::Live {
                    tenant,
                    which,
                    reason,
                    follow,
                } => {
                    commands::restores::live(
                        config_path,
                        &tenant,
                        which.backup.as_deref(),
                        &reason,
                        follow.follow(),
                    )
                    .await
                }
                RestoreCommand::Rollback {
                    tenant,
                    reason,
                    follow,
                } => {
                    commands::restores::rollback(
                        config_path,
                        &tenant,
                        reason.as_deref(),
                        follow.follow(),
                    )
                    .await
                }
                RestoreCommand::Copy {
                    tenant,
                    which,
                    into,
                    expires_days,
                    follow,
                } => {
                    commands::restores::copy(
                        config_path,
                        commands::restores::CopyArguments {
                            tenant: &tenant,
                            backup: which.backup.as_deref(),
                            into: &into,
                            expires_days,
                        },
                        follow.follow(),
                    )
                    .await
                }
                RestoreCommand::Status { tenant, json } => {
                    commands::restores::status(config_path, tenant.as_deref(), json).await
                }
            },
            Command::Drill {
                tenant,
                which,
                json,
            } => commands::drill::run(config_path, &tenant, which.backup.as_deref(), json).await,
            Command::Drills {
                command: DrillsCommand::List { tenant, json },
            } => commands::drill::list(config_path, tenant.as_deref(), json).await,
            Command::Backups {
                command:
                    BackupsCommand::List {
                        tenant,
                        region,
                        json,
                    },
            } => {
                commands::backups_list::run(config_path, tenant.as_deref(), region.as_deref(), json)
                    .await
            }
            Command::Controller {
                command: Some(ControllerCommand::Migrate),
                ..
            } => commands::catalog::migrate(config_path).await,
            Command::Controller {
                command: None,
                flags,
            } => commands::controller::serve(config_path, flags).await,
            Command::Agent {
                command: None,
                flags,
            } => commands::controller::agent(config_path, flags).await,
            Command::Agent {
                command:
                    Some(AgentCommand::Token {
                        command: TokenCommand::Create { name, scope },
                    }),
                ..
            } => commands::controller::token_create(config_path, &name, &scope).await,
            Command::Agent {
                command:
                    Some(AgentCommand::Token {
                        command: TokenCommand::Revoke { name },
                    }),
                ..
            } => commands::controller::token_revoke(config_path, &name).await,
            Command::Nightly(flags) => commands::nightly::run(config_path, flags).await,
            Command::Playbook { command } => match command {
                PlaybookCommand::List => commands::playbook::list(config_path).await,
                PlaybookCommand::Show { name } => {
                    commands::playbook::show(config_path, &name).await
                }
                PlaybookCommand::Check { file } => commands::playbook::check(&file),
                PlaybookCommand::Run {
                    name,
                    tenant,
                    dry_run,
                } => commands::playbook::run(config_path, &name, &tenant, dry_run).await,
            },
            Command::Tenant { command } => match command {
                TenantCommand::Provision {
                    name,
                    cluster,
                    password_file,
                    tenant,
                } => {
                    commands::provision::provision(
                        config_path,
                        commands::provision::ProvisionArguments {
                            name: &name,
                            cluster: &cluster,
                            database: tenant.database.as_deref(),
                            schedule: tenant.schedule.as_deref(),
                            retention: tenant.retention(),
                            password_file: password_file.as_deref(),
                        },
                    )
                    .await
                }
                TenantCommand::Deprovision {
                    name,
                    trash_backups,
                    yes,
                } => commands::provision::deprovision(config_path, &name, trash_backups, yes).await,
                TenantCommand::Add {
                    name,
                    cluster,
                    tenant,
                } => {
                    commands::catalog::add(
                        config_path,
                        commands::catalog::AddArguments {
                            name: &name,
                            cluster: &cluster,
                            database: tenant.database.as_deref(),
                            schedule: tenant.schedule.as_deref(),
                            retention: tenant.retention(),
                        },
                    )
                    .await
                }
                TenantCommand::List { json } => commands::catalog::list(config_path, json).await,
                TenantCommand::Show { name } => commands::catalog::show(config_path, &name).await,
                TenantCommand::Hold { name } => {
                    commands::retention::hold_tenant(config_path, &name, true).await
                }
                TenantCommand::Unhold { name } => {
                    commands::retention::hold_tenant(config_path, &name, false).await
                }
                TenantCommand::Remove {
                    name,
                    trash_backups,
                } => commands::catalog::remove(config_path, &name, trash_backups).await,
                TenantCommand::Freeze { name, reason } => {
                    commands::user::freeze(config_path, &name, &reason, true).await
                }
                TenantCommand::Unfreeze { name, reason } => {
                    commands::user::freeze(config_path, &name, &reason, false).await
                }
                TenantCommand::Shred {
                    name,
                    confirm,
                    json,
                } => {
                    commands::tenant_keys::shred(config_path, &name, confirm.as_deref(), json).await
                }
                TenantCommand::RotateKey { name, json } => {
                    commands::tenant_keys::rotate(config_path, &name, json).await
                }
            },
            Command::User { command } => match command {
                UserCommand::Add {
                    login,
                    role,
                    tenant,
                    password_file,
                } => {
                    commands::user::add(
                        config_path,
                        commands::user::AddArguments {
                            login: &login,
                            role: &role,
                            tenant: tenant.as_deref(),
                            password_file: password_file.as_deref(),
                        },
                    )
                    .await
                }
                UserCommand::ConfirmTotp { login, code } => {
                    commands::user::confirm_totp(config_path, &login, &code).await
                }
                UserCommand::List { tenant, json } => {
                    commands::user::list(config_path, tenant.as_deref(), json).await
                }
                UserCommand::Disable { login } => {
                    commands::user::set_disabled(config_path, &login, true).await
                }
                UserCommand::Enable { login } => {
                    commands::user::set_disabled(config_path, &login, false).await
                }
                UserCommand::ResetPassword {
                    login,
                    password_file,
                } => {
                    commands::user::reset_password(config_path, &login, password_file.as_deref())
                        .await
                }
                UserCommand::ResetTotp { login } => {
                    commands::user::reset_totp(config_path, &login).await
                }
                UserCommand::Unlock { login } => commands::user::unlock(config_path, &login).await,
            },
            Command::Backups {
                command: BackupsCommand::Hold { backup },
            } => commands::retention::hold_backup(config_path, &backup, true).await,
            Command::Backups {
                command: BackupsCommand::Unhold { backup },
            } => commands::retention::hold_backup(config_path, &backup, false).await,
            Command::Catalog { command } => commands::rebuild::run(config_path, command).await,
            Command::Retention { command } => commands::retention::run(config_path, command).await,
            Command::Regions {
                command: RegionsCommand::Check { json },
            } => commands::regions::check(config_path, json).await,
            Command::Keys {
                command: KeysCommand::Status { json },
            } => commands::keys::status(config_path, json).await,
            Command::Trash { command } => commands::retention::trash(config_path, command).await,
            Command::Audit { command } => commands::audit::run(config_path, command).await,
            Command::Demo { dir, keep, serve } => commands::demo::run(&dir, keep, serve).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
