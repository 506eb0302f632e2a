//! Bearer tokens and JWKS documents.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::pick;
use crate::auth::{JwksCache, JwksSource, JwtKeys, JwtSettings};
use crate::config::Secret;

/// The HS256 secret the fuzzer's keys verify with (two keys: a rotation).
pub const FUZZ_SECRET: &str =
    "fuzzing-secret-current-0123456789,fuzzing-secret-previous-0123456789";
/// The issuer tokens must name.
pub const FUZZ_ISSUER: &str = "https://issuer.example";
/// The audience tokens must include.
pub const FUZZ_AUDIENCE: &str = "ai-integration-service";

/// The test identity provider's keys (`rsa-1`, `ec-1`).
const FIXTURE_JWKS: &str = include_str!("../../tests/fixtures/jwks/jwks.json");

/// Keys as a deployment with a shared secret, an identity provider, issuer and audience has.
static KEYS: LazyLock<JwtKeys> = LazyLock::new(|| {
    let jwks = JwksCache::new(JwksSource::File("unused".into()));
    // The committed fixture is a valid JWKS: cannot fail.
    jwks.load(FIXTURE_JWKS).expect("the fixture JWKS loads");
    let settings = JwtSettings {
        issuer: Some(FUZZ_ISSUER.into()),
        audience: Some(FUZZ_AUDIENCE.into()),
        leeway: Duration::from_secs(5),
    };
    JwtKeys::with(&Secret::new(FUZZ_SECRET), settings, Some(Arc::new(jwks)))
});

/// A cache for fuzzed JWKS documents, apart from the one the keys use.
static DOCUMENTS: LazyLock<JwksCache> =
    LazyLock::new(|| JwksCache::new(JwksSource::File("unused".into())));

/// `data[0]`: 0 the rest is a token, verified as a bearer header and bare; 1 a JWKS document,
/// loaded as a refresh would.
pub fn jwt(data: &[u8]) {
    let Some((variant, rest)) = pick(data, 2) else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if variant == 0 {
        let _ = KEYS.verify_header(Some(&format!("Bearer {text}")));
        let _ = KEYS.verify_with_expiry(text);
    } else {
        let _ = DOCUMENTS.load(text);
    }
}
