//! The audit log on both databases: entries read back as written, newest first, filtered by
//! actor, action and time, paged by id.

use std::sync::Arc;

use ai_integration_service::domain::UserId;
use ai_integration_service::domain::audit::{AuditAction, AuditEntry, AuditFilter};
use ai_integration_service::store::audit::AuditStore;
use ai_integration_service::store::{PgTaskStore, SqliteTaskStore};
use chrono::{SubsecRound, TimeDelta, Utc};
use serde_json::json;

fn entry(actor: &str, action: AuditAction, minutes_ago: i64, error: Option<&str>) -> AuditEntry {
    AuditEntry {
        id: uuid::Uuid::now_v7(),
        at: (Utc::now() - TimeDelta::minutes(minutes_ago)).trunc_subsecs(6),
        actor: UserId::parse(actor).unwrap(),
        action,
        target: "default".into(),
        error: error.map(str::to_owned),
        detail: json!({"count": 3}),
        request_id: Some(format!("req-{minutes_ago}")),
    }
}

async fn entries_filter_and_page(store: Arc<dyn AuditStore>) {
    let written = vec![
        entry("ops", AuditAction::PauseQueue, 30, None),
        entry("ops", AuditAction::ResumeQueue, 20, None),
        entry(
            "root",
            AuditAction::PurgeDeadLetters,
            10,
            Some("no such queue"),
        ),
        entry("ops", AuditAction::ResetBreaker, 0, None),
    ];
    for e in &written {
        store.record(e).await.unwrap();
    }
    let all = store.list(&AuditFilter::default(), None, 10).await.unwrap();
    let newest_first: Vec<_> = written.iter().rev().cloned().collect();
    assert_eq!(all, newest_first, "read back as written, newest first");
    assert_eq!(all[1].result(), "error");

    let ops = AuditFilter {
        actor: Some(UserId::parse("ops").unwrap()),
        ..AuditFilter::default()
    };
    assert_eq!(store.list(&ops, None, 10).await.unwrap().len(), 3);
    let purges = AuditFilter {
        action: Some(AuditAction::PurgeDeadLetters),
        ..AuditFilter::default()
    };
    assert_eq!(
        store.list(&purges, None, 10).await.unwrap(),
        [written[2].clone()]
    );
    let window = AuditFilter {
        from: Some(written[1].at),
        to: Some(written[3].at),
        ..AuditFilter::default()
    };
    let between = store.list(&window, None, 10).await.unwrap();
    assert_eq!(between, [written[2].clone(), written[1].clone()]);

    let first = store.list(&AuditFilter::default(), None, 3).await.unwrap();
    let rest = store
        .list(&AuditFilter::default(), Some(first[2].id), 3)
        .await
        .unwrap();
    assert_eq!(rest, [written[0].clone()], "the page after the third");
}

macro_rules! audit_tests {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(url) = crate::support::pg_url().await else { return };
                let store = super::PgTaskStore::connect(&url, 10).await.unwrap();
                let pool = store.pool().clone();
                crate::support::run_then_cleanup(
                    super::$name(std::sync::Arc::new(store.audit_store())),
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
                super::$name(std::sync::Arc::new(store.audit_store())).await;
            }
        }
    )+};
}

audit_tests!(entries_filter_and_page);
