-- Agent tokens are scoped: the clusters whose jobs the agent may claim, and whether it may
-- be given jobs that need the age identity (drills, restores). The claim filter uses these,
-- not what the agent says in its request, which may only narrow them.
--
-- clusters NULL means every cluster. Tokens created before this migration get NULL and
-- can_decrypt false: an upgraded agent keeps taking backups on every cluster (nobody is
-- locked out), but is no longer given drills until its token is re-created with
-- --can-decrypt (the controller logs a warning when such an agent asks for them).
-- New tokens must name their clusters (--cluster) or ask for all of them (--all-clusters).
ALTER TABLE agent_tokens
    ADD COLUMN clusters text[]
        CHECK (clusters IS NULL OR (
            cardinality(clusters) >= 1
            AND array_position(clusters, NULL) IS NULL
            AND array_to_string(clusters, ',')
                ~ '^[a-z]([a-z0-9-]{0,61}[a-z0-9])?(,[a-z]([a-z0-9-]{0,61}[a-z0-9])?)*$'
        )),
    ADD COLUMN can_decrypt boolean NOT NULL DEFAULT false;
