-- Backups and their copies (a cache of the manifests in the buckets), the job queue, the
-- scheduler's memory of enqueued slots, and agent tokens.

-- The tenants' scheduler state: the newest slot already enqueued. Missed slots are caught
-- up once: the scheduler enqueues only the newest due slot after this one.
ALTER TABLE tenants ADD COLUMN last_slot timestamptz;

-- One row per committed backup (its manifest exists in at least one region). Backups outlive
-- their tenant's catalog row, so there is no foreign key to tenants.
CREATE TABLE backups (
    id uuid PRIMARY KEY,
    tenant text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('scheduled', 'manual', 'pre-restore')),
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    cluster text NOT NULL,
    database_name text NOT NULL,
    object_key text NOT NULL,
    dump_bytes bigint NOT NULL CHECK (dump_bytes >= 0),
    stored_bytes bigint NOT NULL CHECK (stored_bytes >= 0),
    sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    -- The manifest as read from the region, so the catalog can answer without a bucket.
    manifest jsonb NOT NULL,
    -- Set when a drill or a restore verified this backup's row counts.
    verified_at timestamptz,
    legal_hold boolean NOT NULL DEFAULT false,
    -- Deleted backups wait in the trash (objects still in the buckets) until purged_after.
    trashed_at timestamptz,
    trash_reason text,
    purge_after timestamptz,
    CHECK ((trashed_at IS NULL) = (purge_after IS NULL))
);
CREATE INDEX backups_by_tenant ON backups (tenant, started_at DESC);
CREATE INDEX backups_in_trash ON backups (purge_after) WHERE trashed_at IS NOT NULL;

-- Where each backup is stored. 'present' copies hold the whole object and its manifest.
CREATE TABLE backup_copies (
    backup_id uuid NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    region text NOT NULL,
    state text NOT NULL CHECK (state IN ('present', 'missing', 'corrupt')),
    -- Last time scrub looked at it (HEAD), and last time it was read in full and hashed.
    checked_at timestamptz,
    hashed_at timestamptz,
    detail text,
    PRIMARY KEY (backup_id, region)
);
CREATE INDEX backup_copies_not_present ON backup_copies (region) WHERE state <> 'present';

-- The job queue. Claimed with FOR UPDATE SKIP LOCKED; a running job holds a lease that its
-- agent renews; a lease that expires counts as a failed attempt.
CREATE TABLE jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind text NOT NULL CHECK (kind IN ('backup', 'restore', 'drill', 'replicate', 'delete', 'scrub')),
    tenant text,
    -- For the per-cluster and per-region concurrency limits.
    cluster text,
    region text,
    -- At most one job per key, ever: 'backup:<tenant>:<slot>' makes a scheduled slot
    -- enqueue once, even with two controllers. NULL for work that is not deduplicated.
    dedup_key text UNIQUE,
    params jsonb NOT NULL DEFAULT '{}',
    state text NOT NULL DEFAULT 'queued'
        CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
    attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts integer NOT NULL DEFAULT 4 CHECK (max_attempts >= 1),
    run_after timestamptz NOT NULL DEFAULT now(),
    -- The current attempt: who holds it, until when, and the token its reports must carry.
    lease_owner text,
    lease_token uuid,
    lease_expires_at timestamptz,
    last_error text,
    result jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    started_at timestamptz,
    finished_at timestamptz,
    CHECK ((state = 'running') = (lease_token IS NOT NULL))
);
CREATE INDEX jobs_ready ON jobs (run_after, id) WHERE state = 'queued';
CREATE INDEX jobs_running ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_by_tenant ON jobs (tenant, created_at DESC);

-- Agents authenticate with a bearer token; only its SHA-256 is stored.
CREATE TABLE agent_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    last_seen_at timestamptz
);
