//! `loadgen`: a load generator and latency meter for the AI integration service.
//!
//! What it measures, in three phases, over gRPC or HTTP/JSON:
//!
//! 1. **Submit.** Sends `N` `echo` tasks (payload `{"i": k}`, plus `"delay_ms"` when
//!    `--delay-ms` > 0), one per `SubmitTask` / `POST /api/v1/tasks`, or `--batch B` per
//!    `SubmitTasks` / `POST /api/v1/tasks/batch`. At most `--concurrency` calls are in flight.
//!    Without `--rate` the calls are sent back to back (closed loop) and each call's latency is
//!    measured from the moment it is sent. With `--rate R` the schedule is open loop: call `j`
//!    is due at `j * B / R` seconds after the start whether or not earlier calls have answered,
//!    and its latency is measured from that *intended* start, so time spent waiting for a free
//!    concurrency slot behind a slow server counts (no coordinated omission). Latencies go to an
//!    HdrHistogram in microseconds; each task's id and wall-clock (UTC) submit start are kept.
//!    In open loop the report also shows the *schedule lag* (how late calls left the client:
//!    tokio's 1 ms timer, or every slot busy), which is part of the measured latency.
//! 2. **Completion.** Pages through the run's tasks with status `completed` (`ListTasks` /
//!    `GET /api/v1/tasks?status=completed`, 1,000 per page) every 200 ms until every submitted
//!    task has been seen, or `--timeout` passes. Most passes read only the newest pages (where
//!    new completions appear), so polling adds little load while the server drains.
//!    Submit-to-complete latency is the server's `completed_at` minus the client's submit start
//!    (client and server share a clock when both run on one machine). End-to-end throughput is
//!    completed tasks divided by the time from the first submit start to the last
//!    `completed_at`.
//! 3. **Reads.** Issues `min(N, 2000)` `GetTask` calls for submitted ids, with the same
//!    concurrency (and `--rate`, if given), and reports their latency.
//!
//! With `--watch`, one SSE stream per user is open from before the first submit, and the
//! report adds *submit→notified*: each task's terminal event's arrival at the client minus its
//! submit start, i.e. when a watching client learned the result (after the outcome's commit and
//! the notification path, which `completed_at` precedes).
//!
//! The token is minted for a fresh user `loadgen-<random>` (from `--jwt-secret`, `JWT_SECRET`,
//! or `$DATA_DIR/jwt_secret` / `./data/jwt_secret` of an embedded-mode server), so a run's tasks
//! are isolated from everyone else's. With `--token`, tasks of that token's user that this run
//! did not submit are ignored. With `--users U`, submit call `j` goes out as fresh user
//! `loadgen-<random>-<j % U>` (traffic from many users, as a shared service sees it), and the
//! completion and read phases use a minted admin token, which sees every user's tasks.
//!
//! Failures are counted by kind, never panicked on. The exit status is 0 for a clean run, 1 when
//! any call failed or the completion wait timed out, 2 for bad arguments or setup.

mod api;
mod args;
mod credentials;
mod e2e;
mod errors;
mod pacing;
mod read;
mod report;
mod stats;
mod submit;
mod wait;
mod watch;
mod workload;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use api::Api;
use args::Args;
use credentials::resolve_credentials;
use e2e::{EndToEnd, since_submit};
use errors::{CallError, ErrorTally, count_error};
use read::{MAX_GETS, get_phase, spread};
use report::{Measured, Report};
use submit::submit_phase;
use wait::wait_phase;
use watch::Watch;

/// How long `--watch` waits after the completion phase for the last terminal events.
const WATCH_GRACE: Duration = Duration::from_secs(2);

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Runs the three phases and prints the report. `Err` only for setup problems; failures during
/// the run are counted and turn into exit status 1.
async fn run(args: Args) -> anyhow::Result<ExitCode> {
    args.validate()?;
    let credentials = resolve_credentials(&args)?;
    let user = credentials.user.clone();
    let api = Api::connect(&args, &credentials).await?;
    let mut errors = ErrorTally::default();

    let base = args.url.trim_end_matches('/');
    let watch = match args.watch {
        true => Some(Watch::open(&reqwest::Client::new(), base, &credentials.submit).await?),
        false => None,
    };

    // Phase 1: submit.
    let submit = submit_phase(&api, &args).await?;
    errors.absorb("submit", &submit.errors);
    let submitted = submit.tasks.len();

    // Phase 2: wait for completion.
    let wait = wait_phase(&api, &submit.tasks, args.timeout).await;
    errors.absorb("list", &wait.errors);
    let e2e = EndToEnd::compute(&submit, &wait)?;
    let notified = match watch {
        Some(watch) => {
            let (arrived, broken) = watch.close(wait.completed.len(), WATCH_GRACE).await;
            let mut stream_errors = BTreeMap::new();
            for e in broken {
                count_error(&mut stream_errors, &CallError::new("event stream", e), 1);
            }
            errors.absorb("watch", &stream_errors);
            Some(since_submit(&submit, &arrived)?)
        }
        None => None,
    };

    // Phase 3: reads.
    let ids: Vec<String> = spread(&submit.tasks, MAX_GETS.min(args.tasks))
        .into_iter()
        .map(|t| t.id.clone())
        .collect();
    let get = get_phase(&api, &args, ids).await?;
    errors.absorb("get", &get.errors);

    let report = Report::new(
        &args,
        Measured {
            user,
            submit: &submit,
            wait: &wait,
            e2e: &e2e,
            notified: notified.as_ref(),
            get: &get,
            errors,
        },
    );
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.render()?
    };
    // A closed pipe (`loadgen ... | head`) is not worth a panic or an error.
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("loadgen: writing the report: {e}");
    }
    if wait.timed_out {
        eprintln!(
            "loadgen: timed out after {} waiting for completion: {} of {} submitted tasks completed{}",
            humantime::format_duration(args.timeout),
            wait.completed.len(),
            submitted,
            match wait.failed {
                Some(f) if f > 0 => format!(", {f} failed"),
                _ => String::new(),
            }
        );
    }
    let clean = !report.has_errors() && !wait.timed_out;
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
