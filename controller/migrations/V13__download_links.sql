-- Download links: a customer's (or staff's) short-lived, single-use permission to download
-- one backup in one format, optionally encrypted to an age recipient. The link's token is
-- the credential (a browser follows it), so only its SHA-256 is stored, like every other
-- bearer secret here. A link is used by an UPDATE that only matches an unused, unexpired
-- row, so two requests with the same link cannot both get the file.
CREATE TABLE download_links (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    -- No foreign key to tenants: like backups, a tenant may be known from the
    -- configuration only. The backup is the tenant's (checked when the link is issued).
    tenant text NOT NULL,
    backup_id uuid NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
    format text NOT NULL CHECK (format IN ('custom', 'plain-sql-gzip')),
    -- The customer's age recipient (a public key, age1…) when the file is re-encrypted.
    recipient text CHECK (recipient IS NULL OR recipient ~ '^age1[0-9a-z]+$'),
    -- Who issued it: the audit log's actor of the download itself.
    issued_by text NOT NULL,
    issued_by_role text NOT NULL,
    issued_from inet,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at timestamptz,
    used_from inet,
    CHECK (expires_at > created_at)
);
CREATE INDEX download_links_by_backup ON download_links (backup_id);
