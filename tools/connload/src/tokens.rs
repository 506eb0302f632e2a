//! The users' bearer tokens, minted from the server's secret for fresh users, so a run's
//! connections and events are its own.

use std::time::Duration;

use ai_integration_service::auth::{JwtKeys, Role};
use ai_integration_service::config::Secret;
use ai_integration_service::domain::UserId;
use anyhow::{Context, bail};

/// Lifetime of the minted tokens: long enough for any run.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// One token per user, for fresh users `connload-<run>-<k>`.
pub fn mint_tokens(secret: &str, users: usize) -> anyhow::Result<Vec<String>> {
    let secret = secret.trim();
    if secret.is_empty() {
        bail!("no credentials: pass --jwt-secret or set JWT_SECRET");
    }
    let keys = JwtKeys::new(&Secret::new(secret.to_owned()));
    let run = uuid::Uuid::new_v4().simple().to_string();
    (0..users)
        .map(|k| {
            let user = UserId::parse(&format!("connload-{}-{k}", &run[..8])).context("user id")?;
            keys.issue(&user, Role::User, TOKEN_TTL)
                .context("minting a token")
        })
        .collect()
}
