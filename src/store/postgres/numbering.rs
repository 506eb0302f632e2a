//! Per-user event numbering in SQL, shared by every PostgreSQL statement that writes events
//! (the one-trip submit, claim and completion, and the general event insert).

/// SQL: the CTEs `counts`, `bumped` and `numbered` that give every row of the CTE `$rows` (which
/// has a `user_id`) its owner's next event id, `user_seq`, in the order `$order` (over alias `r`)
/// within each owner. Each owner's counter row is bumped by their count in the same statement,
/// owners in sorted order, so concurrent statements lock counters in one order and cannot
/// deadlock; ids are gapless in commit order because the row lock serialises one owner's writers.
macro_rules! number_per_user {
    ($rows:literal, $order:literal) => {
        concat!(
            "counts AS (SELECT user_id, COUNT(*) AS n FROM ",
            $rows,
            " GROUP BY user_id), ",
            "bumped AS (INSERT INTO user_event_counters AS c (user_id, last_id) ",
            "SELECT user_id, n FROM counts ORDER BY user_id ",
            "ON CONFLICT (user_id) DO UPDATE SET last_id = c.last_id + excluded.last_id ",
            "RETURNING user_id, last_id), ",
            "numbered AS (SELECT r.*, b.last_id - k.n + ROW_NUMBER() OVER ",
            "(PARTITION BY r.user_id ORDER BY ",
            $order,
            ") AS user_seq FROM ",
            $rows,
            " r JOIN counts k USING (user_id) JOIN bumped b USING (user_id))"
        )
    };
}
pub(super) use number_per_user;
