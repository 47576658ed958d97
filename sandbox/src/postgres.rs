//! A throwaway PostgreSQL cluster from the local install, for the demo and the tests.
//!
//! We run `initdb` and then `postgres` itself as a direct child (not `pg_ctl`), so the pid we hold
//! is the postmaster's and dropping [`PostgresCluster`] stops the server for sure. Durability is
//! switched off (`fsync`, `full_page_writes`, `synchronous_commit`): the data is thrown away.
//!
//! Client authentication (`pg_hba.conf`, rewritten at every start): every role over TCP
//! must give its password (`scram-sha-256`), the superuser included, so no other local
//! user can open the cluster, and tests can prove one tenant's credentials do not open
//! another tenant's database. The superuser gets a fresh random password at every start
//! ([`PostgresCluster::superuser_password`]), set through the unix socket, which is
//! trusted but lives in a 0700 directory of the server's account (`socket/`): only that
//! account (and root) can reach it. The sandbox's own connections use the socket.
//!
//! With [`PostgresOptions::tls`], the server also serves TLS with a certificate signed by a
//! test authority of its own ([`PostgresCluster::tls_root_certificate`] is that authority's
//! certificate), and with `hostssl_only` it takes TCP connections only over TLS.
//!
//! `initdb` and `postgres` refuse to run as root. When we are root, both run as the `postgres`
//! user (set with `CommandExt::uid/gid`, no `su` wrapper in between) and the cluster directory is
//! handed to that user.

use std::ffi::OsString;
use std::fs::{self, Permissions};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail, ensure};
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid, User, chown, geteuid};
use secrecy::{ExposeSecret as _, SecretString};
use tempfile::TempDir;
use tokio_postgres::NoTls;

use crate::ports::free_loopback_port;
use crate::postgres_tls::{ServerTls, TestCertificateAuthority};
use crate::server_process::{ServerLog, stop_child};

/// The address every sandbox server listens on.
const LOOPBACK_HOST: &str = "127.0.0.1";

/// The unix socket's directory under the cluster directory (0700).
const SOCKET_DIRECTORY: &str = "socket";

/// The account that runs the server when the sandbox itself runs as root.
const ACCOUNT_FOR_ROOT: &str = "postgres";

/// How long `postgres` may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fast shutdown (SIGINT) may take before the server is killed.
const SHUTDOWN_GRACE_PERIOD: Duration = Duration::from_secs(10);

/// How many free ports we try when another process takes the one we picked.
const START_ATTEMPTS: usize = 3;

/// How often we try to connect while the server starts.
const READINESS_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What PostgreSQL writes when the port it was given is taken.
const PORT_IN_USE_LOG_MESSAGE: &str = "Address already in use";

/// How a sandbox cluster is started; the default is plain TCP.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Serve TLS (`ssl = on`) with a certificate from a fresh test authority.
    pub tls: Option<ServerTls>,
}

/// A PostgreSQL cluster started from the local install (`initdb` + `postgres` binaries).
///
/// Dropping it stops the server (SIGINT fast shutdown, SIGKILL after 10 s) and removes its
/// temporary directory if it has one.
#[derive(Debug)]
pub struct PostgresCluster {
    /// `None` once stopped.
    server_process: Option<Child>,
    cluster_directory: PathBuf,
    server_log: ServerLog,
    port: u16,
    server_account: ServerAccount,
    bin_dir: PathBuf,
    /// The test authority's certificate (PEM) when the server serves TLS.
    tls_root_certificate: Option<PathBuf>,
    /// The superuser's password over TCP, new at every start.
    superuser_password: SecretString,
    /// Declared last so that it is removed after the server has stopped (see `Drop`).
    temporary_directory: Option<TempDir>,
}

/// The operating-system account that owns the data directory and runs the server.
#[derive(Debug, Clone)]
struct ServerAccount {
    name: String,
    /// Set when we run as root: the server processes switch to this user and group.
    switch_to_user: Option<(Uid, Gid)>,
}

/// Why one attempt to start the server failed.
enum StartFailure {
    /// Another process took the port between our check and the server's bind: try another.
    PortInUse(anyhow::Error),
    Permanent(anyhow::Error),
}

impl PostgresCluster {
    /// Initialises `dir/data` if it is not a cluster yet (so a second run reuses it), then starts
    /// `postgres` on a free port of 127.0.0.1 with its socket in `dir` and its log in
    /// `dir/postgres.log`, and waits until it accepts connections (30 s at most).
    pub async fn start(dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(dir, &PostgresOptions::default()).await
    }

    /// [`PostgresCluster::start`] with `options`.
    pub async fn start_with(dir: &Path, options: &PostgresOptions) -> anyhow::Result<Self> {
        let started_at = Instant::now();
        let bin_dir = tokio::task::spawn_blocking(postgres_bin_dir)
            .await
            .context("join the task that finds the postgres binaries")??;
        let server_account = ServerAccount::for_current_user()?;
        let cluster_directory = prepare_cluster_directory(dir, &server_account)?;
        let data_directory = cluster_directory.join("data");
        if data_directory.join("PG_VERSION").is_file() {
            tracing::debug!(data_directory = %data_directory.display(), "reusing initialised postgres data directory");
        } else {
            initialise_data_directory(&bin_dir, &cluster_directory, &server_account).await?;
        }

        let hostssl_only = options.tls.as_ref().is_some_and(|tls| tls.hostssl_only);
        write_client_authentication(&data_directory, &server_account, hostssl_only)?;
        let tls_root_certificate = match &options.tls {
            Some(tls) => Some(write_tls_files(&cluster_directory, &server_account, tls)?),
            None => None,
        };

        let superuser_password = random_password()?;
        let mut port_in_use_errors = Vec::new();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_loopback_port()?;
            let (server_log, log_file) =
                ServerLog::open_for_append(&cluster_directory.join("postgres.log"))?;
            let server_process = spawn_postgres(
                &bin_dir,
                &cluster_directory,
                port,
                &server_account,
                &log_file,
                tls_root_certificate.is_some(),
            )?;
            // Owned by the cluster from here on, so that an error or a cancelled future stops it.
            let mut cluster = Self {
                server_process: Some(server_process),
                cluster_directory: cluster_directory.clone(),
                server_log,
                port,
                server_account: server_account.clone(),
                bin_dir: bin_dir.clone(),
                tls_root_certificate: tls_root_certificate.clone(),
                superuser_password: superuser_password.clone(),
                temporary_directory: None,
            };
            match cluster.wait_until_accepting_connections().await {
                Ok(()) => {
                    cluster.set_superuser_password().await?;
                    tracing::info!(
                        port,
                        directory = %cluster_directory.display(),
                        startup_milliseconds = started_at.elapsed().as_millis(),
                        "postgres is ready"
                    );
                    return Ok(cluster);
                }
                Err(StartFailure::PortInUse(error)) => {
                    tracing::warn!(
                        attempt,
                        port,
                        "postgres port was taken, retrying on another port"
                    );
                    port_in_use_errors.push(error);
                }
                Err(StartFailure::Permanent(error)) => return Err(error),
            }
        }
        let last_error = port_in_use_errors
            .pop()
            .unwrap_or_else(|| anyhow!("no start attempt was made"));
        Err(last_error.context(format!(
            "start postgres: the chosen port was taken {START_ATTEMPTS} times"
        )))
    }

    /// Like [`PostgresCluster::start`], in a fresh temporary directory removed on drop.
    pub async fn start_temporary() -> anyhow::Result<Self> {
        Self::start_temporary_with(&PostgresOptions::default()).await
    }

    /// [`PostgresCluster::start_temporary`] with `options`.
    pub async fn start_temporary_with(options: &PostgresOptions) -> anyhow::Result<Self> {
        let temporary_directory = tempfile::Builder::new()
            .prefix("lifeboat-postgres-")
            .tempdir()
            .context("create a temporary directory for postgres")?;
        // Temporary directories are created 0700; when we are root the server runs as another
        // user who must be able to enter it.
        fs::set_permissions(temporary_directory.path(), Permissions::from_mode(0o755))
            .with_context(|| {
                format!(
                    "make temporary directory {} traversable",
                    temporary_directory.path().display()
                )
            })?;
        let mut cluster = Self::start_with(temporary_directory.path(), options).await?;
        cluster.temporary_directory = Some(temporary_directory);
        Ok(cluster)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn host(&self) -> &str {
        LOOPBACK_HOST
    }

    /// The role created by `initdb`: `postgres` when we run as root, else the current user.
    pub fn superuser(&self) -> &str {
        &self.server_account.name
    }

    /// Where `initdb`, `postgres` and `pg_dump` of this installation live.
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }

    /// The certificate (PEM) of the authority that signed the server's, when it serves TLS.
    pub fn tls_root_certificate(&self) -> Option<&Path> {
        self.tls_root_certificate.as_deref()
    }

    /// The directory holding `data/`, the unix socket and `postgres.log`.
    pub fn directory(&self) -> &Path {
        &self.cluster_directory
    }

    /// The superuser's password over TCP: random, set at this start, valid until the next.
    pub fn superuser_password(&self) -> &SecretString {
        &self.superuser_password
    }

    /// A keyword/value connection string (tokio-postgres and libpq) for `database` as the
    /// superuser over TCP, password included: for tests and benchmarks (a tool given it as
    /// an argument shows it to `ps`; use [`PostgresCluster::libpq_environment`] there).
    pub fn connection_string(&self, database: &str) -> String {
        format!(
            "host={} port={} user={} password={} dbname={}",
            LOOPBACK_HOST,
            self.port,
            quote_connection_value(self.superuser()),
            quote_connection_value(self.superuser_password.expose_secret()),
            quote_connection_value(database)
        )
    }

    /// `PGHOST`, `PGPORT`, `PGUSER` and `PGPASSWORD` for a libpq tool (psql, pg_restore)
    /// run by a test as the superuser over TCP.
    pub fn libpq_environment(&self) -> [(&'static str, String); 4] {
        [
            ("PGHOST", LOOPBACK_HOST.to_owned()),
            ("PGPORT", self.port.to_string()),
            ("PGUSER", self.superuser().to_owned()),
            (
                "PGPASSWORD",
                self.superuser_password.expose_secret().to_owned(),
            ),
        ]
    }

    /// The directory of the unix socket: 0700, the server account's.
    fn socket_directory(&self) -> PathBuf {
        self.cluster_directory.join(SOCKET_DIRECTORY)
    }

    /// How the sandbox itself connects to `database` as the superuser: through the trusted
    /// unix socket, so it needs no password and no TLS.
    fn own_connection_config(&self, database: &str) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(self.socket_directory())
            .port(self.port)
            .user(self.superuser())
            .dbname(database);
        config
    }

    /// Gives the superuser this start's password (through the socket).
    async fn set_superuser_password(&self) -> anyhow::Result<()> {
        let client = self.connect("postgres").await?;
        // Only the SCRAM verifier reaches the server (never the password, which a
        // statement log would keep); it is base64 and `$`/`:`: nothing needs quoting.
        let verifier = postgres_protocol::password::scram_sha_256(
            self.superuser_password.expose_secret().as_bytes(),
        );
        client
            .batch_execute(&format!(
                "ALTER ROLE \"{}\" PASSWORD '{verifier}'",
                self.superuser()
            ))
            .await
            .context("set the superuser's password")
    }

    /// Connects to `database` as the superuser; the connection runs on a spawned task.
    pub async fn connect(&self, database: &str) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = self
            .own_connection_config(database)
            .connect(NoTls)
            .await
            .with_context(|| format!("connect to database {database:?} on port {}", self.port))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "postgres connection ended with an error");
            }
        });
        Ok(client)
    }

    /// Stops the server (fast shutdown) and removes the temporary directory if there is one.
    pub async fn stop(self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.stop_blocking())
            .await
            .context("join the task that stops postgres")?
    }

    fn stop_blocking(mut self) -> anyhow::Result<()> {
        let Some(mut server_process) = self.server_process.take() else {
            return Ok(());
        };
        let (exit_status, was_killed) =
            stop_child(&mut server_process, Signal::SIGINT, SHUTDOWN_GRACE_PERIOD)
                .context("stop postgres")?;
        ensure!(
            !was_killed,
            "stop postgres: it did not shut down within {} s and was killed; tail of {}:\n{}",
            SHUTDOWN_GRACE_PERIOD.as_secs(),
            self.server_log.path.display(),
            self.server_log.tail()
        );
        ensure!(
            exit_status.success(),
            "stop postgres: it exited with {exit_status}; tail of {}:\n{}",
            self.server_log.path.display(),
            self.server_log.tail()
        );
        tracing::info!(port = self.port, "postgres stopped");
        Ok(())
    }

    async fn wait_until_accepting_connections(&mut self) -> Result<(), StartFailure> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut connection_config = self.own_connection_config("postgres");
        connection_config.connect_timeout(Duration::from_secs(2));
        loop {
            let Some(server_process) = self.server_process.as_mut() else {
                return Err(StartFailure::Permanent(anyhow!("postgres is not running")));
            };
            let exit_status = server_process
                .try_wait()
                .context("check whether postgres exited")
                .map_err(StartFailure::Permanent)?;
            if let Some(exit_status) = exit_status {
                self.server_process = None;
                let log_tail = self.server_log.tail();
                let error = anyhow!(
                    "postgres exited with {exit_status} before accepting connections on port {}; tail of {}:\n{log_tail}",
                    self.port,
                    self.server_log.path.display()
                );
                if log_tail.contains(PORT_IN_USE_LOG_MESSAGE) {
                    return Err(StartFailure::PortInUse(error));
                }
                return Err(StartFailure::Permanent(error));
            }
            let connection_error = match connection_config.connect(NoTls).await {
                Ok((_client, _connection)) => return Ok(()),
                Err(error) => error,
            };
            if Instant::now() >= deadline {
                return Err(StartFailure::Permanent(anyhow!(
                    "postgres did not accept connections on port {} within {} s (last error: {connection_error}); tail of {}:\n{}",
                    self.port,
                    STARTUP_TIMEOUT.as_secs(),
                    self.server_log.path.display(),
                    self.server_log.tail()
                )));
            }
            tokio::time::sleep(READINESS_POLL_INTERVAL).await;
        }
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let Some(mut server_process) = self.server_process.take() else {
            return;
        };
        match stop_child(&mut server_process, Signal::SIGINT, SHUTDOWN_GRACE_PERIOD) {
            Ok((exit_status, was_killed)) => {
                tracing::debug!(port = self.port, %exit_status, was_killed, "postgres stopped on drop");
            }
            Err(error) => {
                tracing::warn!(
                    port = self.port,
                    error = format!("{error:#}"),
                    "stop postgres on drop"
                );
            }
        }
    }
}

impl ServerAccount {
    fn for_current_user() -> anyhow::Result<Self> {
        let effective_user_id = geteuid();
        if effective_user_id.is_root() {
            let user = User::from_name(ACCOUNT_FOR_ROOT)
                .with_context(|| format!("look up user {ACCOUNT_FOR_ROOT:?}"))?
                .with_context(|| {
                    format!(
                        "find user {ACCOUNT_FOR_ROOT:?}: initdb and postgres refuse to run as root, \
                         so the sandbox runs them as {ACCOUNT_FOR_ROOT:?} (install the postgresql package, which creates it)"
                    )
                })?;
            return Ok(Self {
                name: user.name,
                switch_to_user: Some((user.uid, user.gid)),
            });
        }
        let user = User::from_uid(effective_user_id)
            .with_context(|| format!("look up the current user (uid {effective_user_id})"))?
            .with_context(|| format!("find a user name for uid {effective_user_id}"))?;
        Ok(Self {
            name: user.name,
            switch_to_user: None,
        })
    }

    /// Makes the command run as this account if we are root.
    fn apply_to(&self, command: &mut Command) {
        if let Some((user_id, group_id)) = self.switch_to_user {
            command.uid(user_id.as_raw()).gid(group_id.as_raw());
        }
    }
}

/// Creates `dir`, hands it to the server account and checks that account can reach it.
/// Returns the absolute path.
fn prepare_cluster_directory(
    dir: &Path,
    server_account: &ServerAccount,
) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(dir)
        .with_context(|| format!("create postgres directory {}", dir.display()))?;
    let cluster_directory = dir
        .canonicalize()
        .with_context(|| format!("resolve postgres directory {}", dir.display()))?;
    // The trusted socket's directory: the server's account alone may enter it.
    let socket_directory = cluster_directory.join(SOCKET_DIRECTORY);
    fs::create_dir_all(&socket_directory)
        .with_context(|| format!("create {}", socket_directory.display()))?;
    fs::set_permissions(&socket_directory, Permissions::from_mode(0o700))
        .with_context(|| format!("make {} private", socket_directory.display()))?;
    let Some((user_id, group_id)) = server_account.switch_to_user else {
        return Ok(cluster_directory);
    };
    let data_directory = cluster_directory.join("data");
    for directory in [&cluster_directory, &data_directory, &socket_directory] {
        if directory.exists() {
            chown(directory.as_path(), Some(user_id), Some(group_id)).with_context(|| {
                format!(
                    "give {} to user {}",
                    directory.display(),
                    server_account.name
                )
            })?;
        }
    }
    ensure_ancestors_are_traversable(&cluster_directory, server_account, user_id, group_id)?;
    Ok(cluster_directory)
}

/// The server, running as another user, must be able to walk down to its directory.
fn ensure_ancestors_are_traversable(
    directory: &Path,
    server_account: &ServerAccount,
    user_id: Uid,
    group_id: Gid,
) -> anyhow::Result<()> {
    for ancestor in directory.ancestors().skip(1) {
        let metadata = fs::metadata(ancestor)
            .with_context(|| format!("read the permissions of {}", ancestor.display()))?;
        let mode = metadata.mode();
        let is_traversable = if metadata.uid() == user_id.as_raw() {
            mode & 0o100 != 0
        } else if metadata.gid() == group_id.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        ensure!(
            is_traversable,
            "use {} for postgres: user {} cannot traverse {} (mode {:o}); choose a directory under /tmp or run `chmod o+x {}`",
            directory.display(),
            server_account.name,
            ancestor.display(),
            mode & 0o7777,
            ancestor.display()
        );
    }
    Ok(())
}

/// Writes `pg_hba.conf`: trust over the unix socket (in a private directory),
/// `scram-sha-256` for every role over TCP (see the module documentation); TCP rules are
/// `hostssl` with `hostssl_only`.
fn write_client_authentication(
    data_directory: &Path,
    server_account: &ServerAccount,
    hostssl_only: bool,
) -> anyhow::Result<()> {
    ensure!(
        !server_account.name.contains('"'),
        "use account {:?} as the postgres superuser: pg_hba.conf cannot name a user with a double quote",
        server_account.name
    );
    let superuser = format!("\"{}\"", server_account.name);
    let host = if hostssl_only { "hostssl" } else { "host   " };
    let rules = format!(
        "# Written by lifeboat-sandbox at every start.\n\
         # TYPE  DATABASE     USER         ADDRESS       METHOD\n\
         local   all          all                        trust\n\
         local   replication  all                        trust\n\
         {host} replication  {superuser}  127.0.0.1/32  scram-sha-256\n\
         {host} all          all          127.0.0.1/32  scram-sha-256\n\
         {host} all          all          ::1/128       scram-sha-256\n"
    );
    let path = data_directory.join("pg_hba.conf");
    fs::write(&path, rules).with_context(|| format!("write {}", path.display()))?;
    if let Some((user_id, group_id)) = server_account.switch_to_user {
        chown(path.as_path(), Some(user_id), Some(group_id))
            .with_context(|| format!("give {} to user {}", path.display(), server_account.name))?;
    }
    Ok(())
}

/// Writes a fresh test authority's certificate (`tls-root.crt`, returned) and the server's
/// certificate and key it signed (`server.crt`, `server.key`: the key 0600) into the
/// cluster directory, owned by the server's account as PostgreSQL requires.
fn write_tls_files(
    cluster_directory: &Path,
    server_account: &ServerAccount,
    tls: &ServerTls,
) -> anyhow::Result<PathBuf> {
    let authority = TestCertificateAuthority::generate("lifeboat sandbox test CA")?;
    let root_certificate = cluster_directory.join("tls-root.crt");
    authority.write_certificate(&root_certificate)?;
    let (certificate, key) = authority.issue_server_certificate(&tls.server_names)?;
    for (name, contents, mode) in [
        ("server.crt", certificate, 0o644),
        ("server.key", key, 0o600),
    ] {
        let path = cluster_directory.join(name);
        // Created with its final mode: the key is never readable by others, not even briefly.
        let _ = fs::remove_file(&path);
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        std::io::Write::write_all(&mut file, contents.as_bytes())
            .with_context(|| format!("write {}", path.display()))?;
        if let Some((user_id, group_id)) = server_account.switch_to_user {
            chown(path.as_path(), Some(user_id), Some(group_id)).with_context(|| {
                format!("give {} to user {}", path.display(), server_account.name)
            })?;
        }
    }
    Ok(root_certificate)
}

/// Locale arguments for `initdb`, most wanted first.
const INITDB_LOCALE_CHOICES: [&str; 2] = ["--locale=C.UTF-8", "--no-locale"];

async fn initialise_data_directory(
    bin_dir: &Path,
    cluster_directory: &Path,
    server_account: &ServerAccount,
) -> anyhow::Result<()> {
    let started_at = Instant::now();
    let mut failures = Vec::new();
    for locale_argument in INITDB_LOCALE_CHOICES {
        match run_initdb(bin_dir, cluster_directory, server_account, locale_argument).await {
            Ok(()) => {
                tracing::info!(
                    directory = %cluster_directory.display(),
                    locale_argument,
                    initdb_milliseconds = started_at.elapsed().as_millis(),
                    "initialised postgres data directory"
                );
                return Ok(());
            }
            Err(error) => {
                tracing::warn!(
                    locale_argument,
                    error = format!("{error:#}"),
                    "initdb failed"
                );
                failures.push(format!("with {locale_argument}: {error:#}"));
            }
        }
    }
    bail!(
        "initialise postgres data directory in {}:\n{}",
        cluster_directory.display(),
        failures.join("\n")
    )
}

async fn run_initdb(
    bin_dir: &Path,
    cluster_directory: &Path,
    server_account: &ServerAccount,
    locale_argument: &str,
) -> anyhow::Result<()> {
    let initdb_path = bin_dir.join("initdb");
    let mut command = Command::new(&initdb_path);
    command
        .arg("--pgdata")
        .arg(cluster_directory.join("data"))
        .arg("--username")
        .arg(&server_account.name)
        .args([
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
            locale_argument,
        ])
        .current_dir(cluster_directory)
        .stdin(Stdio::null());
    server_account.apply_to(&mut command);
    let output = tokio::process::Command::from(command)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| format!("run {}", initdb_path.display()))?;
    ensure!(
        output.status.success(),
        "initdb exited with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn spawn_postgres(
    bin_dir: &Path,
    cluster_directory: &Path,
    port: u16,
    server_account: &ServerAccount,
    log_file: &fs::File,
    serve_tls: bool,
) -> anyhow::Result<Child> {
    let postgres_path = bin_dir.join("postgres");
    let mut command = Command::new(&postgres_path);
    command
        .arg("-D")
        .arg(cluster_directory.join("data"))
        .arg("-c")
        .arg(format!("port={port}"))
        .arg("-c")
        .arg(format!("listen_addresses={LOOPBACK_HOST}"))
        .arg("-c")
        .arg(unix_socket_directories_setting(
            &cluster_directory.join(SOCKET_DIRECTORY),
        )?)
        // Throwaway data: trade durability for speed.
        .args([
            "-c",
            "fsync=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "synchronous_commit=off",
        ])
        .current_dir(cluster_directory)
        .stdin(Stdio::null())
        .stdout(
            log_file
                .try_clone()
                .context("share the postgres log file")?,
        )
        .stderr(
            log_file
                .try_clone()
                .context("share the postgres log file")?,
        );
    if serve_tls {
        // The files `write_tls_files` wrote, relative to the data directory's parent.
        command.args(["-c", "ssl=on"]);
        command.arg("-c").arg(setting_with_path(
            "ssl_cert_file",
            &cluster_directory.join("server.crt"),
        )?);
        command.arg("-c").arg(setting_with_path(
            "ssl_key_file",
            &cluster_directory.join("server.key"),
        )?);
    }
    server_account.apply_to(&mut command);
    let server_process = command
        .spawn()
        .with_context(|| format!("spawn {}", postgres_path.display()))?;
    tracing::debug!(pid = server_process.id(), port, "spawned postgres");
    Ok(server_process)
}

/// `unix_socket_directories` is a list: the directory is double-quoted so that commas or spaces
/// in the path are not taken as separators (a double quote inside is doubled).
fn unix_socket_directories_setting(cluster_directory: &Path) -> anyhow::Result<OsString> {
    let directory = cluster_directory.to_str().with_context(|| {
        format!(
            "use {} as a socket directory: it is not UTF-8",
            cluster_directory.display()
        )
    })?;
    Ok(OsString::from(format!(
        "unix_socket_directories=\"{}\"",
        directory.replace('"', "\"\"")
    )))
}

/// `name=path` for a `-c` option; the path must be UTF-8.
fn setting_with_path(name: &str, path: &Path) -> anyhow::Result<OsString> {
    let path = path
        .to_str()
        .with_context(|| format!("use {} for {name}: it is not UTF-8", path.display()))?;
    Ok(OsString::from(format!("{name}={path}")))
}

/// Quotes a value for a keyword/value connection string: `'...'` with `\` and `'` escaped.
fn quote_connection_value(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for character in value.chars() {
        if character == '\\' || character == '\'' {
            quoted.push('\\');
        }
        quoted.push(character);
    }
    quoted.push('\'');
    quoted
}

/// Where the PostgreSQL server binaries (`initdb`, `postgres`, `pg_dump`) live: `pg_config
/// --bindir`, else the directory of `initdb` on `PATH`, else the newest
/// `/usr/lib/postgresql/<version>/bin`.
pub fn postgres_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(bin_dir) = bin_dir_from_pg_config() {
        return Ok(bin_dir);
    }
    if let Some(bin_dir) = bin_dir_from_initdb_on_path() {
        return Ok(bin_dir);
    }
    if let Some(bin_dir) = newest_debian_bin_dir() {
        return Ok(bin_dir);
    }
    bail!(
        "find the PostgreSQL server binaries (initdb, postgres): `pg_config --bindir` gave none, \
         initdb is not on PATH and no /usr/lib/postgresql/<version>/bin exists; \
         install PostgreSQL (e.g. `apt-get install postgresql`)"
    )
}

fn has_server_binaries(bin_dir: &Path) -> bool {
    bin_dir.join("initdb").is_file() && bin_dir.join("postgres").is_file()
}

fn bin_dir_from_pg_config() -> Option<PathBuf> {
    let output = Command::new("pg_config").arg("--bindir").output().ok()?;
    if !output.status.success() {
        return None;
    }
    let bin_dir = PathBuf::from(String::from_utf8(output.stdout).ok()?.trim());
    has_server_binaries(&bin_dir).then_some(bin_dir)
}

fn bin_dir_from_initdb_on_path() -> Option<PathBuf> {
    let search_path = std::env::var_os("PATH")?;
    std::env::split_paths(&search_path)
        .map(|directory| directory.join("initdb"))
        .find(|candidate| candidate.is_file())
        // Resolve symlinks such as /usr/local/bin/initdb so that pg_dump is found beside it.
        .and_then(|initdb_path| initdb_path.canonicalize().ok())
        .and_then(|initdb_path| initdb_path.parent().map(Path::to_path_buf))
        .filter(|bin_dir| has_server_binaries(bin_dir))
}

fn newest_debian_bin_dir() -> Option<PathBuf> {
    let versions_directory = Path::new("/usr/lib/postgresql");
    fs::read_dir(versions_directory)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = parse_major_version(entry.file_name().to_str()?)?;
            let bin_dir = entry.path().join("bin");
            has_server_binaries(&bin_dir).then_some((version, bin_dir))
        })
        .max_by_key(|(version, _)| version.clone())
        .map(|(_, bin_dir)| bin_dir)
}

/// "15" → [15], "9.6" → [9, 6]; anything else is not a version directory.
fn parse_major_version(directory_name: &str) -> Option<Vec<u32>> {
    directory_name
        .split('.')
        .map(|component| component.parse().ok())
        .collect()
}

/// 32 random hex digits (128 bits) from the operating system.
fn random_password() -> anyhow::Result<SecretString> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes).map_err(|error| anyhow!("read random bytes: {error}"))?;
    Ok(SecretString::from(hex::encode(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_values_are_quoted_and_escaped() {
        assert_eq!(quote_connection_value("lifeboat"), "'lifeboat'");
        assert_eq!(quote_connection_value("it's"), r"'it\'s'");
        assert_eq!(quote_connection_value(r"back\slash"), r"'back\\slash'");
        assert_eq!(quote_connection_value(""), "''");
    }

    #[test]
    fn quoted_database_names_survive_tokio_postgres_parsing() {
        let awkward_name = r"a 'strange' \ name";
        let connection_string = format!(
            "host=127.0.0.1 dbname={}",
            quote_connection_value(awkward_name)
        );
        let config: tokio_postgres::Config =
            connection_string.parse().expect("parse connection string");
        assert_eq!(config.get_dbname(), Some(awkward_name));
    }

    #[test]
    fn version_directories_sort_numerically() {
        assert!(parse_major_version("15") > parse_major_version("9.6"));
        assert_eq!(parse_major_version("9.6"), Some(vec![9, 6]));
        assert_eq!(parse_major_version("lost+found"), None);
    }

    #[test]
    fn socket_directory_setting_is_double_quoted() {
        let setting =
            unix_socket_directories_setting(Path::new("/tmp/a,b \"c\"")).expect("utf-8 path");
        assert_eq!(
            setting,
            OsString::from("unix_socket_directories=\"/tmp/a,b \"\"c\"\"\"")
        );
    }
}
