//! The Prometheus alert rules of seed 001 (`deploy/alerts.yaml`): valid for Prometheus, each
//! alert shown firing and quiet by promtool's unit tests (`deploy/alerts.test.yaml`), and
//! reading only metrics the service declares (`src/telemetry/metrics/`).

use std::collections::BTreeSet;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `promtool <args>` in the crate's root and panics with its output when it fails. Skips
/// (returns) when promtool is not installed, except under `CI`, where that fails (`.ci/run`
/// installs Debian's `prometheus` package).
fn promtool(args: &[&str]) {
    let out = match Command::new("promtool")
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: promtool not installed");
            return;
        }
        Err(e) => panic!("promtool is missing (CI installs Debian's prometheus package): {e}"),
    };
    assert!(
        out.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text of every `expr:` in a rule file, one-line or block (`expr: |` and the lines
/// indented below it).
fn expressions(yaml: &str) -> String {
    let mut out = String::new();
    let mut block_indent = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(key_indent) = block_indent {
            if line.trim().is_empty() || indent > key_indent {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block_indent = None;
        }
        if let Some(expr) = line.trim_start().strip_prefix("expr:") {
            if expr.trim() == "|" {
                block_indent = Some(indent);
            } else {
                out.push_str(expr);
                out.push('\n');
            }
        }
    }
    out
}

/// Every `ais_…` identifier in `text`.
fn ais_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("ais_"))
        .map(str::to_owned)
        .collect()
}

/// The metric names declared in `src/telemetry/metrics/` (`pub const X: &str = "ais_…";`).
fn declared_names() -> BTreeSet<String> {
    let mut code = String::new();
    for file in fs::read_dir(root().join("src/telemetry/metrics")).unwrap() {
        code += &fs::read_to_string(file.unwrap().path()).unwrap();
    }
    code.lines()
        .filter_map(|line| line.trim().strip_prefix("pub const ")?.split_once('"'))
        .filter_map(|(_, rest)| Some(rest.split_once('"')?.0.to_owned()))
        .filter(|name| name.starts_with("ais_"))
        .collect()
}

#[test]
fn the_rules_pass_promtool_check() {
    promtool(&["check", "rules", "deploy/alerts.yaml"]);
}

#[test]
fn each_alert_fires_above_its_threshold_and_not_below() {
    promtool(&["test", "rules", "deploy/alerts.test.yaml"]);
}

#[test]
fn the_rules_read_only_metrics_the_service_declares() {
    let rules = fs::read_to_string(root().join("deploy/alerts.yaml")).unwrap();
    let used = ais_names(&expressions(&rules));
    // The parse found the one-line and the block expressions.
    for sure in ["ais_queue_depth", "ais_provider_requests_total"] {
        assert!(
            used.contains(sure),
            "{sure} not found in deploy/alerts.yaml: {used:?}"
        );
    }
    let declared = declared_names();
    // A histogram is declared once and scraped as `_bucket`, `_sum` and `_count` series.
    let is_declared = |name: &str| {
        declared.contains(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|base| declared.contains(base))
            })
    };
    let unknown: Vec<&String> = used.iter().filter(|name| !is_declared(name)).collect();
    assert!(
        unknown.is_empty(),
        "deploy/alerts.yaml reads metrics that src/telemetry/metrics/ does not declare: \
         {unknown:?}\ndeclared: {declared:?}"
    );
}
