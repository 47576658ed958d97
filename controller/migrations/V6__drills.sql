-- Drills: a backup restored into a scratch database, verified against its manifest's row
-- counts, and dropped. A verified drill sets backups.verified_at (retention never trashes
-- a tenant's newest verified backup). A drill's row goes with its backup's.
CREATE TABLE drills (
    id bigserial PRIMARY KEY,
    tenant text NOT NULL,
    backup_id uuid NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    -- The region the object was read from; none if no region could serve it.
    region text,
    scratch_database text NOT NULL,
    started_at timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    CHECK (finished_at >= started_at),
    outcome text NOT NULL CHECK (outcome IN ('verified', 'failed')),
    tables_verified integer CHECK (tables_verified >= 0),
    rows_verified bigint CHECK (rows_verified >= 0),
    error text,
    CHECK ((outcome = 'failed') = (error IS NOT NULL)),
    requested_by text NOT NULL
);
CREATE INDEX drills_by_tenant ON drills (tenant, finished_at DESC);
