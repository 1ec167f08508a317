"""Event → webhook received and event → MQTT received latency, at a steady event rate.

    .venv/bin/python bench/notify.py [--rate 200] [--seconds 20] [--database-url URL] [--json]

Starts redis-server, mosquitto, ``facegrid worker`` and ``facegrid notifier`` as
real processes (SQLite store in a temporary folder unless ``--database-url``),
subscribes one webhook (a real HTTP receiver in this script that checks every
signature) and one MQTT subscriber to every event type, then XADDs events into
the stream at ``--rate`` per second, as nodes do (80 % enrolled people, 20 %
strangers).  Latency = receipt at the receiver − the instant the event went into
the stream; the path is stream → worker (sighting + outbox row, one transaction)
→ notifier (fan-out, signed POST / QoS 1 publish) → receiver.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from facegrid_services.notify import signing, webhooks
from facegrid_services.notify.events import ALL_TYPES
from facegrid_services.store import db, repo

from facegrid import keys, tokens, wire

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fixtures.synthetic import EventFactory, unit_vectors
from worker import enroll, free_port, proc_cpu_s, start_redis


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) if values else float("nan")


def start_mosquitto(workdir: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 100000\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT)
    time.sleep(0.3)
    return proc, port


class Receiver:
    """Webhook receiver: verifies each signature, records arrival time by message id."""

    def __init__(self, secret: str) -> None:
        self.arrived: dict[str, float] = {}
        self.bad = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_a):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                at = time.time()
                try:
                    signing.verify(secret, self.headers, body)
                    receiver.arrived.setdefault(_key(json.loads(body)), at)
                    code = 204
                except signing.SignatureError:
                    receiver.bad += 1
                    code = 400
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _key(message: dict):
    """A presence event by its camera and track (the bench gives every appearance one)."""
    data = message["data"]
    return (data.get("node_id"), data.get("track_id")) if "track_id" in data else message["id"]


def _has_group(client) -> bool:
    import redis

    try:
        return any(g["name"] in (keys.WORKER_GROUP, keys.WORKER_GROUP.encode())
                   for g in client.xinfo_groups(keys.EVENTS_STREAM))
    except redis.ResponseError:  # no stream yet
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=200.0, help="events per second")
    ap.add_argument("--seconds", type=float, default=20.0, help="how long events are sent")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", type=Path, default=None,
                    help="write the notifier's cProfile statistics to this file")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="facegrid-bench-notify-"))
    procs: list[subprocess.Popen] = []
    try:
        redis_proc, redis_url = start_redis(work)
        procs.append(redis_proc)
        mosq, mqtt_port = start_mosquitto(work)
        procs.append(mosq)
        url = args.database_url or f"sqlite:///{work / 'facegrid.db'}"
        repo.migrate_locked(url)
        engine = db.make_engine(url)
        rng = np.random.default_rng(0)
        centres = unit_vectors(50, rng)
        enroll(engine, centres, 3, rng)
        with db.session_factory(engine)() as s:
            sub = webhooks.create_subscription(s, name="bench", url="http://127.0.0.1:1/x",
                                               events=ALL_TYPES)
            receiver = Receiver(sub.secret)
            webhooks.update_subscription(s, sub, url=f"http://127.0.0.1:{receiver.port}/hook")

        mqtt_arrived: dict[str, float] = {}
        notifier_online = threading.Event()

        def on_message(_c, _u, m) -> None:
            if m.topic == "facegrid/availability":
                if m.payload == b"online":
                    notifier_online.set()
                return
            mqtt_arrived.setdefault(_key(json.loads(m.payload)), time.time())

        sub_client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench")
        sub_client.on_connect = lambda c, *_: c.subscribe(
            [("facegrid/events/#", 1), ("facegrid/availability", 1)])
        sub_client.on_message = on_message
        sub_client.connect("127.0.0.1", mqtt_port)
        sub_client.loop_start()

        key = tokens.generate_private_key()
        (work / "signing.pub").write_bytes(tokens.public_pem(key))
        exe = str(Path(sys.executable).parent / "facegrid")
        env = {**os.environ, "FACEGRID_DATABASE_URL": url, "FACEGRID_REDIS_URL": redis_url,
               "FACEGRID_PUBLIC_KEY_FILE": str(work / "signing.pub"), "FACEGRID_MIGRATE": "false",
               "FACEGRID_LOG_LEVEL": "WARNING", "FACEGRID_METRICS_PORT": "0",
               "FACEGRID_MQTT_URL": f"mqtt://127.0.0.1:{mqtt_port}"}
        worker = subprocess.Popen([exe, "worker"], env=env, stdout=(work / "worker.log").open(
            "wb"), stderr=subprocess.STDOUT)
        cmd = ([sys.executable, "-m", "cProfile", "-o", str(args.profile), "-m", "facegrid",
                "notifier"] if args.profile else [exe, "notifier"])
        notifier = subprocess.Popen(cmd, env=env, stdout=(
            work / "notifier.log").open("wb"), stderr=subprocess.STDOUT)
        procs += [worker, notifier]

        import redis

        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 120  # both started: the worker's group, MQTT online
        while not (notifier_online.is_set() and _has_group(client)):
            if time.monotonic() > deadline or worker.poll() is not None \
                    or notifier.poll() is not None:
                raise SystemExit("worker or notifier did not start; logs in " + str(work))
            time.sleep(0.1)
        time.sleep(1.0)
        nodes = [EventFactory(f"cam-{i}", tokens.issue_token(key, f"cam-{i}")) for i in range(4)]
        strangers = unit_vectors(64, rng)
        sent: dict[str, float] = {}
        n = int(args.rate * args.seconds)
        tick = 0.05  # send every 50 ms what the rate asks for
        per_tick = args.rate * tick
        start = time.monotonic()
        cpu0 = {p.pid: proc_cpu_s(p.pid) for p in (worker, notifier)}
        i = 0
        while i < n:
            due = min(n, int((time.monotonic() - start) / tick * per_tick) + int(per_tick))
            pipe = client.pipeline(transaction=False)
            batch = []
            while i < due:
                # one appearance = one new track: an enrolled person (one frame decides),
                # or every fifth a stranger (two frames: an unknown presence is confirmed)
                node = nodes[i % len(nodes)]
                stranger = i % 5 == 4
                emb = (strangers[i % len(strangers)] if stranger
                       else centres[int(rng.integers(len(centres)))])
                payload = node.payload()
                pipe.xadd(keys.EVENTS_STREAM, wire.encode(payload, node.token, emb))
                if stranger:
                    again = node.payload(track_id=payload.track_id)
                    pipe.xadd(keys.EVENTS_STREAM, wire.encode(again, node.token, emb))
                batch.append((node.node_id, payload.track_id))
                i += 1
            now = time.time()
            pipe.execute()
            for nid in batch:
                sent[nid] = now
            time.sleep(max(0.0, start + (i / args.rate) - time.monotonic()))
        send_s = time.monotonic() - start
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
                len(set(sent) & set(receiver.arrived)) < len(sent)
                or len(set(sent) & set(mqtt_arrived)) < len(sent)):
            time.sleep(0.2)
        from facegrid_services.store.models import Sighting, WebhookDelivery
        from sqlalchemy import func, select

        with db.session_factory(engine)() as s:
            attempts = s.scalar(select(func.sum(WebhookDelivery.attempts))) or 0
            stored_at: dict = {}
            for node_id, track_id, at in s.execute(
                    select(Sighting.node_id, Sighting.track_id, Sighting.received_at)):
                k = (node_id, track_id)
                stored_at[k] = max(stored_at.get(k, at), at)
        cpu = {name: proc_cpu_s(p.pid) - cpu0[p.pid]
               for name, p in (("worker", worker), ("notifier", notifier))}
        hook = [receiver.arrived[k] - t for k, t in sent.items() if k in receiver.arrived]
        mq = [mqtt_arrived[k] - t for k, t in sent.items() if k in mqtt_arrived]
        stored = [stored_at[k].timestamp() - t for k, t in sent.items() if k in stored_at]
        result = {
            "events": len(sent), "rate": round(len(sent) / send_s, 1),
            "webhook": {"received": len(hook), "p50_ms": round(pct(hook, 50) * 1000, 1),
                        "p99_ms": round(pct(hook, 99) * 1000, 1),
                        "max_ms": round(max(hook, default=float("nan")) * 1000, 1),
                        "bad_signatures": receiver.bad},
            "stored": {"p50_ms": round(pct(stored, 50) * 1000, 1),
                       "p99_ms": round(pct(stored, 99) * 1000, 1)},
            "mqtt": {"received": len(mq), "p50_ms": round(pct(mq, 50) * 1000, 1),
                     "p99_ms": round(pct(mq, 99) * 1000, 1),
                     "max_ms": round(max(mq, default=float("nan")) * 1000, 1)},
            "cpu_ms_per_event": {k: round(v * 1000 / max(1, len(sent)), 3)
                                 for k, v in cpu.items()},
            "store": "PostgreSQL" if url.startswith("postgresql") else "SQLite",
            "webhook_attempts": attempts,
        }
        sub_client.loop_stop()
        if args.json:
            print(json.dumps(result))
        else:
            print(f"{result['events']} presences (appearances) at {result['rate']}/s "
                  f"({result['store']}):")
            print(f"  event → stored by the worker: p50 {result['stored']['p50_ms']} ms, "
                  f"p99 {result['stored']['p99_ms']} ms (the notifier's share is the rest)")
            for name in ("webhook", "mqtt"):
                r = result[name]
                print(f"  event → {name:7s} received {r['received']}/{result['events']}: "
                      f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, max {r['max_ms']} ms")
            print(f"  CPU per event: worker {result['cpu_ms_per_event']['worker']} ms, "
                  f"notifier {result['cpu_ms_per_event']['notifier']} ms; "
                  f"bad signatures {receiver.bad}; {attempts} POSTs")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
