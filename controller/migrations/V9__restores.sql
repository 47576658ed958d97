-- Helpdesk restores: onto the live database, rolled back, or into a copy; the databases
-- they leave behind for a while; the steps jobs report as they go; drills' step timings.

-- Drop the databases lifeboat kept (a previous database after its grace period, an expired copy).
ALTER TABLE jobs DROP CONSTRAINT jobs_kind_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_kind_check
    CHECK (kind IN ('backup', 'restore', 'drill', 'replicate', 'delete', 'scrub', 'drop-database'));

-- The final backup a deprovisioning takes.
ALTER TABLE backups DROP CONSTRAINT backups_kind_check;
ALTER TABLE backups ADD CONSTRAINT backups_kind_check
    CHECK (kind IN ('scheduled', 'manual', 'pre-restore', 'pre-destroy'));

-- The latest step list a running playbook job sent with its heartbeat (`StepReport`s).
ALTER TABLE jobs ADD COLUMN progress jsonb;

-- The steps of the drill-tenant playbook with their durations: the recovery time per step.
ALTER TABLE drills ADD COLUMN steps jsonb NOT NULL DEFAULT '[]';

-- One row per restore requested (live, rollback or copy), written with its job: who asked,
-- why, and how long the database it leaves behind is kept.
CREATE TABLE restores (
    job_id bigint PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    tenant text NOT NULL,
    cluster text NOT NULL,
    mode text NOT NULL CHECK (mode IN ('live', 'rollback', 'copy')),
    -- None for a rollback. No foreign key: a backup may be purged long after its restore.
    backup_id uuid,
    CHECK ((mode = 'rollback') = (backup_id IS NULL)),
    -- The database that holds the restored data: the live name, or the copy's.
    database_name text NOT NULL,
    -- Live and rollback: the name the database swapped out is kept under.
    previous_database text,
    CHECK ((mode = 'copy') = (previous_database IS NULL)),
    -- Copy: its own role.
    copy_role text,
    CHECK ((mode = 'copy') = (copy_role IS NOT NULL)),
    reason text,
    CHECK (mode <> 'live' OR length(btrim(reason)) > 0),
    requested_by text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    -- How long what it leaves behind is kept once it succeeds (the previous database, or
    -- the copy); NULL: a copy kept until dropped by hand.
    keep_for interval,
    CHECK (mode = 'copy' OR keep_for IS NOT NULL),
    -- From the job's result: the safety backup taken first, and how long the tenant was offline.
    safety_backup_id uuid,
    offline_ms bigint CHECK (offline_ms >= 0)
);
CREATE INDEX restores_by_tenant ON restores (tenant, requested_at DESC);

-- Databases a restore left on a cluster for a while: the previous live database (a rollback
-- swaps it back) and copies. Daily maintenance drops those past keep_until.
CREATE TABLE kept_databases (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    cluster text NOT NULL,
    database_name text NOT NULL CHECK (length(database_name) BETWEEN 1 AND 63),
    why text NOT NULL CHECK (why IN ('previous', 'copy')),
    -- A copy's own role, dropped with it.
    role_name text,
    CHECK (why = 'copy' OR role_name IS NULL),
    from_job bigint NOT NULL REFERENCES jobs (id),
    kept_at timestamptz NOT NULL DEFAULT now(),
    -- NULL: a copy kept until dropped by hand.
    keep_until timestamptz,
    CHECK (why = 'copy' OR keep_until IS NOT NULL),
    dropped_at timestamptz,
    -- A rollback made it live again: it is no longer kept.
    revived_at timestamptz,
    revived_by_job bigint REFERENCES jobs (id)
);
-- A name is kept once per cluster at a time.
CREATE UNIQUE INDEX kept_databases_held ON kept_databases (cluster, database_name)
    WHERE dropped_at IS NULL AND revived_at IS NULL;
CREATE INDEX kept_databases_by_tenant ON kept_databases (tenant, kept_at DESC);
