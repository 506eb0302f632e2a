//! `eventbench`: measures the event store on a real database, through the same
//! [`EventStore`] the service uses, in four phases:
//!
//! 1. **Append throughput.** `--appenders` tasks (8) each append `--batches` batches of
//!    `--batch` events (100) to a stream of their own, at the exact version they last wrote,
//!    back to back. Throughput is every event stored divided by the phase's wall time; the
//!    latency of each append goes to a histogram.
//! 2. **Single-event appends.** One task appends `--singles` events (2,000), one per call,
//!    to its own stream: p50/p99/max of one append, alone on the store.
//! 3. **Catch-up read.** One reader reads the whole global stream from position 0 in pages of
//!    `--page` (1,000) events, as a projection catching up does: events per second.
//! 4. **Projection lag.** The service's projections run while appenders append learning
//!    sessions at `--lag-rate` (5,000) events/s for `--lag-seconds` (20): time from an
//!    append's answer to its events being folded, p50/p99/max (see `lag.rs`).
//!
//! `--store postgres` creates a database `eventbench_<random>` on `--database-url`'s server
//! (dropped at the end unless `--keep`); `--store sqlite` uses a file in a temporary
//! directory. Exit status: 0 when the run completed, 1 when any call failed.

mod args;
mod lag;
mod phases;
mod target;

use std::process::ExitCode;

use clap::Parser;

use self::args::Args;

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("eventbench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let target = target::Target::open(args).await?;
    println!(
        "eventbench: {} store, {} appenders x {} batches x {} events, {} single appends, \
         reads of {} events",
        args.store, args.appenders, args.batches, args.batch, args.singles, args.page
    );
    let result = phases::run_all(target.store(), target.projections(), args).await;
    target.close(args.keep).await;
    result
}
