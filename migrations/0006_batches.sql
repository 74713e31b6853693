-- Batches: every `kpsctl enqueue` makes one, so an operator can follow "this file's jobs"
-- (list, stats, wait, report --batch). A job belongs to the batch that created it (jobs.batch_id,
-- NULL for rows inserted with plain SQL); a job that was already queued when a later enqueue
-- named its server joins that batch too, through batch_jobs.
--
-- No index on jobs.batch_id (it would cost a million-job enqueue 3 s more): a batch's own jobs
-- lie between its first_job_id and last_job_id, so they are found by a rowid range. For the same
-- reason jobs.batch_id has no REFERENCES clause (a foreign key wants an index on it); kpsd
-- deletes a batch only once no job names it.
CREATE TABLE batches (
  id           INTEGER PRIMARY KEY,
  name         TEXT UNIQUE CHECK (name IS NULL OR length(name) BETWEEN 1 AND 64),
  created_at   INT  NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
  first_job_id INT,  -- lowest and highest id of the jobs it created (NULL: none)
  last_job_id  INT
);
ALTER TABLE jobs ADD COLUMN batch_id INTEGER;
CREATE TABLE batch_jobs (
  batch_id INTEGER NOT NULL REFERENCES batches (id) ON DELETE CASCADE,
  job_id   INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  PRIMARY KEY (batch_id, job_id)
) WITHOUT ROWID;
-- Deleting a job (prune) finds its joins through this.
CREATE INDEX batch_jobs_job ON batch_jobs (job_id);
