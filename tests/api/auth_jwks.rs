//! Tokens from an identity provider (RS256 / ES256 keys from a JWKS file, by `kid`) with
//! issuer and audience checks, over HTTP and gRPC; refusals say nothing that helps a forger.

use ai_integration_service::api::proto::ListTasksRequest;
use ai_integration_service::api::proto::task_service_client::TaskServiceClient;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tonic::Code;

use crate::helpers::{Mode, TestApp, spawn_app};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks/");

fn idp_token(kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    let pem = std::fs::read(format!("{FIXTURES}rsa-private.pem")).unwrap();
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(&pem).unwrap()).unwrap()
}

fn claims(iss: &str, aud: &str) -> Value {
    let now = jsonwebtoken::get_current_timestamp();
    json!({"sub": "auth0-user-7", "iss": iss, "aud": aud, "exp": now + 300, "iat": now})
}

async fn list(app: &TestApp, token: &str) -> (u16, Value) {
    let resp = app
        .http
        .get(format!("{}/api/v1/tasks", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_provider_tokens_are_checked() {
    let file = format!("{FIXTURES}jwks.json");
    let vars = [
        ("JWT_JWKS_FILE", file.as_str()),
        ("JWT_ISSUER", "https://idp.example/"),
        ("JWT_AUDIENCE", "ais-api"),
    ];
    let Some(app) = spawn_app(Mode::Embedded, &vars).await else {
        return;
    };
    let good = idp_token("rsa-1", &claims("https://idp.example/", "ais-api"));
    let (status, body) = list(&app, &good).await;
    assert_eq!(status, 200, "{body}");

    for (token, why) in [
        (
            idp_token("rsa-1", &claims("https://evil.example/", "ais-api")),
            "issuer",
        ),
        (
            idp_token("rsa-1", &claims("https://idp.example/", "other")),
            "audience",
        ),
        (
            idp_token("rsa-2", &claims("https://idp.example/", "ais-api")),
            "kid",
        ),
    ] {
        let (status, body) = list(&app, &token).await;
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["error"]["message"], "invalid token", "{why}: {body}");
    }

    let mut client = TaskServiceClient::connect(app.base.clone()).await.unwrap();
    let ask = |token: &str| {
        let mut r = tonic::Request::new(ListTasksRequest::default());
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        r
    };
    assert!(client.list_tasks(ask(&good)).await.is_ok());
    let bad = idp_token("rsa-1", &claims("https://idp.example/", "other"));
    let err = client.list_tasks(ask(&bad)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(err.message(), "invalid token");
    app.cleanup().await;
}
