-- Only tasks with an idempotency key need the uniqueness check. Without the WHERE, every row
-- version of every task (a status change is never a HOT update) added an entry to this index:
-- three per task for nothing when no key is given, as in most submits.
DROP INDEX tasks_idempotency;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (user_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
