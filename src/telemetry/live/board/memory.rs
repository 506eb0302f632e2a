//! The sample board of embedded mode: one process, so a map.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{BoardError, InstanceSample, SampleBoard};

/// Samples in memory, by instance.
#[derive(Default)]
pub struct MemoryBoard {
    samples: Mutex<HashMap<String, InstanceSample>>,
}

impl MemoryBoard {
    /// An empty board.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl SampleBoard for MemoryBoard {
    async fn publish(&self, sample: &InstanceSample) -> Result<(), BoardError> {
        let mut all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(sample.instance.clone(), sample.clone());
        Ok(())
    }

    async fn read(&self, fresh_since_ms: i64) -> Result<Vec<InstanceSample>, BoardError> {
        let all = self.samples.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all
            .values()
            .filter(|s| s.at_ms >= fresh_since_ms)
            .cloned()
            .collect())
    }
}
