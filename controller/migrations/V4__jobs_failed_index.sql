-- /metrics counts the jobs that failed in the last day; keep that off a full scan.
CREATE INDEX jobs_failed ON jobs (finished_at) WHERE state = 'failed';
