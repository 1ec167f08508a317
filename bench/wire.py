"""Decode + verify throughput of the wire format on one core.

    .venv/bin/python bench/wire.py [--events N]

Times are CPU time of this process (process_time), pinned to one core, so
other load on the machine does not distort them.  Prints events/s for
facegrid.wire.decode followed by TokenVerifier.verify with
a cached token (the worker's hot path; target ≥50,000/s on one core), and the
cost of a first, uncached verify (one Ed25519 signature check).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

import numpy as np

from facegrid import clock, tokens, wire


def make_entries(n: int, token: str) -> list[dict[bytes, bytes]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        emb = rng.normal(size=512).astype("<f4")
        emb /= np.linalg.norm(emb)
        p = wire.EventPayload(event_id=clock.uuid7(), node_id="cam-01", lamport=i, track_id=i,
                              box=(10, 20, 110, 140), det_confidence=0.99,
                              quality=wire.Quality(120.0, 80.0), model="facenet-casia-webface",
                              **clock.event_times(datetime.now(UTC), 3.5, "Europe/Paris"))
        # As redis-py hands them to the worker: bytes keys and values.
        out.append({k.encode(): v for k, v in wire.encode(p, token, emb).items()})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=50_000)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    key = tokens.generate_private_key()
    token = tokens.issue_token(key, "cam-01")
    entries = make_entries(args.events, token)
    verifier = tokens.TokenVerifier(key.public_key())
    verifier.verify(token, "cam-01")  # warm the cache, as a running worker has

    best = 0.0
    for _ in range(3):
        t0 = time.process_time()
        for e in entries:
            ev = wire.decode(e)
            verifier.verify(ev.token, ev.payload.node_id)
        best = max(best, len(entries) / (time.process_time() - t0))
    t0 = time.process_time()
    for e in entries:
        wire.decode(e)
    decode_only = len(entries) / (time.process_time() - t0)

    n_uncached = 500
    toks = [tokens.issue_token(key, "cam-01") for _ in range(n_uncached)]
    t0 = time.process_time()
    for t in toks:
        tokens.TokenVerifier(key.public_key()).verify(t, "cam-01")
    uncached_us = (time.process_time() - t0) / n_uncached * 1e6
    t0 = time.process_time()
    for _ in range(100_000):
        verifier.verify(token, "cam-01")
    cached_us = (time.process_time() - t0) / 100_000 * 1e6

    print(f"{'metric':<40} {'value':>12}")
    print(f"{'decode+verify, cached token (events/s)':<40} {best:>12,.0f}   target >= 50,000")
    print(f"{'decode only (events/s)':<40} {decode_only:>12,.0f}")
    print(f"{'verify, cached token (us)':<40} {cached_us:>12.2f}")
    print(f"{'verify, first/uncached (us)':<40} {uncached_us:>12.1f}")


if __name__ == "__main__":
    main()
