#!/usr/bin/env python3
"""Writes the seed inputs of each fuzz target into fuzz/corpus/<target>/ (seed-*.bin).

Realistic inputs: the request payloads of the API tests, the wire formats the fake providers
of tests/support/fake_providers.rs speak, tokens signed with the test keys of
tests/fixtures/jwks. The first byte of an input picks a variant (see src/fuzzing/).
Run from the repository root: python3 fuzz/seed.py
"""

import base64
import hashlib
import hmac
import json
import os
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")

# Must match src/fuzzing/jwt.rs.
SECRETS = ["fuzzing-secret-current-0123456789", "fuzzing-secret-previous-0123456789"]
ISSUER = "https://issuer.example"
AUDIENCE = "ai-integration-service"
FAR = 4102444800  # 2100-01-01


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"seed-{name}.bin"), "wb") as f:
        f.write(data)


def js(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":")).encode()


PAYLOADS = [
    ("echo", {"text": "hello", "delay_ms": 20}),
    ("echo", {"fail_times": 1}),
    ("summarize", {"text": "A text.", "length": "short", "max_tokens": 100}),
    ("extract_content", {"url": "https://example.com/a"}),
    ("validate_summary", {"original": "o", "summary": "s"}),
    ("item_info_generation", {"item": "serendipity", "language": "en", "cache": False}),
    ("image_generation", {"prompt": "a cat", "style": "watercolor"}),
    ("image_generation", {"prompt": "mountains", "source": "search", "count": 2}),
    ("test_customization", {"items": ["a"], "instruction": "easy"}),
    ("prompt", {"prompt": "Translate: 唐揚げ", "schema": {"type": "object", "properties": {"word": {"type": "string"}}}}),
    ("echo", {"delay_ms": "soon"}),
]


def http_json():
    for i, (t, p) in enumerate(PAYLOADS):
        body = {"type": t, "payload": p}
        if i % 3 == 0:
            body.update(priority=7, idempotency_key=f"key-{i}", timeout_seconds=60)
        if i % 4 == 1:
            body.update(related_entity_type="item", related_entity_id="42")
        write("http_json", f"submit-{i}", b"0" + js(body))
    batch = {"tasks": [{"type": t, "payload": p} for t, p in PAYLOADS[:4]]}
    write("http_json", "batch", b"1" + js(batch))
    write("http_json", "admin-submit", b"2" + js({"type": "echo", "payload": {}, "priority": 10}))
    write("http_json", "unknown-field", b"0" + js({"type": "echo", "payload": {}, "colour": "red"}))


# --- protobuf, by hand (the wire format is small) ---

def varint(n):
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 0:
        return key + varint(payload)
    if wire == 1:
        return key + payload
    return key + varint(len(payload)) + payload


def pb_value(v):
    if v is None:
        return field(1, 0, 0)
    if isinstance(v, bool):
        return field(4, 0, int(v))
    if isinstance(v, (int, float)):
        return field(2, 1, struct.pack("<d", float(v)))
    if isinstance(v, str):
        return field(3, 2, v.encode())
    if isinstance(v, dict):
        return field(5, 2, pb_struct(v))
    return field(6, 2, b"".join(field(1, 2, pb_value(x)) for x in v))


def pb_struct(d):
    return b"".join(field(1, 2, field(1, 2, k.encode()) + field(2, 2, pb_value(v))) for k, v in d.items())


def submit_task(t, p, priority=None, key=None, timeout=None):
    out = field(1, 2, t.encode()) + field(2, 2, pb_struct(p))
    if priority is not None:
        out += field(3, 0, priority)
    if key is not None:
        out += field(4, 2, key.encode())
    if timeout is not None:
        out += field(7, 0, timeout)
    return out


def grpc_request():
    for i, (t, p) in enumerate(PAYLOADS):
        msg = submit_task(t, p, 5 if i % 2 else None, f"k{i}" if i % 3 == 0 else None, 30 if i % 4 == 0 else None)
        write("grpc_request", f"submit-{i}", b"0" + msg)
    batch = b"".join(field(1, 2, submit_task(t, p)) for t, p in PAYLOADS[:4])
    write("grpc_request", "batch", b"1" + batch)
    listing = field(1, 0, 20) + field(2, 2, b"") + field(3, 0, 2) + field(4, 2, b"summarize")
    write("grpc_request", "list", b"2" + listing)
    write("grpc_request", "list-negative", b"2" + field(1, 0, -1))
    write("grpc_request", "admin-submit", b"3" + submit_task("echo", {}, 10))


# --- tokens ---

def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims, key, header=None):
    h = {"alg": "HS256", "typ": "JWT", "kid": hashlib.sha256(key.encode()).hexdigest()[:16]}
    if header is not None:
        h = header
    signing = f"{b64(js(h))}.{b64(js(claims))}"
    sig = hmac.new(key.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64(sig)}"


def openssl_sign(signing, pem, digest="-sha256"):
    return subprocess.run(["openssl", "dgst", digest, "-sign", pem], input=signing.encode(),
                          capture_output=True, check=True).stdout


def der_to_raw_ec(der):
    # ECDSA-Sig-Value ::= SEQUENCE { r INTEGER, s INTEGER } -> r || s (32 bytes each).
    i = 2
    out = b""
    for _ in range(2):
        assert der[i] == 2
        n = der[i + 1]
        v = der[i + 2:i + 2 + n].lstrip(b"\0")
        out += v.rjust(32, b"\0")
        i += 2 + n
    return out


def asym(alg, kid, claims, pem):
    signing = f"{b64(js({'alg': alg, 'typ': 'JWT', 'kid': kid}))}.{b64(js(claims))}"
    sig = openssl_sign(signing, pem)
    if alg == "ES256":
        sig = der_to_raw_ec(sig)
    return f"{signing}.{b64(sig)}"


def jwt():
    good = {"sub": "alice", "exp": FAR, "iat": 1700000000, "iss": ISSUER, "aud": AUDIENCE,
            "role": "user", "tier": "pro"}
    tokens = {
        "hs-current": hs256(good, SECRETS[0]),
        "hs-previous": hs256(good, SECRETS[1]),
        "hs-admin": hs256({**good, "role": "admin", "aud": [AUDIENCE, "other"]}, SECRETS[0]),
        "hs-expired": hs256({**good, "exp": 1000}, SECRETS[0]),
        "hs-not-yet": hs256({**good, "nbf": FAR - 10}, SECRETS[0]),
        "hs-wrong-aud": hs256({**good, "aud": "someone-else"}, SECRETS[0]),
        "hs-bad-tier": hs256({**good, "tier": "platinum"}, SECRETS[0]),
        "hs-no-kid": hs256(good, SECRETS[0], {"alg": "HS256", "typ": "JWT"}),
        "alg-none": f"{b64(js({'alg': 'none', 'typ': 'JWT'}))}.{b64(js(good))}.",
    }
    fixtures = os.path.join(ROOT, "tests", "fixtures", "jwks")
    try:
        tokens["rs256"] = asym("RS256", "rsa-1", good, os.path.join(fixtures, "rsa-private.pem"))
        tokens["es256"] = asym("ES256", "ec-1", good, os.path.join(fixtures, "ec-private.pem"))
        tokens["rs-unknown-kid"] = asym("RS256", "rsa-9", good, os.path.join(fixtures, "rsa-private.pem"))
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"no asymmetric seeds: {e}", file=sys.stderr)
    h, p, s = tokens["hs-current"].split(".")
    tokens["hs-tampered"] = f"{h}.{b64(js({**good, 'role': 'admin'}))}.{s}"
    for name, token in tokens.items():
        write("jwt", name, b"0" + token.encode())
    with open(os.path.join(fixtures, "jwks.json"), "rb") as f:
        write("jwt", "jwks", b"1" + f.read())


# --- provider answers, in the fake providers' wire formats ---

REPLY = ["Hello", " there,", " friend."]


def provider_body():
    text = "".join(REPLY)
    write("provider_body", "openai-chat", b"0" + js({
        "id": "chatcmpl-fake1", "object": "chat.completion", "created": 1700000000, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}, "system_fingerprint": "fp_fake"}))
    write("provider_body", "openai-refusal", b"0" + js({
        "model": "gpt-4o-mini", "choices": [{"message": {"content": None, "refusal": "I can't help with that."},
                                             "finish_reason": "stop"}]}))
    write("provider_body", "openai-images", b"1" + js({"created": 1700000000, "data": [
        {"url": "http://127.0.0.1/fake-images/1-0.png", "revised_prompt": "A picture of a cat"},
        {"b64_json": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="}]}))
    write("provider_body", "anthropic", b"2" + js({
        "id": "msg_fake1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 9, "output_tokens": 3}}))
    write("provider_body", "gemini", b"3" + js({
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12},
        "modelVersion": "gemini-2.0-flash", "responseId": "fake1"}))
    write("provider_body", "gemini-blocked", b"3" + js({"promptFeedback": {"blockReason": "SAFETY"}}))
    write("provider_body", "unsplash", b"4" + js({"total": 1, "total_pages": 1, "results": [{
        "id": "abc", "width": 4000, "height": 3000, "description": "Mountains", "alt_description": "snowy peaks",
        "urls": {"regular": "https://images.unsplash.com/photo-1?w=1080"},
        "links": {"html": "https://unsplash.com/photos/abc"}, "user": {"name": "A. Photographer"}}]}))
    write("provider_body", "key-echo", b"0" + b'{"choices":"sk-fuzz-canary-0123456789abcdef"}')


def provider_stream():
    def chunk(delta, finish):
        return {"id": "chatcmpl-fake1", "object": "chat.completion.chunk", "created": 1700000000,
                "model": "gpt-4o-mini", "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    frames = [chunk({"role": "assistant", "content": ""}, None)]
    frames += [chunk({"content": p}, None) for p in REPLY]
    frames.append(chunk({}, "stop"))
    last = chunk({}, None)
    last["choices"] = []
    last["usage"] = {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}
    frames.append(last)
    openai = b"".join(b"data: " + js(f) + b"\n\n" for f in frames) + b"data: [DONE]\n\n"
    write("provider_stream", "openai", b"0\x00" + openai)
    write("provider_stream", "openai-7", b"0\x07" + openai)
    write("provider_stream", "openai-error", b"0\x00" + b'data: {"error":{"message":"Overloaded","type":"server_error"}}\n\n')

    def event(name, data):
        return f"event: {name}\n".encode() + b"data: " + js(data) + b"\n\n"
    start = {"id": "msg_fake1", "type": "message", "role": "assistant", "model": "claude-3-5-haiku-latest",
             "content": [], "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}
    anth = event("message_start", {"type": "message_start", "message": start})
    anth += event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    anth += event("ping", {"type": "ping"})
    for p in REPLY:
        anth += event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}})
    anth += event("content_block_stop", {"type": "content_block_stop", "index": 0})
    anth += event("message_delta", {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": 3}})
    anth += event("message_stop", {"type": "message_stop"})
    write("provider_stream", "anthropic", b"1\x00" + anth)
    write("provider_stream", "anthropic-13", b"1\x0d" + anth)
    write("provider_stream", "anthropic-error", b"1\x00" + event("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))

    gem = b""
    for i, p in enumerate(REPLY):
        cand = {"content": {"parts": [{"text": p}], "role": "model"}, "index": 0}
        if i == len(REPLY) - 1:
            cand["finishReason"] = "STOP"
        gem += b"data: " + js({"candidates": [cand], "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": 3, "totalTokenCount": 12},
                               "modelVersion": "gemini-2.0-flash", "responseId": "fake1"}) + b"\r\n\r\n"
    write("provider_stream", "gemini", b"2\x00" + gem)
    write("provider_stream", "gemini-5", b"2\x05" + gem)


def extract_html():
    article = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>The Long Road Home</title>
<meta name="author" content="Jane Doe"><meta property="og:site_name" content="Example News">
<meta property="article:published_time" content="2026-11-30T08:00:00Z"></head>
<body><nav><a href="/">Home</a> <a href="/world">World</a></nav>
<article><h1>The Long Road Home</h1><p class="byline">By Jane Doe</p>
<p>After three years abroad, the travellers returned to a town that had changed more than they had expected.
The market square, once lined with stalls, now hosts a quiet garden and a library.</p>
<p>Residents say the change came slowly, one shop at a time, as rents rose and the old traders retired.
Many welcome the garden; others miss the noise and the smell of bread in the morning.</p>
<p>The council plans a weekly market from spring, a compromise that pleases almost everyone.</p></article>
<aside>Related: <a href="/b">Another story</a></aside><footer>&copy; Example News</footer></body></html>"""
    write("extract_html", "article", article.encode())
    write("extract_html", "empty-body", b"<html><head><title>x</title></head><body></body></html>")
    write("extract_html", "tables", b"<html><body><div><table><tr><td><p>One cell of text that is long enough to read as a paragraph, with commas, and more words.</p></td></tr></table></div><script>var x = 1;</script></body></html>")
    write("extract_html", "nested", b"<div><div><div><p>Deep <b>bold <i>italic</b> text</i></p></div><p>Second paragraph, with a <a href='/x'>link</a>.</p></div></div>")


def main():
    http_json()
    grpc_request()
    jwt()
    provider_body()
    provider_stream()
    extract_html()


if __name__ == "__main__":
    main()
