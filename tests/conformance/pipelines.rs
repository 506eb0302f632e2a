//! The pipeline store on PostgreSQL and SQLite: stages start in item order under the cap
//! (also when fills race), ends apply once, failures skip dependents only, cancel and items.

use std::future::Future;
use std::sync::Arc;

use ai_integration_service::domain::pipeline::{Format, NewItem, PipelineDef, parse_document};
use ai_integration_service::domain::{TaskId, UserId};
use ai_integration_service::store::NotificationStore;
use ai_integration_service::store::pipeline::{
    Added, NewSession, PipelineStore, StageEnd, StageOutcome,
};
use serde_json::json;

use crate::fixtures::now;

#[derive(Clone)]
pub(crate) struct Stores {
    pipelines: Arc<dyn PipelineStore>,
    events: Arc<dyn NotificationStore>,
}

async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Stores) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    crate::on_postgres_as(
        |s| Stores {
            pipelines: s.clone(),
            events: s,
        },
        case,
    )
    .await;
}

async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Stores) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    crate::on_sqlite_as(
        |s| Stores {
            pipelines: s.clone(),
            events: s,
        },
        case,
    )
    .await;
}

macro_rules! pipeline_tests {
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

pipeline_tests!(
    stages_start_in_item_order_under_the_cap_and_ends_apply_once,
    a_failure_skips_only_the_items_dependents,
    racing_fills_never_exceed_the_cap,
    cancel_closes_the_session,
);

/// a -> b, and c on its own.
fn def() -> PipelineDef {
    let doc = r#"{"pipelines": [{"name": "p", "stages": [
        {"name": "a", "task_type": "echo"},
        {"name": "b", "task_type": "echo", "payload": {"x": "{{a.v}}"}},
        {"name": "c", "task_type": "echo"}
    ]}]}"#;
    parse_document(doc, Format::Json).unwrap().remove(0)
}

async fn session(s: &Stores, items: usize) -> TaskId {
    let id = TaskId::new();
    let items = (0..items)
        .map(|i| NewItem {
            id: format!("i{i}"),
            data: json!({"id": format!("i{i}"), "name": format!("n{i}")}),
        })
        .collect();
    s.pipelines
        .create_session(NewSession {
            id,
            user_id: UserId::parse("alice").unwrap(),
            definition: def(),
            items,
            at: now(),
        })
        .await
        .unwrap();
    id
}

fn done(task: TaskId, v: i64) -> StageEnd {
    StageEnd {
        task_id: task,
        outcome: StageOutcome::Completed(json!({ "v": v })),
    }
}

async fn stages_start_in_item_order_under_the_cap_and_ends_apply_once(s: Stores) {
    let id = session(&s, 5).await;
    let runs = s.pipelines.start_ready(id, 3, now()).await.unwrap();
    let started: Vec<(u64, usize)> = runs.iter().map(|r| (r.position, r.stage_index)).collect();
    assert_eq!(started, [(0, 0), (0, 2), (1, 0)]);
    assert!(
        s.pipelines
            .start_ready(id, 3, now())
            .await
            .unwrap()
            .is_empty(),
        "cap of 3"
    );
    let touched = s
        .pipelines
        .finish_stages(vec![done(runs[0].task_id, 7)], now())
        .await
        .unwrap();
    assert_eq!(touched, [id]);
    let again = s
        .pipelines
        .finish_stages(vec![done(runs[0].task_id, 8)], now())
        .await
        .unwrap();
    assert!(again.is_empty(), "an end applies once");
    let next = s.pipelines.start_ready(id, 3, now()).await.unwrap();
    assert_eq!((next[0].position, next[0].stage_index), (0, 1));
    assert_eq!(next[0].inputs, [("a".to_owned(), json!({"v": 7}))]);
    let items = s.pipelines.items(id, None, 10).await.unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0].stages[0].result, Some(json!({"v": 7})));
    assert_eq!(items[0].stages[1].status.as_str(), "running");
    let page = s.pipelines.items(id, Some(2), 2).await.unwrap();
    assert_eq!(page.iter().map(|i| i.position).collect::<Vec<_>>(), [3, 4]);
    let user = UserId::parse("alice").unwrap();
    let events = s
        .events
        .events_after(&user, 0, Some(id), 100)
        .await
        .unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind.as_str()).collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "PipelineStageStarted")
            .count(),
        4
    );
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "PipelineStageResult")
            .count(),
        1
    );
    assert!(
        events
            .iter()
            .all(|e| e.event.data["session_id"] == json!(id))
    );
}

async fn a_failure_skips_only_the_items_dependents(s: Stores) {
    let id = session(&s, 1).await;
    let runs = s.pipelines.start_ready(id, 8, now()).await.unwrap();
    assert_eq!(runs.len(), 2);
    let fail = StageEnd {
        task_id: runs[0].task_id,
        outcome: StageOutcome::Failed("boom".into()),
    };
    s.pipelines.finish_stages(vec![fail], now()).await.unwrap();
    let item = &s.pipelines.items(id, None, 1).await.unwrap()[0];
    let statuses: Vec<&str> = item.stages.iter().map(|st| st.status.as_str()).collect();
    assert_eq!(statuses, ["failed", "skipped", "running"]);
    assert_eq!(item.stages[0].error.as_deref(), Some("boom"));
    s.pipelines
        .finish_stages(vec![done(runs[1].task_id, 1)], now())
        .await
        .unwrap();
    let session = s.pipelines.session(id).await.unwrap().unwrap();
    assert_eq!(session.status.as_str(), "partially_failed");
    assert!(session.finished_at.is_some());
}

async fn racing_fills_never_exceed_the_cap(s: Stores) {
    let id = session(&s, 20).await;
    let fills: Vec<_> = (0..8)
        .map(|_| {
            let p = s.pipelines.clone();
            tokio::spawn(async move { p.start_ready(id, 4, now()).await.unwrap().len() })
        })
        .collect();
    let mut total = 0;
    for f in fills {
        total += f.await.unwrap();
    }
    assert_eq!(total, 4, "fills that race start no more than the cap");
}

async fn cancel_closes_the_session(s: Stores) {
    let id = session(&s, 3).await;
    let runs = s.pipelines.start_ready(id, 2, now()).await.unwrap();
    let (record, now_cancelled, running) = s
        .pipelines
        .cancel_session(id, "cancelled by its owner", now())
        .await
        .unwrap()
        .unwrap();
    assert!(now_cancelled);
    assert_eq!(record.status.as_str(), "cancelled");
    let mut expected: Vec<TaskId> = runs.iter().map(|r| r.task_id).collect();
    let mut running = running;
    expected.sort_by_key(|t| t.to_string());
    running.sort_by_key(|t| t.to_string());
    assert_eq!(running, expected);
    assert!(
        s.pipelines
            .start_ready(id, 2, now())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.pipelines
            .finish_stages(vec![done(runs[0].task_id, 1)], now())
            .await
            .unwrap()
            .is_empty()
    );
    let more = vec![NewItem {
        id: "x".into(),
        data: json!({"id": "x"}),
    }];
    assert!(matches!(
        s.pipelines.add_items(id, more, now()).await.unwrap(),
        Added::Finished(_)
    ));
    let (_, again, _) = s
        .pipelines
        .cancel_session(id, "again", now())
        .await
        .unwrap()
        .unwrap();
    assert!(!again);
}
