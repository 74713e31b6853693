-- Task polls refused in a row (a 4xx other than 401/429 on GET tasks/{task_id}). A few are
-- retried; then the job fails "cannot follow task", and `kpsctl retry` re-checks the task. A
-- refused poll never leads to another disassociate.
ALTER TABLE jobs ADD COLUMN poll_refusals INT NOT NULL DEFAULT 0;
