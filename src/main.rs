//! `ai-integration-service`: `serve` (the default), `token` or `task-types`.

use std::process::ExitCode;
use std::time::Duration;

use ai_integration_service::app::{Application, jwt_keys};
use ai_integration_service::auth::Role;
use ai_integration_service::config::{Config, parse_duration};
use ai_integration_service::domain::{Tier, UserId, payload};
use ai_integration_service::telemetry::{logging, traces};
use clap::{Parser, Subcommand};

/// Durable AI task queue and gateway. Configuration comes from environment variables (see
/// README).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve HTTP and gRPC on PORT and run the worker pool (the default).
    Serve,
    /// Print a JWT signed with the configured secret.
    Token {
        /// The user id (`sub` claim).
        #[arg(long)]
        user: String,
        /// Issue an admin token.
        #[arg(long, conflicts_with = "service")]
        admin: bool,
        /// Issue a service-account token (`role: service`): appends to the event store.
        #[arg(long)]
        service: bool,
        /// Lifetime, e.g. 24h, 30m.
        #[arg(long, default_value = "24h", value_parser = parse_ttl)]
        ttl: Duration,
        /// The user's plan (`tier` claim): free, pro or enterprise.
        #[arg(long, value_parser = parse_tier)]
        tier: Option<Tier>,
    },
    /// Print the task types and their payload fields as a Markdown table (the README's).
    TaskTypes,
}

fn parse_tier(raw: &str) -> Result<Tier, String> {
    raw.parse()
        .map_err(|e: ai_integration_service::domain::DomainError| e.to_string())
}

fn parse_ttl(raw: &str) -> Result<Duration, String> {
    parse_duration(raw).ok_or_else(|| format!("{raw:?} is not a duration such as 24h or 30m"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::TaskTypes) = cli.command {
        print!("{}", payload::markdown_table());
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config),
        Command::Token {
            user,
            admin,
            service,
            ttl,
            tier,
        } => {
            let role = match (admin, service) {
                (true, _) => Role::Admin,
                (_, true) => Role::Service,
                _ => Role::User,
            };
            token(&config, &user, role, tier, ttl)
        }
        Command::TaskTypes => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn token(
    config: &Config,
    user: &str,
    role: Role,
    tier: Option<Tier>,
    ttl: Duration,
) -> anyhow::Result<()> {
    let keys = jwt_keys(config, None)?;
    let user = UserId::parse(user)?;
    println!("{}", keys.issue_with_tier(&user, role, tier, ttl)?);
    Ok(())
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // Within the runtime: the gRPC exporter's connection is spawned on it.
    let (traces_layer, traces) = {
        let _runtime = runtime.enter();
        traces::layer(config.traces.as_ref())?
    };
    let base = traces_layer.map(|l| Box::new(l) as logging::BaseLayer);
    logging::init(&config.logging, base)?;
    let served = runtime.block_on(async {
        let app = Application::build(config).await?;
        let shutdown = app.shutdown_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown signal received");
            shutdown.cancel();
        });
        app.run_until_stopped().await
    });
    // Flushes the last spans while the runtime still runs the exporter's connection.
    drop(traces);
    served
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
