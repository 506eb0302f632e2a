//! How the store's connections are opened and checked before use.

use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::Connection;
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Executor, SqlSafeStr};

/// A pooled connection idle this long is pinged before use.
const IDLE_PING_AFTER: Duration = Duration::from_secs(1);

/// Pings a pooled connection before use only if it sat idle for [`IDLE_PING_AFTER`]. A ping on
/// every acquire is a round trip (and a PostgreSQL wakeup) per query under load, when
/// connections are never idle; a connection that a database restart broke has usually been.
pub(super) fn ping_if_idle(
    conn: &mut PgConnection,
    meta: PoolConnectionMetadata,
) -> BoxFuture<'_, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        if meta.idle_for >= IDLE_PING_AFTER {
            conn.ping().await?;
        }
        Ok(true)
    })
}

/// A pool of `connections` hot-path connections, all opened now, each preparing `statements`
/// as it opens: the first calls of a run do not stall on either (the first submits on a fresh
/// server took 7-18 ms, each new connection preparing the insert).
pub(super) async fn warm_pool(
    options: PgConnectOptions,
    connections: u32,
    statements: &'static [&'static str],
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .acquire_timeout(Duration::from_secs(5))
        .test_before_acquire(false)
        .before_acquire(ping_if_idle)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                for sql in statements {
                    conn.prepare(sql.into_sql_str()).await?;
                }
                Ok(())
            })
        })
        .connect_with(options)
        .await
}
