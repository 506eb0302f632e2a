//! The command line: how many connections of each kind, how many events, and the target.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::bail;
use clap::Parser;

/// Holds WebSocket and SSE connections to one instance, produces events for their users, and
/// reports memory per connection and stored -> delivered latency.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Args {
    /// Base URL of the service.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// WebSocket connections (`/ws`).
    #[arg(long, default_value_t = 5000)]
    pub ws: usize,
    /// SSE connections (`/api/v1/events`).
    #[arg(long, default_value_t = 5000)]
    pub sse: usize,
    /// Users the connections are spread over (default: max(ws, sse), so with equal counts
    /// each user has one WebSocket and one SSE stream).
    #[arg(long)]
    pub users: Option<usize>,
    /// Events per second to produce (three per echo task); 0 skips the event phase.
    #[arg(long, default_value_t = 5000.0)]
    pub event_rate: f64,
    /// How long to produce events, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Pause after each kind of connection opened, before reading the server's RSS.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
    /// How long to hold everything idle before the "idle" RSS and the event phase.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Most connections opening at once.
    #[arg(long, default_value_t = 200)]
    pub connect_concurrency: usize,
    /// Most task submit calls in flight at once.
    #[arg(long, default_value_t = 128)]
    pub submit_concurrency: usize,
    /// Tasks per submit call (1 to 1000): more than 1 submits one user's tasks together
    /// through `POST /api/v1/tasks/batch` (one transaction), so the server's task pipeline
    /// costs less per event.
    #[arg(long, default_value_t = 1)]
    pub batch: u64,
    /// Longest wait for the last events after the last submit.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Longest wait from connecting to a connection's first frame.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub open_timeout: Duration,
    /// Pid of the server (default: the process listening on the URL's port).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Local addresses to connect from, comma-separated (e.g. 127.0.0.2,127.0.0.3), for more
    /// than one address's ~28,000 ephemeral ports.
    #[arg(long, value_delimiter = ',')]
    pub source_addrs: Vec<IpAddr>,
    /// HS256 secret to mint the users' tokens.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
    /// Free-form label printed with the report (e.g. "embedded").
    #[arg(long)]
    pub label: Option<String>,
    /// Print the report as one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration(raw: &str) -> Result<Duration, String> {
    ai_integration_service::config::parse_duration(raw)
        .ok_or_else(|| format!("{raw:?} is not a duration such as 20s or 2m"))
}

impl Args {
    /// WebSockets plus SSE streams.
    pub fn connections(&self) -> usize {
        self.ws + self.sse
    }

    /// Users the connections belong to: `--users`, else one per connection of the larger kind.
    pub fn users(&self) -> usize {
        self.users.unwrap_or(self.ws.max(self.sse))
    }

    /// Rejects values clap's types let through but a run cannot use.
    pub fn validate(&self) -> anyhow::Result<()> {
        let connections = self.connections();
        if connections == 0 {
            bail!("--ws plus --sse must be at least 1");
        }
        let users = self.users();
        if users == 0 || users > connections {
            bail!("--users must be 1 to the number of connections ({connections})");
        }
        if !self.event_rate.is_finite() || self.event_rate < 0.0 {
            bail!("--event-rate must be a non-negative number");
        }
        if self.batch == 0 || self.batch > 1000 {
            bail!("--batch must be 1 to 1000");
        }
        if self.connect_concurrency == 0 || self.submit_concurrency == 0 {
            bail!("--connect-concurrency and --submit-concurrency must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> anyhow::Result<Args> {
        let all = ["connload", "--jwt-secret", "s"].iter().chain(args);
        let args = Args::try_parse_from(all)?;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn one_user_per_connection_pair_by_default() {
        let args = parse(&["--ws", "3", "--sse", "5"]).unwrap();
        assert_eq!((args.connections(), args.users()), (8, 5));
        assert_eq!(parse(&["--users", "2"]).unwrap().users(), 2);
    }

    #[test]
    fn rejects_what_a_run_cannot_use() {
        for bad in [
            &["--ws", "0", "--sse", "0"][..],
            &["--ws", "1", "--sse", "1", "--users", "3"],
            &["--users", "0"],
            &["--event-rate", "-5"],
            &["--batch", "0"],
            &["--batch", "1001"],
            &["--connect-concurrency", "0"],
            &["--submit-concurrency", "0"],
            &["--duration", "a while"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
