-- The foreign key from task_events to tasks made every event insert run a referential check
-- that looks the task up and locks its row FOR KEY SHARE: an index probe, a tuple lock and a
-- WAL record per event, three events per task. Events are written only by the store, in the
-- same statement or transaction as their task's change, and every delete of a task deletes
-- its events first (delete, purge_failed), so the key guarded nothing the code does not.
ALTER TABLE task_events DROP CONSTRAINT task_events_task_id_fkey;
