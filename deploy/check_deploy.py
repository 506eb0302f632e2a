#!/usr/bin/env python3
"""Checks the delivery files for what Cloud Run and Cloud Build require, and for agreement with
the service (run by tests/delivery.rs; no kubeconform or gcloud installs here).

- deploy/cloudrun-service.yaml: a Knative v1 Service with one container, an image, the port the
  image listens on with a protocol name that keeps browser WebSockets working, concurrency and
  timeout in Cloud Run's ranges, probes on routes the service serves, every env var one the
  service reads, every secret reference complete.
- cloudbuild.yaml, deploy/cloudbuild-release.yaml: steps with names and unique ids, the whole
  test suite run (not `--lib`), and every `$NAME` either a substitution Cloud Build knows or
  escaped as `$$` for the shell (an unknown one fails the build at submission).
- deploy/triggers.yaml: each trigger names an existing build file; releases need approval.

Prints every problem and exits 1 when there is any.
"""

import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROBLEMS = []

# Substitutions Cloud Build provides itself.
BUILT_IN = {
    "PROJECT_ID", "PROJECT_NUMBER", "BUILD_ID", "LOCATION", "COMMIT_SHA", "SHORT_SHA",
    "REVISION_ID", "BRANCH_NAME", "TAG_NAME", "REPO_NAME", "REPO_FULL_NAME", "TRIGGER_NAME",
    "TRIGGER_BUILD_CONFIG_PATH", "SERVICE_ACCOUNT", "SERVICE_ACCOUNT_EMAIL",
}


def problem(where, what):
    PROBLEMS.append(f"{where}: {what}")


def load(path):
    with open(ROOT / path, encoding="utf-8") as f:
        return list(yaml.safe_load_all(f))


def config_vars():
    """Every environment variable name the service reads: quoted upper-case names in src/config."""
    names = set()
    for path in (ROOT / "src").glob("config*.rs"):
        names |= set(re.findall(r'"([A-Z][A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    for path in (ROOT / "src" / "config").glob("*.rs"):
        names |= set(re.findall(r'"([A-Z][A-Z0-9_]+)"', path.read_text(encoding="utf-8")))
    return names


def routes():
    text = (ROOT / "src" / "api" / "http" / "mod.rs").read_text(encoding="utf-8")
    return set(re.findall(r'\.route\(\s*"([^"]+)"', text))


def exposed_port():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    found = re.findall(r"^EXPOSE\s+(\d+)", text, re.M)
    return int(found[-1]) if found else None


def check_service():
    where = "deploy/cloudrun-service.yaml"
    (svc,) = load(where)
    if svc.get("apiVersion") != "serving.knative.dev/v1" or svc.get("kind") != "Service":
        problem(where, "must be apiVersion serving.knative.dev/v1, kind Service")
    if not svc.get("metadata", {}).get("name"):
        problem(where, "metadata.name is required")
    template = svc.get("spec", {}).get("template", {})
    annotations = template.get("metadata", {}).get("annotations", {})
    lo = int(annotations.get("autoscaling.knative.dev/minScale", "0"))
    hi = int(annotations.get("autoscaling.knative.dev/maxScale", "100"))
    if lo > hi:
        problem(where, f"minScale {lo} is above maxScale {hi}")
    spec = template.get("spec", {})
    if not 1 <= int(spec.get("containerConcurrency", 80)) <= 1000:
        problem(where, "containerConcurrency must be 1-1000")
    if not 1 <= int(spec.get("timeoutSeconds", 300)) <= 3600:
        problem(where, "timeoutSeconds must be 1-3600")
    containers = spec.get("containers", [])
    if len(containers) != 1:
        problem(where, "exactly one container")
        return
    (c,) = containers
    if not c.get("image"):
        problem(where, "the container needs an image")
    ports = c.get("ports", [])
    if len(ports) != 1:
        problem(where, "exactly one port")
    else:
        if ports[0].get("name") != "http1":
            problem(where, "the port must be named http1 (h2c breaks browser WebSockets)")
        if ports[0].get("containerPort") != exposed_port():
            problem(where, f"containerPort must be the Dockerfile's EXPOSE {exposed_port()}")
    limits = c.get("resources", {}).get("limits", {})
    if "cpu" not in limits or "memory" not in limits:
        problem(where, "resources.limits needs cpu and memory")
    known = config_vars()
    for env in c.get("env", []):
        name = env.get("name")
        if name not in known:
            problem(where, f"env {name} is not a variable the service reads")
        ref = env.get("valueFrom", {}).get("secretKeyRef")
        if ref is not None and not (ref.get("name") and ref.get("key")):
            problem(where, f"env {name}: secretKeyRef needs name and key")
        if ref is None and "value" not in env:
            problem(where, f"env {name}: needs a value or a secretKeyRef")
    served = routes()
    for probe in ("startupProbe", "livenessProbe"):
        path = c.get(probe, {}).get("httpGet", {}).get("path")
        if path not in served:
            problem(where, f"{probe} path {path} is not a route the service serves")


def check_build(where, tests):
    (build,) = load(where)
    steps = build.get("steps", [])
    ids = [s.get("id") for s in steps if s.get("id")]
    if len(ids) != len(set(ids)):
        problem(where, "step ids must be unique")
    for s in steps:
        if not s.get("name"):
            problem(where, f"step {s.get('id')} needs a builder image (name)")
    user = set(build.get("substitutions", {}))
    for key in user:
        if not key.startswith("_"):
            problem(where, f"user substitution {key} must start with _")
    text = (ROOT / where).read_text(encoding="utf-8")
    # `$$` is a literal dollar for the shell; otherwise `$NAME` / `${NAME}` must be known.
    for m in re.finditer(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))", text):
        name = m.group(1) or m.group(2)
        line = text.count("\n", 0, m.start()) + 1
        if text[max(0, m.start() - 1)] == "$":
            continue
        if name not in BUILT_IN and name not in user:
            problem(where, f"line {line}: ${name} is no substitution (write $${name} for the shell)")
    if tests:
        runs = " ".join(str(a) for s in steps for a in s.get("args", []))
        if "cargo test" not in runs or "--lib" in runs:
            problem(where, "must run the whole test suite (cargo test, not --lib)")


def check_triggers():
    where = "deploy/triggers.yaml"
    for t in load(where):
        if not t:
            continue
        name = t.get("name", "?")
        if not (ROOT / t.get("filename", "")).is_file():
            problem(where, f"{name}: filename {t.get('filename')} does not exist")
        if "release" in name and not t.get("approvalConfig", {}).get("approvalRequired"):
            problem(where, f"{name}: a release needs approvalConfig.approvalRequired")


def main():
    check_service()
    check_build("cloudbuild.yaml", tests=True)
    check_build("deploy/cloudbuild-release.yaml", tests=False)
    check_triggers()
    for p in PROBLEMS:
        print(p)
    return 1 if PROBLEMS else 0


if __name__ == "__main__":
    sys.exit(main())
