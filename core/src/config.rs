//! The one typed configuration, built at start and passed down.
//!
//! Sources, later ones winning: the TOML file, then `LIFEBOAT_*` environment variables
//! with `__` between levels (`LIFEBOAT_REGIONS__EU__SECRET_ACCESS_KEY`). Loading has two
//! passes: figment deserialises the raw shape (unknown keys are errors, so typos are
//! caught), then [`RawConfig::validate`] checks meaning and collects *every* problem with
//! its key, which is what `lifeboat config check` prints. Secrets are read into
//! [`SecretString`]s here and never printed: `Debug` on them is redacted.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::SecretString;
use serde::Deserialize;

use crate::backup_window::{BackupWindow, DEFAULT_WINDOW};
use crate::ids::{ClusterName, RegionName, TenantName};
use crate::keys::{self, Recipient};
use crate::policy;
use crate::service_config::{
    ControllerSettings, PanelSettings, QueueSettings, RawController, RawPanel, RawQueue,
    RawRestore, RestoreSettings,
};

/// One thing wrong with the configuration, named by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}: {}", self.key, self.message)
    }
}

/// Every problem found, in key order.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "invalid configuration:")?;
        for problem in &self.problems {
            write!(formatter, "\n  {problem}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    fn single(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![ConfigProblem {
                key: key.into(),
                message: message.into(),
            }],
        }
    }
}

/// The configuration file as written, before its meaning is checked.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    recipients: Vec<String>,
    identity_file: Option<PathBuf>,
    audit_key_file: Option<PathBuf>,
    #[serde(default = "default_compression_level")]
    compression_level: i32,
    min_regions: Option<usize>,
    #[serde(default = "default_part_size_bytes")]
    part_size_bytes: u64,
    #[serde(default = "default_max_region_lag_parts")]
    max_region_lag_parts: usize,
    #[serde(default = "default_region_patience_seconds")]
    region_patience_seconds: u64,
    pg_bin_dir: Option<PathBuf>,
    playbook_dir: Option<PathBuf>,
    #[serde(default)]
    clusters: BTreeMap<String, RawCluster>,
    #[serde(default)]
    regions: BTreeMap<String, RawRegion>,
    #[serde(default)]
    tenants: BTreeMap<String, RawTenant>,
    catalog: Option<RawCatalog>,
    #[serde(default)]
    retention: RawRetention,
    #[serde(default)]
    schedule: RawSchedule,
    #[serde(default)]
    queue: RawQueue,
    #[serde(default)]
    controller: RawController,
    #[serde(default)]
    restore: RawRestore,
    #[serde(default)]
    panel: RawPanel,
}

/// `[schedule]`: where tenants without a cron expression are backed up.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    /// `HH:MM-HH:MM` in UTC; [`DEFAULT_WINDOW`] when absent.
    backup_window: Option<String>,
}

/// `[retention]`: how long trashed backups wait before they are purged.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetention {
    #[serde(default = "default_trash_days")]
    trash_days: u32,
}

impl Default for RawRetention {
    fn default() -> Self {
        RawRetention {
            trash_days: default_trash_days(),
        }
    }
}

fn default_trash_days() -> u32 {
    14
}

/// Bounds that keep the straggler allowance (patience × lag parts) meaningful and its
/// arithmetic far from overflow.
const MAX_REGION_LAG_PARTS: usize = 1000;
const MAX_REGION_PATIENCE_SECONDS: u64 = 3600;

/// The longest trash period accepted, in days (ten years).
const MAX_TRASH_DAYS: u32 = 3650;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    cluster: Option<String>,
    #[serde(default = "default_catalog_database")]
    database: String,
}

fn default_catalog_database() -> String {
    "lifeboat".to_owned()
}

fn default_compression_level() -> i32 {
    policy::DEFAULT_COMPRESSION_LEVEL
}
fn default_part_size_bytes() -> u64 {
    policy::DEFAULT_PART_SIZE_BYTES
}
fn default_max_region_lag_parts() -> usize {
    policy::DEFAULT_MAX_REGION_LAG_PARTS
}
fn default_region_patience_seconds() -> u64 {
    policy::DEFAULT_REGION_PATIENCE.as_secs()
}
fn default_port() -> u16 {
    5432
}
fn default_maintenance_database() -> String {
    "postgres".to_owned()
}
fn default_s3_region() -> String {
    "us-east-1".to_owned()
}
fn default_true() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    host: Option<String>,
    #[serde(default = "default_port")]
    port: u16,
    user: Option<String>,
    password: Option<SecretString>,
    password_file: Option<PathBuf>,
    #[serde(default = "default_maintenance_database")]
    maintenance_database: String,
    /// libpq's `sslmode` for lifeboat's own connections and its tools; see [`SslMode`].
    sslmode: Option<String>,
    /// The CA certificate (PEM) the server's certificate must chain to.
    ssl_root_cert: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegion {
    endpoint: Option<String>,
    bucket: Option<String>,
    #[serde(default = "default_s3_region")]
    s3_region: String,
    access_key_id: Option<String>,
    secret_access_key: Option<SecretString>,
    secret_access_key_file: Option<PathBuf>,
    manager_access_key_id: Option<String>,
    manager_secret_access_key: Option<SecretString>,
    manager_secret_access_key_file: Option<PathBuf>,
    object_lock: Option<String>,
    #[serde(default)]
    require_lock: bool,
    #[serde(default = "default_true")]
    path_style: bool,
    #[serde(default)]
    priority: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    cluster: Option<String>,
    database: Option<String>,
}

/// A PostgreSQL cluster lifeboat dumps from and restores into.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub name: ClusterName,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<SecretString>,
    pub maintenance_database: String,
    /// How every connection to this cluster uses TLS: lifeboat's own (`postgres::tls`)
    /// and its libpq tools' (`PGSSLMODE`, `PGSSLROOTCERT`).
    pub tls: ClusterTls,
}

/// libpq's `sslmode`, with libpq's meanings: how a connection to a cluster uses TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS if the server offers it, without checking its certificate; plain otherwise.
    Prefer,
    /// TLS always; the certificate is checked only when a root certificate is given
    /// (then it behaves as `verify-ca`, as libpq does).
    Require,
    /// TLS, and the server's certificate chains to `ssl_root_cert`.
    VerifyCa,
    /// `verify-ca`, and the certificate names the host lifeboat connects to.
    VerifyFull,
}

impl SslMode {
    /// Every mode, in the order libpq's documentation lists them.
    pub const ALL: [SslMode; 5] = [
        SslMode::Disable,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The name libpq and the configuration file use.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    pub fn parse(text: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|mode| mode.as_str() == text)
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// A cluster's TLS settings (`sslmode`, `ssl_root_cert`), checked: `verify-ca` and
/// `verify-full` always have a root certificate, `disable` and `prefer` never.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTls {
    pub mode: SslMode,
    pub root_cert_file: Option<PathBuf>,
}

impl Default for ClusterTls {
    /// libpq's default: `prefer`, no root certificate.
    fn default() -> Self {
        ClusterTls {
            mode: SslMode::Prefer,
            root_cert_file: None,
        }
    }
}

impl ClusterTls {
    /// Check a cluster's `sslmode` and `ssl_root_cert` (keys under `key`). Without
    /// `sslmode`, the default is `verify-full` when a root certificate is given (giving one
    /// means it should be used) and libpq's `prefer` otherwise.
    fn check(
        problems: &mut Problems,
        key: &str,
        sslmode: Option<&str>,
        root_cert_file: Option<PathBuf>,
    ) -> Option<ClusterTls> {
        let mode = match sslmode {
            None if root_cert_file.is_some() => SslMode::VerifyFull,
            None => SslMode::Prefer,
            Some(text) => {
                let Some(mode) = SslMode::parse(text) else {
                    let known: Vec<&str> = SslMode::ALL.iter().map(|mode| mode.as_str()).collect();
                    problems.add(
                        format!("{key}.sslmode"),
                        format!("{text:?} is not an sslmode (one of {})", known.join(", ")),
                    );
                    return None;
                };
                mode
            }
        };
        match (&root_cert_file, mode) {
            (None, SslMode::VerifyCa | SslMode::VerifyFull) => {
                problems.add(
                    format!("{key}.ssl_root_cert"),
                    format!(
                        "missing: sslmode {mode} checks the server's certificate against a CA \
                         certificate (PEM file); give its path"
                    ),
                );
                return None;
            }
            (Some(_), SslMode::Disable | SslMode::Prefer) => {
                problems.add(
                    format!("{key}.ssl_root_cert"),
                    format!(
                        "not used with sslmode {mode}, which never checks the server's \
                         certificate: use require, verify-ca or verify-full"
                    ),
                );
                return None;
            }
            (Some(path), _) => {
                if let Err(message) = check_root_certificate_file(path) {
                    problems.add(format!("{key}.ssl_root_cert"), message);
                    return None;
                }
            }
            (None, _) => {}
        }
        Some(ClusterTls {
            mode,
            root_cert_file,
        })
    }
}

/// A readable file holding at least one PEM certificate, or why not.
fn check_root_certificate_file(path: &Path) -> Result<(), String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{} holds no certificate in PEM form (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(())
}

/// One S3-compatible region.
///
/// Two keys: the writer's (`access_key_id`, what agents use: put, multipart, read, list,
/// set a retention; never delete) and the manager's (`manager_access_key_id`, the
/// controller's maintenance only: purge, lock extension). Without a manager key the
/// controller uses the writer's, and `regions check` says so.
#[derive(Debug, Clone)]
pub struct RegionConfig {
    pub name: RegionName,
    pub endpoint: String,
    pub bucket: String,
    pub s3_region: String,
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub manager: Option<RegionKey>,
    /// With `object_lock`, every dump and manifest is written with a retention in this
    /// mode; the bucket must have versioning and object lock.
    pub object_lock: Option<LockMode>,
    /// Refuse to write backups unless `regions check` finds the lock and a writer key that
    /// cannot delete.
    pub require_lock: bool,
    pub path_style: bool,
    pub priority: i64,
}

/// An S3 key pair (its `Debug` hides the secret).
#[derive(Debug, Clone)]
pub struct RegionKey {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
}

impl RegionConfig {
    /// The writer's key: what agents sign with.
    pub fn writer_key(&self) -> RegionKey {
        RegionKey {
            access_key_id: self.access_key_id.clone(),
            secret_access_key: self.secret_access_key.clone(),
        }
    }

    /// The manager's key, or the writer's where none is configured.
    pub fn manager_key(&self) -> RegionKey {
        self.manager.clone().unwrap_or_else(|| self.writer_key())
    }
}

/// S3 object lock modes. In `compliance` nobody, the bucket's owner included, can shorten
/// or remove a retention; in `governance` a key allowed to bypass it can.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Compliance,
    Governance,
}

impl LockMode {
    pub fn parse(text: &str) -> Option<LockMode> {
        match text {
            "compliance" => Some(LockMode::Compliance),
            "governance" => Some(LockMode::Governance),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        }
    }
}

/// Where a tenant's database lives.
#[derive(Debug, Clone)]
pub struct TenantConfig {
    pub name: TenantName,
    pub cluster: ClusterName,
    pub database: String,
}

/// Where the controller's catalog lives.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    pub cluster: ClusterName,
    pub database: String,
}

/// The checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub recipients: Vec<Recipient>,
    pub identity_file: Option<PathBuf>,
    /// The secret that keys the audit log's hash chain (the controller's `audit` module);
    /// without it the chain is unkeyed.
    pub audit_key_file: Option<PathBuf>,
    pub compression_level: i32,
    pub min_regions: usize,
    pub part_size_bytes: u64,
    pub max_region_lag_parts: usize,
    pub region_patience: std::time::Duration,
    pub pg_bin_dir: Option<PathBuf>,
    /// Edited playbooks (`NAME.toml`, and the SQL files they name); a file here replaces
    /// the built-in playbook of its name.
    pub playbook_dir: Option<PathBuf>,
    pub clusters: BTreeMap<ClusterName, ClusterConfig>,
    /// In restore order: ascending `priority`, then name.
    pub regions: Vec<RegionConfig>,
    pub tenants: BTreeMap<TenantName, TenantConfig>,
    /// Only the controller and catalog commands need it.
    pub catalog: Option<CatalogConfig>,
    /// How long a trashed backup waits before it is purged (`[retention] trash_days`).
    pub trash_period: std::time::Duration,
    /// Where default schedules fall, and when the controller's daily maintenance starts
    /// (at its end): `[schedule] backup_window`.
    pub backup_window: BackupWindow,
    /// `[queue]`: leases, limits, retries, deadlines.
    pub queue: QueueSettings,
    /// `[controller]`: listen address, daily scrub sample, daily drills.
    pub controller: ControllerSettings,
    /// `[restore]`: how long a live restore keeps the database it swapped out.
    pub restore: RestoreSettings,
    /// `[panel]`: sessions of the control panel's users.
    pub panel: PanelSettings,
}

/// The top-level keys `LIFEBOAT_*` variables may set. Other `LIFEBOAT_*` variables (the
/// command line's own, like `LIFEBOAT_CONFIG`, or a script's) are not configuration;
/// a typo below these keys is still refused as an unknown field.
const ENVIRONMENT_KEYS: &[&str] = &[
    "recipients",
    "identity_file",
    "audit_key_file",
    "compression_level",
    "min_regions",
    "part_size_bytes",
    "max_region_lag_parts",
    "region_patience_seconds",
    "pg_bin_dir",
    "playbook_dir",
    "clusters",
    "regions",
    "tenants",
    "catalog",
    "retention",
    "schedule",
    "queue",
    "controller",
    "restore",
    "panel",
];

impl Config {
    /// Load from `path` (if given) and the environment, then validate.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_raw(path)?.validate()
    }

    /// Load without checking meaning; `validate` does that.
    pub fn load_raw(path: Option<&Path>) -> Result<RawConfig, ConfigError> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.is_file() {
                return Err(ConfigError::single(
                    path.display().to_string(),
                    "configuration file does not exist",
                ));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        figment = figment.merge(Env::prefixed("LIFEBOAT_").split("__").filter(|key| {
            // Keys arrive as written in the environment, usually upper case.
            let top_level = key.as_str().split('.').next().unwrap_or_default();
            ENVIRONMENT_KEYS
                .iter()
                .any(|known| known.eq_ignore_ascii_case(top_level))
        }));
        let whole_file = path.map_or_else(
            || "(environment)".to_owned(),
            |path| path.display().to_string(),
        );
        figment.extract::<RawConfig>().map_err(|error| ConfigError {
            problems: error
                .into_iter()
                .map(|error| ConfigProblem {
                    // A secret of the wrong type (a numeric password from the environment)
                    // would be echoed by the parser's message: say what is wrong, not what
                    // was given.
                    message: if error.path.last().is_some_and(|key| is_secret_key(key)) {
                        "must be a string (the value given is not shown: it is a secret)".to_owned()
                    } else {
                        error.kind.to_string()
                    },
                    key: if error.path.is_empty() {
                        whole_file.clone()
                    } else {
                        error.path.join(".")
                    },
                })
                .collect(),
        })
    }

    pub fn tenant(&self, name: &TenantName) -> Result<&TenantConfig, UnknownName> {
        self.tenants.get(name).ok_or_else(|| UnknownName {
            kind: "tenant",
            name: name.to_string(),
            known: self.tenants.keys().map(ToString::to_string).collect(),
        })
    }

    pub fn cluster(&self, name: &ClusterName) -> Result<&ClusterConfig, UnknownName> {
        self.clusters.get(name).ok_or_else(|| UnknownName {
            kind: "cluster",
            name: name.to_string(),
            known: self.clusters.keys().map(ToString::to_string).collect(),
        })
    }

    pub fn region(&self, name: &RegionName) -> Result<&RegionConfig, UnknownName> {
        self.regions
            .iter()
            .find(|region| &region.name == name)
            .ok_or_else(|| UnknownName {
                kind: "region",
                name: name.to_string(),
                known: self.regions.iter().map(|r| r.name.to_string()).collect(),
            })
    }
}

/// A tenant, cluster or region that is not configured.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} {name:?} (configured: {})", if known.is_empty() { "none".to_owned() } else { known.join(", ") })]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
    pub known: Vec<String>,
}

/// Collects problems while validating, so all of them are reported at once.
#[derive(Default)]
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            key: key.into(),
            message: message.into(),
        });
    }
}

impl RawConfig {
    /// Check meaning, read secret files, and return the typed configuration or every problem.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();

        let mut recipients = Vec::new();
        if self.recipients.is_empty() {
            problems.add(
                "recipients",
                "at least one age recipient (age1…) is required to encrypt backups",
            );
        }
        for (index, text) in self.recipients.iter().enumerate() {
            match Recipient::from_str(text) {
                Ok(recipient) => recipients.push(recipient),
                Err(error) => problems.add(format!("recipients[{index}]"), error.to_string()),
            }
        }

        if let Some(identity_file) = &self.identity_file
            && let Err(error) = keys::check_private_file_permissions(identity_file)
        {
            problems.add("identity_file", error.to_string());
        }
        if let Some(audit_key_file) = &self.audit_key_file
            && let Err(error) = keys::check_private_file_permissions(audit_key_file)
        {
            problems.add("audit_key_file", error.to_string());
        }

        if !policy::COMPRESSION_LEVELS.contains(&self.compression_level) {
            problems.add(
                "compression_level",
                format!(
                    "{} is outside zstd's levels {}..={}",
                    self.compression_level,
                    policy::COMPRESSION_LEVELS.start(),
                    policy::COMPRESSION_LEVELS.end()
                ),
            );
        }
        if !policy::PART_SIZE_BYTES.contains(&self.part_size_bytes) {
            problems.add(
                "part_size_bytes",
                format!(
                    "{} is outside S3's part sizes {}..={}",
                    self.part_size_bytes,
                    policy::PART_SIZE_BYTES.start(),
                    policy::PART_SIZE_BYTES.end()
                ),
            );
        }
        if !(1..=MAX_REGION_LAG_PARTS).contains(&self.max_region_lag_parts) {
            problems.add(
                "max_region_lag_parts",
                format!("must be between 1 and {MAX_REGION_LAG_PARTS}"),
            );
        }
        if !(1..=MAX_REGION_PATIENCE_SECONDS).contains(&self.region_patience_seconds) {
            // The others' allowance is patience × lag parts: 0 would drop every region
            // but the fastest `min_regions` from every backup; a huge one never would.
            problems.add(
                "region_patience_seconds",
                format!("must be between 1 and {MAX_REGION_PATIENCE_SECONDS}"),
            );
        }

        let mut clusters = BTreeMap::new();
        for (name, raw) in self.clusters {
            let key = format!("clusters.{name}");
            let Some(name) = parse_name(&mut problems, &key, ClusterName::parse(&name)) else {
                continue;
            };
            let host = required(&mut problems, &key, "host", raw.host);
            let user = required(&mut problems, &key, "user", raw.user);
            let password = optional_secret(
                &mut problems,
                &key,
                ("password", raw.password),
                ("password_file", raw.password_file),
            );
            let tls = ClusterTls::check(
                &mut problems,
                &key,
                raw.sslmode.as_deref(),
                raw.ssl_root_cert,
            );
            // A refused TLS setting is one problem: the cluster stays known (with defaults
            // that are never used, since validation fails) so its tenants add none.
            let tls = tls.unwrap_or_default();
            if let (Some(host), Some(user)) = (host, user) {
                clusters.insert(
                    name.clone(),
                    ClusterConfig {
                        name,
                        host,
                        port: raw.port,
                        user,
                        password,
                        maintenance_database: raw.maintenance_database,
                        tls,
                    },
                );
            }
        }

        let mut regions = Vec::new();
        let configured_region_count = self.regions.len();
        if self.regions.is_empty() {
            problems.add("regions", "at least one region is required");
        }
        for (name, raw) in self.regions {
            let key = format!("regions.{name}");
            let Some(name) = parse_name(&mut problems, &key, RegionName::parse(&name)) else {
                continue;
            };
            let endpoint = required(&mut problems, &key, "endpoint", raw.endpoint);
            if let Some(endpoint) = &endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                problems.add(
                    format!("{key}.endpoint"),
                    format!("{endpoint:?} is not an http:// or https:// URL"),
                );
            }
            let bucket = required(&mut problems, &key, "bucket", raw.bucket);
            if let Some(bucket) = &bucket
                && !is_valid_bucket_name(bucket)
            {
                problems.add(
                    format!("{key}.bucket"),
                    format!(
                        "{bucket:?} is not a valid bucket name (3-63 lowercase letters, digits, '.' and '-')"
                    ),
                );
            }
            let access_key_id = required(&mut problems, &key, "access_key_id", raw.access_key_id);
            let secret_access_key = optional_secret(
                &mut problems,
                &key,
                ("secret_access_key", raw.secret_access_key),
                ("secret_access_key_file", raw.secret_access_key_file),
            );
            if secret_access_key.is_none() {
                problems.add(
                    format!("{key}.secret_access_key"),
                    "missing: give secret_access_key or secret_access_key_file",
                );
            }
            let manager_secret = optional_secret(
                &mut problems,
                &key,
                ("manager_secret_access_key", raw.manager_secret_access_key),
                (
                    "manager_secret_access_key_file",
                    raw.manager_secret_access_key_file,
                ),
            );
            let manager = match (raw.manager_access_key_id, manager_secret) {
                (None, None) => None,
                (Some(access_key_id), Some(secret_access_key))
                    if !access_key_id.trim().is_empty() =>
                {
                    Some(RegionKey {
                        access_key_id,
                        secret_access_key,
                    })
                }
                (Some(_), Some(_)) => {
                    problems.add(format!("{key}.manager_access_key_id"), "is empty");
                    None
                }
                (Some(_), None) => {
                    problems.add(
                        format!("{key}.manager_secret_access_key"),
                        "missing: manager_access_key_id needs manager_secret_access_key or manager_secret_access_key_file",
                    );
                    None
                }
                (None, Some(_)) => {
                    problems.add(
                        format!("{key}.manager_access_key_id"),
                        "missing: a manager secret was given without its key id",
                    );
                    None
                }
            };
            if manager
                .as_ref()
                .zip(access_key_id.as_ref())
                .is_some_and(|(manager, writer)| manager.access_key_id == *writer)
            {
                problems.add(
                    format!("{key}.manager_access_key_id"),
                    "is the writer's key (access_key_id): the manager's key must be another, which agents never hold",
                );
            }
            let object_lock = match raw.object_lock.as_deref() {
                None => None,
                Some(text) => {
                    let mode = LockMode::parse(text);
                    if mode.is_none() {
                        problems.add(
                            format!("{key}.object_lock"),
                            format!("{text:?} is not \"compliance\" or \"governance\""),
                        );
                    }
                    mode
                }
            };
            if raw.require_lock && raw.object_lock.is_none() {
                problems.add(
                    format!("{key}.require_lock"),
                    "needs object_lock (\"compliance\" or \"governance\")",
                );
            }
            if let (Some(endpoint), Some(bucket), Some(access_key_id), Some(secret_access_key)) =
                (endpoint, bucket, access_key_id, secret_access_key)
            {
                regions.push(RegionConfig {
                    name,
                    endpoint: endpoint.trim_end_matches('/').to_owned(),
                    bucket,
                    s3_region: raw.s3_region,
                    access_key_id,
                    secret_access_key,
                    manager,
                    object_lock,
                    require_lock: raw.require_lock,
                    path_style: raw.path_style,
                    priority: raw.priority,
                });
            }
        }
        regions
            .sort_by(|left, right| (left.priority, &left.name).cmp(&(right.priority, &right.name)));

        let region_count = configured_region_count;
        let min_regions = self.min_regions.unwrap_or(region_count / 2 + 1);
        if min_regions == 0 || (region_count > 0 && min_regions > region_count) {
            problems.add(
                "min_regions",
                format!("{min_regions} is not between 1 and the {region_count} configured regions"),
            );
        }

        let mut tenants = BTreeMap::new();
        for (name, raw) in self.tenants {
            let key = format!("tenants.{name}");
            let Some(name) = parse_name(&mut problems, &key, TenantName::parse(&name)) else {
                continue;
            };
            let Some(cluster) = required(&mut problems, &key, "cluster", raw.cluster) else {
                continue;
            };
            let Some(cluster) = parse_name(
                &mut problems,
                &format!("{key}.cluster"),
                ClusterName::parse(&cluster),
            ) else {
                continue;
            };
            if !clusters.contains_key(&cluster) {
                problems.add(
                    format!("{key}.cluster"),
                    format!("unknown cluster {:?}", cluster.as_str()),
                );
            }
            let database = raw.database.unwrap_or_else(|| name.to_string());
            if database.is_empty() || database.len() > 63 || database.contains('\0') {
                problems.add(
                    format!("{key}.database"),
                    "must be 1 to 63 bytes without NUL characters",
                );
            }
            tenants.insert(
                name.clone(),
                TenantConfig {
                    name,
                    cluster,
                    database,
                },
            );
        }

        let mut catalog = None;
        if let Some(raw) = self.catalog
            && let Some(cluster) = required(&mut problems, "catalog", "cluster", raw.cluster)
            && let Some(cluster) = parse_name(
                &mut problems,
                "catalog.cluster",
                ClusterName::parse(&cluster),
            )
        {
            if clusters.contains_key(&cluster) {
                catalog = Some(CatalogConfig {
                    cluster,
                    database: raw.database,
                });
            } else {
                problems.add(
                    "catalog.cluster",
                    format!("unknown cluster {:?}", cluster.as_str()),
                );
            }
        }

        if self.retention.trash_days > MAX_TRASH_DAYS {
            problems.add(
                "retention.trash_days",
                format!("must be at most {MAX_TRASH_DAYS} days"),
            );
        }

        let backup_window = match self.schedule.backup_window.as_deref() {
            None => DEFAULT_WINDOW,
            Some(text) => text.parse().unwrap_or_else(|message: String| {
                problems.add("schedule.backup_window", message);
                DEFAULT_WINDOW
            }),
        };

        let mut section_problems = Vec::new();
        let queue = QueueSettings::check(&self.queue, &mut section_problems);
        let controller = ControllerSettings::check(&self.controller, &mut section_problems);
        let restore = RestoreSettings::check(&self.restore, &mut section_problems);
        let panel = PanelSettings::check(&self.panel, &mut section_problems);
        for (key, message) in section_problems {
            problems.add(key, message);
        }
        if let Some(drill_cluster) = &controller.drill_cluster
            && !clusters.contains_key(drill_cluster)
        {
            problems.add(
                "controller.drill_cluster",
                format!("{drill_cluster:?} is not a configured cluster"),
            );
        }

        if !problems.0.is_empty() {
            return Err(ConfigError {
                problems: problems.0,
            });
        }
        Ok(Config {
            recipients,
            identity_file: self.identity_file,
            audit_key_file: self.audit_key_file,
            compression_level: self.compression_level,
            min_regions,
            part_size_bytes: self.part_size_bytes,
            max_region_lag_parts: self.max_region_lag_parts,
            region_patience: std::time::Duration::from_secs(self.region_patience_seconds),
            pg_bin_dir: self.pg_bin_dir,
            playbook_dir: self.playbook_dir,
            clusters,
            regions,
            tenants,
            catalog,
            trash_period: std::time::Duration::from_secs(
                u64::from(self.retention.trash_days) * 24 * 60 * 60,
            ),
            backup_window,
            queue,
            controller,
            restore,
            panel,
        })
    }
}

fn parse_name<T>(
    problems: &mut Problems,
    key: &str,
    parsed: Result<T, crate::ids::NameError>,
) -> Option<T> {
    parsed
        .map_err(|error| problems.add(key, error.to_string()))
        .ok()
}

fn required(
    problems: &mut Problems,
    key: &str,
    field: &str,
    value: Option<String>,
) -> Option<String> {
    match value {
        Some(value) if !value.trim().is_empty() => Some(value),
        _ => {
            problems.add(format!("{key}.{field}"), "missing");
            None
        }
    }
}

/// Keys whose values are secrets: never repeated in a message.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "password" || key.ends_with("secret_access_key") || key.ends_with("_secret")
}

/// A secret given inline or as a file, never both.
fn optional_secret(
    problems: &mut Problems,
    key: &str,
    (inline_field, inline): (&str, Option<SecretString>),
    (file_field, file): (&str, Option<PathBuf>),
) -> Option<SecretString> {
    match (inline, file) {
        (Some(_), Some(_)) => {
            problems.add(
                format!("{key}.{file_field}"),
                format!("give either {inline_field} or {file_field}, not both"),
            );
            None
        }
        (Some(secret), None) => Some(secret),
        (None, Some(path)) => match keys::read_private_file(&path) {
            Ok(text) => Some(SecretString::from(
                text.trim_end_matches(['\n', '\r']).to_owned(),
            )),
            Err(error) => {
                problems.add(format!("{key}.{file_field}"), error.to_string());
                None
            }
        },
        (None, None) => None,
    }
}

fn is_valid_bucket_name(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";

    fn write_config(directory: &Path, text: &str) -> PathBuf {
        let path = directory.join("lifeboat.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    #[test]
    fn minimal_config_gets_defaults_and_majority_quorum() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = write_config(
            directory.path(),
            &format!(
                "recipients = [\"{RECIPIENT}\"]\n[regions.b]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\npriority = 1\n[regions.a]\nendpoint = \"http://127.0.0.1:2\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\npriority = 2\n[regions.c]\nendpoint = \"http://127.0.0.1:3\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\npriority = 2\n"
            ),
        );
        let config = Config::load(Some(&path)).expect("valid");
        assert_eq!(config.min_regions, 2);
        assert_eq!(config.part_size_bytes, policy::DEFAULT_PART_SIZE_BYTES);
        let order: Vec<&str> = config.regions.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(order, ["b", "a", "c"], "priority first, then name");
        assert_eq!(config.backup_window, DEFAULT_WINDOW);
        let debug = format!("{config:?}");
        assert!(!debug.contains("secret_access_key: \"s\""), "{debug}");
    }

    #[test]
    fn cluster_tls_settings_are_checked_and_default_to_libpq_prefer() {
        let directory = tempfile::tempdir().expect("tempdir");
        let ca = directory.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n",
        )
        .expect("write CA");
        let not_pem = directory.path().join("ca.txt");
        std::fs::write(&not_pem, "hello").expect("write");
        let region = "[regions.a]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n";
        let load = |cluster_settings: &str| {
            let path = write_config(
                directory.path(),
                &format!(
                    "recipients = [\"{RECIPIENT}\"]\n{region}[clusters.main]\nhost = \"db\"\nuser = \"u\"\n{cluster_settings}"
                ),
            );
            Config::load(Some(&path))
        };
        let tls_of = |cluster_settings: &str| {
            load(cluster_settings).expect("valid").clusters
                [&ClusterName::parse("main").expect("name")]
                .tls
                .clone()
        };
        assert_eq!(tls_of(""), ClusterTls::default());
        assert_eq!(ClusterTls::default().mode, SslMode::Prefer);
        let given = format!("ssl_root_cert = {:?}\n", ca.display().to_string());
        assert_eq!(
            tls_of(&given),
            ClusterTls {
                mode: SslMode::VerifyFull,
                root_cert_file: Some(ca.clone()),
            },
            "a root certificate alone means verify-full"
        );
        assert_eq!(
            tls_of(&format!("sslmode = \"verify-ca\"\n{given}")).mode,
            SslMode::VerifyCa
        );
        assert_eq!(tls_of("sslmode = \"require\"\n").mode, SslMode::Require);
        for (settings, key, words) in [
            (
                "sslmode = \"verify_full\"\n".to_owned(),
                "sslmode",
                "is not an sslmode",
            ),
            (
                "sslmode = \"verify-full\"\n".to_owned(),
                "ssl_root_cert",
                "missing",
            ),
            (
                format!("sslmode = \"prefer\"\n{given}"),
                "ssl_root_cert",
                "not used with sslmode prefer",
            ),
            (
                format!("ssl_root_cert = {:?}\n", not_pem.display().to_string()),
                "ssl_root_cert",
                "holds no certificate",
            ),
            (
                "ssl_root_cert = \"/nonexistent/ca.pem\"\n".to_owned(),
                "ssl_root_cert",
                "cannot read",
            ),
        ] {
            let error = load(&settings).expect_err(&settings).to_string();
            assert!(
                error.contains(&format!("clusters.main.{key}")) && error.contains(words),
                "{settings}: {error}"
            );
        }
    }

    #[test]
    fn backup_window_comes_from_the_schedule_section() {
        let directory = tempfile::tempdir().expect("tempdir");
        let region = "[regions.a]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n";
        let path = write_config(
            directory.path(),
            &format!(
                "recipients = [\"{RECIPIENT}\"]\n{region}[schedule]\nbackup_window = \"22:30-02:00\"\n"
            ),
        );
        let config = Config::load(Some(&path)).expect("valid");
        assert_eq!(
            config.backup_window,
            BackupWindow {
                start_minute_of_day: 22 * 60 + 30,
                length_minutes: 210
            }
        );
    }

    #[test]
    fn panel_section_sets_session_limits_and_refuses_nonsense() {
        let directory = tempfile::tempdir().expect("tempdir");
        let region = "[regions.a]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n";
        let plain = write_config(
            directory.path(),
            &format!("recipients = [\"{RECIPIENT}\"]\n{region}"),
        );
        let config = Config::load(Some(&plain)).expect("valid");
        assert_eq!(config.panel, PanelSettings::default());
        assert_eq!(config.panel.session_idle.as_secs(), 30 * 60);

        let set = write_config(
            directory.path(),
            &format!(
                "recipients = [\"{RECIPIENT}\"]\n{region}[panel]\nsession_idle_minutes = 5\nsession_max_hours = 2\nsingle_session = true\n"
            ),
        );
        let config = Config::load(Some(&set)).expect("valid");
        assert_eq!(config.panel.session_idle.as_secs(), 5 * 60);
        assert_eq!(config.panel.session_max.as_secs(), 2 * 3600);
        assert!(config.panel.single_session);

        let bad = write_config(
            directory.path(),
            &format!(
                "recipients = [\"{RECIPIENT}\"]\n{region}[panel]\nsession_idle_minutes = 0\nsession_max_hours = 9999\n"
            ),
        );
        let error = Config::load(Some(&bad)).expect_err("refused");
        let keys: Vec<&str> = error
            .problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(
            keys,
            ["panel.session_idle_minutes", "panel.session_max_hours"]
        );
    }

    #[test]
    fn queue_and_controller_sections_set_defaults_once_and_name_bad_keys() {
        let directory = tempfile::tempdir().expect("tempdir");
        let region = "[regions.a]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n";
        let plain = write_config(
            directory.path(),
            &format!("recipients = [\"{RECIPIENT}\"]\n{region}"),
        );
        let config = Config::load(Some(&plain)).expect("valid");
        assert_eq!(config.queue, QueueSettings::default());
        assert_eq!(config.controller, ControllerSettings::default());
        assert_eq!(config.restore.keep_previous_days, 7);

        let set = write_config(
            directory.path(),
            &format!(
                "recipients = [\"{RECIPIENT}\"]\n{region}[queue]\nlease_seconds = 5\nmax_attempts = 2\n[queue.deadline_hours]\nbackup = 3\n[controller]\nlisten = \"0.0.0.0:9000\"\ndrill = true\n[restore]\nkeep_previous_days = 3\njobs = 3\nstaging_dir = \"/var/tmp/lb\"\nstage_min_mb = 100\n"
            ),
        );
        let config = Config::load(Some(&set)).expect("valid");
        assert_eq!(config.queue.lease, std::time::Duration::from_secs(5));
        assert_eq!(config.queue.max_attempts, 2);
        assert_eq!(
            config.queue.deadlines.backup,
            std::time::Duration::from_secs(3 * 3600)
        );
        assert_eq!(
            config.queue.max_jobs_per_region, 8,
            "the default fills the rest"
        );
        assert_eq!(config.controller.listen.port(), 9000);
        assert!(config.controller.drill);
        assert_eq!(
            config.restore.keep_previous(),
            std::time::Duration::from_secs(3 * 24 * 3600)
        );
        assert_eq!(
            config.restore.jobs,
            crate::service_config::RestoreJobs::Fixed(3)
        );
        assert_eq!(
            config.restore.staging_dir.as_deref(),
            Some(Path::new("/var/tmp/lb"))
        );
        assert_eq!(config.restore.stage_min_bytes, 100 * 1024 * 1024);

        let bad = write_config(
            directory.path(),
            &format!(
                "recipients = [\"{RECIPIENT}\"]\n{region}[queue]\nmax_jobs_per_cluster = 0\n[queue.deadline_hours]\nscrub = 0\n[controller]\nlisten = \"nowhere\"\n[restore]\nkeep_previous_days = 0\njobs = \"many\"\nstaging_dir = \"tmp\"\n"
            ),
        );
        let error = Config::load(Some(&bad)).expect_err("refused");
        let keys: Vec<&str> = error
            .problems
            .iter()
            .map(|problem| problem.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "queue.max_jobs_per_cluster",
                "queue.deadline_hours.scrub",
                "controller.listen",
                "restore.keep_previous_days",
                "restore.jobs",
                "restore.staging_dir"
            ]
        );
    }

    #[test]
    fn lock_and_key_settings_that_cannot_work_are_refused_by_name() {
        let directory = tempfile::tempdir().expect("tempdir");
        let region = |settings: &str| {
            write_config(
                directory.path(),
                &format!(
                    "recipients = [\"{RECIPIENT}\"]\n[regions.a]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"bkt\"\naccess_key_id = \"writer\"\nsecret_access_key = \"s\"\n{settings}"
                ),
            )
        };
        for (settings, key, says) in [
            (
                "require_lock = true\n",
                "regions.a.require_lock",
                "needs object_lock",
            ),
            (
                "object_lock = \"forever\"\n",
                "regions.a.object_lock",
                "\"forever\"",
            ),
            (
                "manager_access_key_id = \"writer\"\nmanager_secret_access_key = \"m-secret-1\"\n",
                "regions.a.manager_access_key_id",
                "is the writer's key",
            ),
            (
                "manager_access_key_id = \"manager\"\n",
                "regions.a.manager_secret_access_key",
                "missing",
            ),
            (
                "manager_secret_access_key = \"m-secret-2\"\n",
                "regions.a.manager_access_key_id",
                "missing",
            ),
        ] {
            let error = Config::load(Some(&region(settings)))
                .expect_err(settings)
                .to_string();
            assert!(
                error.contains(key) && error.contains(says),
                "{settings}: {error}"
            );
            assert!(!error.contains("m-secret"), "{error}");
        }
        let config = Config::load(Some(&region(
            "manager_access_key_id = \"manager\"\nmanager_secret_access_key = \"m\"\nobject_lock = \"governance\"\nrequire_lock = true\n",
        )))
        .expect("valid");
        let region = &config.regions[0];
        assert_eq!(region.object_lock, Some(LockMode::Governance));
        assert!(region.require_lock);
        assert_eq!(region.manager_key().access_key_id, "manager");
        assert_eq!(region.writer_key().access_key_id, "writer");
    }

    #[test]
    fn a_secret_of_the_wrong_type_or_in_the_wrong_place_is_not_repeated() {
        let directory = tempfile::tempdir().expect("tempdir");
        let numeric = write_config(
            directory.path(),
            &format!(
                "recipients = [\"{RECIPIENT}\"]\n[regions.a]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = 982451653\n"
            ),
        );
        let error = Config::load(Some(&numeric))
            .expect_err("refused")
            .to_string();
        assert!(error.contains("regions.a.secret_access_key"), "{error}");
        assert!(!error.contains("982451653"), "{error}");

        let identity =
            "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ";
        let pasted = write_config(
            directory.path(),
            &format!(
                "recipients = [\"{identity}\"]\n[regions.a]\nendpoint = \"http://127.0.0.1:1\"\nbucket = \"bkt\"\naccess_key_id = \"k\"\nsecret_access_key = \"s\"\n"
            ),
        );
        let error = Config::load(Some(&pasted))
            .expect_err("refused")
            .to_string();
        assert!(error.contains("recipients[0]"), "{error}");
        assert!(!error.contains("QQQQ"), "{error}");
    }
}
