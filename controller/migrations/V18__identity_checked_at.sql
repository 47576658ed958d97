-- When each region's copy of a tenant's identity.age was last written or read back and
-- found to be the catalog's: a backup's claim reads it again only after a week
-- (`tenant_keys::IDENTITY_CHECK_INTERVAL`), not at every backup.
ALTER TABLE tenant_identity_objects ADD COLUMN checked_at timestamptz;
