//! An identity provider's public keys (a JSON Web Key Set), from a URL (Google:
//! `https://www.googleapis.com/oauth2/v3/certs`, Auth0: `https://TENANT/.well-known/jwks.json`)
//! or a file, kept by `kid` and refreshed in the background: every [`REFRESH_EVERY`], and soon
//! after a token names a `kid` not known yet (a key rotation at the provider), at most once per
//! [`MIN_REFRESH_GAP`] so that tokens with made-up kids cannot make us hammer the provider.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::keys::ASYMMETRIC;

/// How often the keys are read again.
pub const REFRESH_EVERY: Duration = Duration::from_secs(600);
/// The shortest time between two reads asked for by unknown kids.
pub const MIN_REFRESH_GAP: Duration = Duration::from_secs(30);
/// Longest a read of the URL may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the keys are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksSource {
    /// `JWT_JWKS_URL`.
    Url(String),
    /// `JWT_JWKS_FILE`.
    File(PathBuf),
}

/// The keys by `kid`, each with the one algorithm it verifies.
pub struct JwksCache {
    source: JwksSource,
    keys: RwLock<HashMap<String, (Algorithm, DecodingKey)>>,
    /// Rung when a token names an unknown kid.
    wanted: Notify,
    http: reqwest::Client,
}

impl JwksCache {
    /// A cache of `source`'s keys, empty until [`Self::refresh`].
    pub fn new(source: JwksSource) -> Self {
        Self {
            source,
            keys: RwLock::default(),
            wanted: Notify::new(),
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }

    /// The key `kid` names and its algorithm; an unknown kid asks for a refresh.
    pub fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        let found = self
            .keys
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(kid)
            .cloned();
        if found.is_none() {
            self.wanted.notify_one();
        }
        found
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Reads the keys again; on failure the keys held are kept. Returns how many were read.
    pub async fn refresh(&self) -> Result<usize, String> {
        let text = match &self.source {
            JwksSource::Url(url) => {
                let resp = self.http.get(url).send().await.map_err(|e| e.to_string())?;
                if !resp.status().is_success() {
                    return Err(format!("{url} answered {}", resp.status()));
                }
                resp.text().await.map_err(|e| e.to_string())?
            }
            JwksSource::File(path) => tokio::fs::read_to_string(path)
                .await
                .map_err(|e| format!("{}: {e}", path.display()))?,
        };
        self.load(&text)
    }

    /// Replaces the keys held with those of a JWKS document; a document that is not a JWKS
    /// changes nothing. Returns how many keys were read.
    pub fn load(&self, text: &str) -> Result<usize, String> {
        let keys = parse(text)?;
        let n = keys.len();
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = keys;
        Ok(n)
    }

    /// Refreshes every [`REFRESH_EVERY`] and when an unknown kid was seen (at most every
    /// [`MIN_REFRESH_GAP`]), until `cancel`.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(REFRESH_EVERY) => {}
                () = self.wanted.notified() => {}
            }
            match self.refresh().await {
                Ok(n) => tracing::debug!(keys = n, "JWKS refreshed"),
                Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys held"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(MIN_REFRESH_GAP) => {}
            }
        }
    }
}

/// The signing keys of a JWKS document, by kid. Keys without a kid, for encryption, or of an
/// algorithm we do not accept are left out.
fn parse(text: &str) -> Result<HashMap<String, (Algorithm, DecodingKey)>, String> {
    let set: JwkSet = serde_json::from_str(text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
            continue;
        }
        let Some(alg) = algorithm(jwk) else {
            continue;
        };
        if !ASYMMETRIC.contains(&alg) {
            continue;
        }
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, (alg, key));
            }
            Err(e) => tracing::warn!(kid, error = %e, "JWKS key skipped"),
        }
    }
    Ok(keys)
}

/// The algorithm a key verifies: its `alg`, else the usual one of its type (RSA: RS256,
/// P-256: ES256, P-384: ES384).
fn algorithm(jwk: &jsonwebtoken::jwk::Jwk) -> Option<Algorithm> {
    let named = |a: KeyAlgorithm| match a {
        KeyAlgorithm::RS256 => Some(Algorithm::RS256),
        KeyAlgorithm::RS384 => Some(Algorithm::RS384),
        KeyAlgorithm::RS512 => Some(Algorithm::RS512),
        KeyAlgorithm::PS256 => Some(Algorithm::PS256),
        KeyAlgorithm::PS384 => Some(Algorithm::PS384),
        KeyAlgorithm::PS512 => Some(Algorithm::PS512),
        KeyAlgorithm::ES256 => Some(Algorithm::ES256),
        KeyAlgorithm::ES384 => Some(Algorithm::ES384),
        _ => None,
    };
    match (jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(a), _) => named(a),
        (None, AlgorithmParameters::RSA(_)) => Some(Algorithm::RS256),
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        _ => None,
    }
}
