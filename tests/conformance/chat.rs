//! Chat sessions (seed 000's ChatSessionRepository) on both databases: the repository's
//! queries, at most one active session per user and item under concurrent starts, the logical
//! delete, paging, the turn lock and atomic turns, idle expiry and the job lease.

use std::future::Future;
use std::sync::Arc;

use ai_integration_service::domain::chat::{
    ChatMessage, ChatRole, ChatSession, ChatSessionId, ChatStatus, IdempotencyKey, ItemId,
    SessionPageRequest, Turn,
};
use ai_integration_service::domain::{Micros, UserId};
use ai_integration_service::store::chat::{ChatStore, ChatStoreError, TurnLock};
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::fixtures::now;

async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn ChatStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    crate::on_postgres_as(|s| Arc::new(s.chat_store()) as Arc<dyn ChatStore>, case).await;
}

async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Arc<dyn ChatStore>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    crate::on_sqlite_as(|s| Arc::new(s.chat_store()) as Arc<dyn ChatStore>, case).await;
}

macro_rules! chat_tests {
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

chat_tests!(
    chat_sessions_are_saved_and_found,
    chat_one_active_session_per_user_and_item,
    chat_delete_is_logical,
    chat_sessions_page_newest_first,
    chat_turns_are_locked_and_stored_whole,
    chat_idle_sessions_expire_under_one_lease,
);

fn user(u: &str) -> UserId {
    UserId::parse(u).unwrap()
}

fn session(u: &str, item: &str, at: DateTime<Utc>) -> ChatSession {
    ChatSession::start(
        user(u),
        ItemId::parse(item).unwrap(),
        json!({"word": item}),
        at,
    )
    .unwrap()
}

fn turn(s: &ChatSession, key: &str, question: &str, answer: &str, at: DateTime<Utc>) -> Turn {
    let message = |role, content: &str| ChatMessage {
        id: Uuid::now_v7(),
        session_id: s.id,
        seq: 0,
        role,
        content: content.to_owned(),
        tokens_used: 7,
        provider: None,
        model: None,
        cost_micros: Micros(0),
        created_at: at,
    };
    Turn {
        idempotency_key: IdempotencyKey::parse(key).unwrap(),
        question: message(ChatRole::User, question),
        answer: ChatMessage {
            provider: Some("groq".into()),
            model: Some("m".into()),
            cost_micros: Micros(12),
            ..message(ChatRole::Assistant, answer)
        },
    }
}

async fn chat_sessions_are_saved_and_found(store: Arc<dyn ChatStore>) {
    let t = now();
    let mut s = session("u1", "apple", t);
    store.save(&s).await.unwrap();
    assert_eq!(store.find_by_id(s.id).await.unwrap(), Some(s.clone()));
    let item = ItemId::parse("apple").unwrap();
    assert_eq!(
        store
            .find_by_user_and_item(&user("u1"), &item)
            .await
            .unwrap(),
        Some(s.clone())
    );
    assert_eq!(
        store
            .find_by_user_and_item(&user("u2"), &item)
            .await
            .unwrap(),
        None
    );
    let other = session("u1", "pear", t + TimeDelta::seconds(1));
    store.save(&other).await.unwrap();
    let active = store.find_active_by_user(&user("u1")).await.unwrap();
    assert_eq!(active, vec![other.clone(), s.clone()], "most recent first");

    // Save updates: status, activity, count.
    s.status = ChatStatus::Closed;
    s.last_activity = t + TimeDelta::seconds(5);
    s.message_count = 4;
    store.save(&s).await.unwrap();
    assert_eq!(store.find_by_id(s.id).await.unwrap(), Some(s.clone()));
    assert_eq!(
        store
            .find_by_user_and_item(&user("u1"), &item)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.find_active_by_user(&user("u1")).await.unwrap(),
        vec![other]
    );
    assert_eq!(store.find_by_id(ChatSessionId::new()).await.unwrap(), None);
}

async fn chat_one_active_session_per_user_and_item(store: Arc<dyn ChatStore>) {
    let t = now();
    let first = session("u1", "apple", t);
    store.save(&first).await.unwrap();
    let second = session("u1", "apple", t);
    assert!(matches!(
        store.save(&second).await,
        Err(ChatStoreError::ActiveSessionExists)
    ));
    // Concurrent starts of another item: exactly one is created, all see the same session.
    let starts: Vec<_> = (0..16)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.start(session("u1", "pear", now())).await.unwrap() })
        })
        .collect();
    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for s in starts {
        let (s, new) = s.await.unwrap();
        created += usize::from(new);
        ids.insert(s.id);
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
    // Once closed, a new one may start.
    let mut closed = first.clone();
    closed.status = ChatStatus::Closed;
    store.save(&closed).await.unwrap();
    let (again, new) = store.start(session("u1", "apple", now())).await.unwrap();
    assert!(new);
    assert_ne!(again.id, first.id);
}

async fn chat_delete_is_logical(store: Arc<dyn ChatStore>) {
    let s = session("u1", "apple", now());
    store.save(&s).await.unwrap();
    assert!(store.delete(s.id, now()).await.unwrap());
    assert!(!store.delete(s.id, now()).await.unwrap(), "already deleted");
    assert_eq!(store.find_by_id(s.id).await.unwrap(), None);
    assert!(
        store
            .find_active_by_user(&user("u1"))
            .await
            .unwrap()
            .is_empty()
    );
    let page = store
        .find_by_user_paginated(&user("u1"), &SessionPageRequest::parse(0, "").unwrap())
        .await
        .unwrap();
    assert!(page.items.is_empty());
    // The item is free for a new session.
    let (_, new) = store.start(session("u1", "apple", now())).await.unwrap();
    assert!(new);
}

async fn chat_sessions_page_newest_first(store: Arc<dyn ChatStore>) {
    let t = now();
    let mut all = Vec::new();
    for i in 0..5 {
        let s = session("u1", &format!("item{i}"), t + TimeDelta::milliseconds(i));
        store.save(&s).await.unwrap();
        all.push(s);
    }
    store.save(&session("u2", "item0", t)).await.unwrap();
    all.reverse();
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = store
            .find_by_user_paginated(&user("u1"), &SessionPageRequest::parse(2, &token).unwrap())
            .await
            .unwrap();
        seen.extend(page.items);
        match page.next_page_token {
            Some(t) => token = t,
            None => break,
        }
    }
    assert_eq!(seen, all);
}

async fn chat_turns_are_locked_and_stored_whole(store: Arc<dyn ChatStore>) {
    let t = now();
    let s = session("u1", "apple", t);
    store.save(&s).await.unwrap();
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let until = t + TimeDelta::seconds(30);
    let TurnLock::Taken(locked) = store.begin_turn(s.id, a, until, t).await.unwrap() else {
        panic!("the first holder takes the lock");
    };
    assert_eq!(locked, s);
    assert_eq!(
        store.begin_turn(s.id, b, until, t).await.unwrap(),
        TurnLock::Busy
    );
    assert_eq!(
        store
            .begin_turn(ChatSessionId::new(), b, until, t)
            .await
            .unwrap(),
        TurnLock::Missing
    );
    // Only the holder stores.
    let first = turn(&s, "k1", "what?", "a fruit", t + TimeDelta::seconds(1));
    assert!(!store.finish_turn(b, &first, t).await.unwrap());
    assert!(
        store
            .finish_turn(a, &first, t + TimeDelta::seconds(1))
            .await
            .unwrap()
    );
    let after = store.find_by_id(s.id).await.unwrap().unwrap();
    assert_eq!(after.message_count, 2);
    assert_eq!(after.last_activity, t + TimeDelta::seconds(1));
    let found = store
        .find_turn(s.id, &IdempotencyKey::parse("k1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((found.question.seq, found.answer.seq), (1, 2));
    assert_eq!(found.answer.provider.as_deref(), Some("groq"));
    assert_eq!(found.answer.cost_micros, Micros(12));
    assert_eq!(found.question.content, "what?");

    // The lock was released with the turn; a failed turn releases it too.
    let TurnLock::Taken(_) = store.begin_turn(s.id, b, until, t).await.unwrap() else {
        panic!("released by the stored turn");
    };
    store.release_turn(s.id, a).await.unwrap();
    assert_eq!(
        store.begin_turn(s.id, a, until, t).await.unwrap(),
        TurnLock::Busy,
        "a non-holder's release does nothing"
    );
    store.release_turn(s.id, b).await.unwrap();
    // A lapsed lock can be taken over.
    let short = t + TimeDelta::milliseconds(10);
    assert!(matches!(
        store.begin_turn(s.id, a, short, t).await.unwrap(),
        TurnLock::Taken(_)
    ));
    assert!(matches!(
        store
            .begin_turn(s.id, b, until, t + TimeDelta::seconds(1))
            .await
            .unwrap(),
        TurnLock::Taken(_)
    ));
    let second = turn(&s, "k2", "colour?", "red", t + TimeDelta::seconds(2));
    assert!(!store.finish_turn(a, &second, t).await.unwrap(), "lost");
    assert!(store.finish_turn(b, &second, t).await.unwrap());
    let messages = store.messages(s.id, 0, 100).await.unwrap();
    let texts: Vec<_> = messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(texts, ["what?", "a fruit", "colour?", "red"]);
    assert_eq!(
        store.messages(s.id, 2, 1).await.unwrap()[0].content,
        "colour?"
    );
    // A turn is stored only in an active session.
    let mut closed = store.find_by_id(s.id).await.unwrap().unwrap();
    closed.status = ChatStatus::Closed;
    store.save(&closed).await.unwrap();
    assert!(matches!(
        store.begin_turn(s.id, a, until, t).await.unwrap(),
        TurnLock::Taken(_)
    ));
    let third = turn(&s, "k3", "q", "a", t);
    assert!(!store.finish_turn(a, &third, t).await.unwrap());
    assert_eq!(store.messages(s.id, 0, 100).await.unwrap().len(), 4);
}

async fn chat_idle_sessions_expire_under_one_lease(store: Arc<dyn ChatStore>) {
    let t = now();
    let old = session("u1", "old", t - TimeDelta::hours(2));
    let fresh = session("u1", "fresh", t);
    let busy = session("u2", "busy", t - TimeDelta::hours(2));
    for s in [&old, &fresh, &busy] {
        store.save(s).await.unwrap();
    }
    let TurnLock::Taken(_) = store
        .begin_turn(busy.id, Uuid::now_v7(), t + TimeDelta::minutes(1), t)
        .await
        .unwrap()
    else {
        panic!("lock");
    };
    let expired = store
        .expire_idle(t - TimeDelta::hours(1), t, 100)
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].id, old.id);
    assert_eq!(expired[0].status, ChatStatus::Expired);
    assert_eq!(
        store.find_by_id(old.id).await.unwrap().unwrap().status,
        ChatStatus::Expired
    );
    assert_eq!(
        store.find_by_id(busy.id).await.unwrap().unwrap().status,
        ChatStatus::Active,
        "a session answering a message is not idle"
    );

    let until = t + TimeDelta::seconds(10);
    assert!(store.acquire_job_lease("job", "a", until, t).await.unwrap());
    assert!(!store.acquire_job_lease("job", "b", until, t).await.unwrap());
    assert!(
        store.acquire_job_lease("job", "a", until, t).await.unwrap(),
        "renewal"
    );
    let later = t + TimeDelta::seconds(11);
    assert!(
        store
            .acquire_job_lease("job", "b", later + TimeDelta::seconds(10), later)
            .await
            .unwrap(),
        "a lapsed lease is taken over"
    );
    store.release_job_lease("job", "a").await.unwrap();
    assert!(
        !store
            .acquire_job_lease("job", "a", until, later)
            .await
            .unwrap()
    );
    store.release_job_lease("job", "b").await.unwrap();
    assert!(
        store
            .acquire_job_lease("job", "a", until, later)
            .await
            .unwrap()
    );
}
