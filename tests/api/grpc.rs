//! The gRPC API, with a real tonic client.

use std::time::Duration;

use ai_integration_service::api::proto::{
    CancelTaskRequest, GetTaskRequest, ListTasksRequest, SubmitTaskRequest, SubmitTasksRequest,
    TaskStatus,
};
use prost_types::value::Kind;
use tonic::{Code, Request};

use crate::helpers::{Mode, TestApp, both_modes, spawn_app};

fn authed<T>(app: &TestApp, user: &str, msg: T) -> Request<T> {
    let mut r = Request::new(msg);
    r.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", app.token(user)).parse().unwrap(),
    );
    r
}

fn echo(n: f64) -> SubmitTaskRequest {
    let mut payload = prost_types::Struct::default();
    payload.fields.insert(
        "n".into(),
        prost_types::Value {
            kind: Some(Kind::NumberValue(n)),
        },
    );
    SubmitTaskRequest {
        r#type: "echo".into(),
        payload: Some(payload),
        ..Default::default()
    }
}

async fn wait_done(
    app: &TestApp,
    user: &str,
    id: &str,
) -> ai_integration_service::api::proto::Task {
    let mut client = app.grpc().await;
    for _ in 0..500 {
        let t = client
            .get_task(authed(app, user, GetTaskRequest { task_id: id.into() }))
            .await
            .unwrap()
            .into_inner();
        if t.status != TaskStatus::Pending as i32 && t.status != TaskStatus::Processing as i32 {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("task {id} did not finish");
}

async fn submit_get_list(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let mut client = app.grpc().await;
    let task = client
        .submit_task(authed(&app, "alice", echo(5.0)))
        .await
        .unwrap()
        .into_inner();
    // Pending, or already processing when an idle worker of the instance took it at once.
    assert!(
        [TaskStatus::Pending as i32, TaskStatus::Processing as i32].contains(&task.status),
        "{task:?}"
    );
    assert_eq!(task.priority, 5);
    let done = wait_done(&app, "alice", &task.task_id).await;
    assert_eq!(done.status, TaskStatus::Completed as i32);
    let result = done.result.unwrap();
    let Some(Kind::StructValue(s)) = result.kind else {
        panic!("result is not an object")
    };
    assert_eq!(s.fields["n"].kind, Some(Kind::NumberValue(5.0)));

    let batch = SubmitTasksRequest {
        tasks: (0..10).map(|i| echo(f64::from(i))).collect(),
    };
    let out = client
        .submit_tasks(authed(&app, "alice", batch))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(out.tasks.len(), 10);
    for t in &out.tasks {
        wait_done(&app, "alice", &t.task_id).await;
    }
    let list = client
        .list_tasks(authed(
            &app,
            "alice",
            ListTasksRequest {
                page_size: 4,
                status: TaskStatus::Completed as i32,
                ..Default::default()
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.tasks.len(), 4);
    assert!(!list.next_page_token.is_empty());
    assert_eq!(list.tasks[0].task_id, out.tasks[9].task_id, "newest first");

    let other = client
        .get_task(authed(
            &app,
            "mallory",
            GetTaskRequest {
                task_id: task.task_id.clone(),
            },
        ))
        .await;
    assert_eq!(other.unwrap_err().code(), Code::NotFound);
    app.cleanup().await;
}
both_modes!(submit_get_list, submit_get_list);

async fn cancel_pending_then_finished(mode: Mode) {
    // One worker busy with a slow task keeps the next one pending.
    let Some(app) = spawn_app(mode, &[("WORKER_POOL_SIZE", "1")]).await else {
        return;
    };
    let mut client = app.grpc().await;
    let mut slow = echo(1.0);
    slow.payload.as_mut().unwrap().fields.insert(
        "delay_ms".into(),
        prost_types::Value {
            kind: Some(Kind::NumberValue(800.0)),
        },
    );
    let first = client
        .submit_task(authed(&app, "alice", slow))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = client
        .submit_task(authed(&app, "alice", echo(2.0)))
        .await
        .unwrap()
        .into_inner();
    let cancelled = client
        .cancel_task(authed(
            &app,
            "alice",
            CancelTaskRequest {
                task_id: second.task_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, TaskStatus::Cancelled as i32);

    let done = wait_done(&app, "alice", &first.task_id).await;
    assert_eq!(done.status, TaskStatus::Completed as i32);
    // The cancelled task never runs.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let still = wait_done(&app, "alice", &second.task_id).await;
    assert_eq!(still.status, TaskStatus::Cancelled as i32);
    assert!(still.started_at.is_none());

    let again = client
        .cancel_task(authed(
            &app,
            "alice",
            CancelTaskRequest {
                task_id: first.task_id,
            },
        ))
        .await;
    assert_eq!(again.unwrap_err().code(), Code::FailedPrecondition);
    app.cleanup().await;
}
both_modes!(cancel_pending_then_finished, cancel_pending_then_finished);

async fn bad_requests_get_grpc_codes(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let mut client = app.grpc().await;
    let unknown = SubmitTaskRequest {
        r#type: "translate".into(),
        ..Default::default()
    };
    let err = client
        .submit_task(authed(&app, "alice", unknown))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("unknown task type"),
        "{}",
        err.message()
    );

    let mut bad_priority = echo(1.0);
    bad_priority.priority = Some(0);
    let err = client
        .submit_task(authed(&app, "alice", bad_priority))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = client
        .get_task(authed(
            &app,
            "alice",
            GetTaskRequest {
                task_id: "nope".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = client
        .submit_task(Request::new(echo(1.0)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);

    let mut forged = Request::new(echo(1.0));
    forged
        .metadata_mut()
        .insert("authorization", "Bearer abc.def.ghi".parse().unwrap());
    assert_eq!(
        client.submit_task(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let batch = SubmitTasksRequest {
        tasks: vec![
            echo(1.0),
            SubmitTaskRequest {
                r#type: "x".into(),
                ..Default::default()
            },
        ],
    };
    let err = client
        .submit_tasks(authed(&app, "alice", batch))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("tasks[1]"), "{}", err.message());

    let list = client
        .list_tasks(authed(&app, "alice", ListTasksRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert!(list.tasks.is_empty(), "nothing stored by bad requests");
    app.cleanup().await;
}
both_modes!(bad_requests_get_grpc_codes, bad_requests_get_grpc_codes);

async fn cancelling_a_running_task_stops_its_call(mode: Mode) {
    // One worker slot, held by a 30 s call: only aborting that call frees it.
    let Some(app) = spawn_app(mode, &[("WORKER_POOL_SIZE", "1")]).await else {
        return;
    };
    let mut client = app.grpc().await;
    let mut slow = echo(1.0);
    slow.payload.as_mut().unwrap().fields.insert(
        "delay_ms".into(),
        prost_types::Value {
            kind: Some(Kind::NumberValue(30000.0)),
        },
    );
    let running = client
        .submit_task(authed(&app, "alice", slow))
        .await
        .unwrap()
        .into_inner();
    for _ in 0..500 {
        let t = client
            .get_task(authed(
                &app,
                "alice",
                GetTaskRequest {
                    task_id: running.task_id.clone(),
                },
            ))
            .await
            .unwrap()
            .into_inner();
        if t.status == TaskStatus::Processing as i32 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cancelled = client
        .cancel_task(authed(
            &app,
            "alice",
            CancelTaskRequest {
                task_id: running.task_id.clone(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, TaskStatus::Cancelled as i32);
    let started = std::time::Instant::now();
    let next = client
        .submit_task(authed(&app, "alice", echo(2.0)))
        .await
        .unwrap()
        .into_inner();
    let done = wait_done(&app, "alice", &next.task_id).await;
    assert_eq!(done.status, TaskStatus::Completed as i32);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the slot was freed after {:?}",
        started.elapsed()
    );
    let still = wait_done(&app, "alice", &running.task_id).await;
    assert_eq!(
        still.status,
        TaskStatus::Cancelled as i32,
        "the aborted call recorded nothing"
    );
    app.cleanup().await;
}
both_modes!(
    cancelling_a_running_task_stops_its_call,
    cancelling_a_running_task_stops_its_call
);
