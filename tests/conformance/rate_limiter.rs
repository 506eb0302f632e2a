//! The rate limiter (GCRA) on Redis and in-process.

use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::ratelimit::{
    Decision, MemoryRateLimiter, Rate, RateLimiter, RedisRateLimiter,
};

const RATE: Rate = Rate {
    count: 2,
    period: Duration::from_secs(1),
    burst: 2,
};

/// A burst, then a wait of one interval; keys are independent; a cost counts as many events.
async fn burst_then_wait(a: Arc<dyn RateLimiter>, b: Arc<dyn RateLimiter>) {
    assert_eq!(a.check("k", RATE, 1).await.unwrap(), Decision::Allowed);
    // A second handle (another instance) counts against the same key.
    assert_eq!(b.check("k", RATE, 1).await.unwrap(), Decision::Allowed);
    let Decision::Limited { retry_after } = a.check("k", RATE, 1).await.unwrap() else {
        panic!("third call within the burst window must be limited");
    };
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(500),
        "{retry_after:?}"
    );
    assert_eq!(a.check("other", RATE, 2).await.unwrap(), Decision::Allowed);
    assert!(matches!(
        a.check("other", RATE, 1).await.unwrap(),
        Decision::Limited { .. }
    ));
    tokio::time::sleep(retry_after + Duration::from_millis(20)).await;
    assert_eq!(b.check("k", RATE, 1).await.unwrap(), Decision::Allowed);
}

#[tokio::test]
async fn redis() {
    let Some(url) = crate::support::redis_url().await else {
        return;
    };
    let prefix = crate::support::redis_prefix();
    let a = Arc::new(RedisRateLimiter::connect(&url, &prefix).await.unwrap());
    let b = Arc::new(RedisRateLimiter::connect(&url, &prefix).await.unwrap());
    burst_then_wait(a, b).await;
    crate::support::cleanup_redis_prefix(&url, &prefix).await;
}

#[tokio::test]
async fn memory() {
    let l = Arc::new(MemoryRateLimiter::new());
    burst_then_wait(l.clone(), l).await;
}
