-- Accounts: users (staff and customers), their second factor and recovery codes, login
-- throttling, sessions, API tokens, and a tenant's freeze. Every secret here is stored as a
-- hash (passwords: argon2id PHC strings; random tokens and recovery codes: SHA-256), except
-- the TOTP secret, which the server needs in the clear to check a code (see ARCHITECTURE.md,
-- "Accounts", for why and what protects it).

-- A frozen tenant's users are refused at every session and token lookup until unfrozen.
ALTER TABLE tenants
    ADD COLUMN frozen_at timestamptz,
    ADD COLUMN frozen_reason text,
    ADD CONSTRAINT tenants_frozen_has_reason CHECK ((frozen_at IS NULL) = (frozen_reason IS NULL));

CREATE TABLE users (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- As typed at creation; unique whatever its case (users_login_key below).
    login text NOT NULL CHECK (length(login) BETWEEN 1 AND 64 AND login !~ '[[:cntrl:]]'),
    role text NOT NULL CHECK (role IN ('admin', 'helpdesk', 'owner', 'viewer')),
    -- Staff belong to no tenant; a customer user to exactly one. Removing the tenant removes
    -- its users (and so their sessions, codes and the tenant's API tokens): no orphan can log in.
    tenant text REFERENCES tenants (name) ON DELETE CASCADE,
    password_phc text NOT NULL,
    disabled_at timestamptz,
    -- The confirmed second factor, and one begun but not confirmed yet.
    totp_secret bytea,
    totp_pending_secret bytea,
    -- The last time step whose code was accepted: a code is accepted once (RFC 6238 5.2).
    totp_last_step bigint,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_staff_have_no_tenant
        CHECK ((role IN ('admin', 'helpdesk')) = (tenant IS NULL))
);
CREATE UNIQUE INDEX users_login_key ON users (lower(login));
CREATE INDEX users_tenant ON users (tenant) WHERE tenant IS NOT NULL;

CREATE TABLE recovery_codes (
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    code_sha256 bytea NOT NULL CHECK (length(code_sha256) = 32),
    used_at timestamptz,
    PRIMARY KEY (user_id, code_sha256)
);

-- Failed logins, per login name (whether or not such a user exists, so that throttling
-- says nothing about existence) and per client address. `subject` is 'login:<lowercase
-- name>' or 'address:<ip>'.
CREATE TABLE login_throttle (
    subject text PRIMARY KEY CHECK (subject ~ '^(login|address):'),
    failures integer NOT NULL CHECK (failures >= 0),
    last_failure_at timestamptz NOT NULL,
    -- No attempt is looked at before this (growing delays), nor before locked_until.
    not_before timestamptz,
    locked_until timestamptz
);

CREATE TABLE sessions (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    user_id bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    -- Sent back with every form of this session; random, bound to it, useless without it.
    csrf_token text NOT NULL,
    client_address inet,
    created_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    ended_at timestamptz
);
CREATE INDEX sessions_open_by_user ON sessions (user_id) WHERE ended_at IS NULL;

CREATE TABLE api_tokens (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL REFERENCES tenants (name) ON DELETE CASCADE,
    role text NOT NULL CHECK (role IN ('owner', 'viewer')),
    name text NOT NULL CHECK (length(name) BETWEEN 1 AND 64 AND name !~ '[[:cntrl:]]'),
    token_sha256 bytea NOT NULL UNIQUE CHECK (length(token_sha256) = 32),
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz,
    last_used_at timestamptz
);
-- A name is reusable once its token is revoked (the revoked row stays, for the record).
CREATE UNIQUE INDEX api_tokens_active_name ON api_tokens (tenant, name) WHERE revoked_at IS NULL;
