"""The whole facegrid system as real processes, for the e2e and reliability suites.

Built on ``facegrid up``'s own supervisor (:class:`facegrid.up.Stack`): a real
redis-server, ``facegrid server`` (SQLite or PostgreSQL), ``facegrid worker``
processes, ``facegrid enroll`` of examples/people and ``facegrid node``
processes watching real video.  A test may hand in its own Redis (to stop and
restart it) and wrap a node's command (``faketime`` for a skewed clock).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import redis

from facegrid import keys
from facegrid.contract import API_PREFIX
from facegrid.up import Child, Stack, StackPlan, free_port

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CLIP = EXAMPLES / "clip.mp4"
TIMELINE = json.loads((EXAMPLES / "clip.json").read_text())["appearances"]
ENROLLED = sorted({a["person"].replace("_", " ") for a in TIMELINE if a["enrolled"]})


def midday_zone(now: datetime | None = None) -> str:
    """An ``Etc/GMT±N`` zone where it is about noon now: a test's day never rolls over."""
    now = now or datetime.now(UTC)
    offset = 12 - now.hour  # -11 … +12 hours
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")  # POSIX sign: Etc/GMT-3 = UTC+3


class TestStack(Stack):
    """``facegrid up``'s supervisor, optionally on a Redis the test owns."""

    __test__ = False  # not a test class

    def __init__(self, plan: StackPlan, *, redis_url: str | None = None) -> None:
        super().__init__(plan, echo=log.info)
        self._external_redis = redis_url

    def start_redis(self) -> None:
        if self._external_redis is None:
            super().start_redis()
        else:
            self.redis_url = self._external_redis

    # --- clients ---------------------------------------------------------------
    def api(self) -> httpx.Client:
        return httpx.Client(base_url=self.plan.server_url, timeout=15,
                            headers={"Authorization": f"Bearer {self.admin_token}"})

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url, socket_timeout=5)

    def get_all(self, path: str, **params) -> list[dict]:
        """Every item of a paginated list route."""
        items: list[dict] = []
        with self.api() as c:
            while True:
                r = c.get(path, params={**params, "limit": 500, "offset": len(items)})
                r.raise_for_status()
                page = r.json()
                items += page["items"]
                if len(items) >= page["total"] or not page["items"]:
                    return items

    def sightings(self) -> list[dict]:
        """All sightings, oldest first by (corrected_utc, lamport)."""
        rows = self.get_all(f"{API_PREFIX}/sightings")
        return sorted(rows, key=lambda s: (s["corrected_utc"], s["lamport"]))

    def attendance(self, day: date) -> list[dict]:
        return self.get_all(f"{API_PREFIX}/attendance", day=day.isoformat())

    @property
    def database_url(self) -> str:
        return self.base_env()["FACEGRID_DATABASE_URL"]

    def stored_sightings(self) -> list[dict]:
        """Sighting rows straight from the store (with the Redis stream id)."""
        from facegrid_services.store import db
        from facegrid_services.store.models import Sighting
        from sqlalchemy import select

        engine = db.make_engine(self.database_url)
        try:
            with db.session_factory(engine)() as s:
                rows = s.scalars(select(Sighting).order_by(Sighting.id)).all()
                return [{c: getattr(r, c) for c in (
                    "event_id", "stream_id", "node_id", "person_id", "recognised", "lamport",
                    "utc_timestamp", "corrected_utc", "drift_offset_ms", "received_at")}
                    for r in rows]
        finally:
            engine.dispose()

    # --- waiting ---------------------------------------------------------------
    def wait_exit(self, child: Child, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while child.proc.poll() is None:
            self.check_children()
            if time.monotonic() > deadline:
                raise AssertionError(f"{child.name} still running after {timeout}s:\n"
                                     + self.log_tail(child.name))
            time.sleep(0.5)
        return child.proc.returncode

    def wait_drained(self, timeout: float = 60) -> None:
        """Until every stream entry was delivered to a worker and acknowledged."""
        r = self.redis()
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.check_children()
                groups = {g["name"].decode(): g for g in r.xinfo_groups(keys.EVENTS_STREAM)} \
                    if r.exists(keys.EVENTS_STREAM) else {}
                g = groups.get(keys.WORKER_GROUP)
                # Drained = nothing pending and the group has been handed the stream's
                # last entry.  Not XINFO's "lag": Redis reports it as nil when it
                # cannot tell (e.g. after a restart from the AOF), which is not 0.
                if g is not None and g["pending"] == 0:
                    last = r.xinfo_stream(keys.EVENTS_STREAM)["last-generated-id"]
                    if g["last-delivered-id"] == last:
                        return
                if time.monotonic() > deadline:
                    raise AssertionError(f"stream not drained after {timeout}s: {g}\n"
                                         + self.log_tail("worker"))
                time.sleep(0.3)
        finally:
            r.close()

    def wait_node_running(self, child: Child, timeout: float = 180) -> None:
        """Until the node's camera gives frames (its torch start-up is slow)."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_children()
            if child.proc.poll() is not None:
                raise AssertionError(f"{child.name} exited:\n" + self.log_tail(child.name))
            m = scrape(child.metrics_port)
            if m.get(("facegrid_node_frames_total", child.name), 0) > 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"{child.name} gives no frames:\n"
                                     + self.log_tail(child.name))
            time.sleep(0.5)

    def log_tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def scrape(port: int | None) -> dict[tuple[str, ...], float]:
    """Prometheus text of 127.0.0.1:port as {(name, label values…): value} ({} if down)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text
    except httpx.HTTPError:
        return {}
    out: dict[tuple[str, ...], float] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, *s.labels.values())] = s.value
    return out


@contextlib.contextmanager
def running_stack(state_dir: Path, weights: Path, *, database_url: str | None = None,
                  redis_url: str | None = None, enroll: bool = True,
                  site_timezone: str = "UTC", extra_env: dict[str, str] | None = None,
                  loop: bool = False) -> Iterator[TestStack]:
    """Redis (own or given), server, one worker, enrollment; nodes are added by the test."""
    plan = StackPlan(state_dir=state_dir, cameras=[], port=free_port(),
                     site_timezone=site_timezone, weights=str(weights),
                     enroll_dir=EXAMPLES / "people" if enroll else None, loop=loop,
                     database_url=database_url,
                     extra_env={"FACEGRID_LOG_LEVEL": "INFO", **(extra_env or {})})
    stack = TestStack(plan, redis_url=redis_url)
    try:
        stack.start()
        yield stack
    except BaseException:
        for c in stack.children:  # shown by pytest with the failure
            print(f"----- {c.name} (exit {c.proc.poll()}) -----\n{stack.log_tail(c.name)}")
        raise
    finally:
        stack.stop()


def iso(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def stream_ms(stream_id: str) -> float:
    """The Redis server's own clock when it stored the entry (ms since the epoch)."""
    return float(stream_id.split("-", 1)[0])


def local_today(zone: str) -> date:
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(zone)).date()


def collapse(seq: list) -> list:
    """[a, a, b, a] -> [a, b, a]: consecutive repeats merged."""
    out: list = []
    for x in seq:
        if not out or out[-1] != x:
            out.append(x)
    return out


