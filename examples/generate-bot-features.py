#!/usr/bin/env python3
"""Write a Holdfast bot feature file (and optionally sign it).

Usage:
    generate-bot-features.py OUT.json                   # the built-in weights, version = now
    generate-bot-features.py OUT.json --from in.json    # re-stamp another file's weights
    generate-bot-features.py OUT.json --key gen.pem     # also write OUT.json.sig (ed25519)
    generate-bot-features.py OUT.json --double          # every entry twice: the 18 Nov 2025
                                                        # failure, for testing rejection
    generate-bot-features.py OUT.json --fill 120        # pad to 120 entries with zero-weight
                                                        # header:x-fill-N entries (with --double:
                                                        # 240 entries, over the 200 capacity)

The version is the current unix time, so every run is newer than the last (Holdfast applies a
file only if its version is newer than the active one). The file is written to a temporary
name and renamed into place, so the edge never sees half a file; the signature is written
first, so it is already there when the file changes.

Signing needs the `cryptography` package (pip install cryptography). With --key, a missing key
file is created (PKCS#8 PEM, mode 0600) and the public key to configure is printed:

    [modules.bot]
    public_key = "<base64 of the 32-byte public key>"

The signature file holds the base64 of the 64-byte ed25519 signature over the exact bytes of
OUT.json. Check a file offline with `holdfast check --kind bot-features OUT.json`.

Format (fixed): {"version": <u64 >= 1>, "bias": <float>, "features": [{"name", "weight"}, ...]};
at most 200 entries, each name once, |weight| and |bias| <= 1000. Names: the fixed features
(header_count, ua_is_browser, ...) and the families header:<name>, ua_contains:<token>,
path_prefix:/<prefix> (see crates/holdfast-bot/src/features.rs).
"""

import argparse
import base64
import json
import os
import sys
import time

BIAS = -2.0
FEATURES = [
    ("header_count", 0.08),
    ("header_order_browser", 1.0),
    ("ua_is_browser", 2.0),
    ("ua_is_tool", -3.0),
    ("ua_missing", -2.5),
    ("ua_length", 0.3),
    ("has_accept", 0.2),
    ("has_accept_language", 2.0),
    ("has_accept_encoding", 0.6),
    ("has_sec_fetch", 1.0),
    ("has_sec_ch_ua", 0.5),
    ("http2", 0.4),
    ("http1_0", -1.5),
    ("method_get", 0.1),
    ("has_cookie", 0.6),
    ("has_referer", 0.4),
    ("accept_is_wildcard", -0.8),
    ("path_depth", 0.05),
    ("query_length", -0.1),
    ("client_rate", -0.5),
    ("tls", 0.3),
    ("header:upgrade-insecure-requests", 0.4),
    ("ua_contains:bot", -1.5),
    ("ua_contains:headless", -2.5),
    ("ua_contains:python", -1.0),
    ("path_prefix:/wp-login.php", -1.0),
    ("path_prefix:/.env", -2.0),
]


def load_key(path):
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    except ImportError:
        sys.exit("--key needs the cryptography package: pip install cryptography")
    if not os.path.exists(path):
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        print(f"created {path}", file=sys.stderr)
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    print(f'public_key = "{base64.b64encode(public).decode()}"', file=sys.stderr)
    return key


def write_atomic(path, data):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the feature file to write")
    ap.add_argument("--from", dest="source", help="take bias and features from this file")
    ap.add_argument("--key", help="ed25519 private key (PEM) to sign with; created if missing")
    ap.add_argument("--fill", type=int, default=0, help="pad to this many entries (weight 0)")
    ap.add_argument("--double", action="store_true", help="list every entry twice (a bad file)")
    args = ap.parse_args()

    if args.source:
        with open(args.source, encoding="utf-8") as f:
            src = json.load(f)
        bias, features = src["bias"], src["features"]
    else:
        bias = BIAS
        features = [{"name": n, "weight": w} for n, w in FEATURES]
    for i in range(len(features), args.fill):
        features.append({"name": f"header:x-fill-{i}", "weight": 0.0})
    if args.double:
        features = [e for e in features for _ in (0, 1)]

    doc = {"version": int(time.time()), "bias": bias, "features": features}
    data = (json.dumps(doc, indent=1) + "\n").encode("utf-8")

    if args.key:
        key = load_key(args.key)
        write_atomic(args.out + ".sig", base64.b64encode(key.sign(data)) + b"\n")
    write_atomic(args.out, data)
    print(f"wrote {args.out}: version {doc['version']}, {len(features)} features", file=sys.stderr)


if __name__ == "__main__":
    main()
