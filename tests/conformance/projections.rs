//! The projections' storage on both databases: checkpoints moved by compare-and-set with the
//! read model in one transaction, leases, parks, rebuild generations and the swap, and the
//! read models as readers see them.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use ai_integration_service::domain::UserId;
use ai_integration_service::domain::progress::{LearningEvent, TaskFinished, TaskStatsFold};
use ai_integration_service::domain::projection::{Parked, ProjectionName};
use ai_integration_service::store::progress::{
    ApplyError, Batch, BatchWork, ProgressReads, ProjectionStore,
};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::{Value, json};

use crate::fixtures::now;

/// The two faces of one store.
#[derive(Clone)]
pub(crate) struct Stores {
    manager: Arc<dyn ProjectionStore>,
    reads: Arc<dyn ProgressReads>,
}

impl Stores {
    /// Both faces of one projection store.
    fn of<P: ProjectionStore + ProgressReads>(p: Arc<P>) -> Self {
        Self {
            manager: p.clone(),
            reads: p,
        }
    }
}

async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Stores) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    crate::on_postgres_as(|s| Stores::of(Arc::new(s.projection_store())), case).await;
}

async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Stores) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    crate::on_sqlite_as(|s| Stores::of(Arc::new(s.projection_store())), case).await;
}

macro_rules! projection_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::on_postgres(super::$name).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::on_sqlite(super::$name).await;
            }
        }
    )+};
}

projection_tests!(
    a_batch_moves_the_checkpoint_once,
    progress_folds_across_batches_into_both_read_models,
    task_stats_add_up,
    one_lease_holder_at_a_time,
    parks_are_recorded_and_cleared,
    a_rebuild_stays_unseen_until_swapped_in,
    racing_rebuilds_never_lose_the_active_checkpoint,
);

fn user(u: &str) -> UserId {
    UserId::parse(u).unwrap()
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// A learning event about `u` at `when`.
fn learning(u: &str, t: &str, data: Value, when: &str) -> (UserId, LearningEvent, DateTime<Utc>) {
    let e = LearningEvent::decode(t, &data).unwrap().unwrap();
    (user(u), e, at(when))
}

fn completed(u: &str, secs: u64, when: &str) -> (UserId, LearningEvent, DateTime<Utc>) {
    learning(
        u,
        "SessionCompleted",
        json!({"session_id": "s", "score": 1, "duration_seconds": secs}),
        when,
    )
}

fn answer(
    u: &str,
    correct: bool,
    item: &str,
    when: &str,
) -> (UserId, LearningEvent, DateTime<Utc>) {
    let t = if correct {
        "CorrectAnswerGiven"
    } else {
        "WrongAnswerGiven"
    };
    learning(
        u,
        t,
        json!({"session_id": "s", "item_id": item, "response_time_ms": 700}),
        when,
    )
}

fn review(
    u: &str,
    item: &str,
    interval: u32,
    when: &str,
) -> (UserId, LearningEvent, DateTime<Utc>) {
    learning(
        u,
        "ReviewProcessed",
        json!({"user_id": u, "item_id": item, "new_interval": interval, "easiness_factor": 2.5}),
        when,
    )
}

fn progress(
    generation: u64,
    from: u64,
    to: u64,
    events: Vec<(UserId, LearningEvent, DateTime<Utc>)>,
) -> Batch {
    Batch {
        name: ProjectionName::Progress,
        generation,
        from,
        to,
        work: BatchWork::Progress(events),
    }
}

async fn a_batch_moves_the_checkpoint_once(s: Stores) {
    let st = s.manager.status(ProjectionName::Progress).await.unwrap();
    assert_eq!(
        (st.active_generation, st.position, st.rebuild),
        (1, 0, None)
    );
    let batch = || {
        progress(
            1,
            0,
            3,
            vec![completed("alice", 120, "2026-01-05T10:00:00Z")],
        )
    };
    s.manager.apply(batch()).await.unwrap();
    // The same batch again (a retry, or a second runner): refused, nothing written twice.
    assert!(matches!(
        s.manager.apply(batch()).await,
        Err(ApplyError::Moved(ProjectionName::Progress))
    ));
    let p = s
        .reads
        .user_progress(&user("alice"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.sessions_completed, 1);
    assert_eq!(
        s.manager
            .checkpoint(ProjectionName::Progress, 1)
            .await
            .unwrap(),
        Some(3)
    );
    assert_eq!(
        s.manager
            .checkpoint(ProjectionName::Progress, 9)
            .await
            .unwrap(),
        None
    );
    // Each projection has its own checkpoint.
    let all = s.manager.statuses().await.unwrap();
    let positions: HashMap<_, _> = all.iter().map(|x| (x.name, x.position)).collect();
    assert_eq!(positions[&ProjectionName::Progress], 3);
    assert_eq!(positions[&ProjectionName::TaskStats], 0);
}

async fn progress_folds_across_batches_into_both_read_models(s: Stores) {
    let zone = learning(
        "bob",
        "UserCreated",
        json!({"user_id": "bob", "email": "bob@example.com", "time_zone": "Asia/Tokyo"}),
        "2026-01-04T00:00:00Z",
    );
    s.manager
        .apply(progress(
            1,
            0,
            5,
            vec![
                zone,
                answer("bob", true, "i1", "2026-01-05T01:00:00Z"),
                answer("bob", false, "i2", "2026-01-05T01:01:00Z"),
                completed("bob", 600, "2026-01-05T01:10:00Z"),
                review("bob", "i1", 2, "2026-01-05T01:11:00Z"),
            ],
        ))
        .await
        .unwrap();
    // The next batch starts from the stored state: items, streak, zone.
    s.manager
        .apply(progress(
            1,
            5,
            8,
            vec![
                // 15:30 UTC is the 6th in Tokyo: the next day.
                completed("bob", 300, "2026-01-05T15:30:00Z"),
                review("bob", "i1", 9, "2026-01-05T15:31:00Z"),
                answer("bob", true, "i1", "2026-01-05T15:32:00Z"),
            ],
        ))
        .await
        .unwrap();
    let p = s.reads.user_progress(&user("bob")).await.unwrap().unwrap();
    assert_eq!(p.time_zone.name(), "Asia/Tokyo");
    assert_eq!((p.sessions_completed, p.study_seconds), (2, 900));
    assert_eq!(
        (p.streak_days, p.last_study_day),
        (2, Some(day("2026-01-06")))
    );
    assert_eq!(
        (p.correct_answers, p.wrong_answers, p.items_learned),
        (2, 1, 1)
    );
    let m = p.mastery;
    assert_eq!((m.unlearned, m.learning, m.short_term_mastered), (1, 0, 1));
    assert_eq!(p.last_event_at, Some(at("2026-01-05T15:32:00Z")));

    let days = s
        .reads
        .daily_stats(&user("bob"), day("2026-01-01"), day("2026-01-31"))
        .await
        .unwrap();
    let dates: Vec<_> = days.iter().map(|(d, _)| d.to_string()).collect();
    assert_eq!(dates, ["2026-01-04", "2026-01-05", "2026-01-06"]);
    let d5 = days[1].1;
    assert_eq!(
        (
            d5.sessions_completed,
            d5.study_seconds,
            d5.correct_answers,
            d5.wrong_answers
        ),
        (1, 600, 1, 1)
    );
    assert_eq!(
        (d5.items_reviewed, d5.items_learned, d5.new_mastery_count),
        (1, 1, 0)
    );
    let d6 = days[2].1;
    assert_eq!((d6.new_mastery_count, d6.correct_answers), (1, 1));
    let only = s
        .reads
        .daily_stats(&user("bob"), day("2026-01-06"), day("2026-01-06"))
        .await
        .unwrap();
    assert_eq!(only.len(), 1);
    assert!(
        s.reads
            .user_progress(&user("nobody"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn task_stats_add_up(s: Stores) {
    let finished = |outcome: &str, cost: u64| {
        TaskFinished::decode(
            "TaskFinished",
            &json!({"task_id": "t", "task_type": "summarize", "outcome": outcome, "attempts": 1,
                "input_tokens": 10, "output_tokens": 5, "cost_micros": cost}),
        )
        .unwrap()
        .unwrap()
    };
    let u = user("carol");
    for (from, to) in [(0, 2), (2, 4)] {
        let mut fold = TaskStatsFold::default();
        fold.apply(&u, &finished("completed", 100), at("2026-01-05T10:00:00Z"));
        fold.apply(&u, &finished("failed", 7), at("2026-01-05T11:00:00Z"));
        s.manager
            .apply(Batch {
                name: ProjectionName::TaskStats,
                generation: 1,
                from,
                to,
                work: BatchWork::TaskStats(fold),
            })
            .await
            .unwrap();
    }
    let rows = s
        .reads
        .task_stats(&u, day("2026-01-05"), day("2026-01-05"))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    let (k, r) = &rows[0];
    assert_eq!(
        (k.task_type.as_str(), k.outcome.as_str()),
        ("summarize", "completed")
    );
    assert_eq!(
        (r.tasks, r.input_tokens, r.output_tokens, r.cost_micros),
        (2, 20, 10, 200)
    );
    assert_eq!(rows[1].1.cost_micros, 14);
}

async fn one_lease_holder_at_a_time(s: Stores) {
    let name = ProjectionName::Progress;
    let t0 = now();
    let until = t0 + TimeDelta::seconds(5);
    assert!(s.manager.acquire_lease(name, "a", until, t0).await.unwrap());
    assert!(!s.manager.acquire_lease(name, "b", until, t0).await.unwrap());
    // The holder renews; the other takes over only once the lease has run out.
    assert!(s.manager.acquire_lease(name, "a", until, t0).await.unwrap());
    let later = t0 + TimeDelta::seconds(6);
    let st = s.manager.status(name).await.unwrap();
    assert_eq!(st.owner.as_deref(), Some("a"));
    assert_eq!(st.heartbeat_at, Some(t0));
    assert!(
        s.manager
            .acquire_lease(name, "b", later + TimeDelta::seconds(5), later)
            .await
            .unwrap()
    );
    // A clean stop gives it up at once.
    s.manager.release_lease(name, "a").await.unwrap();
    assert_eq!(
        s.manager.status(name).await.unwrap().owner.as_deref(),
        Some("b")
    );
    s.manager.release_lease(name, "b").await.unwrap();
    assert!(s.manager.acquire_lease(name, "a", until, t0).await.unwrap());
    // Leases are per projection.
    assert!(
        s.manager
            .acquire_lease(ProjectionName::TaskStats, "b", until, t0)
            .await
            .unwrap()
    );
}

async fn parks_are_recorded_and_cleared(s: Stores) {
    let name = ProjectionName::TaskStats;
    let parked = Parked {
        position: 42,
        error: "TaskFinished: outcome: unknown variant".into(),
        at: now(),
    };
    s.manager.park(name, parked.clone()).await.unwrap();
    let st = s.manager.status(name).await.unwrap();
    assert_eq!(st.parked, Some(parked));
    assert_eq!(st.state(now()), "parked");
    s.manager.unpark(name).await.unwrap();
    assert_eq!(s.manager.status(name).await.unwrap().parked, None);
}

async fn a_rebuild_stays_unseen_until_swapped_in(s: Stores) {
    let name = ProjectionName::Progress;
    let u = user("dave");
    s.manager
        .apply(progress(
            1,
            0,
            2,
            vec![completed("dave", 60, "2026-01-05T10:00:00Z")],
        ))
        .await
        .unwrap();
    s.manager
        .park(
            name,
            Parked {
                position: 3,
                error: "x".into(),
                at: now(),
            },
        )
        .await
        .unwrap();
    let generation = s.manager.start_rebuild(name, now()).await.unwrap();
    assert_eq!(generation, 2);
    let st = s.manager.status(name).await.unwrap();
    assert_eq!(
        (st.active_generation, st.rebuild, st.parked),
        (1, Some((2, 0)), None)
    );
    // The rebuild folds from 0 into its own rows; readers still see generation 1.
    s.manager
        .apply(progress(
            2,
            0,
            2,
            vec![
                completed("dave", 60, "2026-01-05T10:00:00Z"),
                completed("dave", 60, "2026-01-05T10:00:00Z"),
            ],
        ))
        .await
        .unwrap();
    let seen = s.reads.user_progress(&u).await.unwrap().unwrap();
    assert_eq!(seen.sessions_completed, 1);
    // A swap of another generation does nothing.
    assert_eq!(s.manager.swap(name, 7).await.unwrap(), None);
    assert_eq!(s.manager.swap(name, 2).await.unwrap(), Some(1));
    let seen = s.reads.user_progress(&u).await.unwrap().unwrap();
    assert_eq!(seen.sessions_completed, 2);
    let daily = s
        .reads
        .daily_stats(&u, day("2026-01-05"), day("2026-01-05"))
        .await
        .unwrap();
    assert_eq!(daily[0].1.sessions_completed, 2);
    s.manager.drop_generation(name, 1).await.unwrap();
    assert_eq!(s.manager.checkpoint(name, 1).await.unwrap(), None);
    // Dropping the active generation is refused silently.
    s.manager.drop_generation(name, 2).await.unwrap();
    assert_eq!(s.manager.checkpoint(name, 2).await.unwrap(), Some(2));
    let st = s.manager.status(name).await.unwrap();
    assert_eq!(
        (st.active_generation, st.position, st.rebuild),
        (2, 2, None)
    );
    // A new rebuild gets a generation past every one used.
    assert_eq!(s.manager.start_rebuild(name, now()).await.unwrap(), 3);
    assert_eq!(s.manager.start_rebuild(name, now()).await.unwrap(), 4);
    assert_eq!(s.manager.checkpoint(name, 3).await.unwrap(), None);
}

/// Rebuilds started while another one is swapped in (schemathesis's clustered finding: the
/// active generation's checkpoint was deleted by a rebuild that had read the old one as
/// active): after every round, the active generation still has its checkpoint.
async fn racing_rebuilds_never_lose_the_active_checkpoint(s: Stores) {
    let name = ProjectionName::Progress;
    for _ in 0..40 {
        let generation = s.manager.start_rebuild(name, now()).await.unwrap();
        let (a, b) = (s.manager.clone(), s.manager.clone());
        let swap = tokio::spawn(async move { a.swap(name, generation).await.unwrap() });
        let next = tokio::spawn(async move { b.start_rebuild(name, now()).await.unwrap() });
        let (swapped, _) = (swap.await.unwrap(), next.await.unwrap());
        if let Some(old) = swapped {
            s.manager.drop_generation(name, old).await.unwrap();
        }
        let st = s.manager.status(name).await.unwrap();
        assert!(
            s.manager
                .checkpoint(name, st.active_generation)
                .await
                .unwrap()
                .is_some(),
            "generation {} is active without its checkpoint",
            st.active_generation
        );
    }
}
