-- The audit log becomes a keyed hash chain (controller/src/audit/ computes and checks it).
--
-- Each entry from now on carries the role of its actor, a reason, the address it came from,
-- the id of the key that chained it, and two hashes: prev_hash (the entry before it) and
-- entry_hash = HMAC-SHA-256 over the entry and prev_hash. Entries written before this
-- migration stay as they were and are not chained: the chain starts after
-- audit_chain_head.legacy_last_id, and `lifeboat audit verify` counts them apart.
--
-- Ids of chained entries are dense (the writer takes head.last_id + 1 under the head's row
-- lock), so a gap is a deleted entry; the identity sequence is dropped so that no INSERT can
-- bypass the writer by leaving the id out.

ALTER TABLE audit_log ALTER COLUMN id DROP IDENTITY;

ALTER TABLE audit_log
    ADD COLUMN actor_role text
        CHECK (actor_role IN ('admin', 'helpdesk', 'owner', 'viewer', 'operator', 'agent', 'system')),
    ADD COLUMN reason text,
    ADD COLUMN address inet,
    ADD COLUMN key_id text,
    ADD COLUMN prev_hash bytea CHECK (octet_length(prev_hash) = 32),
    ADD COLUMN entry_hash bytea CHECK (octet_length(entry_hash) = 32);

CREATE INDEX audit_log_tenant ON audit_log (tenant, id) WHERE tenant IS NOT NULL;

-- The head of the chain: one row, moved forward by every append in the appending
-- transaction. Its row lock serialises appends; its count and last hash let `verify` see
-- the newest entries removed, or the whole log emptied.
CREATE TABLE audit_chain_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    legacy_last_id bigint NOT NULL,
    last_id bigint NOT NULL,
    last_hash bytea CHECK (octet_length(last_hash) = 32),
    entries bigint NOT NULL CHECK (entries >= 0),
    CHECK ((entries = 0) = (last_hash IS NULL))
);

INSERT INTO audit_chain_head (legacy_last_id, last_id, last_hash, entries)
SELECT coalesce(max(id), 0), coalesce(max(id), 0), NULL, 0 FROM audit_log;

-- Append-only also against TRUNCATE (a statement trigger; the row trigger of V1 covers
-- UPDATE and DELETE).
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();

-- The head only moves forward, one entry at a time, and never goes away.
CREATE FUNCTION audit_chain_head_moves_forward() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'UPDATE'
        OR NEW.legacy_last_id <> OLD.legacy_last_id
        OR NEW.last_id <> OLD.last_id + 1
        OR NEW.entries <> OLD.entries + 1 THEN
        RAISE EXCEPTION 'audit_chain_head only moves forward by one entry';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER audit_chain_head_forward BEFORE UPDATE OR DELETE ON audit_chain_head
    FOR EACH ROW EXECUTE FUNCTION audit_chain_head_moves_forward();
CREATE TRIGGER audit_chain_head_no_truncate BEFORE TRUNCATE ON audit_chain_head
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_is_append_only();
-- A second head row could fork the chain; the singleton key refuses it.
