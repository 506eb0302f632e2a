//! Issuing and verifying: HS256 with rotation, and an identity provider's RS256/ES256 keys
//! from a JWKS file, against the attacks a JWT verifier must refuse.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::auth::{JwksCache, JwksSource};

const SECRET: &str = "0123456789abcdef0123456789abcdef";

fn keys(secret: &str) -> JwtKeys {
    JwtKeys::new(&Secret::new(secret))
}

fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks/");
    std::fs::read(format!("{path}{name}")).unwrap()
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Keys that also trust the test identity provider (`tests/fixtures/jwks`), with an issuer
/// and an audience to check.
async fn with_idp() -> JwtKeys {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwks/jwks.json");
    let jwks = JwksCache::new(JwksSource::File(path.into()));
    assert_eq!(jwks.refresh().await.unwrap(), 2);
    let settings = JwtSettings {
        issuer: Some("https://idp.example".into()),
        audience: Some("ais".into()),
        leeway: Duration::from_secs(5),
    };
    JwtKeys::with(&Secret::new(SECRET), settings, Some(Arc::new(jwks)))
}

fn claims(extra: Value) -> Value {
    let mut c = json!({"sub": "google-user-1", "iss": "https://idp.example", "aud": "ais",
        "exp": now() + 600, "iat": now(), "email": "someone@example.com"});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn rs256(kid: Option<&str>, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn es256(kid: &str, claims: &Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.to_owned());
    let key = EncodingKey::from_ec_pem(&fixture("ec-private.pem")).unwrap();
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

fn b64(v: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

#[test]
fn issues_and_verifies() {
    let k = keys(SECRET);
    let user = UserId::parse("alice").unwrap();
    let t = k
        .issue(&user, Role::Admin, Duration::from_secs(60))
        .unwrap();
    let c = k.verify_header(Some(&format!("Bearer {t}"))).unwrap();
    assert_eq!((c.user_id, c.role), (user, Role::Admin));
}

/// A rotation: tokens of the old key (with or without a key id) still verify while it is
/// listed second; new tokens are signed with the new one; once the old key is removed, its
/// tokens are refused. No token names its key by more than a hash prefix.
#[test]
fn rotated_keys_verify_old_tokens_and_sign_with_the_first() {
    let (old, new) = (
        "old-key-old-key-old-key-old-key-",
        "new-key-new-key-new-key-new-key-",
    );
    let user = UserId::parse("alice").unwrap();
    let before = keys(old)
        .issue(&user, Role::User, Duration::from_secs(60))
        .unwrap();
    let no_kid = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "alice", "role": "user", "exp": u64::MAX / 2, "iat": 0}),
        &EncodingKey::from_secret(old.as_bytes()),
    )
    .unwrap();
    let both = keys(&format!("{new}, {old}"));
    assert!(both.verify(&before).is_ok());
    assert!(both.verify(&no_kid).is_ok());
    let after = both
        .issue(&user, Role::User, Duration::from_secs(60))
        .unwrap();
    assert!(
        keys(new).verify(&after).is_ok(),
        "signed with the first key"
    );
    assert!(keys(old).verify(&after).is_err());
    let kid = jsonwebtoken::decode_header(&after).unwrap().kid.unwrap();
    assert_eq!(kid.len(), 16);
    assert!(!kid.contains("new-key"));
    let rotated = keys(new);
    assert!(matches!(
        rotated.verify(&before),
        Err(AuthError::Invalid(_))
    ));
    assert!(matches!(
        rotated.verify(&no_kid),
        Err(AuthError::Invalid(_))
    ));
}

#[test]
fn rejects_forged_expired_and_missing() {
    let user = UserId::parse("alice").unwrap();
    let forged = keys("another-secret-another-secret-xx")
        .issue(&user, Role::Admin, Duration::from_secs(60))
        .unwrap();
    let k = keys(SECRET);
    assert!(matches!(k.verify(&forged), Err(AuthError::Invalid(_))));
    let hs = |c: &Value| {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            c,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap()
    };
    let expired = hs(&json!({"sub": "alice", "exp": now() - 60}));
    assert_eq!(k.verify(&expired), Err(AuthError::Expired));
    let skewed = hs(&json!({"sub": "alice", "exp": now() - 2}));
    assert!(k.verify(&skewed).is_ok(), "within the leeway");
    assert_eq!(k.verify_header(None), Err(AuthError::Missing));
    assert_eq!(k.verify_header(Some("Basic abc")), Err(AuthError::Missing));
    let roleless = hs(&json!({"sub": "alice", "exp": now() + 60}));
    assert_eq!(k.verify(&roleless).unwrap().role, Role::User);
}

#[test]
fn tier_claim_is_read_and_checked() {
    let k = keys(SECRET);
    let user = UserId::parse("alice").unwrap();
    let t = k
        .issue_with_tier(&user, Role::User, Some(Tier::Pro), Duration::from_secs(60))
        .unwrap();
    assert_eq!(k.verify(&t).unwrap().tier, Tier::Pro);
    let t = k.issue(&user, Role::User, Duration::from_secs(60)).unwrap();
    assert_eq!(k.verify(&t).unwrap().tier, Tier::Free);
    let claims = json!({"sub": "alice", "role": "user", "exp": u64::MAX / 2,
        "iat": 0, "tier": "platinum"});
    let odd = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert!(matches!(k.verify(&odd), Err(AuthError::Invalid(_))));
}

/// An identity provider's tokens verify by kid, RSA and EC alike, with issuer and audience;
/// the service's own tokens carry both and still verify.
#[tokio::test]
async fn identity_provider_tokens_verify_by_kid() {
    let k = with_idp().await;
    let c = k.verify(&rs256(Some("rsa-1"), &claims(json!({})))).unwrap();
    assert_eq!((c.user_id.as_str(), c.role), ("google-user-1", Role::User));
    let list = claims(json!({"aud": ["other", "ais"]}));
    assert!(k.verify(&es256("ec-1", &list)).is_ok(), "aud as a list");
    let own = k
        .issue(
            &UserId::parse("ops").unwrap(),
            Role::Admin,
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(k.verify(&own).unwrap().role, Role::Admin);
}

/// Every attack of the issue's list is refused, with the same answer to the caller.
#[tokio::test]
async fn attacks_are_refused_alike() {
    let k = with_idp().await;
    let good = claims(json!({}));
    let refused = |token: String, why: &str| {
        let e = k.verify(&token).expect_err(why);
        assert!(matches!(e, AuthError::Invalid(_)), "{why}: {e:?}");
        assert_eq!(
            e.to_string(),
            "invalid token",
            "{why}: no detail for the caller"
        );
    };
    // alg: none, unsigned.
    refused(
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&good)
        ),
        "alg none",
    );
    // Key confusion: HS256 signed with the provider's public key as the secret.
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rsa-1".into());
    let public = fixture("rsa-public.pem");
    let confused = jsonwebtoken::encode(&h, &good, &EncodingKey::from_secret(&public)).unwrap();
    refused(confused, "HS256 with the public key");
    // An RS256 header on the EC key's kid.
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("ec-1".into());
    let rsa = EncodingKey::from_rsa_pem(&fixture("rsa-private.pem")).unwrap();
    refused(
        jsonwebtoken::encode(&h, &good, &rsa).unwrap(),
        "alg not the key's",
    );
    assert_eq!(
        k.verify(&rs256(Some("rsa-1"), &claims(json!({"exp": now() - 60}))))
            .unwrap_err(),
        AuthError::Expired
    );
    refused(
        rs256(Some("rsa-1"), &claims(json!({"nbf": now() + 600}))),
        "not yet valid",
    );
    refused(
        rs256(Some("rsa-1"), &claims(json!({"aud": "someone-else"}))),
        "wrong audience",
    );
    refused(
        rs256(
            Some("rsa-1"),
            &claims(json!({"iss": "https://evil.example"})),
        ),
        "wrong issuer",
    );
    let mut no_iss = claims(json!({}));
    no_iss.as_object_mut().unwrap().remove("iss");
    refused(rs256(Some("rsa-1"), &no_iss), "no issuer");
    let token = rs256(Some("rsa-1"), &good);
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    refused(
        format!("{rest}.{flipped}{}", &sig[1..]),
        "tampered signature",
    );
    let (_, payload_sig) = token.split_once('.').unwrap();
    let (_, sig) = payload_sig.split_once('.').unwrap();
    let forged_claims = claims(json!({"sub": "admin", "role": "admin"}));
    let header = token.split('.').next().unwrap();
    refused(
        format!("{header}.{}.{sig}", b64(&forged_claims)),
        "tampered claims",
    );
    refused(rs256(Some("rsa-9"), &good), "unknown kid");
    refused(rs256(None, &good), "no kid");
    refused("not.a.jwt".into(), "garbage");
}

/// Without a JWKS, asymmetric tokens are refused outright.
#[test]
fn asymmetric_tokens_need_a_jwks() {
    let e = keys(SECRET)
        .verify(&rs256(Some("rsa-1"), &claims(json!({}))))
        .unwrap_err();
    assert!(matches!(e, AuthError::Invalid(_)));
}
