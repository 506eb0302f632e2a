-- The per-user listing index, ascending. Descending, every new task went to the left end of its
-- user's range, where a B-tree split dirties three pages; ascending, it appends at the right
-- end (1.6 fewer WAL pages a task, scripts/sqlite_pages.py). SQLite walks the index backwards
-- for the newest-first listing, so no query needs a sort.
DROP INDEX tasks_user_created;
CREATE INDEX tasks_user_created ON tasks (user_id, created_at, id);
