-- One unfinished job per server, enforced by the database: kpsctl enqueue already dedupes, but a
-- plain-SQL INSERT did not, and each duplicate meant one more unbind of the same server. The
-- oldest unfinished job of each server stays; later ones are cancelled, naming it. Scripts that
-- want duplicates ignored silently use INSERT OR IGNORE.
UPDATE jobs
SET state = 'cancelled',
    error_msg = 'duplicate of job ' || (
      SELECT min(o.id) FROM jobs o
      WHERE o.server_id = jobs.server_id AND o.state IN ('queued', 'running', 'retrying', 'delivered')),
    updated_at = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
WHERE state IN ('queued', 'running', 'retrying', 'delivered')
  AND id > (
    SELECT min(o.id) FROM jobs o
    WHERE o.server_id = jobs.server_id AND o.state IN ('queued', 'running', 'retrying', 'delivered'));

CREATE UNIQUE INDEX jobs_one_unfinished ON jobs (server_id)
WHERE state IN ('queued', 'running', 'retrying', 'delivered');
