-- Effectively once (issue 19): ids that are never reused, one index for one unfinished job per
-- server, and what kpsd needs to look before it sends again.
--
-- The duplicates 0007 cancelled keep no secret (as kpsctl cancel does).
DELETE FROM job_secrets WHERE job_id IN (SELECT id FROM jobs WHERE state = 'cancelled');

-- AUTOINCREMENT: with a plain INTEGER PRIMARY KEY, SQLite gives a new row max(id) + 1, so after
-- prune removed the newest finished jobs the next job was "job 1" again, and the next batch
-- "batch 1": a map file, a ticket or a log line naming it pointed at another job. AUTOINCREMENT
-- keeps the highest id ever used (sqlite_sequence). SQLite allows it only in CREATE TABLE, so
-- jobs and batches are rebuilt (SQLite's documented 12-step table change); every id is kept.
-- kpsd runs migrations with foreign keys off (this DROP would otherwise cascade to attempts);
-- the new tables keep every id the other tables point to.
CREATE TABLE jobs_new (
  id              INTEGER PRIMARY KEY AUTOINCREMENT,
  server_id       TEXT NOT NULL CHECK (length(server_id) BETWEEN 1 AND 64),
  state           TEXT NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'retrying', 'delivered',
                                   'succeeded', 'failed', 'cancelled')),
  attempts        INT  NOT NULL DEFAULT 0,   -- delivery attempts used
  next_attempt_at INT  NOT NULL DEFAULT 0,   -- queued/retrying: when due; delivered: next poll
  task_id         TEXT,
  delivery_status TEXT,                      -- `status` of the last 202 (SUCCESS / FAILED)
  task_status     TEXT,                      -- as KPS says it: RUNNING_UNBIND, SUCCESS_UNBIND ...
  error_code      TEXT,
  error_msg       TEXT,
  created_at      INT  NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
  updated_at      INT  NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
  port            INT  CHECK (port IS NULL OR port BETWEEN 1 AND 65535),
  auth_type       TEXT CHECK (auth_type IS NULL OR auth_type IN ('password', 'keypair')),
  delivered_at    INT,                       -- when the last 202 arrived (poll timeout base)
  task_error_code TEXT,                      -- a FAILED_* task's own reason (failed-tasks)
  task_error_msg  TEXT,
  poll_refusals   INT  NOT NULL DEFAULT 0,   -- task polls refused in a row
  batch_id        INTEGER,                   -- the batch that created it (0006)
  -- Tasks of this job that ended FAILED_*: each may be followed by a new disassociate while
  -- kps.task_failure_retries allows (the vendor's reasons for a failed unbind rarely clear).
  task_failures   INT  NOT NULL DEFAULT 0,
  -- When the newest call whose outcome is unknown started (a call in flight at a crash, an
  -- answer unreadable after the request was sent, a timeout after sending). Set: before the
  -- next call kpsd looks for the server's task (running-tasks, failed-tasks). NULL: nothing to
  -- look for.
  unknown_since   INT,
  -- Looks that found the running-task list full (1,000 entries) without this server, and waited.
  look_waits      INT  NOT NULL DEFAULT 0,
  -- 1 once a call was sent again after an unknown outcome the look could not resolve: if the
  -- job then fails, the earlier call may have done the unbind ("maybe done").
  sent_after_unknown INT NOT NULL DEFAULT 0,
  -- 1 for a failed job that a call of its own may have done: its last call's outcome is unknown,
  -- or a call went again after an unknown one (its message starts "maybe done").
  maybe_done      INT  GENERATED ALWAYS AS
                  (state = 'failed' AND (sent_after_unknown = 1 OR unknown_since IS NOT NULL))
                  VIRTUAL,
  -- 0 while the job is unfinished, else its id: the unique index on (server_id, one_unfinished)
  -- allows one unfinished job per server and any number of finished ones. One index serves
  -- that rule, dedupe and `list --server`: a second index on server_id alone made a million-job
  -- enqueue 2 to 5 times slower (random inserts into two B-trees).
  one_unfinished  INT  GENERATED ALWAYS AS
                  (CASE WHEN state IN ('queued', 'running', 'retrying', 'delivered') THEN 0
                   ELSE id END) VIRTUAL
);
INSERT INTO jobs_new (id, server_id, state, attempts, next_attempt_at, task_id, delivery_status,
                      task_status, error_code, error_msg, created_at, updated_at, port, auth_type,
                      delivered_at, task_error_code, task_error_msg, poll_refusals, batch_id)
  SELECT id, server_id, state, attempts, next_attempt_at, task_id, delivery_status, task_status,
         error_code, error_msg, created_at, updated_at, port, auth_type, delivered_at,
         task_error_code, task_error_msg, poll_refusals, batch_id
  FROM jobs ORDER BY id;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
CREATE INDEX jobs_state_due ON jobs (state, next_attempt_at);
CREATE INDEX jobs_state ON jobs (state);
-- A duplicate is refused: "UNIQUE constraint failed: jobs.server_id, jobs.one_unfinished".
CREATE UNIQUE INDEX jobs_one_unfinished ON jobs (server_id, one_unfinished);
-- Jobs to look for first: their task may be running now, and the running-task list shows it only
-- while it runs (about a minute). Claims take these ahead of the backlog (a small index: only
-- jobs whose last call's outcome is unknown are in it).
CREATE INDEX jobs_unknown_due ON jobs (next_attempt_at)
WHERE state = 'queued' AND unknown_since IS NOT NULL;
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
  UPDATE job_counts SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
  UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;
END;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF state ON jobs
  WHEN OLD.state <> NEW.state BEGIN
  UPDATE job_counts SET n = n - 1 WHERE state = OLD.state;
  UPDATE job_counts SET n = n + 1 WHERE state = NEW.state;
END;

CREATE TABLE batches_new (
  id           INTEGER PRIMARY KEY AUTOINCREMENT,
  name         TEXT UNIQUE CHECK (name IS NULL OR length(name) BETWEEN 1 AND 64),
  created_at   INT  NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
  first_job_id INT,  -- lowest and highest id of the jobs it created (NULL: none)
  last_job_id  INT
);
INSERT INTO batches_new (id, name, created_at, first_job_id, last_job_id)
  SELECT id, name, created_at, first_job_id, last_job_id FROM batches ORDER BY id;
DROP TABLE batches;
ALTER TABLE batches_new RENAME TO batches;

-- What kpsd found when it looked before this call (after an unknown outcome), e.g.
-- "outcome lost; adopted running task T" or "outcome lost; no task found; sending again".
ALTER TABLE attempts ADD COLUMN look TEXT;
