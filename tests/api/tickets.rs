//! Stream tickets: `POST /api/v1/events/ticket`, then one SSE or WebSocket stream opened with
//! `?ticket=`, with no JWT in any URL.

use std::time::Duration;

use ai_integration_service::auth::Role;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;

use crate::helpers::{Mode, TestApp, both_modes, spawn_app, start};
use crate::notify_support::*;

/// `POST /api/v1/events/ticket` with `token`: status and body.
async fn mint_with(app: &TestApp, token: Option<&str>) -> (u16, Value) {
    let mut req = app.http.post(format!("{}/api/v1/events/ticket", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("ticket request");
    let status = resp.status().as_u16();
    if status == 201 {
        let cache = resp.headers().get("cache-control").map(|v| v.as_bytes());
        assert_eq!(
            cache,
            Some(&b"no-store"[..]),
            "a credential is never cached"
        );
    }
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A ticket minted with `token`.
async fn mint(app: &TestApp, token: &str) -> String {
    let (status, body) = mint_with(app, Some(token)).await;
    assert_eq!(status, 201, "{body}");
    let ticket = body["ticket"].as_str().expect("ticket").to_owned();
    assert_eq!(ticket.len(), 64, "256 random bits, hex: {ticket}");
    ticket
}

/// `GET /api/v1/events?ticket=..&{query}` with no other credential.
async fn sse_with_ticket(app: &TestApp, ticket: &str, query: &str) -> reqwest::Response {
    app.http
        .get(format!(
            "{}/api/v1/events?ticket={ticket}&{query}",
            app.base
        ))
        .send()
        .await
        .expect("SSE request")
}

/// `/ws?ticket=..&{query}`: the socket, or the HTTP status that refused the upgrade.
async fn ws_with_ticket(app: &TestApp, ticket: &str, query: &str) -> Result<Ws, u16> {
    let url = ws_url(app, &format!("ticket={ticket}&{query}"));
    match tokio_tungstenite::connect_async(url).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("WebSocket failed otherwise: {e}"),
    }
}

/// Asserts a refused ticket: 401 in our error shape, saying nothing about why.
async fn assert_refused_sse(resp: reqwest::Response) {
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(
        body,
        json!({"error": {"code": "unauthenticated", "message": "invalid stream ticket"}})
    );
}

async fn submit(app: &TestApp, user: &str) -> String {
    let (status, task) = app.submit(user, echo(0)).await;
    assert_eq!(status, 202, "{task}");
    task["task_id"].as_str().unwrap().to_owned()
}

// ------------------------------------------------------------------------------------------

async fn a_ticket_opens_one_stream(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let token = app.token("alice");
    let (status, body) = mint_with(&app, Some(&token)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["expires_in"], 60);
    let ticket = body["ticket"].as_str().unwrap().to_owned();

    // A mistake in the query is a 400 that does not use the ticket up.
    assert_eq!(
        sse_with_ticket(&app, &ticket, "since=abc").await.status(),
        400
    );
    let mut s = sse_events(sse_with_ticket(&app, &ticket, "").await);
    assert_eq!(next_sse(&mut s).await.event, "subscribed");
    let id = submit(&app, "alice").await;
    let events = until_terminal(&mut s, &id).await;
    assert_eq!(
        types(&events),
        ["TaskCreated", "TaskStarted", "TaskCompleted"]
    );

    // Used: refused on either transport.
    assert_refused_sse(sse_with_ticket(&app, &ticket, "").await).await;
    assert_eq!(ws_with_ticket(&app, &ticket, "").await.err(), Some(401));

    // A fresh one opens a WebSocket, once.
    let ticket = mint(&app, &token).await;
    let mut w = ws_with_ticket(&app, &ticket, "since=3")
        .await
        .expect("opens");
    assert_eq!(
        next_frame(&mut w).await,
        json!({"type": "subscribed", "recovered": true, "id": 3})
    );
    let id = submit(&app, "alice").await;
    assert_eq!(ids(&ws_until_terminal(&mut w, &id).await), [4, 5, 6]);
    assert_eq!(ws_with_ticket(&app, &ticket, "").await.err(), Some(401));
    assert_refused_sse(sse_with_ticket(&app, &ticket, "").await).await;

    // Unknown and malformed tickets; no credential at all when minting.
    let unknown = "0123456789abcdef".repeat(4);
    assert_refused_sse(sse_with_ticket(&app, &unknown, "").await).await;
    assert_eq!(ws_with_ticket(&app, &unknown, "").await.err(), Some(401));
    assert_refused_sse(sse_with_ticket(&app, "nope", "").await).await;
    assert_eq!(mint_with(&app, None).await.0, 401);
    assert_eq!(mint_with(&app, Some("forged")).await.0, 401);
    app.cleanup().await;
}

both_modes!(a_ticket_opens_one_stream, a_ticket_opens_one_stream);

async fn an_expired_ticket_is_refused(mode: Mode) {
    let Some(app) = spawn_app(mode, &[("STREAM_TICKET_TTL", "1s")]).await else {
        return;
    };
    let token = app.token("alice");
    let (status, body) = mint_with(&app, Some(&token)).await;
    assert_eq!((status, &body["expires_in"]), (201, &json!(1)), "{body}");
    let for_sse = body["ticket"].as_str().unwrap().to_owned();
    let for_ws = mint(&app, &token).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_refused_sse(sse_with_ticket(&app, &for_sse, "").await).await;
    assert_eq!(ws_with_ticket(&app, &for_ws, "").await.err(), Some(401));
    app.cleanup().await;
}

both_modes!(an_expired_ticket_is_refused, an_expired_ticket_is_refused);

/// A stream opened with a ticket closes when the token it was minted with expires, and the
/// ticket itself does not outlive that token.
async fn a_ticket_stream_ends_with_its_token(mode: Mode) {
    // No clock-skew leeway: the token is refused from the second after its `exp`.
    let Some(app) = spawn_app(mode, &[("JWT_LEEWAY", "0s")]).await else {
        return;
    };
    let short = app.token_with("alice", Role::User, Duration::from_secs(3));
    let (status, body) = mint_with(&app, Some(&short)).await;
    assert_eq!(status, 201, "{body}");
    assert!(body["expires_in"].as_u64().unwrap() <= 3, "{body}");
    let for_sse = body["ticket"].as_str().unwrap().to_owned();
    let for_ws = mint(&app, &short).await;
    let mut s = sse_events(sse_with_ticket(&app, &for_sse, "").await);
    let mut w = ws_with_ticket(&app, &for_ws, "").await.expect("opens");
    loop {
        let e = next_sse(&mut s).await;
        if e.event == "error" {
            let v: Value = serde_json::from_str(&e.data).unwrap();
            assert_eq!(v["reason"], "token_expired");
            break;
        }
    }
    let (code, reason) = close_of(&mut w).await;
    assert_eq!(code, 4001, "{reason}");
    // The token is gone (it is good through its `exp` second), and so is the right to mint.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(mint_with(&app, Some(&short)).await.0, 401);
    app.cleanup().await;
}

both_modes!(
    a_ticket_stream_ends_with_its_token,
    a_ticket_stream_ends_with_its_token
);

/// A user's ticket opens only their own events; an admin's keeps `user_id` and `all`.
async fn tickets_keep_users_apart(mode: Mode) {
    let Some(app) = spawn_app(mode, &[]).await else {
        return;
    };
    let alice_ticket = mint(&app, &app.token("alice")).await;
    let mut alice = sse_events(sse_with_ticket(&app, &alice_ticket, "").await);
    let bob_ticket = mint(&app, &app.token("bob")).await;
    let mut bob = ws_with_ticket(&app, &bob_ticket, "").await.expect("opens");
    let admin = app.token_with("root", Role::Admin, Duration::from_secs(600));
    let of_alice = mint(&app, &admin).await;
    let mut of_alice = sse_events(sse_with_ticket(&app, &of_alice, "user_id=alice").await);
    let everyone = mint(&app, &admin).await;
    let mut everyone = ws_with_ticket(&app, &everyone, "all=true")
        .await
        .expect("opens");

    let b = submit(&app, "bob").await;
    let a = submit(&app, "alice").await;
    let seen = until_terminal(&mut alice, &a).await;
    assert!(seen.iter().all(|e| e["user_id"] == "alice"), "{seen:?}");
    let seen = ws_until_terminal(&mut bob, &b).await;
    assert!(seen.iter().all(|e| e["user_id"] == "bob"), "{seen:?}");
    let seen = until_terminal(&mut of_alice, &a).await;
    assert!(seen.iter().all(|e| e["user_id"] == "alice"), "{seen:?}");
    let mut finished = (false, false);
    while finished != (true, true) {
        let v = next_frame(&mut everyone).await;
        if v["type"] == "TaskCompleted" {
            finished.0 |= v["task_id"] == a;
            finished.1 |= v["task_id"] == b;
        }
    }
    // Alice's stream carried nothing of bob's, even after both finished.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), next_sse(&mut alice))
            .await
            .is_err(),
        "alice received something more"
    );
    // A user's ticket does not make them an admin.
    let t = mint(&app, &app.token("alice")).await;
    assert_eq!(sse_with_ticket(&app, &t, "user_id=bob").await.status(), 403);
    let t = mint(&app, &app.token("alice")).await;
    assert_eq!(
        sse_with_ticket(&app, &t, &format!("task_id={b}"))
            .await
            .status(),
        404
    );
    app.cleanup().await;
}

both_modes!(tickets_keep_users_apart, tickets_keep_users_apart);

/// Minted on one instance, used on another: tickets live in the shared database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_minted_on_one_instance_opens_a_stream_on_another() {
    let Some(a) = spawn_app(Mode::Clustered, &[]).await else {
        return;
    };
    let mut b = start(a.vars.clone()).await;
    let token = a.token("alice");
    let on_a = mint(&a, &token).await;
    let mut s = sse_events(sse_with_ticket(&b, &on_a, "").await);
    let on_b = mint(&b, &token).await;
    let mut w = ws_with_ticket(&a, &on_b, "").await.expect("opens");
    assert_eq!(next_sse(&mut s).await.event, "subscribed");
    assert_eq!(next_frame(&mut w).await["type"], "subscribed");
    let id = submit(&a, "alice").await;
    assert_eq!(ids(&until_terminal(&mut s, &id).await), [1, 2, 3]);
    assert_eq!(ids(&ws_until_terminal(&mut w, &id).await), [1, 2, 3]);
    // Used on the other instance means used everywhere.
    assert_refused_sse(sse_with_ticket(&a, &on_a, "").await).await;
    assert_eq!(ws_with_ticket(&b, &on_b, "").await.err(), Some(401));
    b.stop().await;
    a.cleanup().await;
}
