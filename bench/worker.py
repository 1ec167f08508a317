"""Classify-worker throughput, latency and memory against a real redis-server and SQLite.

    .venv/bin/python bench/worker.py [--events 20000] [--gallery 10000] [--rate 2000]

Starts its own redis-server (AOF on, fsync every second) and a SQLite store in
a temporary folder, enrolls a gallery of ``--gallery`` embeddings (5 per
person), then:

1. throughput: XADDs ``--events`` signed events from 4 nodes (80% enrolled
   people, 20% strangers) and measures how fast one worker (the same
   ``Worker.run`` loop as ``facegrid worker``) drains them: read, decode, verify,
   match (one matmul per batch), commit one transaction per batch, ack;
2. latency: a producer thread paces ``--rate`` events/s for ``--seconds`` and
   the time from XADD (stream id) to ack is recorded per event.

Prints sustained events/s (target >= 5,000 on 2 cores), p50/p99 latency and
resident memory (target <= 300 MB).  The machine's other load changes the wall
figures, so it also prints the worker thread's own CPU time per event
(``time.thread_time``), events per worker CPU-second, redis-server's CPU and
the load average; ``--profile`` adds a cProfile of the drain phase.

BLAS runs single-threaded, as in ``facegrid worker`` (faster for a 256×512 ·
512×P product than two threads fighting the rest of the pipeline for 2 cores).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads, as the CLI does

import argparse
import hashlib
import resource
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import redis
from facegrid_services.store import db, repo
from facegrid_services.store.models import Embedding, Person
from facegrid_services.worker.consumer import Worker
from facegrid_services.worker.settings import WorkerSettings
from facegrid_services.worker.synthetic import EventFactory, near, unit_vectors
from prometheus_client import REGISTRY

from facegrid import keys, tokens, wire


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
         "127.0.0.1", "--dir", str(workdir), "--appendonly", "yes", "--appendfsync",
         "everysec", "--save", ""], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.RedisError:
            time.sleep(0.05)
    return proc, f"redis://127.0.0.1:{port}/0"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def proc_cpu_s(pid: int) -> float:
    """user + system CPU seconds of another process (redis-server)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class TimedWorker(Worker):
    """Records, per acknowledged entry, its stream id time and the ack time."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.latencies: list[float] = []
        self.done = 0
        self.cpu_s = 0.0  # this thread's CPU time while in run()
        self.profile = None

    def run(self, stop) -> None:
        c0 = time.thread_time()
        try:
            if self.profile is not None:
                self.profile.runcall(super().run, stop)
            else:
                super().run(stop)
        finally:
            self.cpu_s += time.thread_time() - c0

    def process(self, entries):
        result = super().process(entries)
        now = time.time()
        self.latencies.extend(now - int(sid.split("-")[0]) / 1000 for sid, _ in entries)
        self.done += len(entries)
        return result


def enroll(engine, centres: np.ndarray, per: int, rng) -> None:
    with db.session_factory(engine)() as s:
        for i, c in enumerate(centres):
            p = Person(name=f"person-{i}")
            s.add(p)
            s.flush()
            for _ in range(per):
                v = near(c, rng)
                s.add(Embedding(person_id=p.id, model="facenet-casia-webface",
                                vector=v.tobytes(), image_hash=hashlib.sha256(v).hexdigest()))
        s.commit()


def make_entries(n: int, nodes: list[EventFactory], centres: np.ndarray, rng) -> list[dict]:
    out = []
    strangers = unit_vectors(max(1, n // 5), rng)
    for i in range(n):
        if i % 5 == 4:
            emb = strangers[(i // 5) % len(strangers)]
        else:
            emb = near(centres[int(rng.integers(len(centres)))], rng)
        out.append(nodes[i % len(nodes)].entry(emb))
    return out


def produce(client: redis.Redis, entries: list[dict], chunk: int = 500) -> None:
    for i in range(0, len(entries), chunk):
        pipe = client.pipeline(transaction=False)
        for e in entries[i:i + chunk]:
            pipe.xadd(keys.EVENTS_STREAM, e)
        pipe.execute()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--gallery", type=int, default=10_000, help="enrolled embeddings")
    ap.add_argument("--rate", type=int, default=2_000, help="paced events/s (latency phase)")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--profile", action="store_true", help="cProfile the drain phase")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="facegrid-bench-worker-"))
    redis_proc, redis_url = start_redis(tmp)
    try:
        db_url = f"sqlite:///{tmp / 'facegrid.db'}"
        repo.migrate_locked(db_url)
        engine = db.make_engine(db_url)
        rng = np.random.default_rng(0)
        per = 5
        centres = unit_vectors(args.gallery // per, rng)
        enroll(engine, centres, per, rng)
        key = tokens.generate_private_key()
        (tmp / "signing.pub").write_bytes(tokens.public_pem(key))
        nodes = [EventFactory(f"cam-{i}", tokens.issue_token(key, f"cam-{i}")) for i in range(4)]
        settings = WorkerSettings(redis_url=redis_url, database_url=db_url,
                                  public_key_file=tmp / "signing.pub", metrics_port=0,
                                  migrate=False, consumer="bench", batch_size=args.batch_size,
                                  block_ms=50)
        client = redis.Redis.from_url(redis_url)
        worker = TimedWorker(settings)
        worker.start()
        rss_start = rss_mb()

        # 1. throughput: drain a backlog (produced first: the worker has the CPU to itself,
        # apart from redis-server and whatever else runs on the machine).
        entries = make_entries(args.events, nodes, centres, rng)
        produce(client, entries)
        del entries
        if args.profile:
            import cProfile

            worker.profile = cProfile.Profile()
        load0 = os.getloadavg()[0]
        redis_cpu0 = proc_cpu_s(redis_proc.pid)
        stop = threading.Event()
        t0 = time.perf_counter()
        pcpu0 = time.process_time()
        thread = threading.Thread(target=worker.run, args=(stop,))
        thread.start()
        while worker.done < args.events:
            time.sleep(0.01)
        drain_s = time.perf_counter() - t0
        stop.set()
        thread.join(30)
        cpu_s = worker.cpu_s
        pcpu_s = time.process_time() - pcpu0
        redis_cpu_s = proc_cpu_s(redis_proc.pid) - redis_cpu0
        load1 = os.getloadavg()[0]
        stages = {st: REGISTRY.get_sample_value("facegrid_worker_stage_seconds_sum",
                                                {"stage": st}) or 0.0
                  for st in ("check", "match", "store", "ack")}
        if worker.profile is not None:
            import pstats

            worker.profile.disable()
            pstats.Stats(worker.profile).sort_stats("tottime").print_stats(25)
            worker.profile = None
        stop = threading.Event()
        thread = threading.Thread(target=worker.run, args=(stop,))
        thread.start()

        # 2. latency: paced producer.
        worker.latencies.clear()
        n_paced = int(args.rate * args.seconds)
        paced = make_entries(n_paced, nodes, centres, rng)
        target = worker.done + n_paced
        tick = 0.01
        per_tick = max(1, int(args.rate * tick))
        t1 = time.perf_counter()
        for i in range(0, n_paced, per_tick):
            produce(client, paced[i:i + per_tick])
            delay = t1 + (i // per_tick + 1) * tick - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        while worker.done < target:
            time.sleep(0.01)
        stop.set()
        thread.join(30)
        lat = np.array(worker.latencies) * 1000
        with engine.connect() as c:
            from facegrid_services.store.models import Sighting
            from sqlalchemy import func, select
            stored = c.execute(select(func.count()).select_from(Sighting)).scalar_one()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"gallery: {worker.gallery.size} embeddings of {worker.gallery.people} people, "
              f"batch {args.batch_size}, SQLite, 1 worker")
        print(f"{'metric':<44} {'value':>12}")
        print(f"{'sustained throughput, wall (events/s)':<44} {args.events / drain_s:>12,.0f}"
              "   target >= 5,000")
        print(f"{'  worker CPU per event (us, thread_time)':<44} "
              f"{cpu_s / args.events * 1e6:>12.0f}")
        print(f"{'  process CPU per event (us, process_time)':<44} "
              f"{pcpu_s / args.events * 1e6:>12.0f}")
        print(f"{'  events per worker CPU-second':<44} {args.events / cpu_s:>12,.0f}")
        print(f"{'  worker CPU share of the wall time':<44} {cpu_s / drain_s:>12.0%}")
        print(f"{'  redis-server CPU per event (us)':<44} "
              f"{redis_cpu_s / args.events * 1e6:>12.0f}")
        print(f"{'  load average (1 min) before / after':<44} "
              f"{load0:>6.1f} /{load1:>4.1f}")
        print("  stage wall time per event (us): " + ", ".join(
            f"{k} {v / args.events * 1e6:.0f}" for k, v in stages.items()))
        print(f"{'latency XADD->ack p50 @ ' + str(args.rate) + '/s (ms)':<44} "
              f"{np.percentile(lat, 50):>12.1f}")
        print(f"{'latency XADD->ack p99 @ ' + str(args.rate) + '/s (ms)':<44} "
              f"{np.percentile(lat, 99):>12.1f}")
        print(f"{'resident memory now (MB)':<44} {rss_mb():>12.0f}   target <= 300")
        print(f"{'resident memory peak (MB)':<44} {peak:>12.0f}")
        print(f"{'resident memory after gallery load (MB)':<44} {rss_start:>12.0f}")
        print(f"{'sightings stored':<44} {stored:>12,}")
        assert stored == args.events + n_paced, "every event stored"
        assert wire.EMBEDDING_DIM == 512
    finally:
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
