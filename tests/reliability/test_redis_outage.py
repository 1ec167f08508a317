"""Redis unreachable for 30 s under a running node and worker (real processes).

The node keeps capturing and buffers events (bounded memory); events younger
than ``max_event_age_s`` when Redis returns are delivered, older ones are
dropped and counted; the worker reconnects by itself; nothing that reached
Redis is lost or stored twice.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest
from fixtures.servers import RedisServer
from fixtures.stack import CLIP, running_stack, scrape

from facegrid import keys

pytestmark = [pytest.mark.reliability, pytest.mark.integration, pytest.mark.models]

OUTAGE_S = 30
MAX_AGE_S = 20


def test_redis_unreachable_for_30s(tmp_path, test_weights, record_property):
    (tmp_path / "redis").mkdir()
    redis_srv = RedisServer(tmp_path / "redis", password="outage-test")
    redis_srv.start()
    try:
        with running_stack(tmp_path / "stack", test_weights, redis_url=redis_srv.url,
                           enroll=False, loop=True,
                           extra_env={"FACEGRID_MAX_EVENT_AGE_S": str(MAX_AGE_S)}) as stack:
            worker = next(c for c in stack.children if c.name == "worker")
            node = stack.start_node("cam-01", str(CLIP))
            stack.wait_node_running(node)
            m = {}
            deadline = time.monotonic() + 60
            while m.get(("facegrid_node_events_sent_total", "cam-01"), 0) < 2:
                assert time.monotonic() < deadline, stack.log_tail("cam-01")
                time.sleep(0.5)
                m = scrape(node.metrics_port)
            stack.wait_drained()

            down_at = datetime.now(UTC)
            redis_srv.stop()  # connections refused from now on
            time.sleep(OUTAGE_S / 2)
            during = scrape(node.metrics_port)
            health = httpx.get(f"http://127.0.0.1:{node.metrics_port}/healthz", timeout=3)
            time.sleep(OUTAGE_S / 2)
            assert node.proc.poll() is None and worker.proc.poll() is None
            redis_srv.start()  # same port, AOF: the stream and the group survive
            up_at = datetime.now(UTC)

            def backlog_sent() -> bool:
                s = scrape(node.metrics_port)
                return (s.get(("facegrid_node_event_backlog", "cam-01"), 1) == 0
                        and s.get(("facegrid_node_redis_up", "cam-01")) == 1)

            deadline = time.monotonic() + 30
            while not backlog_sent():
                assert time.monotonic() < deadline, stack.log_tail("cam-01")
                time.sleep(0.5)
            after = scrape(node.metrics_port)
            node.essential = False  # stopped on purpose: the supervisor must not object
            node.proc.terminate()  # flushes what it still holds, exits 0
            assert node.proc.wait(30) == 0
            stack.wait_drained()
            worker_after = scrape(worker.metrics_port)
            r = stack.redis()
            # Entries ever added: the worker trims what it has acknowledged.
            in_stream = r.xinfo_stream(keys.EVENTS_STREAM)["entries-added"]
            r.close()
            rows = stack.stored_sightings()

        sent = after[("facegrid_node_events_sent_total", "cam-01")]
        too_old = after.get(("facegrid_node_events_dropped_total", "cam-01", "too_old"), 0)
        full = after.get(("facegrid_node_events_dropped_total", "cam-01", "buffer_full"), 0)
        in_outage = [s for s in rows if down_at <= s["corrected_utc"] <= up_at]
        figures = {"outage_s": OUTAGE_S, "backlog_during": during.get(
                       ("facegrid_node_event_backlog", "cam-01")),
                   "sent": sent, "in_stream": in_stream, "stored": len(rows),
                   "lost": in_stream - len(rows),
                   "duplicated": len(rows) - len({s["event_id"] for s in rows}),
                   "made_during_outage_delivered": len(in_outage),
                   "dropped_too_old": too_old, "dropped_buffer_full": full,
                   "faces_detected_during": during.get(
                       ("facegrid_node_faces_detected_total", "cam-01")),
                   "frames_during": during.get(("facegrid_node_frames_total", "cam-01")),
                   "worker_acked": worker_after.get(("facegrid_worker_acked_total",))}
        print(f"\nRedis down {OUTAGE_S} s: {figures}")
        for k, v in figures.items():
            record_property(k, v)

        # The node kept running, healthy, with its buffer holding the events.
        assert health.status_code == 200, health.text
        assert during.get(("facegrid_node_redis_up", "cam-01")) == 0
        assert during.get(("facegrid_node_event_backlog", "cam-01"), 0) >= 1
        # Everything that reached Redis is stored exactly once; the worker (same
        # process) reconnected and acknowledged it all.
        assert len(rows) == in_stream == len({s["event_id"] for s in rows})
        assert in_stream >= sent
        assert worker_after[("facegrid_worker_acked_total",)] == in_stream
        # Events made during the outage: the young ones delivered, the old ones
        # dropped as too old and counted, none because the buffer was full.
        assert in_outage, "no event made during the outage was delivered"
        assert all((up_at - s["corrected_utc"]).total_seconds() <= MAX_AGE_S + 1
                   for s in in_outage), in_outage
        assert too_old >= 1 and full == 0
    finally:
        redis_srv.stop()
