//! `lifeboat demo`: the whole data path on this machine, with nothing but PostgreSQL's
//! server binaries installed.
//!
//! It starts a throwaway PostgreSQL cluster under the working directory and three
//! S3-compatible regions embedded in this process, creates three sample tenants and the
//! controller's catalog, registers the tenants there and runs a nightly with drills through
//! the job queue (controller API and an agent in this process: backups to all three
//! regions; drill jobs that restore each new backup into a scratch database, verify row
//! counts, drop it and record the drill; retention, scrub, repair), then prints a summary.
//! Everything it starts belongs to values dropped on return or on Ctrl-C, which stops the
//! servers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use comfy_table::Table;
use lifeboat_agent::worker::ControllerClient;
use lifeboat_controller::restores;
use lifeboat_controller::tenants::{NewTenant, Retention};
use lifeboat_core::config::Config;
use lifeboat_core::ids::TenantName;
use lifeboat_core::region::Regions;
use lifeboat_core::service_config::TlsFiles;
use lifeboat_sandbox::{EmbeddedRegion, PostgresCluster};
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use super::cancel_on_signal;
use super::controller;
use super::nightly;
use crate::output::{human_bytes, human_duration};
use lifeboat_controller::dedup_key::RunName;
use lifeboat_controller::nightly::NightlyOptions;
use lifeboat_controller::queue::QueuePolicy;

const MARKER_FILE: &str = ".lifeboat-demo";
const REGION_NAMES: [&str; 3] = ["eu", "us", "ap"];
const BUCKET: &str = "lifeboat-demo";
const ACCESS_KEY_ID: &str = "lifeboat-demo";
const SAMPLE_DATA_SQL: &str = include_str!("demo_data.sql");
const CATALOG_DATABASE: &str = "lifeboat";

/// The sample tenants: name, database name (one with quotes and spaces), data scale.
const TENANTS: [(&str, &str, u32); 3] = [
    ("acme", "acme", 1),
    ("globex", "Globex Corp's \"main\" DB", 1),
    ("initech", "initech", 3),
];

struct TenantOutcome {
    tenant: String,
    database_bytes: u64,
    stored_bytes: u64,
    regions: String,
    backup_seconds: f64,
    restore_seconds: Option<f64>,
    verified: Result<String, String>,
}

/// The servers the demo started, kept running while `--serve` shows the panel.
struct DemoWorld {
    cluster: PostgresCluster,
    regions: Vec<(&'static str, EmbeddedRegion)>,
    config: Arc<Config>,
    region_clients: Regions,
    catalog: lifeboat_controller::catalog::Catalog,
    tls: TlsFiles,
}

impl DemoWorld {
    async fn stop(self) -> anyhow::Result<()> {
        drop(self.catalog);
        for (_, region) in self.regions {
            region.stop().await;
        }
        self.cluster.stop().await
    }
}

pub async fn run(dir: &Path, keep: bool, serve: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let dir = prepare_directory(dir)?;
    let cancel = cancel_on_signal();
    let outcome = tokio::select! {
        outcome = run_demo(&dir, cancel.clone()) => outcome,
        () = cancel.cancelled() => Err(anyhow::anyhow!("interrupted")),
    };
    let outcome = match (outcome, serve) {
        (Ok((outcomes, helpdesk, world)), Some(address)) if !cancel.is_cancelled() => {
            // The results first; then the panel, until Ctrl-C (which is how it ends).
            print_report(&outcomes, &helpdesk);
            let served = serve_panel(&world, &dir, address, &cancel).await;
            let stopped = world.stop().await;
            served.and(stopped).map(|()| (outcomes, helpdesk, true))
        }
        (Ok((outcomes, helpdesk, world)), _) => {
            world.stop().await.map(|()| (outcomes, helpdesk, false))
        }
        (Err(error), _) => Err(error),
    };
    // Ctrl-C reaches the whole process group, so PostgreSQL may stop first and a step fail
    // with its error: say what really happened (unless it ended `--serve`, as it should).
    let outcome = if cancel.is_cancelled() && serve.is_none() {
        Err(anyhow::anyhow!(
            "interrupted; everything the demo started was stopped"
        ))
    } else {
        outcome
    };
    if keep {
        eprintln!("kept {}", dir.display());
    } else if let Err(error) = std::fs::remove_dir_all(&dir) {
        eprintln!("warning: could not remove {}: {error}", dir.display());
    }
    let (outcomes, helpdesk, reported) = outcome?;
    let all_verified = if reported {
        report_ok(&outcomes, &helpdesk)
    } else {
        print_report(&outcomes, &helpdesk)
    };
    if all_verified {
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::FAILURE)
    }
}

/// Whether every tenant was restored and verified and the helpdesk restore did its job.
fn report_ok(outcomes: &[TenantOutcome], helpdesk: &HelpdeskRestore) -> bool {
    helpdesk.orders_after_restore == helpdesk.orders_at_backup
        && helpdesk.orders_after_rollback == helpdesk.orders_after_mistake
        && outcomes.iter().all(|outcome| outcome.verified.is_ok())
}

/// Print the summary; whether all went well.
fn print_report(outcomes: &[TenantOutcome], helpdesk: &HelpdeskRestore) -> bool {
    print_summary(outcomes);
    let offline = |milliseconds: Option<u64>| {
        milliseconds.map_or_else(|| "?".to_owned(), |ms| format!("{ms} ms"))
    };
    println!(
        "helpdesk restore onto live tenant {}: orders {} at the backup, {} after the customer's mistake, {} after the restore ({:.1} s, offline {}), {} after the rollback (offline {})",
        helpdesk.tenant,
        helpdesk.orders_at_backup,
        helpdesk.orders_after_mistake,
        helpdesk.orders_after_restore,
        helpdesk.restore_seconds,
        offline(helpdesk.restore_offline_ms),
        helpdesk.orders_after_rollback,
        offline(helpdesk.rollback_offline_ms),
    );
    let all_verified = report_ok(outcomes, helpdesk);
    if all_verified {
        println!("all {} tenants restored and verified", outcomes.len());
    } else {
        println!("some tenants could not be restored and verified");
    }
    all_verified
}

/// Empty the working directory, refusing one that a demo did not make.
fn prepare_directory(dir: &Path) -> anyhow::Result<PathBuf> {
    if dir.exists() {
        let is_demo_directory = dir.join(MARKER_FILE).is_file();
        let is_empty = std::fs::read_dir(dir)
            .with_context(|| format!("read {}", dir.display()))?
            .next()
            .is_none();
        if !is_demo_directory && !is_empty {
            anyhow::bail!(
                "{} exists and was not made by lifeboat demo; choose another --dir",
                dir.display()
            );
        }
        std::fs::remove_dir_all(dir).with_context(|| format!("empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    std::fs::write(dir.join(MARKER_FILE), b"made by lifeboat demo\n")
        .with_context(|| format!("write {}", dir.join(MARKER_FILE).display()))?;
    dir.canonicalize()
        .with_context(|| format!("resolve {}", dir.display()))
}

async fn run_demo(
    dir: &Path,
    cancel: CancellationToken,
) -> anyhow::Result<(Vec<TenantOutcome>, HelpdeskRestore, DemoWorld)> {
    eprintln!(
        "starting a PostgreSQL cluster in {}",
        dir.join("postgres").display()
    );
    let cluster = PostgresCluster::start(&dir.join("postgres"))
        .await
        .context("start the demo PostgreSQL cluster")?;
    let secret_access_key = uuid::Uuid::new_v4().simple().to_string();
    let mut regions = Vec::new();
    for name in REGION_NAMES {
        let region = EmbeddedRegion::start(
            &dir.join("regions").join(name),
            ACCESS_KEY_ID,
            &secret_access_key,
            BUCKET,
        )
        .await
        .with_context(|| format!("start region {name}"))?;
        eprintln!("region {name} listening on {}", region.endpoint());
        regions.push((name, region));
    }

    let identity_path = dir.join("identity.txt");
    let recipient = lifeboat_core::keys::generate_identity_file(&identity_path)?;
    let secret_path = dir.join("s3-secret");
    write_private_file(&secret_path, &secret_access_key)?;
    // The cluster trusts no one over TCP: lifeboat signs in with this start's password.
    let postgres_password_path = dir.join("postgres-password");
    write_private_file(
        &postgres_password_path,
        cluster.superuser_password().expose_secret(),
    )?;
    let config_path = dir.join("lifeboat.toml");
    std::fs::write(
        &config_path,
        demo_config(
            &cluster,
            &regions,
            &recipient.to_string(),
            &identity_path,
            &secret_path,
            &postgres_password_path,
        ),
    )
    .with_context(|| format!("write {}", config_path.display()))?;
    let config = Config::load(Some(&config_path))?;
    let region_clients = Regions::from_config(&config);
    // Object lock where the store has it; the embedded store (s3s-fs) has no versioning.
    let lock_supported = match region_clients.first() {
        Some(region) => region
            .bucket_lock()
            .await
            .is_ok_and(|lock| lock.lock_enabled),
        None => false,
    };
    if !lock_supported {
        eprintln!(
            "object lock: not supported by the demo's embedded S3 store (no versioning), so these backups are not immutable; give production regions object lock and a writer key that cannot delete (README, \"Keys that cannot destroy backups\"; `lifeboat regions check`)"
        );
    }
    let cluster_config = config
        .clusters
        .values()
        .next()
        .context("the demo configuration has a cluster")?
        .clone();

    // The controller's catalog lives in the same throwaway cluster. Each tenant is
    // provisioned by the provision-tenant playbook (its own role and database, isolated)
    // and registered there, as `lifeboat tenant provision` does; its sample data is then
    // loaded as the tenant's role, so the tenant owns it.
    eprintln!("creating the catalog (database {CATALOG_DATABASE:?})");
    lifeboat_provisioner::create_database(&cluster_config, CATALOG_DATABASE).await?;
    let catalog = controller::open_migrated_catalog(&config).await?;
    let mut database_sizes = Vec::new();
    for (tenant_name, database, scale) in TENANTS {
        eprintln!(
            "tenant {tenant_name}: provisioning role and database {database:?} (playbook provision-tenant)"
        );
        let (tenant, provisioned) = super::provision::provision_and_register(
            &config,
            &region_clients,
            &catalog,
            NewTenant {
                name: TenantName::parse(tenant_name)?,
                cluster: cluster_config.name.clone(),
                database: Some(database.to_owned()),
                schedule: None,
                retention: Retention::default(),
            },
            &super::catalog::operator(&catalog).await?,
            &cancel,
        )
        .await?;
        write_private_file(
            &dir.join(format!("{tenant_name}.password")),
            provisioned.password.expose_secret(),
        )?;
        let client = lifeboat_core::postgres::connect(&cluster_config, database).await?;
        client
            .batch_execute(&format!(
                "SET ROLE {};\n{}",
                lifeboat_core::postgres::quote_identifier(&provisioned.role),
                SAMPLE_DATA_SQL.replace("{scale}", &scale.to_string())
            ))
            .await
            .with_context(|| format!("load sample data into {database:?}"))?;
        drop(client);
        database_sizes.push(
            lifeboat_provisioner::database_size_bytes(&cluster_config, &tenant.database).await?,
        );
    }
    let config = Arc::new(config);
    let policy = QueuePolicy {
        retry_base: Duration::from_secs(5),
        max_attempts: 3,
        ..QueuePolicy::from_settings(&config.queue)
    };
    let options = NightlyOptions {
        run: RunName::parse("demo")?,
        drill: true,
        maintenance: Some(controller::maintenance_options(
            &config,
            &region_clients,
            20,
            false,
        )),
        max_attempts: policy.max_attempts,
        drill_cluster: config.controller.drill_cluster.clone(),
    };
    let harness = nightly::Harness {
        policy,
        agent_concurrency: Some(2),
        deadline: Duration::from_secs(10 * 60),
        announce: true,
    };
    let night = nightly::execute(
        &config,
        &region_clients,
        &catalog,
        &options,
        harness,
        &cancel,
    )
    .await?;

    // The nightly drilled each new backup through the queue: restored into a scratch
    // database by the agent, verified against the manifest, recorded in the catalog.
    let mut outcomes = Vec::new();
    for ((tenant_name, _, _), database_bytes) in TENANTS.iter().zip(database_sizes) {
        let Some(backed_up) = night
            .outcomes
            .iter()
            .find(|outcome| outcome.tenant == *tenant_name)
        else {
            continue;
        };
        let verified = match (&backed_up.drill, &backed_up.error) {
            (_, Some(error)) => Err(format!("backup failed: {error}")),
            (Some(drill), None) if drill.verified => Ok(format!(
                "yes ({} tables, {} rows)",
                drill.tables_verified.unwrap_or_default(),
                drill.rows_verified.unwrap_or_default()
            )),
            (Some(drill), None) => Err(format!(
                "drill failed: {}",
                drill.error.as_deref().unwrap_or("unknown error")
            )),
            (None, None) => Err("not drilled".to_owned()),
        };
        outcomes.push(TenantOutcome {
            tenant: (*tenant_name).to_owned(),
            database_bytes,
            stored_bytes: backed_up.stored_bytes.unwrap_or(0),
            regions: if backed_up.degraded {
                "degraded".to_owned()
            } else {
                REGION_NAMES.join(",")
            },
            backup_seconds: backed_up.duration_ms.unwrap_or(0) as f64 / 1000.0,
            restore_seconds: backed_up
                .drill
                .as_ref()
                .filter(|_| verified.is_ok())
                .and_then(|drill| drill.duration_ms)
                .map(|ms| ms as f64 / 1000.0),
            verified,
        });
    }
    let tls = lifeboat_controller::tls::write_self_signed(dir)?;
    let helpdesk = helpdesk_restore(
        &config,
        &region_clients,
        &catalog,
        &cluster_config,
        &tls,
        &cancel,
    )
    .await
    .context("the helpdesk restore")?;
    if let Some(done) = &night.maintenance {
        eprintln!(
            "nightly maintenance: scrub checked {} copies ({} bad), repair made {} copies, {} problems",
            done.copies_checked,
            done.copies_bad,
            done.repaired,
            done.problems.len()
        );
        for problem in &done.problems {
            eprintln!("  problem: {problem}");
        }
    }
    let world = DemoWorld {
        cluster,
        regions,
        config,
        region_clients,
        catalog,
        tls,
    };
    Ok((outcomes, helpdesk, world))
}

/// `--serve`: the panel over HTTPS (the demo's self-signed certificate) with an agent, and
/// three users to sign in with — an admin, a helpdesk user and acme's owner — whose
/// passwords and TOTP secrets are printed (and written to `panel-logins.txt`, mode 0600),
/// until Ctrl-C.
async fn serve_panel(
    world: &DemoWorld,
    dir: &Path,
    address: SocketAddr,
    cancel: &CancellationToken,
) -> anyhow::Result<()> {
    use lifeboat_controller::accounts::{Accounts, NewUser, Role, generate_password};

    let accounts = Accounts::new(world.catalog.clone(), world.config.panel)?;
    let operator = super::catalog::operator(&world.catalog).await?;
    let mut logins = String::new();
    for (login, role, tenant) in [
        ("demo-admin", Role::Admin, None),
        ("demo-helpdesk", Role::Helpdesk, None),
        ("acme-owner", Role::Owner, Some(TENANTS[0].0)),
    ] {
        let password = generate_password();
        accounts
            .add_user(
                NewUser {
                    login: login.to_owned(),
                    role,
                    tenant: tenant.map(TenantName::parse).transpose()?,
                    password: password.clone(),
                },
                &operator,
            )
            .await?;
        // Enrolment confirmed with the previous step's code, so the current one signs in.
        let enrolment = accounts.begin_totp_enrolment(login, &operator).await?;
        let earlier = chrono::Utc::now() - chrono::Duration::seconds(30);
        let code = lifeboat_controller::accounts::totp::current_code(
            enrolment.secret_base32.expose_secret(),
            login,
            earlier,
        )
        .context("a TOTP code")?;
        accounts
            .confirm_totp_enrolment(
                login,
                &SecretString::from(code),
                chrono::Utc::now(),
                &operator,
            )
            .await?;
        logins.push_str(&format!(
            "  {login:<14} {:<9} password {}  TOTP secret {}\n",
            role.as_str(),
            password.expose_secret(),
            enrolment.secret_base32.expose_secret()
        ));
    }
    write_private_file(&dir.join("panel-logins.txt"), &logins)?;
    let running = controller::start(
        &world.config,
        &world.region_clients,
        world.catalog.clone(),
        controller::Listen {
            address,
            tls: Some(&world.tls),
            insecure_http: false,
        },
        controller::controller_options(
            &world.config,
            &world.region_clients,
            QueuePolicy::from_settings(&world.config.queue),
            false,
            None,
            false,
        ),
        Some(2),
        cancel.child_token(),
    )
    .await?;
    println!(
        "\nthe control panel is at {}/ (self-signed certificate {}; your browser will warn)",
        running.url,
        world.tls.cert_file.display()
    );
    println!("sign in with a code from an authenticator app holding the TOTP secret:");
    print!("{logins}");
    println!("press Ctrl-C to stop");
    cancel.cancelled().await;
    running.stop().await
}

/// What the helpdesk restore showed.
struct HelpdeskRestore {
    tenant: &'static str,
    orders_at_backup: i64,
    orders_after_mistake: i64,
    orders_after_restore: i64,
    orders_after_rollback: i64,
    restore_offline_ms: Option<u64>,
    rollback_offline_ms: Option<u64>,
    restore_seconds: f64,
}

/// The helpdesk path, through the job queue as in production: a customer deletes most of
/// their orders by mistake; a live restore of the night's backup (safety backup, shadow,
/// verify, swap) brings them back; then a rollback swaps the mistaken state back in.
async fn helpdesk_restore(
    config: &Arc<Config>,
    regions: &Regions,
    catalog: &lifeboat_controller::catalog::Catalog,
    cluster: &lifeboat_core::config::ClusterConfig,
    tls: &TlsFiles,
    cancel: &CancellationToken,
) -> anyhow::Result<HelpdeskRestore> {
    let (tenant_name, database, _) = TENANTS[0];
    let tenant = TenantName::parse(tenant_name)?;
    let count_orders = || async {
        let client = lifeboat_core::postgres::connect(cluster, database).await?;
        let count: i64 = client
            .query_one("SELECT count(*) FROM orders", &[])
            .await?
            .get(0);
        anyhow::Ok(count)
    };
    let orders_at_backup = count_orders().await?;
    {
        let client = lifeboat_core::postgres::connect(cluster, database).await?;
        client
            .batch_execute("DELETE FROM orders WHERE id % 4 <> 0")
            .await
            .context("the customer's mistake")?;
    }
    let orders_after_mistake = count_orders().await?;
    eprintln!(
        "helpdesk: tenant {tenant_name} deleted orders by mistake ({orders_at_backup} -> {orders_after_mistake}); restoring last night's backup onto the live database"
    );
    let running = controller::start(
        config,
        regions,
        catalog.clone(),
        controller::Listen {
            address: "127.0.0.1:0".parse().context("loopback address")?,
            tls: Some(tls),
            insecure_http: false,
        },
        lifeboat_controller::server::ControllerOptions {
            identities: controller::download_identities(config)?,
            ..controller::controller_options(
                config,
                regions,
                QueuePolicy::from_settings(&config.queue),
                false,
                None,
                false,
            )
        },
        Some(1),
        cancel.child_token(),
    )
    .await?;
    // The controller and its agent are stopped whatever happens in between.
    let helpdesk = async {
        // What a remote agent does first: reach the API over TLS, trusting the demo's
        // self-signed certificate as its CA (`lifeboat agent --ca-file`).
        ControllerClient::new(
            &running.url,
            SecretString::from(String::new()),
            Some(&tls.cert_file),
            false,
        )?
        .healthz()
        .await?;
        eprintln!(
            "controller API at {} over TLS (self-signed certificate {}, trusted with --ca-file)",
            running.url,
            tls.cert_file.display()
        );
        // No helpdesk users yet: the demo acts as the catalog's operator.
        let operator = super::catalog::operator(catalog).await?;
        let requested = restores::request_live_restore(
            catalog,
            config,
            &tenant,
            lifeboat_core::restore::BackupSelector::Latest,
            "demo: the customer deleted most of their orders by mistake",
            &operator,
        )
        .await?;
        running.work_ready.notify_waiters();
        let restored = wait_for_restore(catalog, requested.job_id, cancel).await?;
        let orders_after_restore = count_orders().await?;
        eprintln!(
            "helpdesk: restored ({} -> {orders_after_restore} orders), offline {} ms; rolling back",
            orders_after_mistake,
            restored.offline_ms.unwrap_or(0)
        );
        let rollback = restores::request_rollback(
            catalog,
            config,
            &tenant,
            Some("demo: show the rollback"),
            &operator,
        )
        .await?;
        running.work_ready.notify_waiters();
        let rolled_back = wait_for_restore(catalog, rollback.job_id, cancel).await?;
        let orders_after_rollback = count_orders().await?;
        anyhow::Ok((
            restored,
            rolled_back,
            orders_after_restore,
            orders_after_rollback,
        ))
    }
    .await;
    running.stop().await?;
    let (restored, rolled_back, orders_after_restore, orders_after_rollback) = helpdesk?;
    let restore_seconds = (restored.finished_at.unwrap_or(restored.requested_at)
        - restored.requested_at)
        .to_std()
        .unwrap_or_default()
        .as_secs_f64();
    Ok(HelpdeskRestore {
        tenant: tenant_name,
        orders_at_backup,
        orders_after_mistake,
        orders_after_restore,
        orders_after_rollback,
        restore_offline_ms: restored.offline_ms,
        rollback_offline_ms: rolled_back.offline_ms,
        restore_seconds,
    })
}

/// Wait until restore job `job_id` ends; its status if it succeeded.
async fn wait_for_restore(
    catalog: &lifeboat_controller::catalog::Catalog,
    job_id: i64,
    cancel: &CancellationToken,
) -> anyhow::Result<restores::RestoreStatus> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5 * 60);
    loop {
        let status = restores::restore_job_status(catalog, job_id)
            .await?
            .with_context(|| format!("job {job_id} is not a restore"))?;
        if status.state.is_finished() {
            anyhow::ensure!(
                status.state == lifeboat_controller::queue::JobState::Succeeded,
                "restore job {job_id} failed: {}",
                status.error.as_deref().unwrap_or("no error recorded")
            );
            return Ok(status);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline && !cancel.is_cancelled(),
            "restore job {job_id} did not finish"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn write_private_file(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    file.write_all(contents.as_bytes())
        .with_context(|| format!("write {}", path.display()))
}

fn toml_string(text: &str) -> String {
    // A JSON string is a valid TOML basic string.
    serde_json::to_string(text).unwrap_or_default()
}

fn demo_config(
    cluster: &PostgresCluster,
    regions: &[(&str, EmbeddedRegion)],
    recipient: &str,
    identity_path: &Path,
    secret_path: &Path,
    postgres_password_path: &Path,
) -> String {
    let mut config = format!(
        "# Written by lifeboat demo.\nrecipients = [{}]\nidentity_file = {}\npg_bin_dir = {}\n\n[clusters.demo]\nhost = {}\nport = {}\nuser = {}\npassword_file = {}\n",
        toml_string(recipient),
        toml_string(&identity_path.display().to_string()),
        toml_string(&cluster.bin_dir().display().to_string()),
        toml_string(cluster.host()),
        cluster.port(),
        toml_string(cluster.superuser()),
        toml_string(&postgres_password_path.display().to_string()),
    );
    for (priority, (name, region)) in regions.iter().enumerate() {
        config.push_str(&format!(
            "\n[regions.{name}]\nendpoint = {}\nbucket = {}\naccess_key_id = {}\nsecret_access_key_file = {}\npriority = {priority}\n",
            toml_string(&region.endpoint()),
            toml_string(region.bucket()),
            toml_string(ACCESS_KEY_ID),
            toml_string(&secret_path.display().to_string()),
        ));
    }
    config.push_str(&format!(
        "\n[catalog]\ncluster = \"demo\"\ndatabase = {}\n",
        toml_string(CATALOG_DATABASE)
    ));
    // No [tenants]: the tenants live in the catalog, as `lifeboat tenant add` puts them.
    config
}

fn print_summary(outcomes: &[TenantOutcome]) {
    let mut table = Table::new();
    table.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    table.set_header([
        "tenant",
        "database size",
        "stored size",
        "regions",
        "backup time",
        "recovery time (drill)",
        "verified",
    ]);
    for outcome in outcomes {
        table.add_row([
            outcome.tenant.clone(),
            human_bytes(outcome.database_bytes),
            human_bytes(outcome.stored_bytes),
            outcome.regions.clone(),
            human_duration(Duration::from_secs_f64(outcome.backup_seconds)),
            outcome
                .restore_seconds
                .map(|seconds| human_duration(Duration::from_secs_f64(seconds)))
                .unwrap_or_else(|| "-".to_owned()),
            match &outcome.verified {
                Ok(summary) => summary.clone(),
                Err(error) => format!("NO: {error}"),
            },
        ]);
    }
    println!("{table}");
}
