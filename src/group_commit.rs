//! Group commit: many concurrent callers' writes share one transaction.
//!
//! Each caller sends its items and waits. A loop takes everything waiting (up to a cap), runs
//! one batch operation for all of it, and answers every caller. Under load one commit serves
//! hundreds of requests; when idle a single request is written at once, so latency never waits
//! for a timer (a busy loop may, see [`Gather`]).
//!
//! Calls carry a key (the owner of the rows, in practice) and each key always goes to the same
//! loop. Writes of one owner lock the same rows (a user's event counter), so two transactions
//! of one owner in flight at once only queue behind each other's commit; one loop per key lets
//! the next batch gather while the current one commits, and different owners still write in
//! parallel.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// Why a batched call did not return a result.
#[derive(Debug, thiserror::Error)]
pub enum BatchError<E> {
    /// The batch operation failed; the same error reaches every caller in the batch.
    #[error("{0}")]
    Failed(Arc<E>),
    /// The batcher has shut down.
    #[error("shutting down")]
    Closed,
}

type Reply<O, E> = oneshot::Sender<Result<Vec<O>, BatchError<E>>>;
type Job<I, O, E> = (Vec<I>, Reply<O, E>);

/// A loop whose last batch ended less than this ago is busy: calls are arriving faster than
/// it writes them one by one.
pub const BUSY_WITHIN: Duration = Duration::from_millis(2);

/// A busy loop lingers only for batches smaller than this: a larger one already spreads its
/// statement's fixed cost, and under a flood of them waiting only slows the loop down (with
/// every batch lingering, one batched-throughput run fell from 8,350 to 6,650 tasks/s).
pub const LINGER_BELOW: usize = 32;

/// How a batcher's loops form batches.
///
/// A loop takes everything waiting when it frees up. Idle, that is one call, written at once.
/// Busy (its last batch ended under [`BUSY_WITHIN`] ago) with fewer than [`LINGER_BELOW`]
/// items, it can wait `linger` for more calls first: at 1,000 single submits/s on PostgreSQL
/// a loop otherwise wrote ~3 tasks per statement, and every statement, and the WAL flush that
/// follows it, costs the same whatever its size; waiting for the next timer tick took
/// PostgreSQL's CPU per task down by a third.
#[derive(Debug, Clone, Copy)]
pub struct Gather {
    /// Loops (batches in flight at once).
    pub loops: usize,
    /// How long a busy loop waits for more calls; zero: never. Tokio's timer rounds it up to
    /// its next 1 ms tick.
    pub linger: Duration,
}

/// Moves the jobs already waiting in `rx` into `jobs` until `n` items reach `max_items`.
fn take_waiting<I, O, E>(
    rx: &mut mpsc::Receiver<Job<I, O, E>>,
    jobs: &mut Vec<Job<I, O, E>>,
    n: &mut usize,
    max_items: usize,
) {
    while *n < max_items {
        match rx.try_recv() {
            Ok(job) => {
                *n += job.0.len();
                jobs.push(job);
            }
            Err(_) => break,
        }
    }
}

/// Sends items to the batching loops.
pub struct Batcher<I, O, E> {
    loops: Arc<[mpsc::Sender<Job<I, O, E>>]>,
}

impl<I, O, E> Clone for Batcher<I, O, E> {
    fn clone(&self) -> Self {
        Self {
            loops: self.loops.clone(),
        }
    }
}

impl<I, O, E> Batcher<I, O, E>
where
    I: Clone + Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    /// Starts `loops` loops on `tracker`, each running `op` on up to `max_items` items at a time.
    /// `op` must return one output per input, in order. The loops end when every `Batcher`
    /// clone is dropped and their queues are drained, so nothing accepted is abandoned.
    pub fn spawn<F, Fut>(tracker: &TaskTracker, loops: usize, max_items: usize, op: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send,
    {
        Self::spawn_gathering(
            tracker,
            Gather {
                loops,
                linger: Duration::ZERO,
            },
            max_items,
            op,
        )
    }

    /// [`Batcher::spawn`] whose loops, while busy, wait `gather.linger` for more calls before
    /// running a small batch (see [`Gather`]).
    pub fn spawn_gathering<F, Fut>(
        tracker: &TaskTracker,
        gather: Gather,
        max_items: usize,
        op: F,
    ) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send,
    {
        let senders: Vec<_> = (0..gather.loops.max(1))
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<Job<I, O, E>>(max_items.max(1) * 4);
                let op = op.clone();
                let lingers = !gather.linger.is_zero();
                tracker.spawn(async move {
                    // When the last batch ended (kept only by loops that linger); long ago at
                    // first.
                    let mut last_end: Option<Instant> = None;
                    while let Some(first) = rx.recv().await {
                        let mut n = first.0.len();
                        let mut jobs = vec![first];
                        take_waiting(&mut rx, &mut jobs, &mut n, max_items);
                        let busy = last_end.is_some_and(|t| t.elapsed() < BUSY_WITHIN);
                        if busy && n < LINGER_BELOW.min(max_items) {
                            tokio::time::sleep(gather.linger).await;
                            take_waiting(&mut rx, &mut jobs, &mut n, max_items);
                        }
                        run_jobs(&op, jobs).await;
                        if lingers {
                            last_end = Some(Instant::now());
                        }
                    }
                });
                tx
            })
            .collect();
        Self {
            loops: senders.into(),
        }
    }

    /// Runs `op` on `items` as part of some batch of the loop that serves `key`, and returns
    /// their outputs.
    pub async fn call(&self, key: impl Hash, items: Vec<I>) -> Result<Vec<O>, BatchError<E>> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let lane = (hasher.finish() % self.loops.len() as u64) as usize;
        let (reply, rx) = oneshot::channel();
        self.loops[lane]
            .send((items, reply))
            .await
            .map_err(|_| BatchError::Closed)?;
        rx.await.unwrap_or(Err(BatchError::Closed))
    }
}

async fn run_jobs<I, O, E, F, Fut>(op: &F, jobs: Vec<(Vec<I>, Reply<O, E>)>)
where
    I: Clone,
    F: Fn(Vec<I>) -> Fut,
    Fut: Future<Output = Result<Vec<O>, E>>,
{
    let all: Vec<I> = jobs
        .iter()
        .flat_map(|(items, _)| items.iter().cloned())
        .collect();
    let (count, started) = (all.len(), std::time::Instant::now());
    let result = op(all).await;
    tracing::debug!(
        jobs = jobs.len(),
        items = count,
        elapsed_us = started.elapsed().as_micros() as u64,
        "batch"
    );
    match result {
        Ok(outputs) => {
            let mut outputs = outputs.into_iter();
            for (items, reply) in jobs {
                let mine: Vec<O> = outputs.by_ref().take(items.len()).collect();
                let _ = reply.send(Ok(mine));
            }
        }
        Err(e) if jobs.len() == 1 => {
            let (_, reply) = jobs.into_iter().next().expect("one job");
            let _ = reply.send(Err(BatchError::Failed(Arc::new(e))));
        }
        Err(_) => {
            // One caller's items must not fail another's: retry each job on its own.
            for (items, reply) in jobs {
                let result = op(items).await.map_err(|e| BatchError::Failed(Arc::new(e)));
                let _ = reply.send(result);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn concurrent_calls_share_batches_and_get_their_own_outputs() {
        let tracker = TaskTracker::new();
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let b: Batcher<u32, u32, String> = Batcher::spawn(&tracker, 1, 100, move |xs: Vec<u32>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(xs.len());
                tokio::task::yield_now().await;
                Ok(xs.into_iter().map(|x| x * 2).collect())
            }
        });
        let calls: Vec<_> = (0..50u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.call("k", vec![i, i + 1000]).await.unwrap()) })
            })
            .collect();
        for c in calls {
            let (i, out) = c.await.unwrap();
            assert_eq!(out, vec![i * 2, (i + 1000) * 2]);
        }
        assert_eq!(sizes.lock().unwrap().iter().sum::<usize>(), 100);
        drop(b);
        tracker.close();
        tracker.wait().await;
    }

    /// Calls with one key go to one loop, so their batches never overlap; other keys run on
    /// the other loops meanwhile.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_key_has_one_batch_in_flight() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let tracker = TaskTracker::new();
        let in_flight: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let max_seen: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
        let (flying, peaks) = (in_flight.clone(), max_seen.clone());
        let b: Batcher<usize, usize, String> =
            Batcher::spawn(&tracker, 4, 10, move |keys: Vec<usize>| {
                let (flying, peaks) = (flying.clone(), peaks.clone());
                async move {
                    let k = keys[0];
                    let now = flying[k].fetch_add(1, Ordering::SeqCst) + 1;
                    peaks[k].fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    flying[k].fetch_sub(1, Ordering::SeqCst);
                    Ok(keys)
                }
            });
        let calls: Vec<_> = (0..60usize)
            .map(|i| {
                let b = b.clone();
                // A batch may mix keys that share a loop; it counts as its first key's.
                tokio::spawn(async move { b.call(i % 3, vec![i % 3]).await.unwrap() })
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
        for (k, peak) in max_seen.iter().enumerate() {
            assert_eq!(
                peak.load(Ordering::SeqCst),
                1,
                "key {k} had two batches at once"
            );
        }
    }

    #[tokio::test]
    async fn a_failing_job_does_not_fail_its_batch_mates() {
        let tracker = TaskTracker::new();
        let b: Batcher<i32, i32, String> =
            Batcher::spawn(&tracker, 1, 100, |xs: Vec<i32>| async move {
                if xs.iter().any(|x| *x < 0) {
                    Err("negative".to_string())
                } else {
                    Ok(xs)
                }
            });
        let (good, bad) = tokio::join!(b.call("k", vec![1, 2]), b.call("k", vec![-1]));
        assert_eq!(good.unwrap(), vec![1, 2]);
        assert!(matches!(bad, Err(BatchError::Failed(e)) if *e == "negative"));
    }

    /// An idle loop writes a call at once; a busy one (its last batch just ended) waits its
    /// linger for more calls, and writes them together.
    #[tokio::test(start_paused = true)]
    async fn a_busy_loop_lingers_for_more_calls_and_an_idle_one_does_not() {
        let tracker = TaskTracker::new();
        let sizes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let gather = Gather {
            loops: 1,
            linger: Duration::from_millis(1),
        };
        let b: Batcher<u32, u32, String> =
            Batcher::spawn_gathering(&tracker, gather, 100, move |xs: Vec<u32>| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(xs.len());
                    Ok(xs)
                }
            });
        // Idle: answered without the clock moving.
        let start = tokio::time::Instant::now();
        assert_eq!(b.call("k", vec![1]).await.unwrap(), vec![1]);
        assert_eq!(
            start.elapsed(),
            Duration::ZERO,
            "an idle loop must not wait"
        );
        // Busy: the next call comes right after that batch; the loop waits, and a call
        // arriving meanwhile joins the same batch.
        let first = tokio::spawn({
            let b = b.clone();
            async move { b.call("k", vec![2]).await }
        });
        tokio::task::yield_now().await;
        let second = tokio::spawn({
            let b = b.clone();
            async move { b.call("k", vec![3]).await }
        });
        assert_eq!(first.await.unwrap().unwrap(), vec![2]);
        assert_eq!(second.await.unwrap().unwrap(), vec![3]);
        assert_eq!(*sizes.lock().unwrap(), vec![1, 2]);
        // Idle again once BUSY_WITHIN has passed.
        tokio::time::sleep(BUSY_WITHIN).await;
        let start = tokio::time::Instant::now();
        b.call("k", vec![4]).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
