-- Brakes for a mass change (issue 22): a batch can be paused, by the operator (kpsctl pause
-- --batch) or by itself (a canary's first jobs, a failure budget spent), while other batches go
-- on; and it keeps count of its jobs that ended, so that a budget is checked with one row read.
ALTER TABLE batches ADD COLUMN paused_reason TEXT
  CHECK (paused_reason IS NULL OR paused_reason IN ('operator', 'canary', 'failures'));
ALTER TABLE batches ADD COLUMN paused_at INT;
-- The line kpsd said when the batch paused itself, or when its canary's jobs had all ended.
ALTER TABLE batches ADD COLUMN paused_detail TEXT;
-- enqueue --canary N: the first N jobs run, the others wait for kpsctl resume --batch.
ALTER TABLE batches ADD COLUMN canary INT CHECK (canary IS NULL OR canary > 0);
ALTER TABLE batches ADD COLUMN canary_last_id INT;  -- the last of those N jobs
-- enqueue --max-failures N or P%: the batch pauses itself when its failed jobs reach N, or pass
-- P percent of its ended jobs once enough have ended (batch_brakes.hpp).
ALTER TABLE batches ADD COLUMN max_failures INT CHECK (max_failures IS NULL OR max_failures > 0);
ALTER TABLE batches ADD COLUMN max_failure_pct REAL
  CHECK (max_failure_pct IS NULL OR (max_failure_pct > 0 AND max_failure_pct < 100));
-- Its own jobs (jobs.batch_id) that ended (succeeded, failed, cancelled), and those that failed;
-- kept by the triggers below.
ALTER TABLE batches ADD COLUMN ended INT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN failed INT NOT NULL DEFAULT 0;
-- Counted through each batch's rowid range (0006: jobs.batch_id has no index), so the upgrade
-- reads each job once, not once per batch.
UPDATE batches SET (ended, failed) = (
  SELECT count(*), coalesce(sum(j.state = 'failed'), 0) FROM jobs j
  WHERE j.id BETWEEN batches.first_job_id AND batches.last_job_id AND j.batch_id = batches.id
    AND j.state IN ('succeeded', 'failed', 'cancelled'))
WHERE first_job_id IS NOT NULL;
-- The budget counts from the last resume: ended and failed then (a resumed batch gets its whole
-- budget again, and is not paused anew by the failures that spent it).
ALTER TABLE batches ADD COLUMN budget_ended_base INT NOT NULL DEFAULT 0;
ALTER TABLE batches ADD COLUMN budget_failed_base INT NOT NULL DEFAULT 0;
CREATE INDEX batches_paused ON batches (paused_reason) WHERE paused_reason IS NOT NULL;

CREATE TRIGGER batches_count_update AFTER UPDATE OF state ON jobs
  WHEN NEW.batch_id IS NOT NULL AND OLD.state <> NEW.state
   AND (OLD.state IN ('succeeded', 'failed', 'cancelled')
        OR NEW.state IN ('succeeded', 'failed', 'cancelled')) BEGIN
  UPDATE batches SET
    ended = ended + (NEW.state IN ('succeeded', 'failed', 'cancelled'))
                  - (OLD.state IN ('succeeded', 'failed', 'cancelled')),
    failed = failed + (NEW.state = 'failed') - (OLD.state = 'failed')
  WHERE id = NEW.batch_id;
END;
CREATE TRIGGER batches_count_delete AFTER DELETE ON jobs
  WHEN OLD.batch_id IS NOT NULL AND OLD.state IN ('succeeded', 'failed', 'cancelled') BEGIN
  UPDATE batches SET ended = ended - 1, failed = failed - (OLD.state = 'failed')
  WHERE id = OLD.batch_id;
END;

-- A held job: queued or retrying in a paused batch. It is parked by adding 2^52 ms (some
-- 140,000 years) to its next_attempt_at, and given back by taking it off: claims, the retry
-- promotion, the scheduler's next wake-up and the oldest-queued age read only due jobs
-- (next_attempt_at <= now), so a held job costs them nothing, and the claim's index
-- (jobs_state_due) and query stay as they were. A column instead would have had to join that
-- index, or every claim would have walked past a paused batch's jobs at the head of the queue.
-- A job of a paused batch that comes back to queued or retrying (a retry after a failure, a
-- restart's requeue, kpsctl retry) is parked here as it arrives. The first jobs of a canary are
-- not held by the canary's own pause; a job that another batch named (batch_jobs) is held by it
-- too.
CREATE TRIGGER jobs_hold AFTER UPDATE OF state, next_attempt_at ON jobs
  WHEN NEW.state IN ('queued', 'retrying') AND NEW.next_attempt_at < 4503599627370496
   AND (EXISTS (SELECT 1 FROM batches b WHERE b.id = NEW.batch_id
                AND b.paused_reason IS NOT NULL
                AND NOT (b.paused_reason = 'canary' AND NEW.id <= b.canary_last_id))
        OR EXISTS (SELECT 1 FROM batch_jobs bj JOIN batches b ON b.id = bj.batch_id
                   WHERE bj.job_id = NEW.id AND b.paused_reason IS NOT NULL)) BEGIN
  UPDATE jobs SET next_attempt_at = NEW.next_attempt_at + 4503599627370496 WHERE id = NEW.id;
END;
