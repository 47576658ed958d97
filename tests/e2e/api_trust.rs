//! The controller's API believes no agent on its word: a token's scope decides what it may
//! claim, only the agent holding a lease may act on its job, a revoked token gets nothing
//! even from a claim that was already waiting, bodies are bounded and read only after
//! authentication, and a report the catalog's constraints refuse is the caller's error.
//! Each test runs the API in this process against a real catalog.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lifeboat_controller::agents;
use lifeboat_controller::catalog::Catalog;
use lifeboat_controller::queue::{self, NewJob, QueuePolicy};
use lifeboat_controller::server::{self, Controller};
use lifeboat_core::api::{
    ClaimRequest, ClaimedJob, ErrorBody, Heartbeat, JobOutcome, JobReport, JobResult, JobWork,
};
use lifeboat_core::config::Config;
use lifeboat_core::ids::{BackupId, ClusterName, TenantName};
use lifeboat_core::manifest::BackupKind;
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, CATALOG, Settings, TestEnv, api_options, stderr, stdout};

fn settings() -> Settings {
    Settings {
        min_regions: Some(1),
        extra: CATALOG.to_owned(),
        ..Settings::default()
    }
}

fn cluster(name: &str) -> ClusterName {
    ClusterName::parse(name).expect("cluster name")
}

/// A migrated catalog and the API serving it in this process, with no embedded agent.
struct Api {
    env: TestEnv,
    config_path: PathBuf,
    config: Config,
    catalog: Catalog,
    base: String,
    http: reqwest::Client,
    cancel: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Api {
    async fn start() -> Api {
        let env = TestEnv::start(Backend::Embedded, 1).await;
        env.create_catalog().await;
        let config_path = env.config_file(&settings());
        let migrated = env.lifeboat(&config_path, &["controller", "migrate"]);
        assert!(migrated.status.success(), "{}", stderr(&migrated));
        let config = env.config(&settings());
        let catalog = Catalog::open(&config).await.expect("open catalog");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let cancel = CancellationToken::new();
        tokio::spawn(server::serve(
            catalog.clone(),
            listener,
            api_options(&config, QueuePolicy::default()),
            None,
            Controller {
                work_ready: Arc::default(),
            },
            cancel.clone(),
        ));
        Api {
            env,
            config_path,
            config,
            catalog,
            base,
            http: reqwest::Client::new(),
            cancel,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `lifeboat agent token create NAME FLAGS…`; the token.
    fn create_token(&self, name: &str, flags: &[&str]) -> String {
        let mut arguments = vec!["agent", "token", "create", name];
        arguments.extend_from_slice(flags);
        let created = self.env.lifeboat(&self.config_path, &arguments);
        assert!(created.status.success(), "{}", stderr(&created));
        stdout(&created).trim().to_owned()
    }

    async fn enqueue(&self, work: JobWork) -> i64 {
        let client = self.catalog.connection().await.expect("connection");
        let ids = queue::enqueue(
            &**client,
            &[NewJob {
                work,
                dedup_key: None,
            }],
            4,
        )
        .await
        .expect("enqueue");
        ids[0]
    }

    async fn claim(&self, token: &str, request: &ClaimRequest) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/agent/claim"))
            .bearer_auth(token)
            .json(request)
            .send()
            .await
            .expect("send claim")
    }

    /// The job's state, attempts, owner, lease expiry (as text) and last error.
    async fn job_row(
        &self,
        id: i64,
    ) -> (String, i32, Option<String>, Option<String>, Option<String>) {
        let client = self.catalog.connection().await.expect("connection");
        let row = client
            .query_one(
                "SELECT state, attempts, lease_owner, lease_expires_at::text, last_error FROM jobs WHERE id = $1",
                &[&id],
            )
            .await
            .expect("job row");
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4))
    }
}

fn backup_work(tenant: &str, on: &str, backup_kind: BackupKind) -> JobWork {
    JobWork::Backup {
        tenant: TenantName::parse(tenant).expect("tenant"),
        cluster: cluster(on),
        database: tenant.to_owned(),
        backup_kind,
    }
}

fn claim_request(clusters: &[&str], can_decrypt: bool) -> ClaimRequest {
    ClaimRequest {
        clusters: clusters.iter().map(|name| cluster(name)).collect(),
        wait_seconds: 0,
        can_decrypt,
    }
}

async fn claimed(response: reqwest::Response) -> ClaimedJob {
    assert_eq!(response.status(), 200, "a job is handed out");
    response.json().await.expect("claimed job")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_claims_only_on_its_clusters_and_drills_only_with_can_decrypt() {
    let api = Api::start().await;
    // A token must say which clusters it serves.
    let unscoped = api
        .env
        .lifeboat(&api.config_path, &["agent", "token", "create", "unscoped"]);
    assert!(!unscoped.status.success());
    assert!(
        stderr(&unscoped).contains("--all-clusters"),
        "{}",
        stderr(&unscoped)
    );

    let main_only = api.create_token("main-only", &["--cluster", "main"]);
    // Queued first, so the request's own clusters would hand it out first.
    let elsewhere = api
        .enqueue(backup_work("globex", "other", BackupKind::Scheduled))
        .await;
    let on_main = api
        .enqueue(backup_work("acme", "main", BackupKind::Scheduled))
        .await;
    let drill = api
        .enqueue(JobWork::Drill {
            tenant: TenantName::parse("initech").expect("tenant"),
            cluster: cluster("main"),
            backup_id: BackupId::new(),
            sha256: None,
        })
        .await;

    // The request asks for both clusters and for drills: the token narrows it.
    let asking_for_everything = claim_request(&["other", "main"], true);
    let job = claimed(api.claim(&main_only, &asking_for_everything).await).await;
    assert_eq!(job.id, on_main, "only the token's cluster");
    let nothing = api.claim(&main_only, &asking_for_everything).await;
    assert_eq!(
        nothing.status(),
        204,
        "neither the other cluster's job nor the drill"
    );

    // A token from before scopes (no clusters, no capability) serves every cluster, no drills.
    let legacy = agents::generate_token();
    api.catalog
        .connection()
        .await
        .expect("connection")
        .execute(
            "INSERT INTO agent_tokens (name, token_sha256) VALUES ('legacy', $1)",
            &[&agents::token_hash(&legacy)],
        )
        .await
        .expect("insert a token as an older lifeboat did");
    let job = claimed(api.claim(&legacy, &asking_for_everything).await).await;
    assert_eq!(job.id, elsewhere, "every cluster");
    let nothing = api.claim(&legacy, &asking_for_everything).await;
    assert_eq!(nothing.status(), 204, "no drill without --can-decrypt");

    // Drills go to a token that may decrypt, when its agent says it can.
    let decrypting = api.create_token("decrypting", &["--all-clusters", "--can-decrypt"]);
    let nothing = api
        .claim(&decrypting, &claim_request(&["main"], false))
        .await;
    assert_eq!(
        nothing.status(),
        204,
        "a request may narrow its token's scope"
    );
    let job = claimed(
        api.claim(&decrypting, &claim_request(&["main"], true))
            .await,
    )
    .await;
    assert_eq!(job.id, drill);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_agent_holding_the_lease_token_cannot_heartbeat_or_report_the_job() {
    let api = Api::start().await;
    let owner = api.create_token("owner", &["--all-clusters"]);
    let intruder = api.create_token("intruder", &["--all-clusters"]);
    let id = api
        .enqueue(backup_work("acme", "main", BackupKind::Scheduled))
        .await;
    let job = claimed(api.claim(&owner, &claim_request(&["main"], false)).await).await;
    assert_eq!(job.id, id);
    let before = api.job_row(id).await;

    let heartbeat_url = api.url(&format!("/api/v1/jobs/{id}/heartbeat"));
    let report_url = api.url(&format!("/api/v1/jobs/{id}/report"));
    let heartbeat = Heartbeat {
        lease_token: job.lease_token,
        steps: Vec::new(),
    };
    let failure = JobReport {
        lease_token: job.lease_token,
        outcome: JobOutcome::Failed {
            error: "pretending".to_owned(),
            retryable: false,
        },
    };
    let refused = api
        .http
        .post(&heartbeat_url)
        .bearer_auth(&intruder)
        .json(&heartbeat)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 403);
    let body: ErrorBody = refused.json().await.expect("error body");
    assert!(body.error.contains("another agent"), "{}", body.error);
    let refused = api
        .http
        .post(&report_url)
        .bearer_auth(&intruder)
        .json(&failure)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 403);
    assert_eq!(api.job_row(id).await, before, "nothing changed");

    // The owner still can.
    let renewed = api
        .http
        .post(&heartbeat_url)
        .bearer_auth(&owner)
        .json(&heartbeat)
        .send()
        .await
        .expect("send");
    assert_eq!(renewed.status(), 200);
    let reported = api
        .http
        .post(&report_url)
        .bearer_auth(&owner)
        .json(&failure)
        .send()
        .await
        .expect("send");
    assert_eq!(reported.status(), 200);
    assert_eq!(api.job_row(id).await.0, "failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_that_waited_through_its_tokens_revocation_hands_out_nothing() {
    let api = Api::start().await;
    let token = api.create_token("waiter", &["--all-clusters"]);
    let waiting = {
        let (http, url, token) = (
            api.http.clone(),
            api.url("/api/v1/agent/claim"),
            token.clone(),
        );
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(&ClaimRequest {
                    clusters: vec![cluster("main")],
                    wait_seconds: 20,
                    can_decrypt: false,
                })
                .send()
                .await
                .expect("send claim")
        })
    };
    // The claim is authenticated and waiting; then the token is revoked and work appears.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let revoked = api
        .env
        .lifeboat(&api.config_path, &["agent", "token", "revoke", "waiter"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let id = api
        .enqueue(backup_work("acme", "main", BackupKind::Scheduled))
        .await;

    let answer = waiting.await.expect("claim task");
    assert_eq!(answer.status(), 401, "a revoked token is given no job");
    let (state, attempts, ..) = api.job_row(id).await;
    assert_eq!((state.as_str(), attempts), ("queued", 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_are_refused_after_authentication_except_reports() {
    let api = Api::start().await;
    let token = api.create_token("bulky", &["--all-clusters"]);
    // About 30 KiB of valid cluster names.
    let many_clusters: Vec<String> = (0..2000).map(|n| format!("cluster-{n:05}")).collect();
    let large_claim = serde_json::json!({ "clusters": many_clusters, "wait_seconds": 0 });
    let refused = api
        .http
        .post(api.url("/api/v1/agent/claim"))
        .bearer_auth(&token)
        .json(&large_claim)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 413);

    // Without a token, the same body is refused for the token: the body was never read.
    let anonymous = api
        .http
        .post(api.url("/api/v1/agent/claim"))
        .json(&large_claim)
        .send()
        .await
        .expect("send");
    assert_eq!(anonymous.status(), 401);
    let padding = "x".repeat(20 * 1024);
    let large_heartbeat =
        serde_json::json!({ "lease_token": uuid::Uuid::new_v4(), "padding": padding });
    let refused = api
        .http
        .post(api.url("/api/v1/jobs/1/heartbeat"))
        .bearer_auth(&token)
        .json(&large_heartbeat)
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 413);

    // A report keeps its large limit: 200 KiB is read, and refused for what it says.
    let large_report = serde_json::json!({
        "lease_token": uuid::Uuid::new_v4(),
        "outcome": { "outcome": "failed", "error": "x".repeat(200 * 1024), "retryable": true },
    });
    let read = api
        .http
        .post(api.url("/api/v1/jobs/1/report"))
        .bearer_auth(&token)
        .json(&large_report)
        .send()
        .await
        .expect("send");
    assert_ne!(read.status(), 413);

    // Small requests still work.
    let idle = api.claim(&token, &claim_request(&["main"], false)).await;
    assert_eq!(idle.status(), 204);
}

/// An agent token, acme's manual backup job claimed with it, and a real backup taken under
/// the id that claim handed out (not yet reported).
async fn claimed_backup(
    api: &Api,
    agent: &str,
) -> (String, ClaimedJob, lifeboat_core::backup::BackupReport) {
    api.env.create_tenant_database("acme", 50).await;
    let token = api.create_token(agent, &["--all-clusters"]);
    let id = api
        .enqueue(backup_work("acme", "main", BackupKind::Manual))
        .await;
    let job = claimed(api.claim(&token, &claim_request(&["main"], false)).await).await;
    assert_eq!(job.id, id);
    let tenant = api
        .config
        .tenant(&TenantName::parse("acme").expect("tenant"))
        .expect("configured tenant");
    let backup = lifeboat_agent::backup_job::backup_tenant_to(
        &api.config,
        &lifeboat_core::region::Regions::from_config(&api.config),
        tenant,
        BackupKind::Manual,
        job.backup_id,
        lifeboat_agent::backup_job::granted_recipient(job.tenant_keys.as_ref()).expect("recipient"),
        Arc::new(lifeboat_core::progress::Silent),
        CancellationToken::new(),
    )
    .await
    .expect("backup");
    (token, job, backup)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_encrypted_to_another_key_than_the_tenant_key_handed_out_is_refused() {
    let api = Api::start().await;
    api.env.create_tenant_database("acme", 50).await;
    let token = api.create_token("stolen", &["--all-clusters"]);
    let id = api
        .enqueue(backup_work("acme", "main", BackupKind::Manual))
        .await;
    let job = claimed(api.claim(&token, &claim_request(&["main"], false)).await).await;
    assert_eq!(job.id, id);
    let handed = job
        .tenant_keys
        .as_ref()
        .and_then(|keys| keys.recipient.clone())
        .expect("the claim hands out the tenant's recipient");
    // An agent holding a stolen token encrypts to a key of its own: a backup only it opens.
    let own_key = lifeboat_core::tenant_keys::TenantIdentity::generate().recipient();
    assert_ne!(own_key.to_string(), handed);
    let backup = lifeboat_agent::backup_job::backup_tenant_to(
        &api.config,
        &lifeboat_core::region::Regions::from_config(&api.config),
        api.config
            .tenant(&TenantName::parse("acme").expect("tenant"))
            .expect("configured tenant"),
        BackupKind::Manual,
        job.backup_id,
        Some(own_key),
        Arc::new(lifeboat_core::progress::Silent),
        CancellationToken::new(),
    )
    .await
    .expect("backup");
    let refused = api
        .http
        .post(api.url(&format!("/api/v1/jobs/{id}/report")))
        .bearer_auth(&token)
        .json(&JobReport {
            lease_token: job.lease_token,
            outcome: JobOutcome::Succeeded {
                result: JobResult::Backup {
                    manifest: Box::new(backup.manifest.clone()),
                    regions: backup.regions.clone(),
                    duration_ms: 1,
                },
            },
        })
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 422);
    let body: ErrorBody = refused.json().await.expect("error body");
    assert!(
        body.error.contains("not to the tenant key"),
        "{}",
        body.error
    );
    assert_eq!(api.job_row(id).await.0, "running", "nothing changed");
    let recorded: i64 = api
        .catalog
        .connection()
        .await
        .expect("connection")
        .query_one("SELECT count(*) FROM backups", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(recorded, 0, "the backup is not recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_breaking_a_catalog_check_is_refused_as_unprocessable() {
    let api = Api::start().await;
    // A real backup under the id the claim handed out, reported with a SHA-256 that is not
    // hex: the backups table's CHECK refuses it.
    let (token, job, backup) = claimed_backup(&api, "checker").await;
    let id = job.id;
    let report = |sha256: &str| {
        let mut manifest = backup.manifest.clone();
        manifest.object.sha256 = sha256.to_owned();
        JobReport {
            lease_token: job.lease_token,
            outcome: JobOutcome::Succeeded {
                result: JobResult::Backup {
                    manifest: Box::new(manifest),
                    regions: backup.regions.clone(),
                    duration_ms: 1,
                },
            },
        }
    };
    let report_url = api.url(&format!("/api/v1/jobs/{id}/report"));
    let refused = api
        .http
        .post(&report_url)
        .bearer_auth(&token)
        .json(&report("NOT-A-SHA-256"))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 422);
    let body: ErrorBody = refused.json().await.expect("error body");
    assert!(body.error.contains("sha256"), "{}", body.error);
    assert_eq!(api.job_row(id).await.0, "running", "nothing changed");

    let accepted = api
        .http
        .post(&report_url)
        .bearer_auth(&token)
        .json(&report(&backup.manifest.object.sha256))
        .send()
        .await
        .expect("send");
    assert_eq!(accepted.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_report_is_recorded_only_once_its_regions_hold_what_it_claims() {
    let api = Api::start().await;
    let (token, job, backup) = claimed_backup(&api, "claimer").await;
    let id = job.id;
    let regions = lifeboat_core::region::Regions::from_config(&api.config);
    let report = JobReport {
        lease_token: job.lease_token,
        outcome: JobOutcome::Succeeded {
            result: JobResult::Backup {
                manifest: Box::new(backup.manifest.clone()),
                regions: backup.regions.clone(),
                duration_ms: 1,
            },
        },
    };
    let send = || {
        api.http
            .post(api.url(&format!("/api/v1/jobs/{id}/report")))
            .bearer_auth(&token)
            .json(&report)
            .send()
    };
    // The agent says it stored the object; the region does not hold it (it never did, or
    // someone removed it): the report is a false claim.
    regions[0]
        .delete_object(&backup.manifest.object.key)
        .await
        .expect("remove the object");
    let refused = send().await.expect("send");
    assert_eq!(refused.status(), 422);
    let body: ErrorBody = refused.json().await.expect("error body");
    assert!(body.error.contains("does not hold"), "{}", body.error);
    assert_eq!(api.job_row(id).await.0, "running", "nothing changed");
    let recorded: i64 = api
        .catalog
        .connection()
        .await
        .expect("connection")
        .query_one("SELECT count(*) FROM backups", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(recorded, 0, "no backup recorded on the agent's word");
}
