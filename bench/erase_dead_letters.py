"""Cost of the dead-letter scan of an erasure: N dead letters, 1 % of them the person's.

    .venv/bin/python bench/erase_dead_letters.py [--dead 20000] [--json]

Starts redis-server, fills ``facegrid:events:dead`` with ``--dead`` dead letters
as the worker writes them (full v2 entries with their 2 KiB embedding), 1 % of
them faces of one enrolled person, and times
:func:`facegrid_services.dead_letters.erase` (XRANGE pages of 500, XDEL).  Prints
the dead letters scanned per second, the scan time and how many were deleted.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import redis
from facegrid_services import dead_letters
from facegrid_services.worker.commit import dead_letter_fields

from facegrid import keys

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fixtures.synthetic import EventFactory, near, unit_vectors
from worker import start_redis


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dead", type=int, default=20_000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    face = unit_vectors(1, rng)[0]
    others = unit_vectors(64, rng)
    cam = EventFactory("cam-1", "token-" + "x" * 600)  # a node token is ~700 bytes
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_redis(Path(tmp))
        try:
            r = redis.Redis.from_url(url)
            pipe = r.pipeline(transaction=False)
            mine = 0
            for i in range(args.dead):
                if i % 100 == 0:
                    emb, mine = near(face, rng, 0.02), mine + 1
                else:
                    emb = near(others[i % len(others)], rng, 0.02)
                pipe.xadd(keys.DEAD_LETTER_STREAM,
                          dead_letter_fields(f"{i + 1}-0", cam.entry(emb), "token_expired", "x"))
                if len(pipe) >= 1000:
                    pipe.execute()
            pipe.execute()
            mem = int(r.memory_usage(keys.DEAD_LETTER_STREAM) or 0)
            traces = dead_letters.Traces("person 1", embeddings={cam.model: face[None, :]})
            t0 = time.perf_counter()
            deleted = dead_letters.erase(r, traces, threshold=0.58)
            seconds = time.perf_counter() - t0
        finally:
            proc.terminate()
            proc.wait(10)
    out = {"dead_letters": args.dead, "stream_mib": round(mem / 2**20, 1),
           "scan_s": round(seconds, 2), "per_s": round(args.dead / seconds),
           "deleted": deleted, "expected": mine}
    print(json.dumps(out) if args.json else
          f"{args.dead} dead letters ({out['stream_mib']} MiB): erasure scan {seconds:.2f} s "
          f"({out['per_s']}/s), deleted {deleted} of {mine}")


if __name__ == "__main__":
    main()
