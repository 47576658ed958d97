-- The catalog's first tables: tenants and the append-only audit log.
-- Backups, copies, jobs and drills follow in later migrations as their code arrives.

CREATE TABLE tenants (
    name text PRIMARY KEY CHECK (name ~ '^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$'),
    cluster text NOT NULL,
    database_name text NOT NULL CHECK (length(database_name) BETWEEN 1 AND 63),
    -- NULL: daily, at a time spread over the backup window by a hash of the name.
    schedule text,
    keep_daily integer NOT NULL DEFAULT 7 CHECK (keep_daily >= 0),
    keep_weekly integer NOT NULL DEFAULT 4 CHECK (keep_weekly >= 0),
    keep_monthly integer NOT NULL DEFAULT 12 CHECK (keep_monthly >= 0),
    keep_yearly integer NOT NULL DEFAULT 0 CHECK (keep_yearly >= 0),
    legal_hold boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE audit_log (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    actor text NOT NULL,
    action text NOT NULL,
    tenant text,
    details jsonb NOT NULL DEFAULT '{}'
);

-- Append-only: rows may be added, never changed or removed.
CREATE FUNCTION audit_log_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_is_append_only();
