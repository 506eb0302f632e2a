//! Limits at the edge (header size, slow clients, per-user request rate and streams), from the
//! environment. See docs/security.md.

use std::time::Duration;

use super::Reader;
use crate::ratelimit::Rate;

/// What one client may ask of the server before it is refused or cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeLimits {
    /// `MAX_HEADER_BYTES` (default 64 KiB): request headers (names and values) larger than this
    /// get 431.
    pub max_header_bytes: usize,
    /// `HEADER_READ_TIMEOUT` (default 30s): an HTTP/1 connection that has not sent a whole
    /// request head by then is closed (slowloris).
    pub header_read_timeout: Duration,
    /// `BODY_READ_TIMEOUT` (default 60s): a JSON body not received by then gets 408.
    pub body_read_timeout: Duration,
    /// `USER_RATE_LIMIT` (requests/s, default 0 = off) with `USER_RATE_LIMIT_BURST` (default
    /// the rate): authenticated requests per user, across every instance.
    pub user_rate: Option<Rate>,
    /// `MAX_STREAMS_PER_USER` (default 0 = off): live streams (SSE, WebSocket, gRPC) one user
    /// holds at once on one instance.
    pub max_streams_per_user: usize,
    /// `WS_PONG_TIMEOUT` (default 10s): a WebSocket that does not answer a ping by then is
    /// closed with 4009.
    pub ws_pong_timeout: Duration,
}

impl Default for EdgeLimits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(60),
            user_rate: None,
            max_streams_per_user: 0,
            ws_pong_timeout: Duration::from_secs(10),
        }
    }
}

impl Reader<'_> {
    pub(super) fn limits(&mut self) -> EdgeLimits {
        let d = EdgeLimits::default();
        let max_header_bytes =
            self.range("MAX_HEADER_BYTES", d.max_header_bytes, 1024, 1024 * 1024);
        let header_read_timeout = self.duration(
            "HEADER_READ_TIMEOUT",
            d.header_read_timeout,
            Duration::from_millis(100),
        );
        let body_read_timeout = self.duration(
            "BODY_READ_TIMEOUT",
            d.body_read_timeout,
            Duration::from_millis(100),
        );
        let per_second = self.range("USER_RATE_LIMIT", 0u32, 0, 1_000_000);
        let burst = self.range("USER_RATE_LIMIT_BURST", per_second.max(1), 1, 1_000_000);
        let user_rate = (per_second > 0).then_some(Rate {
            count: per_second,
            period: Duration::from_secs(1),
            burst,
        });
        EdgeLimits {
            max_header_bytes,
            header_read_timeout,
            body_read_timeout,
            user_rate,
            max_streams_per_user: self.range("MAX_STREAMS_PER_USER", 0usize, 0, 1_000_000),
            ws_pong_timeout: self.duration(
                "WS_PONG_TIMEOUT",
                d.ws_pong_timeout,
                Duration::from_millis(50),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(vars: &[(&str, &str)]) -> (EdgeLimits, usize) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut r = Reader {
            vars: &vars,
            problems: Vec::new(),
        };
        let l = r.limits();
        (l, r.problems.len())
    }

    #[test]
    fn defaults_leave_rate_and_streams_off() {
        assert_eq!(read(&[]), (EdgeLimits::default(), 0));
    }

    #[test]
    fn reads_a_rate_with_its_burst_and_reports_bad_values() {
        let (l, problems) = read(&[("USER_RATE_LIMIT", "5"), ("USER_RATE_LIMIT_BURST", "2")]);
        assert_eq!(problems, 0);
        let rate = l.user_rate.expect("on");
        assert_eq!((rate.count, rate.burst), (5, 2));
        let (_, problems) = read(&[("MAX_HEADER_BYTES", "10"), ("WS_PONG_TIMEOUT", "soon")]);
        assert_eq!(problems, 2);
    }
}
