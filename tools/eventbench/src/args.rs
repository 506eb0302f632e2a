//! Command-line arguments.

use clap::{Parser, ValueEnum};

/// Which database the event store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Store {
    /// PostgreSQL (clustered mode).
    Postgres,
    /// SQLite (embedded mode).
    Sqlite,
}

impl std::fmt::Display for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        })
    }
}

/// Benchmark of the event store's appends and catch-up reads.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Args {
    /// The database to run on.
    #[arg(long, value_enum, default_value_t = Store::Postgres)]
    pub store: Store,
    /// A PostgreSQL server (any database on it): the run creates its own database there.
    #[arg(
        long,
        env = "EVENTBENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub database_url: String,
    /// Keep the run's database (PostgreSQL) instead of dropping it.
    #[arg(long)]
    pub keep: bool,
    /// Concurrent appenders in the throughput phase.
    #[arg(long, default_value_t = 8)]
    pub appenders: usize,
    /// Batches each appender appends.
    #[arg(long, default_value_t = 250)]
    pub batches: usize,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Single-event appends in the latency phase (0: skip it).
    #[arg(long, default_value_t = 2000)]
    pub singles: usize,
    /// Events per read in the catch-up phase.
    #[arg(long, default_value_t = 1000)]
    pub page: u32,
    /// Seconds of the projection-lag phase (0: skip it).
    #[arg(long, default_value_t = 20)]
    pub lag_seconds: u64,
    /// Events per second appended in the projection-lag phase, all appenders together.
    #[arg(long, default_value_t = 5000)]
    pub lag_rate: u64,
    /// Concurrent appenders in the projection-lag phase.
    #[arg(long, default_value_t = 4)]
    pub lag_appenders: usize,
    /// Events per batch in the projection-lag phase.
    #[arg(long, default_value_t = 25)]
    pub lag_batch: usize,
}
