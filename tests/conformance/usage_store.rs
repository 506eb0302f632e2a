//! The usage store (attempts, usage, budgets) on both databases.

use std::sync::Arc;

use ai_integration_service::domain::{
    AttemptOutcome, Micros, ProviderAttempt, TaskId, TaskType, UserId,
};
use ai_integration_service::store::progress::ProjectionStore;
use ai_integration_service::store::{
    PgTaskStore, Reservation, Spend, SqliteTaskStore, TaskStore, UsageStore,
};
use chrono::{SubsecRound, Utc};

fn attempt(
    user: &str,
    task: Option<TaskId>,
    provider: &str,
    outcome: AttemptOutcome,
    cost: i64,
) -> ProviderAttempt {
    ProviderAttempt {
        id: uuid::Uuid::now_v7(),
        task_id: task,
        user_id: UserId::parse(user).unwrap(),
        provider: provider.into(),
        model: format!("{provider}-model"),
        task_type: TaskType::Summarize,
        input_tokens: if outcome.called() { 100 } else { 0 },
        output_tokens: if outcome.called() { 20 } else { 0 },
        cost: Micros(cost),
        outcome,
        error: (outcome != AttemptOutcome::Ok).then(|| "boom".to_owned()),
        latency_ms: 40,
        at: Utc::now().trunc_subsecs(6),
    }
}

async fn attempts_and_usage(store: Arc<dyn UsageStore>) {
    let task = TaskId::new();
    let tries = vec![
        attempt(
            "alice",
            Some(task),
            "groq",
            AttemptOutcome::SkippedBreaker,
            0,
        ),
        attempt("alice", Some(task), "claude", AttemptOutcome::Retryable, 0),
        attempt("alice", Some(task), "openai", AttemptOutcome::Ok, 250),
        attempt("bob", None, "openai", AttemptOutcome::Ok, 100),
    ];
    store.record_attempts(&tries).await.unwrap();
    let kept = store.attempts_for_task(task).await.unwrap();
    assert_eq!(kept, tries[..3].to_vec(), "a task's attempts, in order");

    let alice = store
        .usage_summary(Some(&UserId::parse("alice").unwrap()), None)
        .await
        .unwrap();
    let providers: Vec<_> = alice.iter().map(|u| u.provider.as_str()).collect();
    assert_eq!(providers, ["claude", "openai"], "skips are not usage");
    let openai = &alice[1];
    assert_eq!(
        (
            openai.calls,
            openai.successes,
            openai.input_tokens,
            openai.output_tokens,
            openai.cost
        ),
        (1, 1, 100, 20, Micros(250))
    );
    let month = ai_integration_service::domain::month_of(Utc::now());
    let all = store.usage_summary(None, Some(&month)).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(
        store
            .usage_summary(None, Some("1999-01"))
            .await
            .unwrap()
            .is_empty()
    );

    let stats = store
        .provider_stats(Utc::now() - chrono::TimeDelta::hours(1))
        .await
        .unwrap();
    let groq = stats.iter().find(|s| s.provider == "groq").unwrap();
    assert_eq!((groq.calls, groq.skipped), (0, 1));
    let openai = stats.iter().find(|s| s.provider == "openai").unwrap();
    assert_eq!((openai.calls, openai.successes), (2, 2));
    assert!((openai.avg_latency_ms - 40.0).abs() < 0.01);
}

async fn budgets_reserve_before_and_settle_after(store: Arc<dyn UsageStore>) {
    let user = UserId::parse("carol").unwrap();
    let month = "2026-11";
    let budget = Some(Micros(100));
    assert_eq!(
        store
            .reserve(&user, month, Micros(60), budget)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store
            .reserve(&user, month, Micros(50), budget)
            .await
            .unwrap(),
        Reservation::OverBudget {
            budget: Micros(100),
            spend: Spend {
                spent: Micros(0),
                reserved: Micros(60)
            }
        }
    );
    store
        .settle(&user, month, Micros(60), Micros(30))
        .await
        .unwrap();
    assert_eq!(
        store.spend(&user, month).await.unwrap(),
        Spend {
            spent: Micros(30),
            reserved: Micros(0)
        }
    );
    assert_eq!(
        store
            .reserve(&user, month, Micros(50), budget)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    // Another month starts from zero; no budget at all means unlimited.
    assert_eq!(
        store
            .reserve(&user, "2026-12", Micros(90), budget)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    assert_eq!(
        store
            .reserve(&user, month, Micros(1_000_000), None)
            .await
            .unwrap(),
        Reservation::Reserved
    );
    // A user's own budget overrides the default.
    let dave = UserId::parse("dave").unwrap();
    store.set_budget(&dave, Some(Micros(10))).await.unwrap();
    assert_eq!(store.budget(&dave).await.unwrap(), Some(Micros(10)));
    assert!(matches!(
        store
            .reserve(&dave, month, Micros(11), budget)
            .await
            .unwrap(),
        Reservation::OverBudget {
            budget: Micros(10),
            ..
        }
    ));
    store.set_budget(&dave, None).await.unwrap();
    assert_eq!(store.budget(&dave).await.unwrap(), None);
    assert_eq!(
        store
            .reserve(&dave, month, Micros(11), budget)
            .await
            .unwrap(),
        Reservation::Reserved
    );
}

/// The month's total sums every user's spend and holds of that month only.
async fn total_spend_sums_the_month(store: Arc<dyn UsageStore>) {
    assert_eq!(
        store.total_spend("2027-01").await.unwrap(),
        Spend::default()
    );
    for (name, amount) in [("fay", 40), ("gus", 2)] {
        let user = UserId::parse(name).unwrap();
        store
            .reserve(&user, "2027-01", Micros(amount), None)
            .await
            .unwrap();
        store
            .settle(&user, "2027-01", Micros(amount), Micros(amount / 2))
            .await
            .unwrap();
    }
    let hal = UserId::parse("hal").unwrap();
    store
        .reserve(&hal, "2027-01", Micros(7), None)
        .await
        .unwrap();
    store
        .reserve(&hal, "2027-02", Micros(1000), None)
        .await
        .unwrap();
    assert_eq!(
        store.total_spend("2027-01").await.unwrap(),
        Spend {
            spent: Micros(21),
            reserved: Micros(7)
        }
    );
}

/// Concurrent reservations never overspend: exactly budget / amount of them succeed.
async fn concurrent_reservations_never_overspend(store: Arc<dyn UsageStore>) {
    let user = UserId::parse("erin").unwrap();
    let calls = (0..20).map(|_| {
        let store = store.clone();
        let user = user.clone();
        tokio::spawn(async move {
            store
                .reserve(&user, "2026-11", Micros(10), Some(Micros(100)))
                .await
                .unwrap()
        })
    });
    let mut reserved = 0;
    for c in calls {
        if c.await.unwrap() == Reservation::Reserved {
            reserved += 1;
        }
    }
    assert_eq!(reserved, 10);
    assert_eq!(
        store.spend(&user, "2026-11").await.unwrap().reserved,
        Micros(100)
    );
}

/// A store with the projections' face too (for the task feed's reads).
trait WithProjections: TaskStore + UsageStore {
    fn projections(&self) -> Arc<dyn ProjectionStore>;
}

impl WithProjections for PgTaskStore {
    fn projections(&self) -> Arc<dyn ProjectionStore> {
        Arc::new(self.projection_store())
    }
}

impl WithProjections for SqliteTaskStore {
    fn projections(&self) -> Arc<dyn ProjectionStore> {
        Arc::new(self.projection_store())
    }
}

/// What the task feed reads of finished tasks: type and attempts from the task, tokens and
/// cost summed over its provider calls (none: zeros); unknown ids are left out.
async fn finished_tasks_sum_their_usage<S: WithProjections>(store: Arc<S>) {
    let at = Utc::now().trunc_subsecs(6);
    let (called, quiet) = (
        crate::fixtures::task("alice", at),
        crate::fixtures::task("bob", at),
    );
    let inserted = store
        .insert_tasks(vec![called.clone(), quiet.clone()])
        .await
        .unwrap();
    assert!(inserted.iter().all(|i| i.created));
    let tries = vec![
        attempt(
            "alice",
            Some(called.id),
            "claude",
            AttemptOutcome::Retryable,
            0,
        ),
        attempt("alice", Some(called.id), "openai", AttemptOutcome::Ok, 250),
        attempt("alice", None, "openai", AttemptOutcome::Ok, 100),
    ];
    store.record_attempts(&tries).await.unwrap();
    let mut facts = store
        .projections()
        .finished_tasks(&[called.id, quiet.id, TaskId::new()])
        .await
        .unwrap();
    facts.sort_by_key(|f| f.task_id != called.id);
    assert_eq!(facts.len(), 2, "{facts:?}");
    let (c, q) = (&facts[0], &facts[1]);
    assert_eq!(
        (c.task_id, c.task_type.as_str(), c.attempts),
        (called.id, "echo", 0)
    );
    // The retryable call counts its tokens (it was made), at no cost.
    assert_eq!(
        (c.input_tokens, c.output_tokens, c.cost_micros),
        (200, 40, 250)
    );
    assert_eq!(
        (q.task_id, q.input_tokens, q.output_tokens, q.cost_micros),
        (quiet.id, 0, 0, 0)
    );
}

macro_rules! usage_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(url) = crate::support::pg_url().await else { return };
                let store = super::PgTaskStore::connect(&url, 10).await.unwrap();
                let pool = store.pool().clone();
                crate::support::run_then_cleanup(
                    super::$name(std::sync::Arc::new(store)),
                    async move {
                        pool.close().await;
                        crate::support::drop_pg_database(&url).await;
                    },
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let dir = crate::support::temp_dir();
                let store = super::SqliteTaskStore::connect(&crate::support::sqlite_url(dir.path()))
                    .await
                    .unwrap();
                super::$name(std::sync::Arc::new(store)).await;
            }
        }
    )+};
}

usage_tests!(
    attempts_and_usage,
    budgets_reserve_before_and_settle_after,
    concurrent_reservations_never_overspend,
    total_spend_sums_the_month,
    finished_tasks_sum_their_usage,
);
