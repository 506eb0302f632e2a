-- Rows that flush barriers update (store/wal_flush.rs). The hot-path writes commit without
-- waiting for the WAL flush, so they hold a user's event counter row only while they run, not
-- through an fsync; a caller that needs durability then waits for a barrier: a synchronous
-- commit of an update here, which flushes the WAL up to it and so every commit before it.
-- Each instance updates one slot of its own choosing, so barriers of different instances
-- rarely touch the same row. No index but the key: updates stay HOT.
CREATE TABLE wal_flush_marks (
    slot    INTEGER PRIMARY KEY,
    flushes BIGINT  NOT NULL
);
