"""Issue 16 finding 7: Redis ACL users per role (facegrid.acl) against a real redis-server.

A node's user can XADD events and hear its own results, nothing else; the worker runs
its whole loop (group, claims, trims, Lua, dead letters, results) under its own user
and still cannot FLUSHALL or read CONFIG.
"""

from __future__ import annotations

import secrets
import time

import numpy as np
import pytest
import redis
from facegrid_services.worker.consumer import Worker
from fixtures.synthetic import unit_vectors

from facegrid import acl, keys

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(tmp_path):
    return f"sqlite:///{tmp_path / 'facegrid.db'}"


def _user(redis_server, user, role, node_id=None) -> str:
    password = secrets.token_urlsafe(12)
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", *acl.setuser_args(user, password, role, node_id))
    return acl.url_with_user(redis_server.url, user, password)


def test_node_user_can_only_send_events_and_hear_its_results(redis_server, redis_url, node):
    url = _user(redis_server, "facegrid-node-cam-1", "node", "cam-1")
    r = redis.Redis.from_url(url)
    assert r.ping()
    r.xadd(keys.EVENTS_STREAM, node.entry(unit_vectors(1, np.random.default_rng(0))[0]))
    sub = r.pubsub()
    sub.subscribe(keys.results_channel("cam-1"))
    sub.close()
    denied = [
        lambda: r.xrange(keys.EVENTS_STREAM),  # other nodes' tokens and embeddings
        lambda: r.xreadgroup(keys.WORKER_GROUP, "x", {keys.EVENTS_STREAM: ">"}),
        lambda: r.xtrim(keys.EVENTS_STREAM, maxlen=0),
        lambda: r.xdel(keys.EVENTS_STREAM, "0-1"),
        lambda: r.xadd(keys.DEAD_LETTER_STREAM, {"a": "b"}),
        lambda: r.set(keys.LAMPORT_MAX, "1"),
        lambda: r.get(keys.LAMPORT_MAX),
        lambda: r.publish(keys.results_channel("cam-1"), "x"),
        lambda: r.flushall(),
        lambda: r.config_get("*"),
        lambda: r.keys("*"),
    ]
    for i, call in enumerate(denied):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
            pytest.fail(f"call {i} was allowed")
    other = r.pubsub()
    with pytest.raises(redis.exceptions.NoPermissionError):
        other.subscribe(keys.results_channel("cam-2"))
        other.get_message(timeout=1)


def test_worker_runs_under_its_own_user(wh, settings, store, node, redis_server):
    _, engine = store
    worker_url = _user(redis_server, "facegrid-worker", "worker")
    node_url = _user(redis_server, "facegrid-node-cam-1", "node", "cam-1")
    n = redis.Redis.from_url(node_url)
    results = n.pubsub(ignore_subscribe_messages=True)
    results.subscribe(keys.results_channel("cam-1"))
    rng = np.random.default_rng(1)
    good = [node.entry(v) for v in unit_vectors(5, rng)]
    bad = node.entry(unit_vectors(1, rng)[0])
    bad["embedding"] = bad["embedding"][:-4]
    for e in [*good, bad]:
        n.xadd(keys.EVENTS_STREAM, e)
    settings = settings.model_copy(update={"redis_url": worker_url, "trim_interval_s": 0.2})
    admin = redis_server.client()
    with wh.running(Worker(settings)):
        wh.wait_for(lambda: wh.group_pending(admin) == 0, timeout=30)
        wh.wait_for(lambda: admin.xlen(keys.EVENTS_STREAM) == 0, timeout=10, what="trimmed")
    assert wh.count_sightings(engine) == 5
    assert admin.xlen(keys.DEAD_LETTER_STREAM) == 1
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 5 and time.monotonic() < deadline:
        m = results.get_message(timeout=0.2)  # None also for the ignored subscribe reply
        if m is not None:
            got.append(m)
    assert len(got) == 5
    w = redis.Redis.from_url(worker_url)
    for call in (w.flushall, lambda: w.config_get("*"), lambda: w.keys("*"),
                 lambda: w.set("other-app:key", "x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
