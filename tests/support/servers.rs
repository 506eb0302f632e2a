//! The test servers: a fresh PostgreSQL database and a fresh Redis key prefix per test, each
//! cleaned up by what made it, and CI's rule that a missing server fails rather than skips.
//! Shared by the service's test binaries (`tests/support/mod.rs`) and the load generator's
//! end-to-end test (`tools/loadgen/tests/support/mod.rs`, by path).

#![allow(dead_code)]

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};
use uuid::Uuid;

/// Default admin URL of the test PostgreSQL server.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Default URL of the test Redis server.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
/// How long to wait for a server before calling it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether we run in CI (env `CI` set and non-empty), where missing servers are an error.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty())
}

/// Reports an unreachable server: panics in CI, otherwise prints a skip notice to stderr.
fn unreachable_server(what: &str, url: &str, err: &dyn std::fmt::Display) {
    if in_ci() {
        panic!("{what} unreachable at {url}: {err}; CI requires it");
    }
    eprintln!("SKIPPED: {what} unreachable at {url}: {err} (set CI=1 to make this an error)");
}

/// The admin URL of the test PostgreSQL server (`TEST_DATABASE_URL` or the default).
pub fn pg_admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned())
}

/// The URL of the test Redis server (`TEST_REDIS_URL` or the default).
pub fn redis_server_url() -> String {
    std::env::var("TEST_REDIS_URL")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| DEFAULT_REDIS_URL.to_owned())
}

/// `url` with its database (the path component) replaced by `db`, keeping any query string.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{db}?{q}"),
        None => format!("{root}/{db}"),
    }
}

/// The database name in a PostgreSQL URL (the path component, without the query string).
fn database_of(url: &str) -> Option<&str> {
    let base = url.split('?').next()?;
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let slash = base[authority_start..].find('/')?;
    Some(&base[authority_start + slash + 1..]).filter(|s| !s.is_empty())
}

/// Creates a fresh, empty database `ais_test_<uuid>` on the test PostgreSQL server and returns
/// its URL. Returns `None` (after a notice on stderr) when the server is unreachable outside CI;
/// panics when it is unreachable in CI. Drop it with [`drop_pg_database`] when done.
pub async fn pg_url() -> Option<String> {
    let admin = pg_admin_url();
    let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect(&admin)).await
    {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            unreachable_server("PostgreSQL", &admin, &e);
            return None;
        }
        Err(_) => {
            unreachable_server("PostgreSQL", &admin, &"connect timed out");
            return None;
        }
    };
    let name = format!("ais_test_{}", Uuid::new_v4().simple());
    // `name` is `ais_test_` plus hex digits: nothing to escape.
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin}: {e}"));
    let _ = conn.close().await;
    Some(with_database(&admin, &name))
}

/// Drops a database made by [`pg_url`], terminating any connections still open to it.
/// Refuses (panics) for any database whose name does not start with `ais_test_`, so it can
/// never drop something a test did not create.
pub async fn drop_pg_database(url: &str) {
    let name = database_of(url).unwrap_or_default().to_owned();
    assert!(
        name.starts_with("ais_test_")
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "refusing to drop database {name:?}: not created by support::pg_url"
    );
    let admin = pg_admin_url();
    match PgConnection::connect(&admin).await {
        Ok(mut conn) => {
            if let Err(e) = sqlx::query(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            {
                eprintln!("warning: could not drop test database {name}: {e}");
            }
            let _ = conn.close().await;
        }
        Err(e) => eprintln!("warning: could not drop test database {name}: {e}"),
    }
}

/// Checks that the test Redis server answers `PING` and returns its URL. Returns `None` (after
/// a notice on stderr) when it is unreachable outside CI; panics when it is unreachable in CI.
pub async fn redis_url() -> Option<String> {
    let url = redis_server_url();
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, ping).await {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => {
            unreachable_server("Redis", &url, &e);
            None
        }
        Err(_) => {
            unreachable_server("Redis", &url, &"connect timed out");
            None
        }
    }
}

/// A unique Redis key prefix for one test: `ais_test_<uuid>`.
pub fn redis_prefix() -> String {
    format!("ais_test_{}", Uuid::new_v4().simple())
}

/// Deletes every Redis key under `prefix` (`{prefix}:*`). Refuses (panics) for a prefix not
/// made by [`redis_prefix`], so it can never delete keys a test did not create.
pub async fn cleanup_redis_prefix(url: &str, prefix: &str) {
    assert!(
        prefix.starts_with("ais_test_"),
        "refusing to delete keys under {prefix:?}: not made by support::redis_prefix"
    );
    let result: redis::RedisResult<()> = async {
        let client = redis::Client::open(url)?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let pattern = format!("{prefix}:*");
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<i64>(&mut conn)
                    .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
    .await;
    if let Err(e) = result {
        eprintln!("warning: could not clean up Redis keys under {prefix}: {e}");
    }
}
