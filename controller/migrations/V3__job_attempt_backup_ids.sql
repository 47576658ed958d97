-- The backup id handed to each attempt of a backup job. A retried attempt (after a lost
-- lease) first looks for the manifests of the earlier attempts' ids: a backup that was
-- committed but never reported is adopted instead of taken again.
ALTER TABLE jobs ADD COLUMN attempt_backup_ids uuid[] NOT NULL DEFAULT '{}';
