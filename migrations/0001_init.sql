-- kpsd schema, version 1. Times are Unix milliseconds. Columns have defaults so that another
-- process can queue work with plain SQL:  INSERT INTO jobs(server_id) VALUES ('...');

CREATE TABLE jobs (
  id              INTEGER PRIMARY KEY,
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
  delivered_at    INT                        -- when the last 202 arrived (poll timeout base)
);

-- The scheduler's queue scan: state = ? AND next_attempt_at <= ? ORDER BY next_attempt_at.
CREATE INDEX jobs_state_due ON jobs (state, next_attempt_at);
-- Dedupe on enqueue, and `list --server`.
CREATE INDEX jobs_server ON jobs (server_id);

-- One row per disassociate call.
CREATE TABLE attempts (
  job_id          INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
  n               INT  NOT NULL,             -- 1, 2, 3 ... per job
  started_at      INT  NOT NULL,
  finished_at     INT,                       -- NULL while the call is in flight
  http_status     INT,                       -- NULL when no response arrived
  task_id         TEXT,
  delivery_status TEXT,
  error_code      TEXT,
  error_msg       TEXT,
  request_id      TEXT,                      -- X-Request-Id response header
  latency_ms      INT,
  PRIMARY KEY (job_id, n)
) WITHOUT ROWID;

-- Replace-form secrets (password or private key), apart from everything a person might dump.
-- Deleted in the transaction that moves the job to a terminal state.
CREATE TABLE job_secrets (
  job_id INTEGER PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
  key    BLOB NOT NULL
);
