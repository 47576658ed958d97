//! PostgreSQL: connections, the exported snapshot, exact row counts, and the pg_dump and
//! pg_restore processes.
//!
//! Row counts are taken with `count(*)` inside the very transaction that exports the
//! snapshot pg_dump uses (`pg_dump --snapshot`), so they describe exactly the rows in the
//! dump. The counting runs while pg_dump streams, on the server, in the one connection
//! that must stay open anyway until pg_dump has imported the snapshot.
//!
//! Passwords reach the child processes through a 0600 `PGPASSFILE`, never their
//! arguments (which `ps` shows to everyone) or environment. TLS follows the cluster's
//! `sslmode` and `ssl_root_cert` everywhere: lifeboat's own connections through
//! [`tls::tls_connector`], the tools through `PGSSLMODE` and `PGSSLROOTCERT`. Database names go through a quoted
//! `dbname='…'` connection string so any name works, quotes and spaces included.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::ExposeSecret;

pub mod tls;
pub use tls::{TlsFailure, tls_connector};

use crate::config::ClusterConfig;
use crate::manifest::TableRowCount;
use crate::policy;

/// A failure talking to PostgreSQL or running its tools.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("database {database:?} does not exist on cluster {cluster}")]
    DatabaseMissing { cluster: String, database: String },
    #[error("cannot connect to cluster {cluster} ({host}:{port}) database {database:?}: {message}")]
    Unreachable {
        cluster: String,
        host: String,
        port: u16,
        database: String,
        message: String,
    },
    #[error(transparent)]
    Tls(#[from] TlsFailure),
    #[error("query on cluster {cluster} failed: {action}: {source}")]
    Query {
        cluster: String,
        action: String,
        source: tokio_postgres::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("{program} failed ({status}): {stderr}")]
    ToolFailed {
        program: String,
        status: String,
        stderr: String,
    },
}

impl PostgresError {
    /// Whether trying again cannot help: the database does not exist (SQLSTATE 3D000, or
    /// a tool saying so), pg_dump refuses the server's version, or TLS was refused. A server that does not
    /// answer, a failed query or a tool that failed for another reason may do better later.
    pub fn is_permanent(&self) -> bool {
        match self {
            PostgresError::DatabaseMissing { .. } => true,
            PostgresError::Query { source, .. } => {
                source.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME)
            }
            PostgresError::ToolFailed { stderr, .. } => tool_refused_for_good(stderr),
            // A refused certificate, or a server without TLS where it is required, is a
            // configuration to mend, not a moment to wait out: the next run tries again.
            // (A handshake cut by the network is `Unreachable`: see `tls::tls_failure`.)
            PostgresError::Tls(_) => true,
            PostgresError::Unreachable { .. } | PostgresError::Spawn { .. } => false,
        }
    }
}

/// Whether a libpq tool's stderr shows a failure no retry mends. The tools run with
/// `LC_MESSAGES=C` (see [`spawn_tool`]), so their own messages are in English; libpq's
/// `FATAL` from the server is in the server's `lc_messages`, hence the SQLSTATE check in
/// [`connect`] comes first for the backup's own connection.
fn tool_refused_for_good(stderr: &str) -> bool {
    // pg_dump older than the server: "aborting because of server version mismatch".
    let version_mismatch = stderr.contains("server version mismatch");
    // The database went away between lifeboat's connection and the tool's.
    let database_missing = stderr.contains("database \"") && stderr.contains("\" does not exist");
    version_mismatch || database_missing
}

/// Where `pg_dump` and `pg_restore` are: the configured directory, else `pg_config
/// --bindir`, else the `PATH`.
#[derive(Debug, Clone)]
pub struct PgTools {
    bin_dir: Option<PathBuf>,
}

impl PgTools {
    /// Find the tools. `pg_config` runs as a child process awaited here, never blocking
    /// the runtime's thread.
    pub async fn locate(configured_bin_dir: Option<&Path>) -> PgTools {
        if let Some(directory) = configured_bin_dir {
            return PgTools {
                bin_dir: Some(directory.to_owned()),
            };
        }
        // Asked once per process: a nightly backs up hundreds of tenants.
        static FROM_PG_CONFIG: tokio::sync::OnceCell<Option<PathBuf>> =
            tokio::sync::OnceCell::const_new();
        let from_pg_config = FROM_PG_CONFIG
            .get_or_init(|| async {
                let output = tokio::process::Command::new("pg_config")
                    .arg("--bindir")
                    .stdin(Stdio::null())
                    .stderr(Stdio::null())
                    .kill_on_drop(true)
                    .output()
                    .await
                    .ok()
                    .filter(|output| output.status.success())?;
                let directory = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
                directory.join("pg_dump").is_file().then_some(directory)
            })
            .await;
        PgTools {
            bin_dir: from_pg_config.clone(),
        }
    }

    pub fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(directory) => directory.join(name),
            None => PathBuf::from(name),
        }
    }

    /// `pg_dump --version`'s line, e.g. `pg_dump (PostgreSQL) 15.18`, from a child
    /// process awaited without blocking the runtime's thread.
    pub async fn version(&self, name: &str) -> Result<String, PostgresError> {
        // Asked once per program and process: the binary does not change under us.
        static VERSIONS: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
        let program = self.program(name);
        if let Some(version) = VERSIONS
            .lock()
            .ok()
            .and_then(|versions| versions.get(&program).cloned())
        {
            return Ok(version);
        }
        let output = tokio::process::Command::new(&program)
            .arg("--version")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| PostgresError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if let Ok(mut versions) = VERSIONS.lock() {
            versions.insert(program, version.clone());
        }
        Ok(version)
    }
}

/// Quote an SQL identifier: `"` around, inner `"` doubled.
pub fn quote_identifier(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Quote a text as an SQL string literal, for the few statements that take no bound
/// parameters (`COMMENT ON`, `CREATE ROLE … PASSWORD`): PostgreSQL's own `quote_literal`
/// rule, `'` and `\` doubled and an `E` prefix when a backslash is present, so the result
/// reads the same whatever `standard_conforming_strings` says.
pub fn quote_literal(text: &str) -> String {
    let escaped = text.replace('\\', "\\\\").replace('\'', "''");
    if text.contains('\\') {
        format!("E'{escaped}'")
    } else {
        format!("'{escaped}'")
    }
}

/// A libpq connection string naming only the database, safe for any name.
pub fn database_conninfo(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// Variables a libpq tool inherits from lifeboat's own environment; nothing else reaches
/// it. `LIFEBOAT_*` may carry secrets (an S3 key, a password), and another process of the
/// same user can read a child's environment, so the tools start from an empty one.
/// `PGSSLMODE` and `PGSSLROOTCERT` are not inherited: they come from the cluster's
/// configuration, like lifeboat's own connections' TLS.
const INHERITED_VARIABLES: &[&str] = &[
    "PATH",
    "HOME",
    "LANG",
    "TZ",
    "TMPDIR",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCRL",
];

/// Environment for libpq tools (pg_dump, pg_restore, psql): where to connect, as whom, and
/// with which TLS (`PGSSLMODE`, `PGSSLROOTCERT`: the cluster's `sslmode` and
/// `ssl_root_cert`, with libpq's own meanings). The password is not in it: it goes through
/// a 0600 `PGPASSFILE` ([`password_file`]).
pub fn libpq_environment(cluster: &ClusterConfig) -> Vec<(&'static str, OsString)> {
    let mut environment = vec![
        ("PGHOST", OsString::from(&cluster.host)),
        ("PGPORT", OsString::from(cluster.port.to_string())),
        ("PGUSER", OsString::from(&cluster.user)),
        ("PGAPPNAME", OsString::from("lifeboat")),
        ("PGCONNECT_TIMEOUT", OsString::from("10")),
        ("PGSSLMODE", OsString::from(cluster.tls.mode.as_str())),
    ];
    if let Some(root_cert_file) = &cluster.tls.root_cert_file {
        environment.push(("PGSSLROOTCERT", root_cert_file.as_os_str().to_owned()));
    }
    environment
}

/// A libpq password file line's field: `\` and `:` escaped with a backslash.
fn password_file_field(value: &str) -> String {
    value.replace('\\', "\\\\").replace(':', "\\:")
}

/// A password file holding `cluster`'s password, readable by this user only (0600, as
/// libpq requires), removed when dropped; `None` without a password.
pub fn password_file(
    cluster: &ClusterConfig,
) -> Result<Option<tempfile::NamedTempFile>, io::Error> {
    let Some(password) = &cluster.password else {
        return Ok(None);
    };
    let mut file = tempfile::Builder::new()
        .prefix("lifeboat-pgpass-")
        .tempfile()?;
    // The tool connects to exactly this host, port and user; any database.
    writeln!(
        file,
        "{}:{}:*:{}:{}",
        password_file_field(&cluster.host),
        cluster.port,
        password_file_field(&cluster.user),
        password_file_field(password.expose_secret())
    )?;
    file.flush()?;
    Ok(Some(file))
}

/// The command that runs libpq tool `program`: an empty environment but for
/// [`INHERITED_VARIABLES`] taken from `parent`, the connection's variables, and
/// `PGPASSFILE` when there is a password.
fn tool_command(
    program: &Path,
    parent: impl Iterator<Item = (OsString, OsString)>,
    cluster: &ClusterConfig,
    password_file: Option<&Path>,
) -> Command {
    let mut command = Command::new(program);
    command.env_clear();
    for (name, value) in parent {
        if INHERITED_VARIABLES.iter().any(|kept| name == *kept) {
            command.env(name, value);
        }
    }
    command.envs(libpq_environment(cluster));
    if let Some(path) = password_file {
        command.env("PGPASSFILE", path);
    }
    command
}

/// Driver settings for `database` on `cluster`, for one connection or a pool; connect
/// with [`tls_connector`] of the same cluster.
pub fn client_config(
    cluster: &ClusterConfig,
    database: &str,
    application_name: &str,
) -> tokio_postgres::Config {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&cluster.host)
        .port(cluster.port)
        .user(&cluster.user)
        .dbname(database)
        .application_name(application_name)
        .connect_timeout(Duration::from_secs(10))
        // A server that vanished (host down, network cut) is noticed in seconds, not after
        // the kernel's 15-minute retransmission timeout.
        .tcp_user_timeout(policy::POSTGRES_TCP_USER_TIMEOUT)
        .keepalives(true)
        .keepalives_idle(policy::POSTGRES_TCP_USER_TIMEOUT)
        .ssl_mode(tls::driver_ssl_mode(cluster));
    if let Some(password) = &cluster.password {
        config.password(password.expose_secret());
    }
    config
}

/// Connect to `database` on `cluster`; the connection is driven by a spawned task.
pub async fn connect(
    cluster: &ClusterConfig,
    database: &str,
) -> Result<tokio_postgres::Client, PostgresError> {
    let config = client_config(cluster, database, "lifeboat");
    let (client, connection) = config
        .connect(tls_connector(cluster)?)
        .await
        .map_err(|error| {
            if let Some(failure) = tls::tls_failure(cluster, &error) {
                PostgresError::Tls(failure)
            } else if error.code() == Some(&tokio_postgres::error::SqlState::INVALID_CATALOG_NAME) {
                PostgresError::DatabaseMissing {
                    cluster: cluster.name.to_string(),
                    database: database.to_owned(),
                }
            } else {
                PostgresError::Unreachable {
                    cluster: cluster.name.to_string(),
                    host: cluster.host.clone(),
                    port: cluster.port,
                    database: database.to_owned(),
                    message: error
                        .as_db_error()
                        .map(|db_error| db_error.message().to_owned())
                        .unwrap_or_else(|| error.to_string()),
                }
            }
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "postgres connection closed");
        }
    });
    Ok(client)
}

fn query_error(
    cluster: &ClusterConfig,
    action: &str,
) -> impl FnOnce(tokio_postgres::Error) -> PostgresError {
    let cluster = cluster.name.to_string();
    let action = action.to_owned();
    move |source| PostgresError::Query {
        cluster,
        action,
        source,
    }
}

/// Open a repeatable-read, read-only transaction and export its snapshot for pg_dump.
/// The transaction stays open as long as `client` is used for nothing else.
pub async fn export_snapshot(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
) -> Result<String, PostgresError> {
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await
        .map_err(query_error(cluster, "begin snapshot transaction"))?;
    let row = client
        .query_one("SELECT pg_export_snapshot()", &[])
        .await
        .map_err(query_error(cluster, "export snapshot"))?;
    Ok(row.get(0))
}

pub async fn server_version(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
) -> Result<String, PostgresError> {
    let row = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(query_error(cluster, "read server version"))?;
    Ok(row.get(0))
}

const LIST_TABLES: &str = "\
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND c.relpersistence <> 't'
  AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\\_%'
ORDER BY 1, 2";

/// Exact rows of every user table, in the client's current transaction.
pub async fn count_rows(
    cluster: &ClusterConfig,
    client: &tokio_postgres::Client,
) -> Result<Vec<TableRowCount>, PostgresError> {
    let tables = client
        .query(LIST_TABLES, &[])
        .await
        .map_err(query_error(cluster, "list tables"))?;
    let mut counts = Vec::with_capacity(tables.len());
    for table in tables {
        let schema: String = table.get(0);
        let name: String = table.get(1);
        let statement = format!(
            "SELECT count(*) FROM {}.{}",
            quote_identifier(&schema),
            quote_identifier(&name)
        );
        let row = client
            .query_one(&statement, &[])
            .await
            .map_err(query_error(
                cluster,
                &format!("count rows of {schema}.{name}"),
            ))?;
        let rows: i64 = row.get(0);
        counts.push(TableRowCount {
            schema,
            table: name,
            rows: u64::try_from(rows).unwrap_or(0),
        });
    }
    Ok(counts)
}

/// The last bytes a child wrote to stderr, collected on a thread of their own.
#[derive(Debug, Clone, Default)]
pub struct StderrTail(Arc<Mutex<Vec<u8>>>);

impl StderrTail {
    /// Take `child`'s stderr and keep its tail.
    pub fn capture(child: &mut Child) -> StderrTail {
        StderrTail::capture_keeping(child, None)
    }

    /// [`StderrTail::capture`], keeping `password_file` until the child closes its stderr
    /// (it exited): the file lives exactly as long as the tool that may read it.
    fn capture_keeping(
        child: &mut Child,
        password_file: Option<tempfile::NamedTempFile>,
    ) -> StderrTail {
        let tail = StderrTail::default();
        if let Some(mut stderr) = child.stderr.take() {
            let buffer = tail.0.clone();
            std::thread::spawn(move || {
                let _password_file = password_file;
                let mut chunk = [0u8; 4096];
                while let Ok(read) = stderr.read(&mut chunk) {
                    if read == 0 {
                        break;
                    }
                    if let Ok(mut kept) = buffer.lock() {
                        kept.extend_from_slice(&chunk[..read]);
                        let excess = kept.len().saturating_sub(policy::STDERR_TAIL_BYTES);
                        kept.drain(..excess);
                    }
                }
            });
        }
        tail
    }

    pub fn text(&self) -> String {
        // Give the reader thread a moment to see the last bytes after the child exits.
        std::thread::sleep(Duration::from_millis(20));
        let kept = self.0.lock().map(|kept| kept.clone()).unwrap_or_default();
        String::from_utf8_lossy(&kept).trim().to_owned()
    }
}

/// Wait for a tool and turn a failure into an error carrying its stderr.
pub fn wait_for_tool(
    program: &str,
    child: &mut Child,
    stderr: &StderrTail,
) -> Result<(), PostgresError> {
    let status = child.wait().map_err(|source| PostgresError::Spawn {
        program: program.to_owned(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    Err(PostgresError::ToolFailed {
        program: program.to_owned(),
        status: status.to_string(),
        stderr: stderr.text(),
    })
}

/// Start a libpq tool connected to `database` on `cluster`, its stderr captured.
fn spawn_tool(
    tools: &PgTools,
    name: &str,
    arguments: &[String],
    cluster: &ClusterConfig,
    database: &str,
    stdin: Stdio,
    stdout: Stdio,
) -> Result<(Child, StderrTail), PostgresError> {
    let program = tools.program(name);
    let password_file = password_file(cluster).map_err(|source| PostgresError::Spawn {
        program: format!("{} (writing its password file)", program.display()),
        source,
    })?;
    let mut child = tool_command(
        &program,
        std::env::vars_os(),
        cluster,
        password_file.as_ref().map(tempfile::NamedTempFile::path),
    )
    .args(arguments)
    .arg("--no-password")
    .arg(format!("--dbname={}", database_conninfo(database)))
    // The tool's own messages in English, so `tool_refused_for_good` can read them.
    .env("LC_MESSAGES", "C")
    .stdin(stdin)
    .stdout(stdout)
    .stderr(Stdio::piped())
    .spawn()
    .map_err(|source| PostgresError::Spawn {
        program: program.display().to_string(),
        source,
    })?;
    let stderr = StderrTail::capture_keeping(&mut child, password_file);
    Ok((child, stderr))
}

/// Kills a running tool from any thread, never after it has been reaped: its pid is kept
/// only until the thread that owns the child calls [`ToolKiller::disarm`], right before it
/// waits for it (an unreaped child keeps its pid, so the signal cannot reach another
/// process). A cancelled job uses it to stop a pg_dump whose reader is blocked.
#[derive(Debug)]
pub struct ToolKiller {
    pid: Mutex<Option<nix::unistd::Pid>>,
}

impl ToolKiller {
    pub fn for_child(child: &Child) -> Arc<ToolKiller> {
        let pid = i32::try_from(child.id())
            .ok()
            .map(nix::unistd::Pid::from_raw);
        Arc::new(ToolKiller {
            pid: Mutex::new(pid),
        })
    }

    /// From now on [`ToolKiller::kill`] does nothing: call before waiting for the child.
    pub fn disarm(&self) {
        if let Ok(mut pid) = self.pid.lock() {
            *pid = None;
        }
    }

    /// SIGKILL the tool if it has not been disarmed; whether a signal was sent.
    pub fn kill(&self) -> bool {
        let Ok(pid) = self.pid.lock() else {
            return false;
        };
        pid.is_some_and(|pid| {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).is_ok()
        })
    }

    /// Kill the tool when `cancel` fires, until the returned guard is dropped.
    pub fn kill_on_cancel(
        self: &Arc<Self>,
        cancel: &tokio_util::sync::CancellationToken,
    ) -> tokio_util::sync::DropGuard {
        let stop = tokio_util::sync::CancellationToken::new();
        let (killer, cancel, stopped) = (self.clone(), cancel.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {
                    if killer.kill() {
                        tracing::info!("cancelled: the tool was killed");
                    }
                }
                () = stopped.cancelled() => {}
            }
        });
        stop.drop_guard()
    }
}

/// Start `pg_dump --format=custom --compress=0` of `database` in `snapshot`, stdout piped.
pub fn spawn_pg_dump(
    tools: &PgTools,
    cluster: &ClusterConfig,
    database: &str,
    snapshot: &str,
) -> Result<(Child, StderrTail), PostgresError> {
    let arguments = [
        "--format=custom".to_owned(),
        "--compress=0".to_owned(),
        format!("--snapshot={snapshot}"),
        "--lock-wait-timeout=120s".to_owned(),
    ];
    spawn_tool(
        tools,
        "pg_dump",
        &arguments,
        cluster,
        database,
        Stdio::null(),
        Stdio::piped(),
    )
}

/// Where pg_restore reads the custom-format dump.
#[derive(Debug, Clone, Copy)]
pub enum RestoreInput<'a> {
    /// From stdin, in one transaction: killed before end of input, it commits nothing.
    Stdin,
    /// From a local file with `jobs` parallel jobs (`--jobs` needs a seekable file). Not in
    /// one transaction (`--jobs` cannot be): a failure leaves what was restored so far, and
    /// the caller drops the database.
    File { path: &'a Path, jobs: u32 },
}

/// Start `pg_restore` into `database`, stopping at the first error.
///
/// With `owner_role`, the restore runs as that role (`--role`: `SET ROLE` after connecting,
/// so the cluster's user must be a superuser or a member of it) and ignores the dump's
/// owners (`--no-owner`): every object it makes, large objects included, belongs to the
/// role. The role then needs the rights the dump asks for: `CREATE` on the database (its
/// owner has it) and, for extensions, ones it may create (trusted ones, as owner).
pub fn spawn_pg_restore(
    tools: &PgTools,
    cluster: &ClusterConfig,
    database: &str,
    owner_role: Option<&str>,
    input: RestoreInput<'_>,
) -> Result<(Child, StderrTail), PostgresError> {
    let mut arguments = vec!["--exit-on-error".to_owned()];
    if let Some(role) = owner_role {
        arguments.push("--no-owner".to_owned());
        // One argument, so any role name reaches pg_restore as it is.
        arguments.push(format!("--role={role}"));
    }
    let stdin = match input {
        RestoreInput::Stdin => {
            arguments.push("--single-transaction".to_owned());
            Stdio::piped()
        }
        RestoreInput::File { path, jobs } => {
            arguments.push(format!("--jobs={}", jobs.max(1)));
            arguments.push(path.display().to_string());
            Stdio::null()
        }
    };
    spawn_tool(
        tools,
        "pg_restore",
        &arguments,
        cluster,
        database,
        stdin,
        Stdio::null(),
    )
}

/// Start `pg_restore --file=-`: a custom-format dump on stdin becomes plain SQL on stdout,
/// connecting to no database. Owners and grants are left out (`--no-owner
/// --no-privileges`), so the SQL loads with psql into any database, as any user, without
/// the tenant's roles. The child inherits only [`INHERITED_VARIABLES`].
pub fn spawn_pg_restore_to_sql(tools: &PgTools) -> Result<(Child, StderrTail), PostgresError> {
    let program = tools.program("pg_restore");
    let mut command = Command::new(&program);
    command.env_clear();
    for (name, value) in std::env::vars_os() {
        if INHERITED_VARIABLES.iter().any(|kept| name == *kept) {
            command.env(name, value);
        }
    }
    let mut child = command
        .args(["--file=-", "--no-owner", "--no-privileges"])
        .env("LC_MESSAGES", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| PostgresError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let stderr = StderrTail::capture(&mut child);
    Ok((child, stderr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool_failed(stderr: &str) -> PostgresError {
        PostgresError::ToolFailed {
            program: "pg_dump".to_owned(),
            status: "exit status: 1".to_owned(),
            stderr: stderr.to_owned(),
        }
    }

    #[test]
    fn a_missing_database_and_a_refused_server_version_are_permanent() {
        let missing = PostgresError::DatabaseMissing {
            cluster: "main".to_owned(),
            database: "ghost".to_owned(),
        };
        assert!(missing.is_permanent());
        assert!(
            tool_failed(
                "pg_dump: error: aborting because of server version mismatch\n\
                 pg_dump: detail: server version: 17.2; pg_dump version: 15.10"
            )
            .is_permanent()
        );
        assert!(
            tool_failed(
                "pg_dump: error: connection to server at \"127.0.0.1\", port 5432 failed: \
                 FATAL:  database \"ghost\" does not exist"
            )
            .is_permanent()
        );
        // A lock it could not take, a server that went away, a missing binary: try again.
        assert!(
            !tool_failed(
                "pg_dump: error: query failed: ERROR:  canceling statement due to lock timeout"
            )
            .is_permanent()
        );
        let unreachable = PostgresError::Unreachable {
            cluster: "main".to_owned(),
            host: "127.0.0.1".to_owned(),
            port: 5432,
            database: "acme".to_owned(),
            message: "connection refused".to_owned(),
        };
        assert!(!unreachable.is_permanent());
        let spawn = PostgresError::Spawn {
            program: "pg_dump".to_owned(),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        assert!(!spawn.is_permanent());
    }

    fn cluster_with_password(password: &str) -> ClusterConfig {
        ClusterConfig {
            name: crate::ids::ClusterName::parse("main").expect("cluster"),
            host: "db.internal".to_owned(),
            port: 5433,
            user: "lifeboat:admin".to_owned(),
            password: Some(secrecy::SecretString::from(password.to_owned())),
            maintenance_database: "postgres".to_owned(),
            tls: crate::config::ClusterTls {
                mode: crate::config::SslMode::VerifyFull,
                root_cert_file: Some(PathBuf::from("/etc/lifeboat/db-ca.pem")),
            },
        }
    }

    #[test]
    fn tools_inherit_no_lifeboat_secret_and_get_the_password_through_a_private_file() {
        let cluster = cluster_with_password(r"pa:ss\word");
        let file = password_file(&cluster).expect("write").expect("a password");
        let parent = [
            ("PATH", "/usr/bin"),
            ("LIFEBOAT_REGIONS__EU__SECRET_ACCESS_KEY", "s3-secret"),
            ("PGPASSWORD", "inherited-password"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ("PGSSLMODE", "disable"),
            ("PGSSLROOTCERT", "/tmp/elsewhere.pem"),
        ]
        .map(|(name, value)| (OsString::from(name), OsString::from(value)));
        let command = tool_command(
            Path::new("pg_dump"),
            parent.into_iter(),
            &cluster,
            Some(file.path()),
        );
        let environment: BTreeMap<String, String> = command
            .get_envs()
            .filter_map(|(name, value)| {
                Some((
                    name.to_string_lossy().into_owned(),
                    value?.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        assert_eq!(environment["PATH"], "/usr/bin");
        assert_eq!(environment["PGHOST"], "db.internal");
        assert_eq!(environment["PGPASSFILE"], file.path().display().to_string());
        // TLS as the cluster says, whatever lifeboat's own environment says.
        assert_eq!(environment["PGSSLMODE"], "verify-full");
        assert_eq!(environment["PGSSLROOTCERT"], "/etc/lifeboat/db-ca.pem");
        for leaked in [
            "LIFEBOAT_REGIONS__EU__SECRET_ACCESS_KEY",
            "PGPASSWORD",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(
                !environment.contains_key(leaked),
                "{leaked} reaches the tool"
            );
        }
        assert!(
            !environment.values().any(|value| value.contains("word")),
            "the password is not in the environment"
        );

        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(file.path())
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "only the owner may read it: {mode:o}");
        let line = std::fs::read_to_string(file.path()).expect("read");
        assert_eq!(
            line,
            "db.internal:5433:*:lifeboat\\:admin:pa\\:ss\\\\word\n"
        );
        let path = file.path().to_owned();
        drop(file);
        assert!(!path.exists(), "removed when dropped");
    }

    #[tokio::test]
    async fn a_cancelled_tool_is_killed_and_a_disarmed_one_never() {
        let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
        let killer = ToolKiller::for_child(&sleeper);
        let cancel = tokio_util::sync::CancellationToken::new();
        let _watching = killer.kill_on_cancel(&cancel);
        let started = std::time::Instant::now();
        cancel.cancel();
        let status = tokio::task::spawn_blocking(move || sleeper.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(!status.success(), "killed: {status:?}");
        assert!(started.elapsed() < Duration::from_secs(10));

        let mut finished = Command::new("true").spawn().expect("true");
        let killer = ToolKiller::for_child(&finished);
        killer.disarm();
        assert!(finished.wait().expect("wait").success());
        assert!(!killer.kill(), "a reaped child's pid is never signalled");
    }

    #[test]
    fn identifiers_and_database_names_are_quoted() {
        assert_eq!(quote_identifier(r#"we"ird"#), r#""we""ird""#);
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal(r"a\b'c"), r"E'a\\b''c'");
        assert_eq!(database_conninfo(r"it's a \db"), r"dbname='it\'s a \\db'");
    }
}
