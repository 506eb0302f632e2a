//! Circuit breakers on Redis (shared by instances) and in-process.

use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::providers::{
    BreakerPolicy, BreakerState, Breakers, MemoryBreakers, Permit, RedisBreakers,
};

const POLICY: BreakerPolicy = BreakerPolicy {
    failure_threshold: 5,
    success_threshold: 2,
    open_for: Duration::from_millis(300),
    half_open_trials: 1,
};

/// One instance's connection to Redis.
async fn connect(url: &str) -> redis::aio::ConnectionManager {
    let client = redis::Client::open(url).unwrap();
    redis::aio::ConnectionManager::new(client).await.unwrap()
}

/// `a` and `b` are two instances' handles on the same breakers.
async fn full_cycle(a: Arc<dyn Breakers>, b: Arc<dyn Breakers>) {
    for _ in 0..4 {
        assert_eq!(a.acquire("p").await.unwrap(), Permit::Allowed);
        a.record("p", Permit::Allowed, false).await.unwrap();
    }
    assert_eq!(b.snapshot("p").await.unwrap().failures, 4);
    b.record("p", Permit::Allowed, false).await.unwrap();
    assert_eq!(a.snapshot("p").await.unwrap().state, BreakerState::Open);
    assert!(
        !b.acquire("p").await.unwrap().is_allowed(),
        "open for every instance"
    );
    assert_eq!(
        a.acquire("other").await.unwrap(),
        Permit::Allowed,
        "per provider"
    );

    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(a.acquire("p").await.unwrap(), Permit::Trial);
    assert!(
        !b.acquire("p").await.unwrap().is_allowed(),
        "one trial across instances"
    );
    a.record("p", Permit::Trial, true).await.unwrap();
    assert_eq!(b.snapshot("p").await.unwrap().state, BreakerState::HalfOpen);
    assert_eq!(b.acquire("p").await.unwrap(), Permit::Trial);
    b.record("p", Permit::Trial, true).await.unwrap();
    assert_eq!(a.snapshot("p").await.unwrap().state, BreakerState::Closed);

    for _ in 0..5 {
        a.record("p", Permit::Allowed, false).await.unwrap();
    }
    assert_eq!(a.snapshot("p").await.unwrap().state, BreakerState::Open);
    b.reset("p").await.unwrap();
    assert_eq!(
        a.acquire("p").await.unwrap(),
        Permit::Allowed,
        "reset closes it"
    );

    // An operator's switch: disabled for every instance whatever the breaker, and a reset
    // does not undo it; enabled again, calls flow.
    b.set_disabled("p", true).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.acquire("p").await.unwrap(), Permit::Disabled);
    assert!(!Permit::Disabled.is_allowed());
    assert!(a.snapshot("p").await.unwrap().disabled);
    assert!(!a.snapshot("other").await.unwrap().disabled);
    a.reset("p").await.unwrap();
    assert_eq!(b.acquire("p").await.unwrap(), Permit::Disabled);
    a.set_disabled("p", false).await.unwrap();
    assert_eq!(b.acquire("p").await.unwrap(), Permit::Allowed);
    assert!(!b.snapshot("p").await.unwrap().disabled);
}

#[tokio::test]
async fn redis() {
    let Some(url) = crate::support::redis_url().await else {
        return;
    };
    let prefix = crate::support::redis_prefix();
    let conn = || connect(&url);
    let a = Arc::new(RedisBreakers::new(conn().await, &prefix, POLICY));
    let b = Arc::new(RedisBreakers::new(conn().await, &prefix, POLICY));
    full_cycle(a, b).await;
    crate::support::cleanup_redis_prefix(&url, &prefix).await;
}

/// An instance trusts a closed breaker it read from Redis for its sync interval, no longer:
/// a breaker another instance opened is skipped here once that interval passes. Its own
/// failures count at once, and a success clears earlier failures.
#[tokio::test]
async fn redis_view_of_a_closed_breaker_expires() {
    let Some(url) = crate::support::redis_url().await else {
        return;
    };
    let prefix = crate::support::redis_prefix();
    let conn = || connect(&url);
    let sync = Duration::from_millis(200);
    let policy = BreakerPolicy {
        open_for: Duration::from_secs(60),
        ..POLICY
    };
    let a = RedisBreakers::new(conn().await, &prefix, policy).with_sync(sync);
    let b = RedisBreakers::new(conn().await, &prefix, policy).with_sync(sync);

    for _ in 0..3 {
        a.record("q", Permit::Allowed, false).await.unwrap();
    }
    assert_eq!(b.snapshot("q").await.unwrap().failures, 3);
    a.record("q", Permit::Allowed, true).await.unwrap();
    assert_eq!(
        b.snapshot("q").await.unwrap().failures,
        0,
        "a success clears"
    );

    assert_eq!(a.acquire("q").await.unwrap(), Permit::Allowed);
    for _ in 0..5 {
        b.record("q", Permit::Allowed, false).await.unwrap();
    }
    assert_eq!(b.snapshot("q").await.unwrap().state, BreakerState::Open);
    // `a` read "closed" just now and may go on trusting it for `sync`, never longer.
    tokio::time::sleep(sync + Duration::from_millis(50)).await;
    assert!(!a.acquire("q").await.unwrap().is_allowed());
    // Its own failure, counted in Redis, opens the breaker for it at once.
    b.reset("q").await.unwrap();
    assert_eq!(a.acquire("q").await.unwrap(), Permit::Allowed);
    for _ in 0..5 {
        a.record("q", Permit::Allowed, false).await.unwrap();
    }
    assert!(!a.acquire("q").await.unwrap().is_allowed());
    crate::support::cleanup_redis_prefix(&url, &prefix).await;
}

#[tokio::test]
async fn memory() {
    let b = Arc::new(MemoryBreakers::new(POLICY));
    full_cycle(b.clone(), b).await;
}
