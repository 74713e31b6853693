-- Jobs per state, kept by triggers so `kpsctl stats`, `wait` and metrics read seven rows
-- instead of counting a million. Triggers also count rows that other processes insert.
CREATE TABLE job_counts (
  state TEXT PRIMARY KEY,
  n     INT NOT NULL
) WITHOUT ROWID;
INSERT INTO job_counts (state, n)
  SELECT s.column1, (SELECT count(*) FROM jobs WHERE jobs.state = s.column1)
  FROM (VALUES ('queued'), ('running'), ('retrying'), ('delivered'),
               ('succeeded'), ('failed'), ('cancelled')) AS s;

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

-- `list --state S` pages by id: (state, rowid) order makes each page a short index range.
CREATE INDEX jobs_state ON jobs (state);

-- Operator settings that outlive a restart (`kpsctl pause` stays paused).
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
