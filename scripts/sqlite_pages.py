#!/usr/bin/env python3
"""WAL pages a task's two embedded-mode transactions dirty, per schema variant.

Builds a fresh SQLite file from migrations/sqlite (1 KiB pages, WAL, no autocheckpoint), then
for N tasks replays the shape of the write loop's two transactions for a directly dispatched
echo task, one task per transaction (the worst case; the write loop merges what is waiting):
insert as `processing` + counter bump + TaskCreated/TaskStarted, then complete + counter bump
+ TaskCompleted. After each commit it reads the WAL's frame count and truncates the WAL, so
the averages are pages written per transaction. The statements are hand-written to match
src/store (sqlite_writer.rs, sql.rs), not run through the service.

Usage: scripts/sqlite_pages.py [N] [--drop INDEX]... [--sql "CREATE INDEX ..."]...
"""
import argparse
import datetime
import glob
import os
import sqlite3
import tempfile
import uuid

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def open_db(path, drops, extra):
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in ("page_size=1024", "journal_mode=wal", "wal_autocheckpoint=0", "foreign_keys=on"):
        conn.execute(f"pragma {pragma}")
    for f in sorted(glob.glob(os.path.join(ROOT, "migrations/sqlite/*.sql"))):
        conn.executescript(open(f).read())
    for name in drops:
        conn.execute(f"drop index {name}")
    for sql in extra:
        conn.execute(sql)
    return conn


def committed_frames(conn):
    frames = conn.execute("pragma wal_checkpoint(PASSIVE)").fetchone()[1]
    conn.execute("pragma wal_checkpoint(TRUNCATE)")
    return frames


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=2000)
    ap.add_argument("--drop", action="append", default=[])
    ap.add_argument("--sql", action="append", default=[])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        conn = open_db(os.path.join(d, "tasks.db"), args.drop, args.sql)
        user = "u1"
        conn.execute("insert into user_event_counters values (?, 0)", (user,))
        committed_frames(conn)
        inserted = completed = 0
        for i in range(args.n):
            task = uuid.uuid1().bytes  # time-ordered, like the service's v7 ids
            at = datetime.datetime.now(datetime.timezone.utc).isoformat()
            conn.execute("begin immediate")
            conn.execute(
                "insert into tasks (id, user_id, task_type, status, priority, payload, max_retries,"
                " timeout_ms, run_after, created_at, updated_at, queue, worker_id,"
                " lease_expires_at, started_at, attempts)"
                " values (?, ?, 'echo', 'processing', 5, '{\"n\":1}', 3, 30000, ?, ?, ?,"
                " 'default', ?, ?, ?, 1)",
                (task, user, at, at, at, f"w-{i % 100}", at, at),
            )
            conn.execute("update user_event_counters set last_id = last_id + 2 where user_id = ?", (user,))
            for after, kind in ((1, "TaskCreated"), (0, "TaskStarted")):
                conn.execute(
                    "insert into task_events (task_id, user_id, user_seq, event_type, data, created_at)"
                    " select ?, ?, last_id - ?, ?, '{}', ? from user_event_counters where user_id = ?",
                    (task, user, after, kind, at, user),
                )
            conn.execute("commit")
            inserted += committed_frames(conn)
            conn.execute("begin immediate")
            conn.execute(
                "update tasks set status = 'completed', progress = 100, result = '{\"n\":1}',"
                " provider = 'echo', completed_at = ?, updated_at = ?, worker_id = NULL,"
                " lease_expires_at = NULL where id = ?",
                (at, at, task),
            )
            conn.execute("update user_event_counters set last_id = last_id + 1 where user_id = ?", (user,))
            conn.execute(
                "insert into task_events (task_id, user_id, user_seq, event_type, data, created_at)"
                " select ?, ?, last_id, 'TaskCompleted', '{}', ? from user_event_counters where user_id = ?",
                (task, user, at, user),
            )
            conn.execute("commit")
            completed += committed_frames(conn)
        print(f"pages per transaction over {args.n} tasks: insert {inserted / args.n:.1f},"
              f" complete {completed / args.n:.1f}")


if __name__ == "__main__":
    main()
