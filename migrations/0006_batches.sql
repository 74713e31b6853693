-- Batches: every `kpsctl enqueue` makes one, so an operator can follow "this file's jobs"
-- (list, stats, wait, report --batch). A job that was already queued when a later enqueue named
-- its server belongs to that batch too: membership is its own table, not a column of jobs.
CREATE TABLE batches (
  id         INTEGER PRIMARY KEY,
  name       TEXT UNIQUE CHECK (name IS NULL OR length(name) BETWEEN 1 AND 64),
  created_at INT  NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);
CREATE TABLE batch_jobs (
  batch_id INTEGER NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
  job_id   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (batch_id, job_id)
) WITHOUT ROWID;
-- Deleting a job (prune) finds its memberships through this.
CREATE INDEX batch_jobs_job ON batch_jobs (job_id);
-- Finished jobs by when they ended: prune and retention walk it oldest first, and a bare
-- `kpsctl wait` counts the jobs that ended since it started. Only finished rows are in it, so
-- the hot path (queued -> running -> delivered) never touches it.
CREATE INDEX jobs_finished ON jobs (updated_at)
  WHERE state IN ('succeeded', 'failed', 'cancelled');
