//! What the store cases build on: fixed times, tasks built the way the API builds them, and
//! short calls that insert, read and page.

use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::domain::{
    ErrorClass, NewTask, Page, PageRequest, SubmitPolicy, Submitter, Task, TaskError, TaskEvent,
    TaskEventType, TaskId, TaskRequest, TaskType, UserId, WorkerId,
};
use ai_integration_service::store::{Finish, Outcome, TaskFilter, TaskStoreTesting};
use chrono::{DateTime, DurationRound, SubsecRound, TimeDelta, Utc};
use serde_json::{Value, json};

/// Now, truncated to microseconds.
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A fixed point an hour ago, on a whole second, so `base() + ms(i)` orders tasks exactly.
pub(crate) fn base() -> DateTime<Utc> {
    (Utc::now() - TimeDelta::hours(1))
        .duration_trunc(TimeDelta::seconds(1))
        .unwrap()
}

pub(crate) fn ms(n: i64) -> TimeDelta {
    TimeDelta::milliseconds(n)
}

pub(crate) fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

pub(crate) fn worker(s: &str) -> WorkerId {
    WorkerId::from_stored(s.to_owned())
}

pub(crate) fn retryable(msg: &str, provider: Option<&str>) -> TaskError {
    TaskError {
        class: ErrorClass::Retryable,
        message: msg.to_owned(),
        provider: provider.map(str::to_owned),
    }
}

/// Builds tasks through [`NewTask::parse`] and [`Task::create`], like the API does.
#[derive(Clone)]
pub(crate) struct Spec {
    user: String,
    task_type: &'static str,
    priority: Option<i64>,
    key: Option<String>,
    related: Option<(String, String)>,
    payload: Value,
    at: DateTime<Utc>,
}

pub(crate) fn spec(user: &str, at: DateTime<Utc>) -> Spec {
    Spec {
        user: user.to_owned(),
        task_type: "echo",
        priority: None,
        key: None,
        related: None,
        payload: json!({"text": "hello"}),
        at,
    }
}

impl Spec {
    pub(crate) fn task_type(mut self, t: &'static str) -> Self {
        self.task_type = t;
        self
    }
    pub(crate) fn priority(mut self, p: i64) -> Self {
        self.priority = Some(p);
        self
    }
    pub(crate) fn key(mut self, k: &str) -> Self {
        self.key = Some(k.to_owned());
        self
    }
    pub(crate) fn related(mut self, t: &str, id: &str) -> Self {
        self.related = Some((t.to_owned(), id.to_owned()));
        self
    }
    pub(crate) fn payload(mut self, p: Value) -> Self {
        self.payload = p;
        self
    }
    pub(crate) fn build(self) -> Task {
        // Parsed as an echo (which takes any payload), so the stores are tried on odd
        // payloads too; the type is set after, as the store must keep whatever it is given.
        let task_type: TaskType = self.task_type.parse().unwrap();
        let request = TaskRequest {
            task_type: "echo".to_owned(),
            payload: self.payload,
            priority: self.priority,
            idempotency_key: self.key,
            related_entity: self.related,
            timeout_seconds: None,
        };
        let new = NewTask::parse(
            &Submitter::user(user(&self.user)),
            request,
            &SubmitPolicy::default(),
        )
        .unwrap();
        let mut task = Task::create(new, 3, Duration::from_secs(30), self.at);
        task.task_type = task_type;
        if self.priority.is_none() {
            task.priority = task_type.default_priority();
        }
        task
    }
}

/// A plain echo task of `user` created at `at`.
pub(crate) fn task(user: &str, at: DateTime<Utc>) -> Task {
    spec(user, at).build()
}

/// Inserts tasks that must all be new; returns them as stored.
pub(crate) async fn insert(store: &Arc<dyn TaskStoreTesting>, tasks: Vec<Task>) -> Vec<Task> {
    let n = tasks.len();
    let out = store.insert_tasks(tasks).await.unwrap();
    assert_eq!(out.len(), n);
    assert!(out.iter().all(|i| i.created), "every task must be new");
    out.into_iter().map(|i| i.task).collect()
}

pub(crate) async fn get(store: &Arc<dyn TaskStoreTesting>, id: TaskId) -> Task {
    store
        .find_by_id(id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("task {id} not found"))
}

pub(crate) fn ids(tasks: &[Task]) -> Vec<TaskId> {
    tasks.iter().map(|t| t.id).collect()
}

pub(crate) fn kinds(events: &[TaskEvent]) -> Vec<TaskEventType> {
    events.iter().map(|e| e.kind).collect()
}

pub(crate) fn finish(id: TaskId, w: &WorkerId, outcome: Outcome, at: DateTime<Utc>) -> Finish {
    Finish {
        task_id: id,
        worker_id: w.clone(),
        outcome,
        at,
    }
}

pub(crate) fn completed(result: Value, provider: &str) -> Outcome {
    Outcome::Completed {
        result,
        provider: Some(provider.to_owned()),
    }
}

/// Reads every page of `filter` with pages of `size`; checks the page shapes and returns the
/// ids in order.
pub(crate) async fn read_all_pages(
    store: &Arc<dyn TaskStoreTesting>,
    filter: &TaskFilter,
    size: u32,
) -> Vec<TaskId> {
    let mut out = Vec::new();
    let mut token = String::new();
    for _ in 0..1000 {
        let req = PageRequest::parse(size, &token).unwrap();
        let page: Page<Task> = store.list(filter, &req).await.unwrap();
        assert!(page.items.len() <= size as usize);
        out.extend(ids(&page.items));
        match page.next_page_token {
            Some(t) => {
                assert_eq!(
                    page.items.len(),
                    size as usize,
                    "a page with a next token must be full"
                );
                token = t;
            }
            None => return out,
        }
    }
    panic!("paging did not end");
}

/// Sorts newest first, as list queries do: `created_at DESC, id DESC`.
pub(crate) fn newest_first(mut tasks: Vec<Task>) -> Vec<TaskId> {
    tasks.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.id)));
    ids(&tasks)
}
