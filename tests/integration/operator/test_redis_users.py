"""The operator's per-CameraNode Redis users (facegrid_operator.redis_users) on a real
redis-server: made through the ``operator`` role of facegrid.acl, with the ``node`` rules,
re-made when Redis lost them, deleted (connections closed) with the CameraNode."""

from __future__ import annotations

import secrets

import pytest
import redis
from facegrid_operator.redis_users import RedisUsers

from facegrid import acl, keys

pytestmark = pytest.mark.integration


@pytest.fixture
def users(redis_server, redis_url):
    password = secrets.token_hex(8)
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER",
                          *acl.setuser_args("facegrid-operator", password, "operator"))
    op_url = acl.url_with_user(redis_server.url, "facegrid-operator", password)
    u = RedisUsers(op_url, redis_server.url)
    yield u, redis.Redis.from_url(op_url)
    u.close()
    for node in ("cam-a", "cam-b"):
        admin.execute_command("ACL", "DELUSER", acl.node_user(node))


def test_operator_user_reads_nothing(users):
    _, op = users
    for call in (lambda: op.xrange(keys.EVENTS_STREAM), lambda: op.get(keys.LAMPORT_MAX),
                 lambda: op.xadd(keys.EVENTS_STREAM, {"v": "2"}), lambda: op.flushall(),
                 lambda: op.config_get("*"), lambda: op.acl_list()):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()


def test_each_camera_its_own_user_remade_and_removed(users, redis_server):
    u, _ = users
    pw_a, pw_b = secrets.token_hex(24), secrets.token_hex(24)
    assert u.ensure("cam-a", pw_a) is True
    assert u.ensure("cam-a", pw_a) is False  # there already: nothing sent
    assert u.ensure("cam-b", pw_b) is True
    a = redis.Redis.from_url(u.url_for("cam-a", pw_a))
    assert u.url_for("cam-a", pw_a).startswith("redis://facegrid-node-cam-a:")
    a.xadd(keys.EVENTS_STREAM, {"v": "2"})
    sub = a.pubsub()
    sub.subscribe(keys.results_channel("cam-a"))
    assert sub.get_message(timeout=1)["type"] == "subscribe"
    sub.close()
    # cam-a cannot hear cam-b's results, read the stream, or use cam-b's password
    with pytest.raises(redis.exceptions.NoPermissionError):
        other = a.pubsub()
        other.subscribe(keys.results_channel("cam-b"))
        other.get_message(timeout=1)
    with pytest.raises(redis.exceptions.NoPermissionError):
        a.xrange(keys.EVENTS_STREAM)
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(acl.url_with_user(redis_server.url, "facegrid-node-cam-a",
                                               pw_b)).ping()
    # exactly facegrid.acl's node rules
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "expected",
                          *acl.setuser_args("x", "p", "node", "cam-a")[1:])
    got, want = admin.acl_getuser(acl.node_user("cam-a")), admin.acl_getuser("expected")
    admin.execute_command("ACL", "DELUSER", "expected")
    assert [got[f] for f in ("commands", "keys", "channels")] == \
        [want[f] for f in ("commands", "keys", "channels")]
    # Redis lost it (a restart without the operator's users): the next check makes it again
    admin.execute_command("ACL", "DELUSER", acl.node_user("cam-a"))
    assert u.ensure("cam-a", pw_a) is True and a.ping()
    # deleted with the CameraNode: its open connection is closed, it cannot log in again
    assert u.remove("cam-a") is True
    with pytest.raises(redis.ConnectionError):
        a.execute_command("PING")
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(u.url_for("cam-a", pw_a)).ping()
    assert u.remove("cam-a") is False
    assert redis.Redis.from_url(u.url_for("cam-b", pw_b)).ping()  # the other camera stays
