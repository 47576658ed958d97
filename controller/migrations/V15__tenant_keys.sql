-- Per-tenant age keys (issue 11, part 3). Each tenant's backups are encrypted to its own
-- recipient; its identity is stored only wrapped (age-encrypted to the organisation's
-- recipients), never in the clear. Shredding destroys the wrapped identities, after which
-- the tenant's remaining backups open with no key lifeboat holds.
-- No foreign key to tenants: keys outlive `tenant remove` until they are shredded.

CREATE TABLE tenant_keys (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant text NOT NULL,
    recipient text NOT NULL UNIQUE CHECK (recipient LIKE 'age1%'),
    fingerprint text NOT NULL UNIQUE,
    -- An age file encrypted to the organisation's recipients whose plaintext is an age
    -- identity file with this one identity. NULL once shredded.
    wrapped_identity bytea,
    -- The fingerprints of the organisation's recipients it is wrapped to.
    wrapped_to text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- Rotated away: new backups no longer use it; old ones still need it.
    retired_at timestamptz,
    shredded_at timestamptz,
    CHECK ((wrapped_identity IS NULL) = (shredded_at IS NOT NULL))
);
-- One current key per tenant: the one new backups are encrypted to.
CREATE UNIQUE INDEX tenant_keys_one_current ON tenant_keys (tenant)
    WHERE retired_at IS NULL AND shredded_at IS NULL;

-- A tenant's identities not shredded as ONE wrapped identity file, newest first: the
-- contents of the `tenants/<tenant>/identity.age` object in every region, and what
-- restore jobs carry. NULL once shredded.
CREATE TABLE tenant_identity_files (
    tenant text PRIMARY KEY,
    contents bytea,
    updated_at timestamptz NOT NULL DEFAULT now(),
    shredded_at timestamptz,
    CHECK ((contents IS NULL) = (shredded_at IS NOT NULL))
);

-- That object in each region: the current contents written there (written_at), or every
-- version of it deleted (shredded_at). A region that did not answer keeps its row as it
-- was, so the next write or shred finishes it.
CREATE TABLE tenant_identity_objects (
    tenant text NOT NULL,
    region text NOT NULL,
    written_at timestamptz,
    shredded_at timestamptz,
    last_error text,
    PRIMARY KEY (tenant, region)
);

-- The tenant recipient a backup job (or a live restore's safety backup) was handed: a
-- report whose manifest names another key is refused.
ALTER TABLE jobs ADD COLUMN tenant_recipient text;
