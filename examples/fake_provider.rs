//! Serves the local fake AI providers (the ones the integration tests use) on a fixed port,
//! for benchmarks and manual tries:
//!
//! ```sh
//! cargo run --release --example fake_provider -- --port 9900 --latency-ms 50
//! ```
//!
//! It prints each provider's base URL and key; stop it with Ctrl-C.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

#[allow(dead_code)]
#[path = "../tests/support/fake_providers.rs"]
mod fake_providers;

use fake_providers::{FakeProviders, PROVIDERS};

/// Local fake AI providers speaking the OpenAI, Groq, Anthropic, Gemini and Unsplash APIs.
#[derive(Parser)]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 9900)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Added before every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Added between the chunks of a stream, in milliseconds.
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Accept any API key (or none) instead of the fake's own keys.
    #[arg(long)]
    any_key: bool,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let addr = SocketAddr::new(args.host, args.port);
    let fake = FakeProviders::start_on(addr, Duration::from_millis(args.latency_ms)).await?;
    fake.set_chunk_delay(Duration::from_millis(args.chunk_delay_ms));
    println!(
        "fake providers on {} (latency {} ms)",
        fake.url(),
        args.latency_ms
    );
    for provider in PROVIDERS {
        if args.any_key {
            fake.set_key(provider, None);
        }
        let key = fake.key(provider);
        let key = if key.is_empty() {
            "(any)".to_owned()
        } else {
            key
        };
        println!(
            "  {provider:<9} base_url={}  key={key}",
            fake.base_url(provider)
        );
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
