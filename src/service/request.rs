//! The request a call came in on: its id (`x-request-id`), set by the edge around each HTTP
//! request and gRPC call, read where something worth tracing back is recorded (the audit
//! log). A task-local, so services need not thread it through every signature.

use std::future::Future;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `fut` as part of request `id`.
pub async fn scope<F: Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// The id of the request being served, if any.
pub fn current_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_id_is_seen_inside_its_scope_only() {
        assert_eq!(current_id(), None);
        let seen = scope("r-1".into(), async { current_id() }).await;
        assert_eq!(seen.as_deref(), Some("r-1"));
        assert_eq!(current_id(), None);
    }
}
