"""Heartbeat latency of a real `facegrid server` under a fleet of simulated nodes.

    .venv/bin/python bench/server.py [--nodes 200] [--seconds 30] [--database-url URL]

Starts redis-server and `facegrid server` (SQLite in a temporary folder unless
--database-url is given) on free loopback ports, registers N nodes with their
own JWTs, then has every node heartbeat once a second (phases spread evenly)
for the given time, each over its own keep-alive HTTP/1.1 connection.  Prints p50/p90/p99/
max round-trip latency as the node sees it, achieved rate and errors.  The
client runs on the same 2 cores as the server, so figures include its load.
Target: p99 < 50 ms for 200 nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from facegrid import tokens
from facegrid.contract import REGISTER_PATH, heartbeat_path

ADMIN = "bench-admin-token-0123456789abcdef"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sys.exit(f"server not ready after {timeout}s:\n{log.read_text()[-3000:]}")


class Conn:
    """One keep-alive HTTP/1.1 connection, hand-written: httpx's pool costs more CPU per
    request than the server does at 200 connections, which would measure the client."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, token: str, body: dict) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        assert self.reader is not None
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def node_loop(host: str, port: int, node_id: str, token: str, phase: float,
                    start: float, seconds: float, lat: list[float], errors: list[str]) -> None:
    conn = Conn(host, port)
    try:
        status, text = await conn.post(REGISTER_PATH, token, {
            "node_id": node_id, "timezone": "Europe/Paris", "model": "facenet-casia-webface",
            "version": "bench", "camera": "synthetic"})
        if status != 200:
            errors.append(f"register HTTP {status}: {text[:100]!r}")
            return
        n = 0
        while True:
            due = start + phase + n
            if due >= start + seconds:
                return
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            body = {"sent_at": time.time(), "state": "active", "state_seconds": float(n),
                    "fps": 10.0, "drift_offset_ms": 1.5, "lamport": n, "camera_up": True,
                    "events_sent": n, "events_dropped": 0, "backlog": 0}
            t0 = time.perf_counter()
            try:
                status, _ = await conn.post(heartbeat_path(node_id), token, body)
                dt = time.perf_counter() - t0
                if status == 200:
                    lat.append(dt)
                else:
                    errors.append(f"HTTP {status}")
            except (OSError, asyncio.IncompleteReadError) as e:
                errors.append(type(e).__name__)
                conn.close()
                conn = Conn(host, port)
            n += 1
    finally:
        conn.close()


async def run_fleet(port: int, key, nodes: int, seconds: float) -> tuple[list[float], list[str]]:
    lat: list[float] = []
    errors: list[str] = []
    start = time.monotonic() + 2.0  # registrations first
    await asyncio.gather(*(
        node_loop("127.0.0.1", port, f"bench-{i:03d}", tokens.issue_token(key, f"bench-{i:03d}"),
                  i / nodes, start, seconds, lat, errors) for i in range(nodes)))
    return lat, errors


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()

    redis_bin = shutil.which("redis-server")
    if not redis_bin:
        sys.exit("redis-server is not installed (scripts/setup)")
    work = Path(tempfile.mkdtemp(prefix="facegrid-bench-"))
    redis_port, port = free_port(), free_port()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(subprocess.Popen(
            [redis_bin, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(work)], stdout=subprocess.DEVNULL))
        key = tokens.generate_private_key()
        (work / "signing.pub").write_bytes(tokens.public_pem(key))
        db_url = args.database_url or f"sqlite:///{work / 'facegrid.db'}"
        env = {**os.environ, "FACEGRID_DATABASE_URL": db_url,
               "FACEGRID_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
               "FACEGRID_PUBLIC_KEY_FILE": str(work / "signing.pub"),
               "FACEGRID_ADMIN_TOKEN": ADMIN, "FACEGRID_LOG_LEVEL": "WARNING"}
        log = work / "server.log"
        exe = Path(sys.executable).with_name("facegrid")
        procs.append(subprocess.Popen(
            [str(exe), "server", "--host", "127.0.0.1", "--port", str(port)], env=env,
            stdout=log.open("wb"), stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, procs[-1], log)
        store = "sqlite" if db_url.startswith("sqlite") else db_url.split(":")[0]
        print(f"facegrid server ({store}), {args.nodes} nodes x 1 heartbeat/s "
              f"for {args.seconds:g} s, {os.cpu_count()} cores shared with the client")
        t0 = time.monotonic()
        server_cpu0, client_cpu0 = cpu_seconds(procs[-1].pid), time.process_time()
        lat, errors = asyncio.run(run_fleet(port, key, args.nodes, args.seconds))
        wall = time.monotonic() - t0 - 2.0
        server_cpu = cpu_seconds(procs[-1].pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
        ms = [v * 1000 for v in lat]
        if not ms:
            sys.exit(f"no heartbeat succeeded; errors: {errors[:5]}")
        print(f"heartbeats ok:    {len(ms)}  ({len(ms) / wall:.0f}/s)")
        print(f"errors:           {len(errors)}" + (f"  e.g. {errors[:3]}" if errors else ""))
        print(f"latency ms:       p50 {pct(ms, 50):.1f}  p90 {pct(ms, 90):.1f}  "
              f"p99 {pct(ms, 99):.1f}  max {max(ms):.1f}  mean {statistics.fmean(ms):.1f}")
        total = max(1, len(ms) + args.nodes)
        print(f"CPU per request:  server {server_cpu / total * 1000:.2f} ms, "
              f"client {client_cpu / total * 1000:.2f} ms  (load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        print(f"target p99 < 50 ms: {'met' if pct(ms, 99) < 50 else 'NOT met'}")
    finally:
        for p in reversed(procs):
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
