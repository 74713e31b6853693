-- The server-side reason of a task that ended FAILED_*, from GET /v3/{project_id}/failed-tasks.
ALTER TABLE jobs ADD COLUMN task_error_code TEXT;
ALTER TABLE jobs ADD COLUMN task_error_msg TEXT;
