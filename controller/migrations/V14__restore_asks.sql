-- A tenant's owner asks staff for a restore; staff serve it (a restore of the tenant
-- closes the open ask) or decline it, or the owner withdraws it. One open ask per tenant.
CREATE TABLE restore_asks (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    -- NULL: the newest restorable backup when staff restore. No foreign key: a backup
    -- purged while the ask waits must not turn the ask into "the newest".
    backup_id uuid,
    target text NOT NULL CHECK (target IN ('live', 'copy')),
    note text NOT NULL CHECK (length(btrim(note)) BETWEEN 1 AND 2000),
    asked_by text NOT NULL,
    asked_at timestamptz NOT NULL DEFAULT now(),
    state text NOT NULL DEFAULT 'open'
        CHECK (state IN ('open', 'served', 'declined', 'withdrawn')),
    closed_by text,
    closed_at timestamptz,
    close_reason text,
    -- The restore job that served it.
    restore_job bigint,
    CHECK ((state = 'open') = (closed_at IS NULL))
);
CREATE UNIQUE INDEX restore_asks_one_open_per_tenant ON restore_asks (tenant) WHERE state = 'open';
