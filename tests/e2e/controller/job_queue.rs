//! The queue and its agents: the API's refusals, leases lost and taken over, an attempt's
//! committed backup adopted (with min_regions copies), limits on concurrent claims, deadlines.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_api_refuses_bad_tokens_stale_leases_and_malformed_reports() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env_with_tenants(&env, &[], 0).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    let controller = serve_in_process(&catalog, &config, QueuePolicy::default()).await;
    let http = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", controller.base);

    let created = env.lifeboat(
        &config_path,
        &["agent", "token", "create", "db-host-1", "--all-clusters"],
    );
    assert!(created.status.success(), "{}", stderr(&created));
    let token = stdout(&created).trim().to_owned();
    assert!(token.starts_with("lbt_"), "{token}");
    let stored: i64 = scalar(
        &catalog,
        &format!(
            "SELECT count(*) FROM agent_tokens WHERE token_sha256::text LIKE '%{}%'",
            &token[4..20]
        ),
    )
    .await;
    assert_eq!(stored, 0, "the token itself is not stored");

    let claim = ClaimRequest {
        clusters: vec![],
        wait_seconds: 0,
        can_decrypt: false,
    };
    // No token, a wrong one: 401 with a message.
    let none = http
        .post(url("/api/v1/agent/claim"))
        .json(&claim)
        .send()
        .await
        .expect("send");
    assert_eq!(none.status(), 401);
    let wrong = http
        .post(url("/api/v1/agent/claim"))
        .bearer_auth("lbt_0000")
        .json(&claim)
        .send()
        .await
        .expect("send");
    assert_eq!(wrong.status(), 401);
    let body: ErrorBody = wrong.json().await.expect("error body");
    assert!(body.error.contains("unknown or revoked"), "{}", body.error);

    // A valid token with nothing to do: 204.
    let idle = http
        .post(url("/api/v1/agent/claim"))
        .bearer_auth(&token)
        .json(&claim)
        .send()
        .await
        .expect("send");
    assert_eq!(idle.status(), 204);

    // A job to work on.
    let client = catalog.connection().await.expect("connection");
    let tenant = TenantName::parse("acme").expect("tenant");
    queue::enqueue(
        &**client,
        &[NewJob {
            dedup_key: None,
            work: JobWork::Backup {
                tenant: tenant.clone(),
                cluster: ClusterName::parse("main").expect("cluster"),
                database: "acme".to_owned(),
                backup_kind: BackupKind::Scheduled,
            },
        }],
        4,
    )
    .await
    .expect("enqueue");
    // An agent for another cluster, or for none, is not offered it.
    for clusters in [vec![], vec![ClusterName::parse("other").expect("cluster")]] {
        let elsewhere = http
            .post(url("/api/v1/agent/claim"))
            .bearer_auth(&token)
            .json(&ClaimRequest {
                clusters,
                wait_seconds: 0,
                can_decrypt: false,
            })
            .send()
            .await
            .expect("send");
        assert_eq!(elsewhere.status(), 204);
    }
    let job: ClaimedJob = http
        .post(url("/api/v1/agent/claim"))
        .bearer_auth(&token)
        .json(&ClaimRequest {
            clusters: vec![ClusterName::parse("main").expect("cluster")],
            wait_seconds: 0,
            can_decrypt: false,
        })
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("claimed job");
    assert_eq!(job.attempt, 1);

    let report_url = url(&format!("/api/v1/jobs/{}/report", job.id));
    // Garbage, a result of the wrong kind, a stale lease: refused, the job still running.
    let garbage = http
        .post(&report_url)
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"lease_token\": 5}")
        .send()
        .await
        .expect("send");
    assert_eq!(garbage.status(), 422);
    let wrong_kind = http
        .post(&report_url)
        .bearer_auth(&token)
        .json(&JobReport {
            lease_token: job.lease_token,
            outcome: JobOutcome::Succeeded {
                result: JobResult::Delete { regions: vec![] },
            },
        })
        .send()
        .await
        .expect("send");
    assert_eq!(wrong_kind.status(), 422);
    let body: ErrorBody = wrong_kind.json().await.expect("error body");
    assert!(body.error.contains("backup job"), "{}", body.error);
    let stale = http
        .post(&report_url)
        .bearer_auth(&token)
        .json(&JobReport {
            lease_token: uuid::Uuid::new_v4(),
            outcome: JobOutcome::Failed {
                error: "x".to_owned(),
                retryable: true,
            },
        })
        .send()
        .await
        .expect("send");
    assert_eq!(stale.status(), 409);
    assert_eq!(
        scalar(
            &catalog,
            &format!(
                "SELECT count(*) FROM jobs WHERE id = {} AND state = 'running'",
                job.id
            )
        )
        .await,
        1
    );

    // A revoked token is refused at once.
    let revoked = env.lifeboat(&config_path, &["agent", "token", "revoke", "db-host-1"]);
    assert!(revoked.status.success(), "{}", stderr(&revoked));
    let refused = http
        .post(url(&format!("/api/v1/jobs/{}/heartbeat", job.id)))
        .bearer_auth(&token)
        .json(&lifeboat_core::api::Heartbeat {
            lease_token: job.lease_token,
            steps: Vec::new(),
        })
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 401);

    // Health and metrics.
    let health = http.get(url("/healthz")).send().await.expect("send");
    assert_eq!(health.status(), 200);
    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .expect("send")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("lifeboat_jobs_running{kind=\"backup\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("lifeboat_region_copy_failures{region=\"eu\"} 0"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_backup_loses_its_lease_and_another_agent_finishes_once() {
    let env = TestEnv::start(Backend::Seaweed, 2).await;
    let config_path = env_with_tenants(&env, &[], 0).await;
    let config = env.config(&catalog_settings());
    // Enough incompressible data that the backup is still uploading when the agent dies.
    env.create_tenant_database("acme", 100).await;
    let tenant_db = env.postgres.connect("acme").await.expect("connect");
    tenant_db
        .batch_execute(
            "CREATE TABLE blobs AS SELECT g AS id, md5(random()::text) || md5(random()::text) AS a, \
             md5(random()::text) || md5(random()::text) AS b FROM generate_series(1, 600000) g",
        )
        .await
        .expect("fill");
    let added = env.lifeboat(
        &config_path,
        &["tenant", "add", "acme", "--cluster", "main"],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let token = stdout(&env.lifeboat(
        &config_path,
        &["agent", "token", "create", "a1", "--all-clusters"],
    ))
    .trim()
    .to_owned();
    let token_file = env.dir.path().join("agent-token");
    std::fs::write(&token_file, &token).expect("token file");
    // A secret file: readable by its owner only, or the agent refuses it.
    std::fs::set_permissions(
        &token_file,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .expect("chmod 600");
    let token_file = token_file.display().to_string();

    let port = lifeboat_sandbox::ports::free_loopback_port().expect("port");
    let listen = format!("127.0.0.1:{port}");
    let controller_url = format!("http://{listen}");
    let _controller = spawn_lifeboat(
        &config_path,
        &[
            "controller",
            "--listen",
            &listen,
            "--no-agent",
            "--lease-seconds",
            "2",
            "--retry-base-seconds",
            "1",
        ],
    );
    let nightly = spawn_lifeboat(
        &config_path,
        &["nightly", "--no-agent", "--json", "--run", "k1"],
    );
    let first_agent = spawn_lifeboat(
        &config_path,
        &[
            "agent",
            "--controller",
            &controller_url,
            "--token-file",
            &token_file,
        ],
    );

    // Kill the agent once its upload is open in a region.
    let region = env.region(&config, 0);
    let prefix = listing_prefix(Some(&TenantName::parse("acme").expect("tenant")));
    wait_until("the backup to start uploading", || async {
        let open = region
            .list_open_uploads(&prefix)
            .await
            .expect("list uploads");
        open.is_some_and(|uploads| !uploads.is_empty())
    })
    .await;
    drop(first_agent);

    let _second_agent = spawn_lifeboat(
        &config_path,
        &[
            "agent",
            "--controller",
            &controller_url,
            "--token-file",
            &token_file,
        ],
    );
    let mut nightly_child = nightly.into_child();
    let finished = tokio::task::spawn_blocking(move || {
        let status = nightly_child.wait();
        let mut out = String::new();
        if let Some(mut stdout) = nightly_child.stdout.take() {
            use std::io::Read;
            let _ = stdout.read_to_string(&mut out);
        }
        (status, out)
    });
    let (status, out) = tokio::time::timeout(Duration::from_secs(120), finished)
        .await
        .expect("the nightly finished")
        .expect("join");
    assert!(status.expect("wait").success(), "{out}");
    let summary: serde_json::Value = serde_json::from_str(&out).expect("json summary");
    assert_eq!(summary["outcomes"][0]["attempts"], 2, "{summary}");

    let catalog = open_catalog(&config).await;
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 1);
    for index in 0..2 {
        let region = env.region(&config, index);
        let keys = crate::harness::all_keys(&region).await;
        assert_eq!(manifests_in(&keys, "acme"), 1, "{keys:?}");
        crate::harness::assert_no_open_uploads(&region, &prefix, "after the killed agent").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_committed_but_never_reported_is_adopted_by_the_next_attempt() {
    let (statuses, committed) = committed_but_never_reported(false).await;
    let result = statuses[0].result.as_ref().expect("result");
    assert_eq!(
        result["backup_id"],
        committed.manifest.backup_id.to_string(),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_in_fewer_than_min_regions_is_not_adopted() {
    let (statuses, committed) = committed_but_never_reported(true).await;
    let result = statuses[0].result.as_ref().expect("result");
    assert_ne!(
        result["backup_id"],
        committed.manifest.backup_id.to_string(),
        "a manifest left in one region of two is not a committed backup: {result}"
    );
}

/// An agent claims acme's backup job, commits the backup with the id it was given, and
/// dies before reporting; with `lose_second_manifest`, the manifest is then lost in the
/// second of the two regions, and the next attempt's agent needs both (min_regions 2). A
/// real agent runs the next attempt.
async fn committed_but_never_reported(
    lose_second_manifest: bool,
) -> (Vec<queue::JobStatus>, lifeboat_core::backup::BackupReport) {
    let env = TestEnv::start(Backend::Seaweed, 2).await;
    let config_path = env_with_tenants(&env, &["acme"], 200).await;
    let config = Arc::new(env.config(&catalog_settings()));
    let catalog = open_catalog(&config).await;
    let policy = QueuePolicy {
        lease: Duration::from_secs(1),
        retry_base: Duration::from_millis(100),
        ..QueuePolicy::default()
    };
    let controller = serve_in_process(&catalog, &config, policy.clone()).await;
    let reaper = {
        let (catalog, policy) = (catalog.clone(), policy.clone());
        tokio::spawn(async move {
            loop {
                let _ = queue::reap_expired_leases(&catalog, &policy).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let run = nightly::enqueue_backups(&catalog, &RunName::parse("adopt").expect("run"), 4)
        .await
        .expect("enqueue");
    let job_id = run["acme"];

    // An agent claims the job, commits the backup with the id it was given, and dies
    // before reporting.
    let http = reqwest::Client::new();
    let job: ClaimedJob = http
        .post(format!("{}/api/v1/agent/claim", controller.base))
        .bearer_auth("lbt_embedded-test-token")
        .json(&ClaimRequest {
            clusters: vec![ClusterName::parse("main").expect("cluster")],
            wait_seconds: 5,
            can_decrypt: false,
        })
        .send()
        .await
        .expect("claim")
        .json()
        .await
        .expect("claimed job");
    let committed = lifeboat_agent::backup_job::backup_tenant_to(
        &config,
        &lifeboat_core::region::Regions::from_config(&config),
        config
            .tenant(&TenantName::parse("acme").expect("tenant"))
            .expect("tenant"),
        BackupKind::Scheduled,
        job.backup_id,
        lifeboat_agent::backup_job::granted_recipient(job.tenant_keys.as_ref()).expect("recipient"),
        Arc::new(lifeboat_core::progress::Silent),
        CancellationToken::new(),
    )
    .await
    .expect("backup");
    assert_eq!(Some(committed.manifest.backup_id), job.backup_id);
    if lose_second_manifest {
        env.region(&config, 1)
            .delete_object(
                &lifeboat_core::manifest::ObjectKey::Manifest(
                    &committed.manifest.tenant,
                    committed.manifest.backup_id,
                )
                .to_key(),
            )
            .await
            .expect("lose the manifest in us");
    }

    // The next attempt, by a real agent, adopts it instead of taking another.
    let cancel = CancellationToken::new();
    // Where a backup must reach both regions to be committed.
    let agent_config = if lose_second_manifest {
        Arc::new(env.config(&Settings {
            min_regions: Some(2),
            ..catalog_settings()
        }))
    } else {
        config.clone()
    };
    let agent_regions = lifeboat_core::region::Regions::from_config(&agent_config);
    let agent = tokio::spawn(lifeboat_agent::worker::run_agent(
        agent_config,
        agent_regions,
        lifeboat_agent::worker::AgentOptions {
            controller: controller.base.clone(),
            token: SecretString::from("lbt_embedded-test-token"),
            clusters: vec![],
            concurrency: 1,
            claim_wait: Duration::from_secs(1),
            ca_file: None,
            insecure_http: false,
        },
        cancel.clone(),
    ));
    let (job_ids, never) = ([job_id], CancellationToken::new());
    let statuses = nightly::wait_for_jobs(&catalog, &job_ids, Duration::from_millis(100), &never);
    let statuses = tokio::time::timeout(Duration::from_secs(60), statuses)
        .await
        .expect("the job finished")
        .expect("statuses");
    cancel.cancel();
    let _ = agent.await;
    reaper.abort();
    assert_eq!(
        statuses[0].state,
        queue::JobState::Succeeded,
        "{statuses:?}"
    );
    assert_eq!(statuses[0].attempts, 2, "{statuses:?}");
    assert_eq!(scalar(&catalog, "SELECT count(*) FROM backups").await, 1);
    if !lose_second_manifest {
        for index in 0..2 {
            let keys = crate::harness::all_keys(&env.region(&config, index)).await;
            assert_eq!(
                manifests_in(&keys, "acme"),
                1,
                "one backup, not two: {keys:?}"
            );
        }
    }
    drop(config_path);
    (statuses, committed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_respect_the_cluster_region_and_tenant_limits() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    env_with_tenants(&env, &[], 0).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    let backup = |tenant: &str, cluster: &str| NewJob {
        dedup_key: None,
        work: JobWork::Backup {
            tenant: TenantName::parse(tenant).expect("tenant"),
            cluster: ClusterName::parse(cluster).expect("cluster"),
            database: tenant.to_owned(),
            backup_kind: BackupKind::Scheduled,
        },
    };
    let mut jobs: Vec<NewJob> = (0..6)
        .map(|index| backup(&format!("tenant-{index}"), "main"))
        .collect();
    jobs.push(backup("solo", "other"));
    jobs.push(backup("solo", "other"));
    for _ in 0..5 {
        jobs.push(NewJob {
            dedup_key: None,
            work: JobWork::Scrub {
                region: lifeboat_core::ids::RegionName::parse("eu").expect("region"),
                copies: vec![],
                keep: vec![],
            },
        });
    }
    queue::enqueue(&**catalog.connection().await.expect("connection"), &jobs, 4)
        .await
        .expect("enqueue");
    let policy = QueuePolicy {
        max_per_cluster: 2,
        max_per_region: 3,
        ..QueuePolicy::default()
    };
    let clusters: Vec<ClusterName> = ["main", "other", "third"]
        .iter()
        .map(|name| ClusterName::parse(name).expect("cluster"))
        .collect();

    // Eight claimers at once, until a few rounds in a row claim nothing.
    let mut idle_rounds = 0;
    while idle_rounds < 3 {
        let claims = futures::future::join_all((0..8).map(|agent| {
            let (catalog, policy, clusters) = (catalog.clone(), policy.clone(), clusters.clone());
            async move {
                queue::claim(
                    &catalog,
                    &format!("agent-{agent}"),
                    &clusters,
                    false,
                    &policy,
                )
                .await
                .expect("claim")
            }
        }))
        .await;
        if claims.iter().all(Option::is_none) {
            idle_rounds += 1;
        } else {
            idle_rounds = 0;
        }
    }
    let running = |filter: &str| {
        let catalog = catalog.clone();
        let sql = format!("SELECT count(*) FROM jobs WHERE state = 'running' AND {filter}");
        async move { scalar(&catalog, &sql).await }
    };
    assert_eq!(running("cluster = 'main'").await, 2, "cluster limit");
    assert_eq!(running("tenant = 'solo'").await, 1, "one job per tenant");
    assert_eq!(running("region = 'eu'").await, 3, "region limit");

    // Finishing one frees its place, and only its place.
    let connection = catalog.connection().await.expect("connection");
    let (finished, lease, owner): (i64, uuid::Uuid, String) = connection
        .query_one(
            "SELECT id, lease_token, lease_owner FROM jobs WHERE state = 'running' AND cluster = 'main' LIMIT 1",
            &[],
        )
        .await
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .expect("a running job");
    queue::lock_running(&**connection, finished, lease, &owner)
        .await
        .expect("held");
    queue::mark_succeeded(&**connection, finished, &serde_json::json!({}))
        .await
        .expect("succeeded");
    let next = queue::claim(&catalog, "agent-0", &clusters, false, &policy)
        .await
        .expect("claim")
        .expect("a place was freed");
    assert!(
        matches!(&next.work, JobWork::Backup { cluster, .. } if cluster.as_str() == "main"),
        "{next:?}"
    );
    assert!(
        queue::claim(&catalog, "agent-0", &clusters, false, &policy)
            .await
            .expect("claim")
            .is_none()
    );

    // A busy cluster does not hold back the jobs queued behind its own: a job on another
    // cluster, enqueued last, is claimed next.
    let mut blocked_then_free: Vec<NewJob> = (6..10)
        .map(|index| backup(&format!("tenant-{index}"), "main"))
        .collect();
    blocked_then_free.push(backup("elsewhere", "third"));
    queue::enqueue(&**connection, &blocked_then_free, 4)
        .await
        .expect("enqueue");
    let behind = queue::claim(&catalog, "agent-0", &clusters, false, &policy)
        .await
        .expect("claim")
        .expect("the other cluster's job");
    assert!(
        matches!(&behind.work, JobWork::Backup { cluster, .. } if cluster.as_str() == "third"),
        "{behind:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_past_its_kinds_deadline_is_ended_however_faithful_its_heartbeats() {
    let env = TestEnv::start(Backend::Embedded, 1).await;
    let config_path = env_with_tenants(&env, &["acme"], 10).await;
    let config = env.config(&catalog_settings());
    let catalog = open_catalog(&config).await;
    let policy = QueuePolicy::default();
    let cluster = ClusterName::parse("main").expect("cluster");
    let job = NewJob {
        dedup_key: None,
        work: JobWork::Backup {
            tenant: TenantName::parse("acme").expect("tenant"),
            cluster: cluster.clone(),
            database: "acme".to_owned(),
            backup_kind: BackupKind::Scheduled,
        },
    };
    queue::enqueue(
        &**catalog.connection().await.expect("connection"),
        &[job],
        4,
    )
    .await
    .expect("enqueue");
    let claimed = queue::claim(&catalog, "agent-1", &[cluster], false, &policy)
        .await
        .expect("claim")
        .expect("the job");
    queue::heartbeat(
        &catalog,
        claimed.id,
        claimed.lease_token,
        "agent-1",
        &[],
        &policy,
    )
    .await
    .expect("a heartbeat within the deadline");
    assert_eq!(
        queue::reap_expired_leases(&catalog, &policy)
            .await
            .expect("reap"),
        0,
        "a job within its deadline and lease is left alone"
    );
    // The attempt started longer ago than a backup may run; its lease is still fresh.
    let hours = i64::try_from(policy.deadlines.backup.as_secs() / 3600).expect("hours") + 1;
    scalar(
        &catalog,
        &format!(
            "WITH aged AS (UPDATE jobs SET started_at = now() - interval '{hours} hours' RETURNING 1)
             SELECT count(*) FROM aged"
        ),
    )
    .await;
    assert_eq!(
        queue::reap_expired_leases(&catalog, &policy)
            .await
            .expect("reap"),
        1
    );
    let statuses = queue::job_statuses(&catalog, &[claimed.id])
        .await
        .expect("status");
    assert_eq!(
        statuses[0].state,
        queue::JobState::Queued,
        "retried: {statuses:?}"
    );
    assert!(
        statuses[0]
            .last_error
            .as_deref()
            .is_some_and(|error| error.contains("deadline passed")),
        "{statuses:?}"
    );
    assert!(
        queue::heartbeat(
            &catalog,
            claimed.id,
            claimed.lease_token,
            "agent-1",
            &[],
            &policy
        )
        .await
        .is_err(),
        "the hung attempt's agent is told to stop"
    );
    drop(config_path);
}
