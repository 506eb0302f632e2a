//! The worker pools the `workers` table lists, as the operator dashboard shows them: every
//! instance of a cluster, whichever instance reads.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// Most rows one listing returns: a cluster is a handful of instances.
pub const MAX_WORKERS_LISTED: u32 = 200;

/// One worker pool (one per instance) as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerRecord {
    /// The pool's id, which its instance also publishes its live figures under.
    pub id: String,
    /// The host it runs on.
    pub instance: String,
    /// `active`, `stopped` or `dead`.
    pub status: String,
    /// When it registered.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_heartbeat: DateTime<Utc>,
}

/// Reads the `workers` table.
#[async_trait]
pub trait WorkerDirectory: Send + Sync + 'static {
    /// Pools whose last heartbeat is at or after `seen_since`, whatever their status, by
    /// instance then id; at most [`MAX_WORKERS_LISTED`].
    async fn workers_seen_since(
        &self,
        seen_since: DateTime<Utc>,
    ) -> Result<Vec<WorkerRecord>, StoreError>;
}
