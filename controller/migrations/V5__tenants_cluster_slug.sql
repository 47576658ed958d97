-- A tenant's cluster is a slug like its name (lifeboat's ClusterName), so every row the
-- scheduler and the nightly read is one they can use.
ALTER TABLE tenants ADD CONSTRAINT tenants_cluster_is_a_slug
    CHECK (cluster ~ '^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$');
