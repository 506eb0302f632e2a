#!/usr/bin/env python3
"""Pipeline benchmark (issue 23's targets), against a running service.

  1. one session of 100 items x 5 stages, each stage an echo task of 50 ms, at most 8 stages
     of the session at once: ideal 100 * 5 * 50 ms / 8 = 3.125 s;
  2. 20 such sessions at once: ideal 20 * 100 * 5 * 50 ms / pool size;
  3. first stage result on the session's SSE stream after the create call (50 ms stage).

Start the service with the stage definitions this script writes (and print):

  python3 scripts/pipelinebench.py --write-definitions /tmp/bench-pipelines.json
  PIPELINES_FILE=/tmp/bench-pipelines.json WORKER_POOL_SIZE=16 ADAPTIVE_POOL=false MAX_ACTIVE_TASKS_PER_USER=0 \
    ENABLE_ECHO=true RUST_LOG=warn target/release/ai-integration-service &
  python3 scripts/pipelinebench.py --base http://127.0.0.1:8080 --token "$(... token --user bench)" --pool 16

ADAPTIVE_POOL=false keeps the pool at its size: on a busy machine the adaptive limit lowers it
(CPU over 70 %), and the 20-session figure then measures the machine, not the scheduler
(51.8 s with it on, 33.0 s off, 2026-12-03). Only the standard library is used.
"""

import argparse
import http.client
import json
import statistics
import threading
import time
import urllib.parse
import urllib.request

DEFINITIONS = {
    "pipelines": [
        {
            "name": "bench",
            "description": "5 echo stages of 50 ms: a -> (b, c) -> d -> e",
            "stages": [
                {"name": "a", "task_type": "echo", "payload": {"delay_ms": 50, "x": "{{item.name}}"}},
                {"name": "b", "task_type": "echo", "needs": ["a"], "payload": {"delay_ms": 50}},
                {"name": "c", "task_type": "echo", "needs": ["a"], "payload": {"delay_ms": 50}},
                {"name": "d", "task_type": "echo", "needs": ["b", "c"], "payload": {"delay_ms": 50}},
                {"name": "e", "task_type": "echo", "needs": ["d"], "payload": {"delay_ms": 50}},
            ],
        }
    ]
}


def request(base, token, method, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + token)
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def create(base, token, n, prefix):
    items = [{"id": f"{prefix}{i}", "name": f"dish {i}"} for i in range(n)]
    return request(base, token, "POST", "/api/v1/pipelines/bench/sessions", {"items": items})["session_id"]


def wait_done(base, token, session, started):
    """Follows the session's SSE stream until PipelineSessionDone; returns (seconds, status)."""
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    conn.request("GET", f"/api/v1/pipeline-sessions/{session}/events",
                 headers={"Authorization": "Bearer " + token})
    resp = conn.getresponse()
    event = None
    while True:
        line = resp.readline().decode()
        if not line:
            raise RuntimeError("stream ended")
        line = line.rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event == "PipelineSessionDone":
            status = json.loads(line[5:])["data"]["status"]
            conn.close()
            return time.monotonic() - started, status


def first_result(base, token):
    """Milliseconds from the create call to the first PipelineStageResult on the SSE stream."""
    started = time.monotonic()
    session = create(base, token, 1, "f")
    url = urllib.parse.urlparse(base)
    conn = http.client.HTTPConnection(url.hostname, url.port)
    conn.request("GET", f"/api/v1/pipeline-sessions/{session}/events",
                 headers={"Authorization": "Bearer " + token})
    resp = conn.getresponse()
    while True:
        line = resp.readline().decode()
        if line.startswith("event: PipelineStageResult") or line.startswith("event:PipelineStageResult"):
            ms = (time.monotonic() - started) * 1000
            conn.close()
            return ms


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--write-definitions")
    p.add_argument("--base", default="http://127.0.0.1:8080")
    p.add_argument("--token")
    p.add_argument("--pool", type=int, default=16, help="the service's WORKER_POOL_SIZE")
    p.add_argument("--sessions", type=int, default=20)
    a = p.parse_args()
    if a.write_definitions:
        with open(a.write_definitions, "w") as f:
            json.dump(DEFINITIONS, f)
        print("wrote", a.write_definitions)
        return

    ideal_one = 100 * 5 * 0.050 / 8
    started = time.monotonic()
    secs, status = wait_done(a.base, a.token, create(a.base, a.token, 100, "s"), started)
    print(f"1 session, 100 items x 5 stages @ 50 ms, 8 at once: {secs:.2f} s ({status}); "
          f"ideal {ideal_one:.3f} s; {100 * (secs / ideal_one - 1):+.1f} %")

    slots = min(a.pool, 8 * a.sessions)
    ideal_many = a.sessions * 100 * 5 * 0.050 / slots
    results = [None] * a.sessions
    started = time.monotonic()
    ids = [create(a.base, a.token, 100, f"p{i}-") for i in range(a.sessions)]

    def follow(i):
        results[i] = wait_done(a.base, a.token, ids[i], started)

    threads = [threading.Thread(target=follow, args=(i,)) for i in range(a.sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last = max(r[0] for r in results)
    print(f"{a.sessions} sessions at once on a pool of {a.pool}: all done in {last:.2f} s "
          f"(first {min(r[0] for r in results):.2f} s); ideal {ideal_many:.3f} s; "
          f"{100 * (last / ideal_many - 1):+.1f} %; statuses {sorted(set(r[1] for r in results))}")

    firsts = [first_result(a.base, a.token) for _ in range(20)]
    print(f"first stage result after create (50 ms stage), 20 runs: median "
          f"{statistics.median(firsts):.1f} ms, max {max(firsts):.1f} ms")


if __name__ == "__main__":
    main()
