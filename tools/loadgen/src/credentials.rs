//! The bearer tokens a run sends: `--token` as is, or minted for fresh users from the secret,
//! so a run's tasks are isolated from everyone else's.

use std::path::PathBuf;
use std::time::Duration;

use ai_integration_service::auth::{JwtKeys, Role};
use ai_integration_service::config::Secret;
use ai_integration_service::domain::UserId;
use anyhow::{Context, bail};

use crate::args::Args;

/// Lifetime of a minted token: long enough for any run.
const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// The bearer tokens a run sends.
pub struct Credentials {
    /// One per user; submit call `j` uses `submit[j % len]`.
    pub submit: Vec<String>,
    /// For listing and reading the run's tasks: the one user's token, or an admin's.
    pub read: String,
    /// The minted user (the first of them, with `--users`).
    pub user: Option<String>,
}

/// The tokens to send: `--token` as is, or minted for fresh users from the secret.
pub fn resolve_credentials(args: &Args) -> anyhow::Result<Credentials> {
    if let Some(t) = &args.token {
        let t = t.trim().to_owned();
        return Ok(Credentials {
            submit: vec![t.clone()],
            read: t,
            user: None,
        });
    }
    let secret = match &args.jwt_secret {
        Some(s) if !s.trim().is_empty() => s.trim().to_owned(),
        _ => read_embedded_secret()?,
    };
    let keys = JwtKeys::new(&Secret::new(secret));
    let mint = |name: &str, role: Role| -> anyhow::Result<String> {
        let id = UserId::parse(name).context("user id")?;
        keys.issue(&id, role, TOKEN_TTL).context("minting a token")
    };
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let base = format!("loadgen-{}", &suffix[..12]);
    if args.users == 1 {
        let token = mint(&base, Role::User)?;
        return Ok(Credentials {
            submit: vec![token.clone()],
            read: token,
            user: Some(base),
        });
    }
    let submit = (0..args.users)
        .map(|i| mint(&format!("{base}-{i}"), Role::User))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Credentials {
        submit,
        read: mint(&format!("{base}-admin"), Role::Admin)?,
        user: Some(format!("{base}-0")),
    })
}

/// The secret an embedded-mode server generated: `$DATA_DIR/jwt_secret`, else
/// `./data/jwt_secret`.
fn read_embedded_secret() -> anyhow::Result<String> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("DATA_DIR").filter(|d| !d.is_empty()) {
        candidates.push(PathBuf::from(dir).join("jwt_secret"));
    }
    candidates.push(PathBuf::from("./data/jwt_secret"));
    for path in &candidates {
        if let Ok(s) = std::fs::read_to_string(path)
            && !s.trim().is_empty()
        {
            return Ok(s.trim().to_owned());
        }
    }
    bail!(
        "no credentials: pass --token or --jwt-secret (or set JWT_SECRET); none of {} is readable",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
