//! `lifeboat controller`, `lifeboat agent` and `lifeboat agent token …`: the
//! long-running roles, and the wiring that runs a controller with an embedded agent in one
//! process (also used by `nightly` and `demo`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lifeboat_agent::worker::{self, AgentOptions};
use lifeboat_controller::agents::{self, AgentScope, ClusterScope};
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::maintenance::MaintenanceOptions;
use lifeboat_controller::queue::QueuePolicy;
use lifeboat_controller::server::{self, Controller, ControllerOptions, EmbeddedAgent};
use lifeboat_controller::tls::ApiListener;
use lifeboat_core::config::Config;
use lifeboat_core::ids::ClusterName;
use lifeboat_core::region::Regions;
use lifeboat_core::service_config::TlsFiles;
use secrecy::SecretString;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::catalog::{open_catalog, operator};
use super::{cancel_on_signal, load_config, parse_flag};

/// `lifeboat controller` flags. Those that the configuration's `[controller]` and
/// `[queue]` also set override it for this run; the defaults live there.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeFlags {
    /// Address for the API, /metrics and /healthz [config: controller.listen, 127.0.0.1:7070].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Do not run an agent in this process; jobs wait for `lifeboat agent`s.
    #[arg(long)]
    pub no_agent: bool,
    /// Jobs the embedded agent runs at once.
    #[arg(long, default_value_t = 2)]
    pub agent_concurrency: usize,
    /// Serve plain HTTP on a non-loopback address (agent tokens and logins cross the
    /// network in the clear); without it, such an address needs [controller]
    /// tls_cert_file and tls_key_file.
    #[arg(long)]
    pub insecure_http: bool,
    /// Each day, with the scrub: drill every tenant's newest backup that no drill has
    /// verified yet. Needs agents with `identity_file` (the embedded one has it when this
    /// config does); others are never given drills [config: controller.drill].
    #[arg(long)]
    pub drill: bool,
    /// Moved to the config; kept only to say so.
    #[arg(long, hide = true)]
    pub backup_window: Option<String>,
    /// Copies per region read whole and hashed by each day's scrub, which starts at the
    /// end of the backup window (`[schedule] backup_window`) with retention and the purge
    /// of the trash [config: controller.scrub_full_sample, 20].
    #[arg(long)]
    pub scrub_full_sample: Option<usize>,
    #[command(flatten)]
    pub queue: QueueFlags,
}

/// Queue settings shared by `lifeboat controller` and `nightly`; each overrides the
/// configuration's `[queue]` for this run.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueFlags {
    /// A claimed job whose agent sends no heartbeat for this long is retried
    /// [config: queue.lease_seconds, 60].
    #[arg(long)]
    pub lease_seconds: Option<u64>,
    /// Jobs running at once against one database cluster [config: queue.max_jobs_per_cluster, 4].
    #[arg(long)]
    pub max_jobs_per_cluster: Option<i64>,
    /// Jobs running at once against one region [config: queue.max_jobs_per_region, 8].
    #[arg(long)]
    pub max_jobs_per_region: Option<i64>,
    /// First retry delay; doubled for each further attempt, up to 30 minutes
    /// [config: queue.retry_base_seconds, 30].
    #[arg(long)]
    pub retry_base_seconds: Option<u64>,
    /// Attempts before a job is left failed [config: queue.max_attempts, 4].
    #[arg(long)]
    pub max_attempts: Option<i32>,
}

impl QueueFlags {
    /// The configuration's `[queue]`, with these flags over it.
    pub fn policy(&self, config: &Config) -> anyhow::Result<QueuePolicy> {
        let mut settings = config.queue.clone();
        if let Some(seconds) = self.lease_seconds {
            anyhow::ensure!(seconds >= 1, "--lease-seconds must be at least 1");
            settings.lease = Duration::from_secs(seconds);
        }
        for (flag, value, setting) in [
            (
                "--max-jobs-per-cluster",
                self.max_jobs_per_cluster,
                &mut settings.max_jobs_per_cluster,
            ),
            (
                "--max-jobs-per-region",
                self.max_jobs_per_region,
                &mut settings.max_jobs_per_region,
            ),
        ] {
            if let Some(value) = value {
                anyhow::ensure!(value >= 1, "{flag} must be at least 1");
                *setting = value;
            }
        }
        if let Some(seconds) = self.retry_base_seconds {
            settings.retry_base = Duration::from_secs(seconds);
        }
        if let Some(attempts) = self.max_attempts {
            anyhow::ensure!(attempts >= 1, "--max-attempts must be at least 1");
            settings.max_attempts = attempts;
        }
        Ok(QueuePolicy::from_settings(&settings))
    }
}

/// A controller (and maybe an agent) running in this process.
pub struct RunningController {
    /// `https://ADDRESS` or `http://ADDRESS`.
    pub url: String,
    pub cancel: CancellationToken,
    /// Wakes agents waiting in a claim: call after enqueueing work directly in the catalog.
    pub work_ready: Arc<tokio::sync::Notify>,
    server: JoinHandle<std::io::Result<()>>,
    agent: Option<JoinHandle<Result<(), worker::AgentError>>>,
}

impl RunningController {
    /// Stop both and wait for them; an agent's fatal error is returned.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        let served = self.server.await.context("controller task")?;
        served.context("controller API")?;
        if let Some(agent) = self.agent {
            agent.await.context("agent task")??;
        }
        Ok(())
    }
}

/// Where and how the controller listens.
#[derive(Debug, Clone, Copy)]
pub struct Listen<'a> {
    pub address: SocketAddr,
    /// HTTPS with these files; `None`: plain HTTP.
    pub tls: Option<&'a TlsFiles>,
    /// Allow plain HTTP on a non-loopback address.
    pub insecure_http: bool,
}

impl Listen<'_> {
    /// Plain HTTP on loopback, any port: the nightly's and the demo's internal API.
    pub fn loopback() -> Listen<'static> {
        Listen {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            insecure_http: false,
        }
    }
}

/// Start the controller on `listen` and, with `agent_concurrency`, an agent in-process
/// that authenticates with a token held only in memory (over TLS, it connects through a
/// plain listener on loopback). The agent uses the process's `regions`.
pub async fn start(
    config: &Arc<Config>,
    regions: &Regions,
    catalog: Catalog,
    listen: Listen<'_>,
    options: ControllerOptions,
    agent_concurrency: Option<usize>,
    cancel: CancellationToken,
) -> anyhow::Result<RunningController> {
    let listener = ApiListener::bind(
        listen.address,
        listen.tls,
        listen.insecure_http,
        agent_concurrency.is_some(),
    )
    .await?;
    let address = listener.local_addr()?;
    let url = format!("{}://{address}", listener.scheme());
    let in_process_url = listener.in_process_url();
    let embedded_token = agent_concurrency.map(|_| agents::generate_token());
    // The embedded agent's token allows what its configuration lets it do: the clusters
    // it serves (every configured one) and drills if it holds the identity.
    let embedded_scope = AgentScope {
        clusters: ClusterScope::Only(config.clusters.keys().cloned().collect()),
        can_decrypt: config.identity_file.is_some(),
    };
    let work_ready: Arc<tokio::sync::Notify> = Arc::default();
    let server = tokio::spawn(server::serve(
        catalog,
        listener,
        options,
        embedded_token.clone().map(|token| EmbeddedAgent {
            token: SecretString::from(token),
            scope: embedded_scope,
        }),
        Controller {
            work_ready: work_ready.clone(),
        },
        cancel.clone(),
    ));
    let agent = match (agent_concurrency, embedded_token) {
        (Some(concurrency), Some(token)) => {
            let options = AgentOptions {
                controller: in_process_url?,
                token: SecretString::from(token),
                clusters: Vec::new(),
                concurrency,
                claim_wait: Duration::from_secs(10),
                ca_file: None,
                insecure_http: false,
            };
            // Its own token: an agent that stops on a fatal error must not stop the
            // controller with it.
            Some(tokio::spawn(worker::run_agent(
                config.clone(),
                regions.clone(),
                options,
                cancel.child_token(),
            )))
        }
        _ => None,
    };
    Ok(RunningController {
        url,
        cancel,
        work_ready,
        server,
        agent,
    })
}

/// Open the catalog named in the config and bring its schema up to date.
pub async fn open_migrated_catalog(config: &Config) -> anyhow::Result<Catalog> {
    let catalog = open_catalog(config).await?;
    catalog.migrate().await?;
    Ok(catalog)
}

/// The controller's options; with `scrub_full_sample`, daily maintenance (scrub, retention,
/// purge, repair) runs at the end of the configured backup window.
pub fn controller_options(
    config: &Config,
    regions: &Regions,
    policy: QueuePolicy,
    schedule: bool,
    scrub_full_sample: Option<usize>,
    drill: bool,
) -> ControllerOptions {
    let window = config.backup_window;
    // The controller (and its maintenance, `maintenance_options`) signs with the manager
    // keys; the embedded agent (`start`) keeps the writer keys of `regions`.
    ControllerOptions {
        policy,
        schedule,
        window,
        tick_interval: Duration::from_secs(15),
        regions: regions.managers(config),
        maintenance: scrub_full_sample.map(|scrub_full_sample| {
            maintenance_options(config, regions, scrub_full_sample, drill)
        }),
        metrics_token: None,
        config: Some(Arc::new(config.clone())),
        identities: None,
    }
}

/// The org's age identities for downloads, from the config's `identity_file`; `None`
/// without one (the API then refuses downloads with a clear message).
pub fn download_identities(
    config: &Config,
) -> anyhow::Result<Option<Arc<lifeboat_core::keys::Identities>>> {
    config
        .identity_file
        .as_deref()
        .map(|path| {
            lifeboat_core::keys::Identities::load(path)
                .map(Arc::new)
                .context("identity_file (decrypts downloads)")
        })
        .transpose()
}

/// Maintenance as the configuration sets it: every configured region, the trash period,
/// and the daily pass at the end of the backup window.
pub fn maintenance_options(
    config: &Config,
    regions: &Regions,
    scrub_full_sample: usize,
    drill: bool,
) -> MaintenanceOptions {
    MaintenanceOptions {
        regions: regions.managers(config).to_vec(),
        trash_period: config.trash_period,
        scrub_full_sample,
        minute_of_day: config.backup_window.end_minute_of_day(),
        drill,
        drill_cluster: config.controller.drill_cluster.clone(),
        drill_every_days: config.controller.drill_every_days,
    }
}

pub async fn serve(config_path: Option<&Path>, flags: ServeFlags) -> anyhow::Result<ExitCode> {
    if let Some(window) = &flags.backup_window {
        anyhow::bail!(
            "--backup-window is now a configuration key: put `[schedule]` and `backup_window = {window:?}` in the config file, so that `tenant list` and `tenant show` see it too"
        );
    }
    let config = Arc::new(load_config(config_path)?);
    let policy = flags.queue.policy(&config)?;
    let catalog = open_migrated_catalog(&config).await?;
    let regions = Regions::from_config(&config);
    lifeboat_core::region::check::check_required_locks(&config, &regions)
        .await
        .map_err(anyhow::Error::msg)?;
    let mut options = controller_options(
        &config,
        &regions,
        policy,
        true,
        Some(
            flags
                .scrub_full_sample
                .unwrap_or(config.controller.scrub_full_sample),
        ),
        flags.drill || config.controller.drill,
    );
    options.identities = download_identities(&config)?;
    if let Some(path) = &config.controller.metrics_token_file {
        let token = lifeboat_core::keys::read_private_file(path)
            .context("[controller] metrics_token_file")?;
        let token = token.trim().to_owned();
        anyhow::ensure!(
            !token.is_empty(),
            "[controller] metrics_token_file {} is empty",
            path.display()
        );
        options.metrics_token = Some(SecretString::from(token));
    }
    let cancel = cancel_on_signal();
    let running = start(
        &config,
        &regions,
        catalog,
        Listen {
            address: flags.listen.unwrap_or(config.controller.listen),
            tls: config.controller.tls.as_ref(),
            insecure_http: flags.insecure_http,
        },
        options,
        (!flags.no_agent).then_some(flags.agent_concurrency),
        cancel.clone(),
    )
    .await?;
    eprintln!(
        "controller listening on {} ({}); Ctrl-C stops it",
        running.url,
        if flags.no_agent {
            "no embedded agent".to_owned()
        } else {
            format!("embedded agent, {} at once", flags.agent_concurrency)
        }
    );
    cancel.cancelled().await;
    running.stop().await?;
    Ok(ExitCode::SUCCESS)
}

/// `lifeboat agent` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct AgentFlags {
    /// The controller's base URL, e.g. http://controller:7070.
    #[arg(long)]
    pub controller: Option<String>,
    /// A file holding the agent token (default: the LIFEBOAT_AGENT_TOKEN variable).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Serve only these clusters (repeatable); default: every configured cluster.
    #[arg(long = "cluster")]
    pub clusters: Vec<String>,
    /// Jobs run at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// Trust this CA certificate (PEM) for the controller's HTTPS, e.g. a private CA's.
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Allow an http:// controller URL that is not on loopback (the token crosses the
    /// network in the clear).
    #[arg(long)]
    pub insecure_http: bool,
}

fn read_token(token_file: Option<&Path>) -> anyhow::Result<SecretString> {
    let token = match token_file {
        // A token file is a secret file like any other: refused if group or others can
        // read it.
        Some(path) => lifeboat_core::keys::read_private_file(path).context("--token-file")?,
        None => std::env::var("LIFEBOAT_AGENT_TOKEN").context(
            "no agent token: pass --token-file or set LIFEBOAT_AGENT_TOKEN (create one with `lifeboat agent token create NAME --cluster C`)",
        )?,
    };
    let token = token.trim().to_owned();
    anyhow::ensure!(!token.is_empty(), "the agent token is empty");
    Ok(SecretString::from(token))
}

pub async fn agent(config_path: Option<&Path>, flags: AgentFlags) -> anyhow::Result<ExitCode> {
    let config = Arc::new(load_config(config_path)?);
    let controller = flags
        .controller
        .context("--controller URL is required (e.g. http://127.0.0.1:7070)")?;
    anyhow::ensure!(
        controller.starts_with("http://") || controller.starts_with("https://"),
        "--controller {controller:?} must be an http:// or https:// URL"
    );
    let token = read_token(flags.token_file.as_deref())?;
    let mut clusters = Vec::new();
    for cluster in &flags.clusters {
        let cluster = parse_flag("cluster", cluster, ClusterName::parse)?;
        config.cluster(&cluster)?;
        clusters.push(cluster);
    }
    let cancel = cancel_on_signal();
    eprintln!("agent serving {controller}, {} at once", flags.concurrency);
    let regions = Regions::from_config(&config);
    worker::run_agent(
        config,
        regions,
        AgentOptions {
            controller,
            token,
            clusters,
            concurrency: flags.concurrency,
            claim_wait: Duration::from_secs(20),
            ca_file: flags.ca_file,
            insecure_http: flags.insecure_http,
        },
        cancel,
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// What a new agent token allows: `--cluster C` (repeatable) or `--all-clusters`, one of
/// them required, and `--can-decrypt` for an agent that holds the age identity (drills).
#[derive(Debug, Clone, clap::Args)]
pub struct TokenScopeFlags {
    #[command(flatten)]
    pub clusters: TokenClusterFlags,
    /// The agent holds the age identity and may be given drills.
    #[arg(long)]
    pub can_decrypt: bool,
}

/// Exactly one of `--cluster C…` and `--all-clusters`: a token never gets every cluster by
/// omission.
#[derive(Debug, Clone, clap::Args)]
#[group(required = true, multiple = false)]
pub struct TokenClusterFlags {
    /// A cluster whose jobs the agent may claim (repeatable).
    #[arg(long = "cluster")]
    pub clusters: Vec<String>,
    /// The agent may claim jobs on every cluster, present and future.
    #[arg(long)]
    pub all_clusters: bool,
}

impl TokenScopeFlags {
    fn scope(&self) -> anyhow::Result<AgentScope> {
        let clusters = if self.clusters.all_clusters {
            ClusterScope::All
        } else {
            ClusterScope::Only(
                self.clusters
                    .clusters
                    .iter()
                    .map(|cluster| parse_flag("cluster", cluster, ClusterName::parse))
                    .collect::<anyhow::Result<_>>()?,
            )
        };
        Ok(AgentScope {
            clusters,
            can_decrypt: self.can_decrypt,
        })
    }
}

pub async fn token_create(
    config_path: Option<&Path>,
    name: &str,
    scope: &TokenScopeFlags,
) -> anyhow::Result<ExitCode> {
    let scope = scope.scope()?;
    let config = load_config(config_path)?;
    let catalog = open_migrated_catalog(&config).await?;
    let token = agents::create_token(&catalog, name, &scope, &operator(&catalog).await?).await?;
    eprintln!(
        "agent token for {name:?}: {}, {} (shown once; store it as the agent's --token-file):",
        scope.clusters,
        if scope.can_decrypt {
            "may be given drills"
        } else {
            "no drills"
        }
    );
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

pub async fn token_revoke(config_path: Option<&Path>, name: &str) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let catalog = open_catalog(&config).await?;
    agents::revoke_token(&catalog, name, &operator(&catalog).await?).await?;
    println!("revoked the token of agent {name:?}");
    Ok(ExitCode::SUCCESS)
}
