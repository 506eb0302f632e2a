-- The W3C traceparent of the span that submitted the task, when traces are exported: the
-- worker that claims the task (on any instance) continues that trace. NULL when tracing is off
-- or for tasks stored before this column.
ALTER TABLE tasks ADD COLUMN trace_context TEXT;
