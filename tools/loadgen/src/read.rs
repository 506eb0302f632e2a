//! Phase 3: `GetTask` for up to [`MAX_GETS`] of the submitted tasks, spread over the run.

use std::collections::BTreeMap;
use std::sync::Arc;

use hdrhistogram::Histogram;

use crate::api::Api;
use crate::args::Args;
use crate::errors::ErrorCount;
use crate::pacing::run_calls;

/// Most `GetTask` calls in the read phase.
pub const MAX_GETS: usize = 2000;

/// The read phase's outcome.
pub struct GetPhase {
    /// Calls made.
    pub calls: usize,
    /// Per-call latency, microseconds.
    pub latency: Histogram<u64>,
    /// Failed calls by kind.
    pub errors: BTreeMap<String, ErrorCount>,
}

/// Reads each of `ids` once, with the submit phase's concurrency and `--rate`.
pub async fn get_phase(api: &Api, args: &Args, ids: Vec<String>) -> anyhow::Result<GetPhase> {
    let ids = Arc::new(ids);
    let calls = ids.len();
    let phase = run_calls(calls, args.rate, args.concurrency, |j| {
        let (api, ids) = (api.clone(), ids.clone());
        async move { api.get(&ids[j]).await }
    })
    .await?;
    Ok(GetPhase {
        calls,
        latency: phase.latency,
        errors: phase.errors,
    })
}

/// `count` items spread evenly over `items`.
pub fn spread<T>(items: &[T], count: usize) -> Vec<&T> {
    let count = count.min(items.len());
    (0..count)
        .map(|i| &items[i * items.len() / count])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn spreads_evenly_and_never_past_the_end() {
        let items: Vec<usize> = (0..10).collect();
        assert_eq!(spread(&items, 5), [&0, &2, &4, &6, &8]);
        assert_eq!(spread(&items, 20).len(), 10);
        assert!(spread(&items, 0).is_empty());
        assert!(spread::<usize>(&[], 3).is_empty());
    }
}
