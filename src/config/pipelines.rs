//! Settings of pipelines (seed 004's ProcessingSettings), from the environment.

use std::path::PathBuf;
use std::time::Duration;

use super::Reader;

/// How pipeline sessions run.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSettings {
    /// `PIPELINES_FILE`: more definitions (TOML or JSON) beside the built-in `menu`.
    pub file: Option<PathBuf>,
    /// `PIPELINE_MAX_PARALLEL_TASKS`: stages of one session running at once, unless its
    /// definition says otherwise (seed 004: 8).
    pub max_parallel_tasks: u32,
    /// `PIPELINE_BATCH_SIZE`: items per create or add call (seed 004: 100).
    pub batch_size: usize,
    /// `PIPELINE_SESSION_TTL`: an unfinished session with no activity this long is cancelled
    /// as expired (seed 004: 1 h).
    pub session_ttl: Duration,
    /// `PIPELINE_PROGRESS_INTERVAL`: how often a running session sends a heartbeat event
    /// (seed 004's progress_update_interval: 10 s).
    pub progress_interval: Duration,
}

impl Reader<'_> {
    /// The pipeline settings.
    pub(super) fn pipelines(&mut self) -> PipelineSettings {
        PipelineSettings {
            file: self.raw("PIPELINES_FILE").map(PathBuf::from),
            max_parallel_tasks: self.range("PIPELINE_MAX_PARALLEL_TASKS", 8u32, 1, 10_000),
            batch_size: self.range("PIPELINE_BATCH_SIZE", 100usize, 1, 10_000),
            session_ttl: self.duration(
                "PIPELINE_SESSION_TTL",
                Duration::from_secs(3600),
                Duration::from_millis(100),
            ),
            progress_interval: self.duration(
                "PIPELINE_PROGRESS_INTERVAL",
                Duration::from_secs(10),
                Duration::from_millis(50),
            ),
        }
    }
}
