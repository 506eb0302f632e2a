//! The command line: what to drive, how hard, and as whom.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use serde::Serialize;

/// Largest batch the service accepts.
pub const MAX_BATCH: usize = 1000;

/// Load generator for the AI integration service: submits echo tasks, waits for them to
/// complete, and reports throughput and latency percentiles.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Base URL of the service (HTTP and gRPC share the port).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Which API to drive.
    #[arg(long, value_enum, default_value_t = Protocol::Grpc)]
    pub protocol: Protocol,
    /// Number of tasks to submit.
    #[arg(short = 'n', long = "tasks", default_value_t = 10_000)]
    pub tasks: usize,
    /// Target submit rate in tasks per second, open loop (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Most calls in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Tasks per submit call: 1 uses SubmitTask / POST /api/v1/tasks, more uses SubmitTasks /
    /// POST /api/v1/tasks/batch (at most 1000).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Task type to submit. `echo` (the default) runs in the worker; any other type (e.g.
    /// `summarize`) goes to the configured AI providers, with payload `{"text", "cache": false}`
    /// so every task makes a provider call.
    #[arg(long, default_value = "echo")]
    pub task_type: String,
    /// `delay_ms` of each echo task's payload: how long the worker sleeps (0 = none).
    #[arg(long, default_value_t = 0)]
    pub delay_ms: u64,
    /// Bearer token to use as is (its user's other tasks are ignored).
    #[arg(long, conflicts_with = "jwt_secret")]
    pub token: Option<String>,
    /// HS256 secret to mint a token for a fresh user `loadgen-<random>`.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Users to spread submit calls over, round-robin (needs the secret, not `--token`).
    #[arg(long, default_value_t = 1, conflicts_with = "token")]
    pub users: usize,
    /// Longest wait for all tasks to complete, e.g. 120s or 5m.
    #[arg(long, default_value = "120s", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// gRPC: HTTP/2 connections to open; calls are spread round-robin over them.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Free-form label printed with the report (e.g. "embedded" or "clustered").
    #[arg(long)]
    pub label: Option<String>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also time when a watcher learns each task's end: one SSE stream per user, open from
    /// before the first submit (see the module docs).
    #[arg(long)]
    pub watch: bool,
    /// Write every submit call's intended start (ms after the first) and latency (ms) to this
    /// file, one `start latency` line per call in start order: shows whether slow calls come
    /// in bursts (a stall) or spread evenly (queueing).
    #[arg(long)]
    pub trace: Option<PathBuf>,
}

/// The API the load goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `ai.integration.v1.TaskService` over h2c.
    Grpc,
    /// HTTP/1.1 JSON API under `/api/v1/tasks`.
    Http,
}

fn parse_timeout(raw: &str) -> Result<Duration, String> {
    ai_integration_service::config::parse_duration(raw)
        .ok_or_else(|| format!("{raw:?} is not a duration such as 120s or 5m"))
}

impl Args {
    /// Rejects values clap's types let through but a run cannot use.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.tasks == 0 {
            bail!("--tasks must be at least 1");
        }
        if self.concurrency == 0 {
            bail!("--concurrency must be at least 1");
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            bail!("--batch must be 1 to {MAX_BATCH}");
        }
        if !self.rate.is_finite() || self.rate < 0.0 {
            bail!("--rate must be a non-negative number");
        }
        if self.users == 0 {
            bail!("--users must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        let args = Args::try_parse_from(std::iter::once("loadgen").chain(args.iter().copied()))?;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn defaults_make_a_valid_run() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.protocol, Protocol::Grpc);
        assert_eq!((args.tasks, args.batch, args.users), (10_000, 1, 1));
        assert_eq!(args.timeout, Duration::from_secs(120));
    }

    #[test]
    fn rejects_what_a_run_cannot_use() {
        for bad in [
            &["-n", "0"][..],
            &["--concurrency", "0"],
            &["--batch", "0"],
            &["--batch", "1001"],
            &["--rate", "-1"],
            &["--rate", "NaN"],
            &["--users", "0"],
            &["--timeout", "soon"],
            &["--token", "t", "--users", "2"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
