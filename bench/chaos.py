"""Chaos: N events from 4 nodes while the worker is SIGKILLed 3 times and Redis restarted once.

Real parts only: redis-server (AOF, fsync always), SQLite, `facegrid worker` processes,
and the node's own `RedisPublisher` (buffer, retry, drop-by-age counted) in 4 sender
threads built like nodes (synthetic embeddings of 20 enrolled people and strangers).
Prints one table: sent, stored, dead-lettered, lost (target 0), duplicated (target 0),
dropped by the nodes (counted), recovery time, Redis peak memory.

    python bench/chaos.py --events 20000 --rate 1000
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

log = logging.getLogger("bench.chaos")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    def __init__(self, workdir: Path, password: str) -> None:
        self.workdir, self.password, self.port = workdir, password, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--requirepass", self.password, "--dir", str(self.workdir), "--appendonly", "yes",
             "--appendfsync", "always", "--save", "", "--maxmemory", "1gb",
             "--maxmemory-policy", "noeviction"],
            stdout=(self.workdir / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                client.ping()
                return
            except (redis.ConnectionError, redis.BusyLoadingError):
                time.sleep(0.05)
        raise RuntimeError("redis did not start")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--rate", type=float, default=1000.0, help="events/s over all 4 nodes")
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if not shutil.which("redis-server"):
        sys.exit("redis-server is not installed")

    from facegrid_node.publisher import RedisPublisher
    from facegrid_services.store import db, repo
    from facegrid_services.store.models import Embedding, Person, Sighting
    from fixtures.synthetic import EventFactory, near, unit_vectors
    from sqlalchemy import func, select

    from facegrid import keys, tokens, wire

    tmp = Path(tempfile.mkdtemp(prefix="facegrid-chaos-"))
    (tmp / "redis").mkdir()
    rs = Redis(tmp / "redis", "chaos-password")
    rs.start()
    url = f"sqlite:///{tmp / 'facegrid.db'}"
    repo.migrate_locked(url)
    engine = db.make_engine(url)
    key = tokens.generate_private_key()
    (tmp / "signing.pub").write_bytes(tokens.public_pem(key))
    rng = np.random.default_rng(0)
    centres = unit_vectors(20, rng)
    with db.session_factory(engine)() as s:
        for i, c in enumerate(centres):
            p = Person(name=f"p{i}")
            s.add(p)
            s.flush()
            for _ in range(3):
                e = near(c, rng)
                s.add(Embedding(person_id=p.id, model="facenet-casia-webface",
                                vector=e.tobytes(), image_hash=hashlib.sha256(e.tobytes())
                                .hexdigest()))
        s.commit()

    env = {**os.environ, "FACEGRID_REDIS_URL": rs.url, "FACEGRID_DATABASE_URL": url,
           "FACEGRID_PUBLIC_KEY_FILE": str(tmp / "signing.pub"), "FACEGRID_METRICS_PORT": "0",
           "FACEGRID_MIGRATE": "false", "FACEGRID_CLAIM_IDLE_MS": "2000",
           "FACEGRID_RECLAIM_INTERVAL_S": "1", "FACEGRID_LOG_LEVEL": "WARNING",
           "FACEGRID_STALE_CONSUMER_S": "10", "FACEGRID_TRIM_INTERVAL_S": "1"}
    env.pop("FACEGRID_CONSUMER", None)  # a new consumer per process: take-over by XAUTOCLAIM
    exe = str(Path(sys.executable).parent / "facegrid")
    wlog = (tmp / "worker.log").open("ab")

    def start_worker() -> subprocess.Popen:
        return subprocess.Popen([exe, "worker"], env=env, stdout=wlog, stderr=subprocess.STDOUT)

    worker = start_worker()
    sent_ids: list[set[str]] = [set() for _ in range(4)]
    pubs: list[RedisPublisher] = []
    per_node = args.events // 4
    interval = 4.0 / args.rate
    stop_mem = threading.Event()
    peak = [0]

    def watch_memory() -> None:
        c = redis.Redis.from_url(rs.url, socket_timeout=1)
        while not stop_mem.is_set():
            try:
                peak[0] = max(peak[0], int(c.info("memory")["used_memory"]))
            except redis.RedisError:
                c = redis.Redis.from_url(rs.url, socket_timeout=1)
            stop_mem.wait(0.2)

    def sender(i: int) -> None:
        node = EventFactory(f"cam-{i}", tokens.issue_token(key, f"cam-{i}"))
        pub = RedisPublisher(rs.url, buffer_size=per_node, max_age_s=300, backoff_max_s=0.5)
        pubs.append(pub)
        r = np.random.default_rng(i + 1)
        t_next = time.monotonic()
        for _ in range(per_node):
            who = int(r.integers(20)) if r.random() < 0.8 else None
            emb = near(centres[who], r) if who is not None else unit_vectors(1, r)[0]
            payload = node.payload()
            pub.publish(wire.encode(payload, node.token, emb))
            sent_ids[i].add(payload.event_id)
            t_next += interval
            time.sleep(max(0.0, t_next - time.monotonic()))
        pub.flush(120)

    threading.Thread(target=watch_memory, daemon=True).start()
    t0 = time.monotonic()
    threads = [threading.Thread(target=sender, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    duration = args.events / args.rate
    faults: list[tuple[str, float]] = []
    schedule = [(0.2, "kill"), (0.4, "kill"), (0.55, "redis"), (0.75, "kill")]
    for at, what in schedule:
        time.sleep(max(0.0, t0 + at * duration - time.monotonic()))
        if what == "kill":
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            log.info("worker SIGKILLed at %.1f s", time.monotonic() - t0)
            time.sleep(0.5)
            worker = start_worker()
        else:
            rs.kill()
            log.info("redis SIGKILLed at %.1f s", time.monotonic() - t0)
            time.sleep(1.0)
            rs.start()
            log.info("redis back at %.1f s", time.monotonic() - t0)
        faults.append((what, time.monotonic()))
    for t in threads:
        t.join()
    sent_done = time.monotonic()
    admin = redis.Redis.from_url(rs.url)
    all_ids = set().union(*sent_ids)
    sent = sum(p.sent for p in pubs)
    dropped = sum(p.dropped for p in pubs)

    def counts() -> tuple[int, int]:
        with engine.connect() as c:
            stored = c.execute(select(func.count()).select_from(Sighting)).scalar_one()
        return stored, admin.xlen(keys.DEAD_LETTER_STREAM)

    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        stored, dead = counts()
        if stored + dead >= len(all_ids) - dropped:
            break
        time.sleep(0.2)
    drained = time.monotonic()
    trim_deadline = time.monotonic() + 15
    while admin.xlen(keys.EVENTS_STREAM) and time.monotonic() < trim_deadline:
        time.sleep(0.2)
    added = int(admin.xinfo_stream(keys.EVENTS_STREAM)["entries-added"])
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    stop_mem.set()
    with engine.connect() as c:
        stored_ids = [r[0] for r in c.execute(select(Sighting.event_id))]
    dead_ids = set()
    for _, f in admin.xrange(keys.DEAD_LETTER_STREAM):
        with contextlib.suppress(wire.WireError):
            dead_ids.add(wire.decode(f).payload.event_id)
    stored_set = set(stored_ids)
    lost = len(all_ids - stored_set - dead_ids) - dropped
    duplicated = (len(stored_ids) - len(stored_set)) + len(stored_set & dead_ids)
    pending = admin.xpending(keys.EVENTS_STREAM, keys.WORKER_GROUP)["pending"]
    rows = [
        ("events generated (4 nodes)", f"{len(all_ids)}"),
        ("sent (XADD acknowledged by Redis)", f"{sent}"),
        ("dropped by the nodes (counted)", f"{dropped}"),
        ("stream entries added (re-sent after the Redis crash)",
         f"{added} ({added - len(all_ids)} re-sent, stored once)"),
        ("stored (sightings)", f"{len(stored_set)}"),
        ("dead-lettered", f"{len(dead_ids)}"),
        ("lost", f"{lost}"),
        ("duplicated", f"{duplicated}"),
        ("faults", "worker SIGKILL x3, Redis SIGKILL + restart x1"),
        ("send phase", f"{sent_done - t0:.1f} s at {args.rate:.0f} events/s"),
        ("recovery: last fault -> all stored", f"{drained - faults[-1][1]:.1f} s"),
        ("drained after the last send", f"{drained - sent_done:.1f} s"),
        ("pending at the end", f"{pending}"),
        ("stream length at the end (trimmed)", f"{admin.xlen(keys.EVENTS_STREAM)}"),
        ("Redis peak used_memory", f"{peak[0] / 2**20:.1f} MiB"),
        ("load average (1 min) at the end", f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"),
    ]
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    engine.dispose()
    rs.proc.terminate()
    rs.proc.wait(10)
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"kept {tmp}")
    if lost or duplicated:
        sys.exit(1)


if __name__ == "__main__":
    main()
