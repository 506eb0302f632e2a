//! Stream tickets on both databases: stored by hash, used up once (also under concurrent
//! uses), refused when expired, deleted by retention.

use std::sync::Arc;
use std::time::Duration;

use ai_integration_service::auth::Role;
use ai_integration_service::domain::UserId;
use ai_integration_service::service::Retention;
use ai_integration_service::store::{NewStreamTicket, StreamGrant, TicketHash};
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use crate::notifications::{Stores, notification_tests, with_pg, with_sqlite};

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A distinct hash per `n` (the store does not care how it was made).
fn hash(n: u8) -> TicketHash {
    let mut h = [0u8; 32];
    h[0] = n;
    h[31] = 0xa5;
    h
}

fn ticket(n: u8, user: &str, role: Role, expires_at: DateTime<Utc>) -> NewStreamTicket {
    NewStreamTicket {
        hash: hash(n),
        grant: StreamGrant {
            user_id: UserId::parse(user).unwrap(),
            role,
            tier: None,
            token_expires_at: now() + TimeDelta::hours(1),
        },
        expires_at,
    }
}

/// A ticket gives back exactly what was stored, once; unknown hashes give nothing.
async fn a_ticket_is_taken_once(s: Stores) {
    let mut admin = ticket(1, "root", Role::Admin, now() + TimeDelta::seconds(60));
    admin.grant.tier = Some("pro".into());
    let user = ticket(2, "alice", Role::User, now() + TimeDelta::seconds(60));
    s.notes.insert_stream_ticket(&admin).await.unwrap();
    s.notes.insert_stream_ticket(&user).await.unwrap();

    let got = s.notes.take_stream_ticket(&hash(1), now()).await.unwrap();
    assert_eq!(got, Some(admin.grant.clone()), "role, tier and expiry kept");
    assert_eq!(
        s.notes.take_stream_ticket(&hash(1), now()).await.unwrap(),
        None,
        "a second use gets nothing"
    );
    assert_eq!(
        s.notes.take_stream_ticket(&hash(9), now()).await.unwrap(),
        None,
        "an unknown ticket gets nothing"
    );
    let got = s.notes.take_stream_ticket(&hash(2), now()).await.unwrap();
    assert_eq!(got, Some(user.grant));
}

/// An expired ticket opens nothing, and cleanup deletes only expired ones.
async fn expired_tickets_are_refused_and_deleted(s: Stores) {
    let t0 = now();
    let soon = ticket(1, "alice", Role::User, t0 + TimeDelta::seconds(1));
    let later = ticket(2, "alice", Role::User, t0 + TimeDelta::seconds(60));
    s.notes.insert_stream_ticket(&soon).await.unwrap();
    s.notes.insert_stream_ticket(&later).await.unwrap();
    let after = t0 + TimeDelta::seconds(2);
    assert_eq!(
        s.notes.take_stream_ticket(&hash(1), after).await.unwrap(),
        None,
        "expired"
    );
    assert_eq!(
        s.notes.delete_expired_stream_tickets(after).await.unwrap(),
        1
    );
    assert_eq!(
        s.notes.delete_expired_stream_tickets(after).await.unwrap(),
        0
    );
    assert!(
        s.notes
            .take_stream_ticket(&hash(2), after)
            .await
            .unwrap()
            .is_some(),
        "the live one survived cleanup"
    );
}

/// Concurrent uses of one ticket: exactly one wins, every time.
async fn concurrent_uses_have_one_winner(s: Stores) {
    const ROUNDS: u8 = 20;
    const USERS: usize = 8;
    for n in 0..ROUNDS {
        let t = ticket(n, "alice", Role::User, now() + TimeDelta::seconds(60));
        s.notes.insert_stream_ticket(&t).await.unwrap();
        let start = Arc::new(tokio::sync::Barrier::new(USERS));
        let uses: Vec<_> = (0..USERS)
            .map(|_| {
                let (notes, start) = (s.notes.clone(), start.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    notes.take_stream_ticket(&hash(n), now()).await.unwrap()
                })
            })
            .collect();
        let mut winners = 0;
        for u in uses {
            if let Some(grant) = u.await.unwrap() {
                assert_eq!(grant, t.grant);
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {n}");
    }
}

/// The retention pass deletes expired tickets.
async fn retention_deletes_expired_tickets(s: Stores) {
    let expired = ticket(1, "alice", Role::User, now() - TimeDelta::seconds(1));
    let live = ticket(2, "alice", Role::User, now() + TimeDelta::seconds(60));
    s.notes.insert_stream_ticket(&expired).await.unwrap();
    s.notes.insert_stream_ticket(&live).await.unwrap();
    Retention::new(s.notes.clone(), Duration::from_secs(3600))
        .run_once()
        .await
        .unwrap();
    // Only the live one is left for a cleanup as of a time when both have expired.
    let much_later = now() + TimeDelta::hours(1);
    assert_eq!(
        s.notes
            .delete_expired_stream_tickets(much_later)
            .await
            .unwrap(),
        1
    );
}

notification_tests!(
    a_ticket_is_taken_once,
    expired_tickets_are_refused_and_deleted,
    concurrent_uses_have_one_winner,
    retention_deletes_expired_tickets,
);
