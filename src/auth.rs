//! JWT authentication: HS256 tokens with `sub` (user id), `role` (user | admin | service), `exp` and an
//! optional `tier` (free | pro | enterprise).

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::config::Secret;
pub use crate::domain::Role;
use crate::domain::{Submitter, Tier, UserId};

/// The claims we issue and accept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// `user`, `admin` or `service`.
    pub role: Role,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// The user's plan; absent means `free`. An unknown value makes the token invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who.
    pub user_id: UserId,
    /// With which rights.
    pub role: Role,
    /// Their plan.
    pub tier: Tier,
}

impl Caller {
    /// The caller as the owner of tasks they submit.
    pub fn submitter(&self) -> Submitter {
        Submitter {
            user_id: self.user_id.clone(),
            tier: self.tier,
            admin: self.role == Role::Admin,
        }
    }

    /// Whether this caller may see or change a task owned by `owner`.
    pub fn may_access(&self, owner: &UserId) -> bool {
        self.role == Role::Admin || &self.user_id == owner
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` credential.
    #[error("missing bearer token (Authorization: Bearer <JWT>)")]
    Missing,
    /// The token's `exp` has passed.
    #[error("token expired")]
    Expired,
    /// Bad signature, bad shape or bad claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A stream ticket that is unknown, expired or already used; which of the three is not
    /// said, so a guesser learns nothing.
    #[error("invalid stream ticket")]
    BadTicket,
}

/// Signs and verifies tokens with HS256 keys: `JWT_SECRET` holds one or more, comma-separated,
/// the current one first. Tokens are signed with the current key and carry its id (`kid`, a
/// hash prefix, never the key); any listed key verifies, so a rotation adds a key in front,
/// and the old one is removed once the tokens it signed have expired.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    /// The current key's id, put in every token's header.
    kid: String,
    /// Every key, current first, with its id.
    decoding: Vec<(String, DecodingKey)>,
    validation: Validation,
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

impl JwtKeys {
    /// Keys from the configured secret (one key, or several comma-separated, current first).
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let keys: Vec<&str> = crate::config::secret_keys(secret.expose())
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
            validation,
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
        let data = self.decode(token).map_err(|e| match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
            _ => AuthError::Invalid("malformed token or claims".into()),
        })?;
        let user_id =
            UserId::parse(&data.claims.sub).map_err(|e| AuthError::Invalid(format!("sub: {e}")))?;
        let caller = Caller {
            user_id,
            role: data.claims.role,
            tier: data.claims.tier.unwrap_or_default(),
        };
        Ok((caller, data.claims.exp))
    }

    /// Decodes with the key the token names (`kid`), or, for a token without one (issued
    /// before key ids), with each key in turn.
    fn decode(
        &self,
        token: &str,
    ) -> Result<jsonwebtoken::TokenData<Claims>, jsonwebtoken::errors::Error> {
        let kid = jsonwebtoken::decode_header(token)?.kid;
        let mut last = None;
        for (id, key) in &self.decoding {
            if kid.as_ref().is_some_and(|k| k != id) {
                continue;
            }
            match jsonwebtoken::decode::<Claims>(token, key, &self.validation) {
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => last = Some(e),
                answer => return answer,
            }
        }
        Err(last.unwrap_or_else(|| ErrorKind::InvalidSignature.into()))
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&Secret::new(secret))
    }

    #[test]
    fn issues_and_verifies() {
        let k = keys("0123456789abcdef0123456789abcdef");
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
            &serde_json::json!({"sub": "alice", "role": "user", "exp": u64::MAX / 2, "iat": 0}),
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
        let k = keys("0123456789abcdef0123456789abcdef");
        assert!(matches!(k.verify(&forged), Err(AuthError::Invalid(_))));
        let expired = k.issue(&user, Role::User, Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(k.verify(&expired), Err(AuthError::Expired));
        assert_eq!(k.verify_header(None), Err(AuthError::Missing));
        assert_eq!(k.verify_header(Some("Basic abc")), Err(AuthError::Missing));
    }

    #[test]
    fn tier_claim_is_read_and_checked() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let user = UserId::parse("alice").unwrap();
        let t = k
            .issue_with_tier(&user, Role::User, Some(Tier::Pro), Duration::from_secs(60))
            .unwrap();
        assert_eq!(k.verify(&t).unwrap().tier, Tier::Pro);
        let t = k.issue(&user, Role::User, Duration::from_secs(60)).unwrap();
        assert_eq!(k.verify(&t).unwrap().tier, Tier::Free);
        let claims = serde_json::json!({"sub": "alice", "role": "user", "exp": u64::MAX / 2,
            "iat": 0, "tier": "platinum"});
        let odd = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert!(matches!(k.verify(&odd), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn role_names_round_trip() {
        for role in [Role::User, Role::Admin, Role::Service] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
            let json = serde_json::to_string(&role).unwrap();
            assert_eq!(
                json,
                format!("\"{}\"", role.as_str()),
                "the same names as the claims"
            );
        }
        assert_eq!(Role::parse("root"), None);
    }

    #[test]
    fn users_see_only_their_own() {
        let alice = Caller {
            user_id: UserId::parse("alice").unwrap(),
            role: Role::User,
            tier: Tier::Free,
        };
        assert!(alice.may_access(&UserId::parse("alice").unwrap()));
        assert!(!alice.may_access(&UserId::parse("bob").unwrap()));
    }
}
