//! Phase 1: open the WebSockets, then the SSE streams, a bounded number at a time, reading the
//! server's memory before and after each kind.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use hdrhistogram::Histogram;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::args::Args;
use crate::client::{self, ConnStats, Latency, Spec, Target, Transport};
use crate::process::{self, Memory};

/// What opening the connections left.
pub struct Opened {
    /// Every connection's stats, WebSockets first, open or not.
    pub all: Vec<Arc<ConnStats>>,
    /// The tasks holding them, until `stop`.
    pub holders: JoinSet<()>,
    /// Connect to first frame, microseconds.
    pub open_time: Histogram<u64>,
    /// Connections that failed to open, by reason.
    pub failed: BTreeMap<String, u64>,
    /// Server memory before any connection.
    pub before: Memory,
    /// Server memory after the WebSockets (and `--settle`).
    pub after_ws: Memory,
    /// Server memory after the SSE streams (and `--settle`).
    pub after_sse: Memory,
    /// Time spent opening, without the settle pauses.
    pub seconds: f64,
}

/// What every connection shares.
pub struct Shared {
    /// Where to connect.
    pub target: Arc<Target>,
    /// One token per user.
    pub tokens: Arc<Vec<String>>,
    /// Where every connection records its events' latency.
    pub latency: Arc<Latency>,
    /// Tells every connection to close.
    pub stop: CancellationToken,
}

/// Opens `--ws` WebSockets, then `--sse` SSE streams, for `users` users (connection `i` of each
/// kind belongs to user `i mod users`), at most `--connect-concurrency` opening at once; reads
/// `server`'s memory before and after each kind.
pub async fn connect_all(
    args: &Args,
    users: usize,
    server: &str,
    shared: &Shared,
) -> anyhow::Result<Opened> {
    let mut holders = JoinSet::new();
    let mut all: Vec<Arc<ConnStats>> = Vec::with_capacity(args.connections());
    let mut open_time = Histogram::<u64>::new_with_bounds(1, crate::MAX_TRACKED_US, 3)?;
    let mut failed = BTreeMap::new();

    let before = process::memory(server)?;
    let connect_start = Instant::now();
    let mut after = Vec::new();
    for (transport, count) in [(Transport::Ws, args.ws), (Transport::Sse, args.sse)] {
        let stats: Vec<Arc<ConnStats>> = (0..count)
            .map(|i| Arc::new(ConnStats::new(transport, i % users)))
            .collect();
        let mut pending = FuturesUnordered::new();
        let started = Instant::now();
        for (i, s) in stats.iter().enumerate() {
            while pending.len() >= args.connect_concurrency {
                if let Some(r) = pending.next().await {
                    opened(r, &mut open_time, &mut failed);
                }
            }
            let (tx, rx) = oneshot::channel();
            let spec = Spec {
                index: all.len() + i,
                token: shared.tokens[s.user].clone(),
                stats: s.clone(),
            };
            holders.spawn(client::hold(
                shared.target.clone(),
                spec,
                shared.latency.clone(),
                tx,
                shared.stop.clone(),
            ));
            pending.push(rx);
            if (i + 1) % 1000 == 0 {
                progress!("{} {} connections started", i + 1, transport.name());
            }
        }
        while let Some(r) = pending.next().await {
            opened(r, &mut open_time, &mut failed);
        }
        let open = stats.iter().filter(|s| s.is_open()).count();
        progress!(
            "{open} of {count} {} connections open in {:.2} s",
            transport.name(),
            started.elapsed().as_secs_f64()
        );
        all.extend(stats);
        tokio::time::sleep(args.settle).await;
        after.push(process::memory(server)?);
    }
    let seconds = connect_start.elapsed().as_secs_f64() - 2.0 * args.settle.as_secs_f64();
    Ok(Opened {
        all,
        holders,
        open_time,
        failed,
        before,
        after_ws: after[0],
        after_sse: after[1],
        seconds,
    })
}

impl Opened {
    /// Connections of `transport` that opened and are still open.
    pub fn open(&self, transport: Transport) -> usize {
        self.all
            .iter()
            .filter(|s| s.transport == transport && s.is_open())
            .count()
    }
}

/// Records one connection's opening.
fn opened(
    result: Result<Result<Duration, String>, oneshot::error::RecvError>,
    open_time: &mut Histogram<u64>,
    failed: &mut BTreeMap<String, u64>,
) {
    match result {
        Ok(Ok(took)) => {
            open_time.saturating_record(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
        }
        Ok(Err(reason)) => *failed.entry(reason).or_insert(0) += 1,
        Err(_) => *failed.entry("client task died".into()).or_insert(0) += 1,
    }
}

/// Whether a failure is the open-files limit (EMFILE, "Too many open files").
pub fn is_file_limit(reason: &str) -> bool {
    reason.contains("os error 24") || reason.contains("Too many open files")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_the_open_files_limit_from_other_failures() {
        assert!(is_file_limit(
            "ws connect: Too many open files (os error 24)"
        ));
        assert!(is_file_limit(
            "sse connect: error sending request: os error 24"
        ));
        assert!(!is_file_limit("ws handshake: http 503"));
    }

    #[test]
    fn counts_open_times_and_failures_by_reason() {
        let mut open_time = Histogram::<u64>::new(3).unwrap();
        let mut failed = BTreeMap::new();
        let (dead, rx) = oneshot::channel::<Result<Duration, String>>();
        drop(dead);
        let died = futures::executor::block_on(rx);
        opened(
            Ok(Ok(Duration::from_millis(3))),
            &mut open_time,
            &mut failed,
        );
        opened(
            Ok(Err("ws: timed out opening".into())),
            &mut open_time,
            &mut failed,
        );
        opened(
            Ok(Err("ws: timed out opening".into())),
            &mut open_time,
            &mut failed,
        );
        opened(died, &mut open_time, &mut failed);
        assert_eq!(open_time.len(), 1);
        assert_eq!(failed["ws: timed out opening"], 2);
        assert_eq!(failed["client task died"], 1);
    }
}
