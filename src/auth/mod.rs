//! JWT authentication. Tokens carry `sub` (the user id), `exp`, and optionally `role` (user |
//! admin | service; user when absent), `tier` (free | pro | enterprise), `nbf`, `iss`, `aud`.
//!
//! - HS256 with the shared `JWT_SECRET` (one key or several for a rotation): the tokens this
//!   service issues (`token` command, tests) and any issuer sharing the secret (`keys.rs`).
//! - RS256/384/512, PS256/384/512 and ES256/384 from an identity provider (Google, Auth0, …)
//!   with its public keys from a JWKS URL or file, chosen by `kid` (`jwks.rs`).
//!
//! Issuer and audience are checked when configured; `exp` and `nbf` with a small leeway. A
//! refused token gets one answer whatever the reason (`invalid token`, or `token expired`),
//! so a forger learns nothing from it; the reason is logged at debug level.

mod jwks;
mod keys;

use serde::{Deserialize, Serialize};

pub use crate::domain::Role;
use crate::domain::{Submitter, Tier, UserId};
pub use jwks::{JwksCache, JwksSource};
pub use keys::{JwtKeys, JwtSettings};

/// The claims we issue and accept (others, such as `email`, are ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// `user`, `admin` or `service`; `user` when absent (an identity provider's tokens).
    #[serde(default)]
    pub role: Role,
    /// Expiry, unix seconds.
    pub exp: u64,
    /// Issued at, unix seconds.
    #[serde(default)]
    pub iat: u64,
    /// Issuer, set on issued tokens when `JWT_ISSUER` is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, set on issued tokens when `JWT_AUDIENCE` is configured (a string or a list
    /// in others' tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<serde_json::Value>,
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
    /// Bad signature, bad shape or bad claims; the reason is for the log, never the caller.
    #[error("invalid token")]
    Invalid(String),
    /// A stream ticket that is unknown, expired or already used; which of the three is not
    /// said, so a guesser learns nothing.
    #[error("invalid stream ticket")]
    BadTicket,
}

#[cfg(test)]
mod tests {
    use super::*;

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
