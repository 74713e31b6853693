-- Marks the file as a kpsd database ('kpsd' in ASCII), so kpsd can tell its own database from
-- another application's before it changes anything, and `file jobs.db` shows the id.
PRAGMA application_id = 1802531684;
