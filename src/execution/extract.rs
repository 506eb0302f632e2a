//! `extract_content`: fetch an article and extract its main text (readability), within size
//! and time limits, refusing private addresses unless configured (no SSRF into the cluster).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde_json::{Value, json};

use crate::domain::ErrorClass;
use crate::error_text::error_chain;
use crate::providers::ProviderError;

/// Limits of article fetching.
#[derive(Debug, Clone)]
pub struct ExtractConfig {
    /// Largest page read, in bytes.
    pub max_bytes: usize,
    /// Bound on the whole fetch.
    pub timeout: Duration,
    /// Whether loopback, private, link-local and other non-public addresses may be fetched.
    pub allow_private: bool,
    /// Hosts (names or addresses, lower case) that may be fetched even when they are not
    /// public (`ALLOWED_FETCH_HOSTS`): an intranet wiki, a test server.
    pub allowed_hosts: Vec<String>,
}

impl Default for ExtractConfig {
    fn default() -> Self {
        Self {
            max_bytes: 5 * 1024 * 1024,
            timeout: Duration::from_secs(15),
            allow_private: false,
            allowed_hosts: Vec::new(),
        }
    }
}

/// Fetches pages and extracts articles.
#[derive(Clone)]
pub struct Extractor {
    client: reqwest::Client,
    config: ExtractConfig,
}

const NAME: &str = "extraction";

fn fail(class: ErrorClass, message: String) -> ProviderError {
    ProviderError {
        provider: NAME.into(),
        class,
        message,
        retry_after: None,
    }
}

impl Extractor {
    /// An extractor with its own HTTP client that refuses non-public addresses unless
    /// allowed: names through its resolver (on every connection), addresses written in the URL
    /// before the first request and on every redirect.
    pub fn new(config: ExtractConfig) -> Self {
        let guard = Guard {
            allow_private: config.allow_private,
            allowed: Arc::new(config.allowed_hosts.clone()),
        };
        let hops = guard.clone();
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= MAX_REDIRECTS {
                return attempt.error("more than 5 redirects");
            }
            match hops.refusal(attempt.url()) {
                Some(why) => attempt.error(why),
                None => attempt.follow(),
            }
        });
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!(
                "ai-integration-service/",
                env!("CARGO_PKG_VERSION")
            ))
            .redirect(redirects)
            .connect_timeout(Duration::from_secs(5));
        if !config.allow_private {
            builder = builder.dns_resolver(Arc::new(PublicOnly {
                allowed: guard.allowed.clone(),
            }));
        }
        let client = builder.build().unwrap_or_default();
        Self { client, config }
    }

    /// Fetches `payload.url` and extracts its article.
    pub async fn extract(&self, payload: &Value) -> Result<Value, ProviderError> {
        let url = payload.get("url").and_then(Value::as_str).unwrap_or("");
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| fail(ErrorClass::NonRetryable, format!("bad url {url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(fail(
                ErrorClass::NonRetryable,
                format!(
                    "only http and https URLs are fetched, not {}",
                    parsed.scheme()
                ),
            ));
        }
        let guard = Guard {
            allow_private: self.config.allow_private,
            allowed: Arc::new(self.config.allowed_hosts.clone()),
        };
        if let Some(why) = guard.refusal(&parsed) {
            return Err(fail(ErrorClass::NonRetryable, why));
        }
        let fetched = tokio::time::timeout(self.config.timeout, self.fetch(parsed)).await;
        let (final_url, html) = fetched.map_err(|_| {
            fail(
                ErrorClass::Retryable,
                format!(
                    "fetching the page took longer than {}",
                    humantime::format_duration(self.config.timeout)
                ),
            )
        })??;
        article(url, final_url, html).await
    }

    async fn fetch(&self, url: reqwest::Url) -> Result<(String, String), ProviderError> {
        let response = self
            .client
            .get(url)
            .header("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1")
            .send()
            .await
            .map_err(|e| {
                // Refused by the resolver or the redirect policy: no retry will change that.
                let class = if format!("{e:?}").contains("not a public address") {
                    ErrorClass::NonRetryable
                } else {
                    ErrorClass::Retryable
                };
                fail(
                    class,
                    format!("fetching the page failed: {}", error_chain(&e)),
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            let class = if status.is_server_error() || status.as_u16() == 429 {
                ErrorClass::Retryable
            } else {
                ErrorClass::NonRetryable
            };
            return Err(fail(class, format!("the page answered HTTP {status}")));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/html")
            .to_ascii_lowercase();
        if !(content_type.contains("html") || content_type.starts_with("text/")) {
            return Err(fail(
                ErrorClass::NonRetryable,
                format!("the page is {content_type}, not HTML"),
            ));
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.config.max_bytes as u64)
        {
            return Err(self.too_large());
        }
        let final_url = response.url().to_string();
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                fail(
                    ErrorClass::Retryable,
                    format!("reading the page failed: {e}"),
                )
            })?;
            if body.len() + chunk.len() > self.config.max_bytes {
                return Err(self.too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok((final_url, String::from_utf8_lossy(&body).into_owned()))
    }

    fn too_large(&self) -> ProviderError {
        fail(
            ErrorClass::NonRetryable,
            format!("the page is larger than {} bytes", self.config.max_bytes),
        )
    }
}

/// The article of a fetched page: `url` as asked, `final_url` after redirects. Readability
/// runs on a blocking thread; a panic there (the HTML parser it uses has panicked on
/// malformed pages) fails the task for good, as the same page would panic again.
pub(crate) async fn article(
    url: &str,
    final_url: String,
    html: String,
) -> Result<Value, ProviderError> {
    let article = tokio::task::spawn_blocking({
        let final_url = final_url.clone();
        move || libreadability::extract(&html, Some(&final_url))
    })
    .await
    .map_err(crashed)?
    .map_err(|e| fail(ErrorClass::NonRetryable, format!("no article found: {e}")))?;
    let text = article.text_content.trim().to_owned();
    if text.is_empty() {
        return Err(fail(
            ErrorClass::NonRetryable,
            "the page has no readable text".into(),
        ));
    }
    Ok(json!({
        "url": url,
        "final_url": final_url,
        "title": article.title,
        "byline": non_empty(article.byline),
        "site_name": non_empty(article.site_name),
        "language": non_empty(article.language),
        "published_time": non_empty(article.published_time),
        "excerpt": non_empty(article.excerpt),
        "text": text,
        "length": text.chars().count(),
        "provider": NAME,
    }))
}

/// The error for an extraction that did not finish: a panic fails the task for good, a
/// cancelled thread (the runtime shutting down) may go better next time.
fn crashed(e: tokio::task::JoinError) -> ProviderError {
    if e.is_panic() {
        fail(
            ErrorClass::NonRetryable,
            "the page could not be parsed (the HTML extractor crashed on it)".into(),
        )
    } else {
        fail(ErrorClass::Retryable, format!("extraction stopped: {e}"))
    }
}

fn non_empty(s: String) -> Value {
    if s.trim().is_empty() {
        Value::Null
    } else {
        Value::String(s)
    }
}

/// Most redirects followed.
const MAX_REDIRECTS: usize = 5;

/// Which addresses a URL may name directly.
#[derive(Clone)]
struct Guard {
    allow_private: bool,
    allowed: Arc<Vec<String>>,
}

impl Guard {
    /// Why `url` may not be fetched, if it names a non-public address that is not allowed.
    fn refusal(&self, url: &reqwest::Url) -> Option<String> {
        if self.allow_private {
            return None;
        }
        let host = url.host_str()?;
        if allowed(&self.allowed, host) {
            return None;
        }
        match host.trim_matches(['[', ']']).parse::<IpAddr>() {
            Ok(ip) if !is_public(ip) => Some(format!("{host} is not a public address")),
            _ => None,
        }
    }
}

/// Whether `host` is one of `ALLOWED_FETCH_HOSTS`.
fn allowed(list: &[String], host: &str) -> bool {
    let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
    list.iter().any(|h| h == &host)
}

/// Resolves names with the system resolver and refuses non-public answers, except for the
/// allowed hosts.
struct PublicOnly {
    allowed: Arc<Vec<String>>,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allowed_host = allowed(&self.allowed, &host);
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || (!allowed_host && addrs.iter().any(|a| !is_public(a.ip()))) {
                return Err(format!("{host} is not a public address").into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is a public unicast address.
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            // An IPv4 address inside IPv6: IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96)
            // and 6to4 (2002::/16) reach it too, so it is judged as that IPv4 address.
            let embedded = |hi: u16, lo: u16| {
                let [a, b] = hi.to_be_bytes();
                let [c, d] = lo.to_be_bytes();
                std::net::Ipv4Addr::new(a, b, c, d)
            };
            if s[..6] == [0; 6] && (s[6], s[7]) != (0, 0) && (s[6], s[7]) != (0, 1) {
                return is_public(IpAddr::V4(embedded(s[6], s[7])));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return is_public(IpAddr::V4(embedded(s[6], s[7])));
            }
            if s[0] == 0x2002 {
                return is_public(IpAddr::V4(embedded(s[1], s[2])));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_in_the_extractor_fails_the_task_for_good() {
        let panicked = tokio::task::spawn_blocking(|| panic!("ego-tree: detach"))
            .await
            .unwrap_err();
        let err = crashed(panicked);
        assert_eq!(err.class, ErrorClass::NonRetryable);
        assert!(
            err.message.contains("could not be parsed"),
            "{}",
            err.message
        );
    }

    #[test]
    fn tells_public_from_private_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "fd12:3456::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[tokio::test]
    async fn refuses_private_urls_by_default() {
        let x = Extractor::new(ExtractConfig::default());
        for url in [
            "http://127.0.0.1:1/",
            "http://[::1]/",
            "http://localhost:1/",
        ] {
            let err = x.extract(&json!({ "url": url })).await.unwrap_err();
            assert_eq!(err.class, ErrorClass::NonRetryable, "{url}: {err}");
        }
    }

    /// A local site: an article, and redirects to it by address.
    async fn site() -> (u16, tokio::task::JoinHandle<()>) {
        use axum::response::{Html, Redirect};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let para = "Rust gives memory safety without a garbage collector. ".repeat(20);
        let page = format!(
            "<html><head><title>Safe</title></head><body><article><h1>Safe</h1>\
             <p>{para}</p><p>{para}</p></article></body></html>"
        );
        let app = axum::Router::new()
            .route(
                "/page",
                axum::routing::get(move || async move { Html(page) }),
            )
            .route(
                "/hop",
                axum::routing::get(move || async move {
                    Redirect::temporary(&format!("http://127.0.0.1:{port}/page"))
                }),
            )
            .route(
                "/hop-metadata",
                axum::routing::get(|| async {
                    Redirect::temporary("http://169.254.169.254/latest/meta-data/")
                }),
            );
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (port, server)
    }

    /// An allowed host is fetched; a redirect from it to a non-public address written in the
    /// URL (which no resolver sees) is refused, as is that address asked for directly.
    #[tokio::test]
    async fn allowed_hosts_and_redirects_to_private_addresses() {
        let (port, server) = site().await;
        let allowed = Extractor::new(ExtractConfig {
            allowed_hosts: vec!["localhost".into()],
            ..ExtractConfig::default()
        });
        let ok = allowed
            .extract(&json!({ "url": format!("http://localhost:{port}/page") }))
            .await
            .unwrap();
        assert_eq!(ok["title"], "Safe");
        for path in ["hop", "hop-metadata"] {
            let url = format!("http://localhost:{port}/{path}");
            let err = allowed.extract(&json!({ "url": url })).await.unwrap_err();
            assert_eq!(err.class, ErrorClass::NonRetryable, "{path}: {err}");
            assert!(
                err.message.contains("not a public address"),
                "{path}: {err}"
            );
        }
        let direct = format!("http://127.0.0.1:{port}/page");
        let err = allowed
            .extract(&json!({ "url": direct }))
            .await
            .unwrap_err();
        assert!(err.message.contains("not a public address"), "{err}");
        let closed = Extractor::new(ExtractConfig::default());
        let url = format!("http://localhost:{port}/page");
        let err = closed.extract(&json!({ "url": url })).await.unwrap_err();
        assert_eq!(err.class, ErrorClass::NonRetryable, "{err}");
        let ftp = closed
            .extract(&json!({ "url": "file:///etc/passwd" }))
            .await;
        assert!(ftp.unwrap_err().message.contains("only http"));
        server.abort();
    }
}
