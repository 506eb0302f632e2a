//! The `echo` provider: returns the task's payload. For development, tests and benchmarks.
//!
//! Payload options: `delay_ms` waits that long before answering (a slow provider);
//! `fail_times` fails that many attempts with a retryable error before succeeding (a flaky one);
//! it counts every attempt ever made, so a dead letter requeued after `fail_times` attempts
//! succeeds.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use super::{Provider, ProviderError};
use crate::domain::{ErrorClass, Task};

/// Answers with the task's own payload.
#[derive(Debug, Clone, Copy, Default)]
pub struct EchoProvider;

#[async_trait]
impl Provider for EchoProvider {
    fn name(&self) -> &'static str {
        "echo"
    }

    async fn execute(&self, task: &Task) -> Result<Value, ProviderError> {
        let delay = task
            .payload
            .get("delay_ms")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        let fail_times = task
            .payload
            .get("fail_times")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        // The running attempt's number, 1-based (a task run without a claim counts as its first).
        let attempt = task.attempts.max(1);
        if u64::from(attempt) <= fail_times {
            return Err(ProviderError {
                provider: self.name().into(),
                class: ErrorClass::Retryable,
                message: format!("simulated failure {attempt} of {fail_times}"),
                retry_after: None,
            });
        }
        Ok(task.payload.clone())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::{NewTask, SubmitPolicy, Submitter, TaskRequest, UserId};

    fn task(payload: Value) -> Task {
        let new = NewTask::parse(
            &Submitter::user(UserId::parse("u").unwrap()),
            TaskRequest::new("echo", payload),
            &SubmitPolicy::default(),
        )
        .unwrap();
        Task::create(new, 3, Duration::from_secs(5), chrono::Utc::now())
    }

    #[tokio::test]
    async fn returns_its_input() {
        let t = task(json!({"hello": "world"}));
        assert_eq!(
            EchoProvider.execute(&t).await.unwrap(),
            json!({"hello": "world"})
        );
    }

    #[tokio::test]
    async fn fails_the_first_attempts() {
        let mut t = task(json!({"fail_times": 2}));
        for attempt in 1..=2 {
            t.attempts = attempt;
            let err = EchoProvider.execute(&t).await.unwrap_err();
            assert_eq!(err.class, ErrorClass::Retryable);
        }
        t.attempts = 3;
        assert!(EchoProvider.execute(&t).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn waits_delay_ms() {
        let t = task(json!({"delay_ms": 250}));
        let start = tokio::time::Instant::now();
        EchoProvider.execute(&t).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }
}
