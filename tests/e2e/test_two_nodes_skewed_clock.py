"""Two cameras, two workers, one node's clock 90 s fast (libfaketime), on PostgreSQL.

The skewed node runs under libfaketime (``FAKETIME=+90``, wall clock only): its
process really reads a clock 90 s ahead, while the server, the workers and Redis
keep the true time.  The
node must measure its drift (−90 000 ms ± 50 ms) from heartbeats and stamp
``corrected_utc`` with it; both workers consume the one stream and every event
is stored exactly once; when the clocks disagree, Lamport values order events.
"""

from __future__ import annotations

import glob
import shutil
import statistics
import subprocess
from itertools import product
from pathlib import Path

import pytest
from fixtures.ci import unavailable
from fixtures.stack import (
    CLIP,
    ENROLLED,
    iso,
    local_today,
    midday_zone,
    running_stack,
    scrape,
    stream_ms,
)

from facegrid import keys
from facegrid.contract import API_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.models, pytest.mark.integration]

SKEW_S = 90
HEARTBEAT_S = 1  # told to nodes by the server: Lamport and drift sync every second


def skewed_clock_env(workdir: Path) -> dict[str, str]:
    """libfaketime on the wall clock only, plus its monotonic-sleep fix (see the .c file)."""
    libs = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not libs:
        unavailable("libfaketime is not installed (apt-get install faketime)")
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        unavailable("no C compiler for the libfaketime sleep fix")
    fix = workdir / "monotonic_sleep_fix.so"
    subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(fix),
                    str(Path(__file__).with_name("monotonic_sleep_fix.c"))], check=True)
    return {"LD_PRELOAD": f"{fix}:{libs[-1]}", "FAKETIME": f"+{SKEW_S}",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


def test_two_nodes_two_workers_one_clock_90s_fast(postgres_url, tmp_path, test_weights,
                                                  record_property):
    fake_env = skewed_clock_env(tmp_path)
    zone = midday_zone()
    with running_stack(tmp_path / "stack", test_weights, database_url=postgres_url,
                       site_timezone=zone,
                       extra_env={"FACEGRID_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_S)}) as stack:
        stack.start_worker("worker-2", {"FACEGRID_CONSUMER": "worker-2"})
        plain = stack.start_node("cam-01", str(CLIP))
        # A REAL skewed clock: the node process reads the wall clock 90 s ahead.
        skewed = stack.start_node("cam-skew", str(CLIP), extra_env=fake_env)
        # Start both clips at about the same moment: wait until both cameras run.
        stack.wait_node_running(skewed)
        stack.wait_node_running(plain)
        node_drift = 1000 * scrape(skewed.metrics_port).get(
            ("facegrid_node_drift_offset_seconds", "cam-skew"))
        for child in (plain, skewed):
            assert stack.wait_exit(child, timeout=300) == 0, stack.log_tail(child.name)
        with stack.api() as api:  # the drift of its last heartbeat, as the fleet sees it
            status = api.get(f"{API_PREFIX}/nodes/cam-skew").json()
        stack.wait_drained()

        r = stack.redis()
        # Entries ever added: the worker trims what it has acknowledged.
        events = r.xinfo_stream(keys.EVENTS_STREAM)["entries-added"]
        dead = r.xlen(keys.DEAD_LETTER_STREAM)
        consumers = {c["name"].decode() for c in r.xinfo_consumers(keys.EVENTS_STREAM,
                                                                   keys.WORKER_GROUP)}
        r.close()
        acked = {w.name: scrape(w.metrics_port).get(("facegrid_worker_acked_total",), 0.0)
                 for w in stack.children if w.name.startswith("worker")}
        rows = stack.stored_sightings()
        attendance = stack.attendance(local_today(zone))

        skew_rows = [s for s in rows if s["node_id"] == "cam-skew"]
        plain_rows = [s for s in rows if s["node_id"] == "cam-01"]
        # Node clock vs the Redis server's clock when it stored the entry.
        raw_ahead = [stream_ms(s["stream_id"]) - s["utc_timestamp"].timestamp() * 1000
                     for s in skew_rows]
        lag_skew = [stream_ms(s["stream_id"]) - s["corrected_utc"].timestamp() * 1000
                    for s in skew_rows]
        lag_plain = [stream_ms(s["stream_id"]) - s["corrected_utc"].timestamp() * 1000
                     for s in plain_rows]
        drifts = [s["drift_offset_ms"] for s in skew_rows]
        figures = {"events": events, "stored": len(rows), "dead_letters": dead,
                   "acked_per_worker": acked, "consumers": sorted(consumers),
                   "node_drift_ms": node_drift, "heartbeat_drift_ms": status["drift_offset_ms"],
                   "event_drift_ms": [min(drifts, default=None), max(drifts, default=None)],
                   "raw_clock_ahead_ms_median": statistics.median(raw_ahead) if raw_ahead else None,
                   "corrected_vs_redis_ms_median": {
                       "cam-skew": statistics.median(lag_skew) if lag_skew else None,
                       "cam-01": statistics.median(lag_plain) if lag_plain else None}}
        print(f"\ntwo nodes, one {SKEW_S} s fast: {figures}")
        for k, v in figures.items():
            record_property(k, str(v))

        # Exactly once across two workers, both of which consumed from the group.
        assert dead == 0
        assert len(rows) == events == len({s["event_id"] for s in rows})
        assert sum(acked.values()) == events, acked
        assert {"worker-2"} < consumers and len(consumers) == 2, consumers
        assert len(skew_rows) >= 10 and len(plain_rows) >= 10

        # The clock really is 90 s fast, and the node measured it within 50 ms.
        assert all(abs(a + SKEW_S * 1000) < 1000 for a in raw_ahead), raw_ahead
        assert abs(node_drift + SKEW_S * 1000) <= 50, node_drift
        assert abs(status["drift_offset_ms"] + SKEW_S * 1000) <= 50, status
        assert all(abs(d + SKEW_S * 1000) <= 50 for d in drifts), drifts
        # corrected_utc agrees with the server side's clock: never more than 50 ms
        # after Redis stored the event, and behind it only by the pipeline latency,
        # which is the same as for the node whose clock is right.
        assert all(lag >= -50 for lag in lag_skew), lag_skew
        assert abs(statistics.median(lag_skew) - statistics.median(lag_plain)) <= 50
        assert max(lag_skew) <= 50 + max(max(lag_plain), 250), (lag_skew, lag_plain)

        # Lamport order follows real order across nodes whenever a heartbeat
        # (1 s) could carry it, although the raw node clocks say the opposite.
        true_ms = {s["event_id"]: stream_ms(s["stream_id"]) for s in rows}
        pairs = [(a, b) for a, b in product(rows, rows) if a["node_id"] != b["node_id"]
                 and true_ms[b["event_id"]] - true_ms[a["event_id"]] > 3000 * HEARTBEAT_S]
        assert pairs
        assert all(b["lamport"] > a["lamport"] for a, b in pairs), [
            (a["node_id"], a["lamport"], b["node_id"], b["lamport"]) for a, b in pairs
            if b["lamport"] <= a["lamport"]][:5]
        raw_wrong = sum(b["utc_timestamp"] < a["utc_timestamp"] for a, b in pairs)
        assert raw_wrong > 0  # the raw clocks would have ordered some pairs backwards
        for node_rows in (skew_rows, plain_rows):  # within a node, Lamport = time order
            by_time = sorted(node_rows, key=lambda s: true_ms[s["event_id"]])
            assert [s["lamport"] for s in by_time] == sorted(s["lamport"] for s in by_time)

        # Attendance: the four enrolled people, check-in ≤ check-out, each the
        # earliest/latest corrected time over both cameras (never 90 s off).
        by_name = {a["person_name"]: a for a in attendance}
        assert sorted(by_name) == ENROLLED, attendance
        for a in attendance:
            seen = [s["corrected_utc"] for s in rows if s["person_id"] == a["person_id"]]
            assert iso(a["check_in"]) == min(seen) and iso(a["check_out"]) == max(seen), a
            assert iso(a["check_in"]) <= iso(a["check_out"])
            assert {a["check_in_node"], a["check_out_node"]} <= {"cam-01", "cam-skew"}
