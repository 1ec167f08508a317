"""Classify-worker throughput, latency and memory: the real ``facegrid worker`` process.

    .venv/bin/python bench/worker.py [--events 20000] [--gallery 10000] [--rates 2000,5000]
                                     [--batch-size 256] [--profile]

Starts its own redis-server (AOF on, fsync every second) and a SQLite store in
a temporary folder, enrolls a gallery of ``--gallery`` embeddings (5 per
person: one template each), starts ``facegrid worker`` as a subprocess (as it
runs in production: its own process, defaults, /metrics), then:

1. throughput: the worker is frozen (SIGSTOP) while ``--events`` signed events
   from 4 nodes (80% enrolled people, 20% strangers) are XADDed, then thawed
   (SIGCONT); the time until the group has nothing pending or undelivered is
   the drain time.  During the drain the bench process only polls XINFO, so
   the worker competes with redis-server and the machine's other jobs only.
2. latency: the bench paces each of ``--rates`` events/s for ``--seconds``
   (XADD pipelines every 10 ms) and subscribes to the per-event results the
   worker publishes after commit and ack: latency = result received − XADD
   time (the stream id).  At a rate the worker sustains, latency stays flat;
   above it the backlog, and the latency, grows.

Prints sustained events/s (target >= 5,000 on 2 cores), p50/p99 latency and
the worker's resident memory (target <= 300 MB).  Other jobs on the machine
change the wall figures, so it also prints the worker process's CPU time per
event (user + system from /proc, all its threads), events per worker
CPU-second, redis-server's CPU per event, the load average, and the worker's
stage times from its own /metrics.  ``--profile`` runs the worker under
cProfile and prints its hottest functions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import redis
from facegrid_services.store import db, repo
from facegrid_services.store.models import Embedding, Person, Sighting
from sqlalchemy import func, select

from facegrid import keys, tokens, wire

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fixtures.synthetic import EventFactory, near, unit_vectors

MODEL = "facenet-casia-webface"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
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


def proc_cpu(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def proc_cpu_s(pid: int) -> float:
    return sum(proc_cpu(pid))


def proc_mem_mb(pid: int) -> tuple[float, float]:
    """(resident now, resident peak) in MB."""
    got = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            got[line.split(":")[0]] = int(line.split()[1]) / 1024
    return got.get("VmRSS", 0.0), got.get("VmHWM", 0.0)


def enroll(engine, centres: np.ndarray, per: int, rng) -> None:
    with db.session_factory(engine)() as s:
        for i, c in enumerate(centres):
            p = Person(name=f"person-{i}")
            s.add(p)
            s.flush()
            for _ in range(per):
                v = near(c, rng)
                s.add(Embedding(person_id=p.id, model=MODEL, vector=v.tobytes(),
                                image_hash=hashlib.sha256(v).hexdigest()))
        s.commit()


def make_entries(n: int, nodes: list[EventFactory], centres: np.ndarray,
                 rng) -> list[tuple[dict, str]]:
    """``(fields, event_id)``: 80% enrolled people, 20% strangers."""
    out = []
    strangers = unit_vectors(max(1, n // 5), rng)
    for i in range(n):
        if i % 5 == 4:
            emb = strangers[(i // 5) % len(strangers)]
        else:
            emb = near(centres[int(rng.integers(len(centres)))], rng)
        node = nodes[i % len(nodes)]
        payload = node.payload()
        out.append((wire.encode(payload, node.token, emb), payload.event_id))
    return out


def produce(client: redis.Redis, entries: list[tuple[dict, str]], chunk: int = 500,
            sent: dict[str, float] | None = None) -> None:
    for i in range(0, len(entries), chunk):
        part = entries[i:i + chunk]
        pipe = client.pipeline(transaction=False)
        for fields, _ in part:
            pipe.xadd(keys.EVENTS_STREAM, fields)
        ids = pipe.execute()
        if sent is not None:
            for (_, event_id), sid in zip(part, ids, strict=True):
                sent[event_id] = int(sid.split(b"-", 1)[0]) / 1000.0


def group_state(client: redis.Redis) -> tuple[int, int]:
    """(pending, lag) of the worker group."""
    for g in client.xinfo_groups(keys.EVENTS_STREAM):
        if g["name"] in (keys.WORKER_GROUP, keys.WORKER_GROUP.encode()):
            lag = g.get("lag")
            if lag is None:  # unknown to Redis: compare the delivered id with the last one
                last = client.xinfo_stream(keys.EVENTS_STREAM)["last-generated-id"]
                lag = 0 if g["last-delivered-id"] == last else 1
            return int(g["pending"] or 0), int(lag)
    return -1, -1


def wait(cond, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            sys.exit(f"worker exited ({proc.returncode}) {what}:\n"
                     + log.read_text(errors="replace")[-3000:])
        if time.monotonic() > deadline:
            sys.exit(f"timed out {what}:\n" + log.read_text(errors="replace")[-3000:])
        time.sleep(0.01)


def stage_sums(metrics_port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("facegrid_worker_stage_seconds_sum{"):
            stage = line.split('stage="', 1)[1].split('"', 1)[0]
            out[stage] = float(line.rsplit(" ", 1)[1])
    return out


class Results(threading.Thread):
    """Receives the worker's per-event results (published after commit and ack)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(keys.results_channel("*"))
        self.got: list[tuple[float, bytes]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            msg = self.pubsub.get_message(timeout=0.1)
            if msg is not None:
                self.got.append((time.time(), msg["data"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--gallery", type=int, default=10_000, help="enrolled embeddings")
    ap.add_argument("--rates", default="2000,5000",
                    help="paced events/s of the latency phases, comma-separated")
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each paced phase")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--profile", action="store_true", help="run the worker under cProfile")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="facegrid-bench-worker-"))
    redis_proc, redis_url = start_redis(tmp)
    worker = None
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
        client = redis.Redis.from_url(redis_url)
        metrics_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("FACEGRID_")}
        env |= {"FACEGRID_REDIS_URL": redis_url, "FACEGRID_DATABASE_URL": db_url,
                "FACEGRID_PUBLIC_KEY_FILE": str(tmp / "signing.pub"),
                "FACEGRID_METRICS_PORT": str(metrics_port), "FACEGRID_MIGRATE": "false",
                "FACEGRID_CONSUMER": "bench", "FACEGRID_BATCH_SIZE": str(args.batch_size),
                "FACEGRID_LOG_LEVEL": "WARNING"}
        prof = tmp / "worker.prof"
        cmd = ([sys.executable, "-m", "cProfile", "-o", str(prof), "-m", "facegrid", "worker"]
               if args.profile else [str(Path(sys.executable).parent / "facegrid"), "worker"])
        log = tmp / "worker.log"
        worker = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)

        def consumer_ready() -> bool:
            try:
                return any(c["name"] in (b"bench", "bench")
                           for c in client.xinfo_consumers(keys.EVENTS_STREAM,
                                                           keys.WORKER_GROUP))
            except redis.ResponseError:  # no stream/group yet
                return False

        wait(consumer_ready, 120, "waiting for the worker to start", worker, log)
        rss_ready, _ = proc_mem_mb(worker.pid)

        # 1. throughput: freeze the worker, fill the stream, thaw, time the drain.
        entries = make_entries(args.events, nodes, centres, rng)
        worker.send_signal(signal.SIGSTOP)
        produce(client, entries)
        del entries
        load0 = os.getloadavg()[0]
        (user0, sys0), redis_cpu0 = proc_cpu(worker.pid), proc_cpu_s(redis_proc.pid)
        t0 = time.perf_counter()
        worker.send_signal(signal.SIGCONT)
        wait(lambda: group_state(client) == (0, 0), 600, "draining the backlog", worker, log)
        drain_s = time.perf_counter() - t0
        user1, sys1 = proc_cpu(worker.pid)
        cpu_s, sys_s = user1 - user0 + sys1 - sys0, sys1 - sys0
        redis_cpu_s = proc_cpu_s(redis_proc.pid) - redis_cpu0
        load1 = os.getloadavg()[0]
        stages = stage_sums(metrics_port)  # the worker saw no event before the drain
        rss_drain, _ = proc_mem_mb(worker.pid)

        # 2. latency: paced phases; results come back over pub/sub.
        results = Results(redis_url)
        results.start()
        time.sleep(0.2)
        n_paced = 0
        latency: dict[int, np.ndarray] = {}
        offered: dict[int, float] = {}
        for rate in (int(r) for r in args.rates.split(",") if r.strip()):
            n = int(rate * args.seconds)
            paced = make_entries(n, nodes, centres, rng)
            sent: dict[str, float] = {}
            results.got.clear()
            tick = 0.01
            per_tick = max(1, int(rate * tick))
            t1 = time.perf_counter()
            for i in range(0, n, per_tick):
                produce(client, paced[i:i + per_tick], sent=sent)
                delay = t1 + (i // per_tick + 1) * tick - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            offered[rate] = n / (time.perf_counter() - t1)
            wait(lambda n=n: len(results.got) >= n, 600, f"for the results at {rate}/s",
                 worker, log)
            lat = [at - sent[json.loads(data)["event_id"]] for at, data in results.got]
            latency[rate] = np.asarray(lat) * 1000
            n_paced += n
        results.stop.set()
        results.join(5)
        rss_now, rss_peak = proc_mem_mb(worker.pid)
        worker.send_signal(signal.SIGTERM)
        rc = worker.wait(60)
        worker = None

        with engine.connect() as c:
            stored = c.execute(select(func.count()).select_from(Sighting)).scalar_one()
        people = len(centres)
        print(f"gallery: {people * per:,} embeddings of {people:,} people (one template each),"
              f" batch {args.batch_size}, SQLite, 1 `facegrid worker` process, {nproc()} cores")
        print(f"{'metric':<46} {'value':>12}")
        print(f"{'sustained throughput, wall (events/s)':<46} {args.events / drain_s:>12,.0f}"
              f"   target >= 5,000 ({args.events:,} events drained)")
        print(f"{'  worker CPU per event (us, user+sys)':<46} "
              f"{cpu_s / args.events * 1e6:>12.0f}")
        print(f"{'    of which system (kernel) time (us)':<46} "
              f"{sys_s / args.events * 1e6:>12.0f}")
        print(f"{'  events per worker CPU-second':<46} {args.events / cpu_s:>12,.0f}")
        print(f"{'  worker CPU share of the drain wall time':<46} {cpu_s / drain_s:>12.0%}")
        print(f"{'  redis-server CPU per event (us)':<46} "
              f"{redis_cpu_s / args.events * 1e6:>12.0f}")
        print(f"{'  load average (1 min) before / after':<46} {load0:>6.1f} /{load1:>4.1f}")
        print("  stage wall time per event (us, worker /metrics): " + ", ".join(
            f"{k} {v / args.events * 1e6:.0f}" for k, v in sorted(stages.items())))
        for rate, lat in latency.items():
            print(f"{f'latency XADD->result p50 / p99 @ {rate:,}/s (ms)':<46} "
                  f"{np.percentile(lat, 50):>6.1f} /{np.percentile(lat, 99):>6.1f}"
                  f"   (offered {offered[rate]:,.0f}/s)")
        print(f"{'worker resident memory: ready / after drain (MB)':<46} "
              f"{rss_ready:>6.0f} /{rss_drain:>4.0f}")
        print(f"{'worker resident memory: end / peak (MB)':<46} {rss_now:>6.0f} /{rss_peak:>4.0f}"
              "   target <= 300")
        print(f"{'sightings stored':<46} {stored:>12,}")
        assert stored == args.events + n_paced, "every event stored"
        assert rc == 0, f"worker exit code {rc} after SIGTERM"
        if args.profile:
            import pstats

            pstats.Stats(str(prof)).sort_stats("tottime").print_stats(25)
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGCONT)
            worker.kill()
            worker.wait(10)
        redis_proc.terminate()
        redis_proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def nproc() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
