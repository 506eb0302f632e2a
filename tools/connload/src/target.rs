//! Where to connect: the URL resolved once, and one SSE client per source address.

use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::args::Args;
use crate::client::Target;

/// Resolves the URL and builds the SSE clients (one per source address).
pub async fn resolve(args: &Args) -> anyhow::Result<Target> {
    let base = args.url.trim_end_matches('/').to_owned();
    let url = reqwest::Url::parse(&base).with_context(|| format!("bad --url {base:?}"))?;
    if url.scheme() != "http" {
        bail!("--url must be http:// (the load program speaks plain HTTP and ws://)");
    }
    let host = url.host_str().context("--url has no host")?.to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let authority = format!("{host}:{port}");
    let addr = tokio::net::lookup_host(&authority)
        .await
        .with_context(|| format!("resolving {authority}"))?
        .next()
        .with_context(|| format!("{authority} resolves to nothing"))?;
    let sources: Vec<Option<IpAddr>> = if args.source_addrs.is_empty() {
        vec![None]
    } else {
        args.source_addrs.iter().copied().map(Some).collect()
    };
    let mut sse_clients = Vec::new();
    for source in sources {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .local_address(source)
            .build()
            .context("building the SSE client")?;
        sse_clients.push(client);
    }
    Ok(Target {
        base,
        authority,
        addr,
        sources: args.source_addrs.clone(),
        sse_clients,
        open_timeout: args.open_timeout,
    })
}
