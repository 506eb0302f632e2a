//! [`JwtKeys`]: issues HS256 tokens and verifies tokens signed with the shared secret or with an
//! identity provider's published keys.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, TokenData, Validation};

use super::jwks::JwksCache;
use super::{AuthError, Caller, Claims, Role};
use crate::config::{Secret, secret_keys};
use crate::domain::{Tier, UserId};

/// What a token must show besides a valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// `JWT_ISSUER`: the `iss` every token must carry (and issued tokens get).
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: an `aud` every token must include (and issued tokens get).
    pub audience: Option<String>,
    /// `JWT_LEEWAY`: clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
}

impl Default for JwtSettings {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
        }
    }
}

/// Signs and verifies tokens.
///
/// HS256 keys come from `JWT_SECRET`: one or more, comma-separated, the current one first.
/// Tokens are signed with the current key and carry its id (`kid`, a hash prefix, never the
/// key); any listed key verifies, so a rotation adds a key in front, and the old one is
/// removed once the tokens it signed have expired. Asymmetric tokens are verified only with
/// the JWKS key their `kid` names, and only under that key's own algorithm, so a public key
/// can never be used as an HS256 secret (key confusion) and `alg: none` is never accepted.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    /// The current key's id, put in every issued token's header.
    kid: String,
    /// Every HS256 key, current first, with its id.
    decoding: Vec<(String, DecodingKey)>,
    settings: JwtSettings,
    /// An identity provider's keys, when configured.
    jwks: Option<Arc<JwksCache>>,
}

/// The id of an HS256 key: the first 16 hex digits of its SHA-256 (naming it without
/// revealing it).
fn key_id(key: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(key)[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The asymmetric algorithms a JWKS key may verify.
pub(super) const ASYMMETRIC: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

impl JwtKeys {
    /// HS256 keys from the configured secret, default settings, no identity provider.
    pub fn new(secret: &Secret) -> Self {
        Self::with(secret, JwtSettings::default(), None)
    }

    /// HS256 keys from `secret`, the checks of `settings`, and an identity provider's keys.
    pub fn with(secret: &Secret, settings: JwtSettings, jwks: Option<Arc<JwksCache>>) -> Self {
        let keys: Vec<&str> = secret_keys(secret.expose())
            .filter(|k| !k.is_empty())
            .collect();
        let current = keys.first().copied().unwrap_or_default();
        Self {
            encoding: EncodingKey::from_secret(current.as_bytes()),
            kid: key_id(current.as_bytes()),
            decoding: keys
                .iter()
                .map(|k| (key_id(k.as_bytes()), DecodingKey::from_secret(k.as_bytes())))
                .collect(),
            settings,
            jwks,
        }
    }

    /// Issues a token for `user` valid for `ttl`, with no tier (`free`).
    pub fn issue(&self, user: &UserId, role: Role, ttl: Duration) -> Result<String, AuthError> {
        self.issue_with_tier(user, role, None, ttl)
    }

    /// Issues a token for `user` on plan `tier` valid for `ttl`.
    pub fn issue_with_tier(
        &self,
        user: &UserId,
        role: Role,
        tier: Option<Tier>,
        ttl: Duration,
    ) -> Result<String, AuthError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user.to_string(),
            role,
            iat: now,
            exp: now + ttl.as_secs(),
            tier,
            iss: self.settings.issuer.clone(),
            aud: self
                .settings
                .audience
                .clone()
                .map(serde_json::Value::String),
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }

    /// Verifies a token and returns the caller it names.
    pub fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        self.verify_with_expiry(token).map(|(caller, _)| caller)
    }

    /// Verifies a token and returns the caller and its expiry (unix seconds), for
    /// long-lived connections that must end when the token does.
    pub fn verify_with_expiry(&self, token: &str) -> Result<(Caller, u64), AuthError> {
        let data = self.decode(token)?;
        let user_id =
            UserId::parse(&data.claims.sub).map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
        let caller = Caller {
            user_id,
            role: data.claims.role,
            tier: data.claims.tier.unwrap_or_default(),
        };
        Ok((caller, data.claims.exp))
    }

    /// Verifies the value of an `Authorization` header.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Caller, AuthError> {
        let header = header.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or(AuthError::Missing)?;
        self.verify(token.trim())
    }

    /// What a token of `alg` must satisfy.
    fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.settings.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "sub"]);
        if let Some(iss) = &self.settings.issuer {
            v.set_issuer(&[iss]);
            v.set_required_spec_claims(&["exp", "sub", "iss"]);
        }
        match &self.settings.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v
    }

    /// Checks the signature with the key the header calls for, then the claims.
    fn decode(&self, token: &str) -> Result<TokenData<Claims>, AuthError> {
        // An unknown `alg` (`none` among them) fails here: jsonwebtoken has no such variant.
        let header = jsonwebtoken::decode_header(token).map_err(refused)?;
        if header.alg == Algorithm::HS256 {
            return self.decode_hs(token, header.kid.as_deref());
        }
        if !ASYMMETRIC.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "alg {:?} not accepted",
                header.alg
            )));
        }
        let jwks = self
            .jwks
            .as_ref()
            .ok_or_else(|| AuthError::Invalid("no JWKS configured for asymmetric tokens".into()))?;
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Invalid("an asymmetric token without kid".into()))?;
        let (alg, key) = jwks
            .key(&kid)
            .ok_or_else(|| AuthError::Invalid(format!("unknown kid {kid:?}")))?;
        if alg != header.alg {
            return Err(AuthError::Invalid(format!(
                "kid {kid:?} is a {alg:?} key, the token says {:?}",
                header.alg
            )));
        }
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation(alg)).map_err(refused)
    }

    /// HS256: the key the token names (`kid`), or for a token without one (issued before key
    /// ids) each key in turn.
    fn decode_hs(&self, token: &str, kid: Option<&str>) -> Result<TokenData<Claims>, AuthError> {
        let validation = self.validation(Algorithm::HS256);
        let mut last = AuthError::Invalid("no HS256 key has this kid".into());
        for (id, key) in &self.decoding {
            if kid.is_some_and(|k| k != id) {
                continue;
            }
            match jsonwebtoken::decode::<Claims>(token, key, &validation) {
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => last = refused(e),
                answer => return answer.map_err(refused),
            }
        }
        Err(last)
    }
}

/// A jsonwebtoken error as the caller's refusal (the detail kept for the log).
fn refused(e: jsonwebtoken::errors::Error) -> AuthError {
    match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        _ => AuthError::Invalid(e.to_string()),
    }
}

#[cfg(test)]
mod tests;
