"""The node agent on real clips (made from LFW photos), a real redis-server and real weights."""

from __future__ import annotations

import shutil
import threading
import uuid

import numpy as np
import pytest
from fixtures.node import (
    ContractServer,
    appearance_frames,
    background,
    make_token,
    metric,
    still_frames,
    wait_for,
    write_clip,
)

from facegrid import keys, wire

pytestmark = [pytest.mark.integration, pytest.mark.models]


def _settings(tmp_path, redis_url, camera, **kw):
    from facegrid_node.settings import NodeSettings

    token = tmp_path / "token"
    if not token.exists():
        token.write_text(make_token(kw.get("node_id", "cam-test")))
    base = dict(node_id="cam-test", redis_url=redis_url, camera=str(camera),
                token_file=token, timezone="Europe/Paris", metrics_port=0,
                idle_after_s=60, track_max_age_s=0.8, detect_every=2, reembed_every=5,
                resend_interval_s=60, send_distance=0.3, camera_timeout_s=2,
                reconnect_max_s=0.5, heartbeat_interval_s=0.5, server_url="http://127.0.0.1:9")
    base.update(kw)
    return NodeSettings(**base)


def _start(agent):
    t = threading.Thread(target=agent.run, daemon=True)
    t.start()
    return t


def _events(redis_url):
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        return [wire.decode(f) for _, f in r.xrange(keys.EVENTS_STREAM)]
    finally:
        r.close()


def test_one_event_per_appearance(tmp_path, redis_url, face_analyzer, lfw_embeddings,
                                  shared_data):
    from facegrid_node.agent import NodeAgent

    a = lfw_embeddings["Colin_Powell"][0]
    b = lfw_embeddings["Angelina_Jolie"][0]
    bg = background()
    frames = [*still_frames(0.6, bg), *appearance_frames(a[0], 1.6, 60, 120, bg),
              *still_frames(1.4, bg), *appearance_frames(b[0], 1.6, 330, 100, bg),
              *still_frames(1.4, bg), *appearance_frames(a[0], 1.6, 200, 150, bg),
              *still_frames(0.4, bg)]
    clip = write_clip(tmp_path / "clip.avi", frames)
    agent = NodeAgent(_settings(tmp_path, redis_url, clip), analyzer=face_analyzer,
                      heartbeats=False)
    assert agent.run() == 0  # the clip ends: the agent flushes and stops
    events = _events(redis_url)
    frames_seen = metric(agent, "facegrid_node_frames_total")
    embedded = metric(agent, "facegrid_node_embeddings_total")
    print(f"\n{len(frames)} frames, {frames_seen:.0f} processed, "
          f"{metric(agent, 'facegrid_node_frames_analysed_total'):.0f} analysed, "
          f"{embedded:.0f} embeddings, {len(events)} events")
    assert frames_seen == len(frames)
    # One track per appearance; each sends its aggregate when new and as it firms up
    # (about log2(frames) events: here at most 3), never one event per frame.
    tracks: dict[int, list] = {}
    for e in events:
        tracks.setdefault(e.payload.track_id, []).append(e)
    assert len(tracks) == 3, [(e.payload.track_id, e.payload.box) for e in events]
    people = [a[1], b[1], a[1]]
    for (_, evs), ref in zip(sorted(tracks.items()), people, strict=True):
        assert 1 <= len(evs) <= 3
        frames_behind = [e.payload.track.frames for e in evs]
        assert frames_behind == sorted(set(frames_behind))  # the aggregate grows
        for ev in evs:
            p = ev.payload
            assert p.node_id == "cam-test" and p.model == "facenet-casia-webface"
            assert p.timezone == "Europe/Paris" and p.timezone_offset in ("+01:00", "+02:00")
            assert p.quality.blur > 0 and 0 < p.quality.brightness < 255
            assert 0 <= p.track.weight <= p.track.frames and 0 <= p.track.face_quality <= 1
        assert evs[-1].payload.track.weight > 0  # a face good enough to decide
        assert float(evs[-1].embedding @ ref) > 0.7  # the aggregate is that person
    assert [e.payload.lamport for e in events] == sorted(e.payload.lamport for e in events)
    assert embedded < frames_seen / 3  # the tracker spares most frames the embedder


def test_idle_and_wake(tmp_path, redis_url, face_analyzer):
    from facegrid_node.agent import NodeAgent

    bg = background(3)
    moving = []
    for i in range(20):  # a box crossing the scene: motion without a face
        f = bg.copy()
        f[200:320, 20 + 25 * i:140 + 25 * i] = (30, 200, 240)
        moving.append(f)
    clip = write_clip(tmp_path / "idle.avi", [*still_frames(2.4, bg), *moving,
                                              *still_frames(2.4, bg)])
    agent = NodeAgent(_settings(tmp_path, redis_url, clip, idle_after_s=0.8, idle_fps=50),
                      analyzer=face_analyzer, heartbeats=False)
    assert agent.run() == 0
    to_idle = metric(agent, "facegrid_node_state_transitions_total", state="idle")
    to_active = metric(agent, "facegrid_node_state_transitions_total", state="active")
    idle_s = metric(agent, "facegrid_node_time_in_state_seconds_total", state="idle")
    active_s = metric(agent, "facegrid_node_time_in_state_seconds_total", state="active")
    frames = metric(agent, "facegrid_node_frames_total")
    analysed = metric(agent, "facegrid_node_frames_analysed_total")
    print(f"\nidle transitions {to_idle:.0f}, wakes {to_active:.0f}, idle {idle_s:.1f}s, "
          f"active {active_s:.1f}s, analysed {analysed:.0f}/{frames:.0f} frames")
    assert to_idle == 2 and to_active == 1
    assert idle_s > 0.5 and active_s > 0.8
    assert analysed < frames * 0.6  # no detector while idle
    assert metric(agent, "facegrid_node_state", state="idle") == 1
    assert _events(redis_url) == []


def test_camera_disappears_and_returns(tmp_path, redis_url, face_analyzer, lfw_embeddings):
    from facegrid_node.agent import NodeAgent

    folder = tmp_path / "cam"
    folder.mkdir()
    for i, (p, _) in enumerate(lfw_embeddings["George_W_Bush"][:3]):
        shutil.copy(p, folder / f"{i}.jpg")
    agent = NodeAgent(_settings(tmp_path, redis_url, folder, loop=True, source_fps=10),
                      analyzer=face_analyzer, heartbeats=False)
    t = _start(agent)
    try:
        wait_for(lambda: metric(agent, "facegrid_node_frames_total") > 3, 60, "frames")
        assert metric(agent, "facegrid_node_camera_up") == 1
        folder.rename(tmp_path / "gone")  # unplugged
        wait_for(lambda: metric(agent, "facegrid_node_camera_up") == 0, 30, "camera down")
        frames = metric(agent, "facegrid_node_frames_total")
        ok, why = agent._readyz()
        assert not ok and why == "camera down"
        wait_for(lambda: metric(agent, "facegrid_node_camera_reconnects_total") >= 2, 30,
                 "reconnect attempts")
        (tmp_path / "gone").rename(folder)  # plugged back in
        wait_for(lambda: metric(agent, "facegrid_node_camera_up") == 1, 30, "camera up")
        wait_for(lambda: metric(agent, "facegrid_node_frames_total") > frames + 2, 60,
                 "frames after reconnect")
        assert agent._readyz() == (True, "ok") and t.is_alive()
    finally:
        agent.stop()
        t.join(30)
    assert not t.is_alive()


@pytest.mark.reliability
def test_redis_killed_and_restarted(tmp_path, redis_server, redis_url, face_analyzer,
                                    lfw_embeddings):
    from facegrid_node.agent import NodeAgent

    folder = tmp_path / "cam"
    folder.mkdir()
    shutil.copy(lfw_embeddings["Tony_Blair"][0][0], folder / "a.jpg")
    # The same face over and over; a short resend interval keeps events coming.
    agent = NodeAgent(_settings(tmp_path, redis_url, folder, loop=True, source_fps=10,
                                resend_interval_s=0.3, reembed_every=1, detect_every=1),
                      analyzer=face_analyzer, heartbeats=False)
    t = _start(agent)
    try:
        wait_for(lambda: metric(agent, "facegrid_node_events_sent_total") >= 2, 60, "events")
        redis_server.kill()
        wait_for(lambda: metric(agent, "facegrid_node_redis_up") == 0, 30, "redis down")
        wait_for(lambda: agent.publisher.backlog >= 3, 60, "buffered events")
        assert t.is_alive()
        backlog = agent.publisher.backlog
        redis_server.start()
        wait_for(lambda: metric(agent, "facegrid_node_redis_up") == 1, 60, "redis back")
        wait_for(lambda: agent.publisher.backlog == 0, 30, "backlog flushed")
    finally:
        agent.stop()
        t.join(30)
    events = _events(redis_url)
    sent = metric(agent, "facegrid_node_events_sent_total")
    print(f"\nbuffered {backlog} while Redis was down; {len(events)} events in the stream")
    assert not t.is_alive()
    assert len(events) == sent >= backlog + 2  # nothing acknowledged was lost
    assert len({e.payload.event_id for e in events}) == len(events)


def test_redis_outage_drops_old_events_and_bounds_the_buffer():
    from facegrid_node.publisher import RedisPublisher

    dropped: dict[str, int] = {}
    pub = RedisPublisher("redis://127.0.0.1:9/0", buffer_size=5, max_age_s=0.5,
                         on_dropped=lambda r, n: dropped.__setitem__(r, dropped.get(r, 0) + n),
                         backoff_max_s=0.2)
    try:
        for i in range(8):
            pub.publish({"v": b"1", "n": str(i).encode()})
        assert pub.backlog == 5 and dropped == {"buffer_full": 3}
        wait_for(lambda: dropped.get("too_old") == 5, 10, "old events dropped")
        assert pub.backlog == 0 and not pub.up
    finally:
        pub.close(timeout=1)


def test_heartbeats_drift_lamport_and_token_rotation(tmp_path, redis_url, face_analyzer,
                                                     lfw_embeddings):
    from facegrid_node.agent import NodeAgent

    folder = tmp_path / "cam"
    folder.mkdir()
    shutil.copy(lfw_embeddings["Hugo_Chavez"][0][0], folder / "a.jpg")
    token_file = tmp_path / "token"
    first, second = make_token("cam-test", "one"), make_token("cam-test", "two")
    token_file.write_text(first)
    from fixtures.servers import free_port

    port = free_port()
    url = f"http://127.0.0.1:{port}"  # nothing listens yet: the server is down at start
    agent = NodeAgent(_settings(tmp_path, redis_url, folder, loop=True, source_fps=10,
                                resend_interval_s=0.4, server_url=url),
                      analyzer=face_analyzer, results=False)
    t = _start(agent)
    srv = None
    try:
        wait_for(lambda: metric(agent, "facegrid_node_heartbeats_total",
                                reason="unreachable") >= 1, 30, "failed heartbeat")
        wait_for(lambda: metric(agent, "facegrid_node_frames_total") > 2, 60, "frames")
        assert t.is_alive()  # running on without a server
        srv = ContractServer(clock_offset_s=2.0, lamport_max=1000, port=port)
        wait_for(lambda: len(srv.heartbeats) >= 3, 30, "heartbeats")
        assert srv.registrations[0][0] == first
        assert srv.registrations[0][1]["model"] == "facenet-casia-webface"
        wait_for(lambda: abs(agent.drift.offset_ms - 2000) < 200, 20, "drift estimate")
        assert agent.lamport.value > 1000
        new = tmp_path / "token.new"
        new.write_text(second)
        new.replace(token_file)  # rotation, no restart
        wait_for(lambda: any(tok == second for tok, _ in srv.registrations), 20,
                 "registration with the new token")
        wait_for(lambda: srv.heartbeats[-1][0] == second, 20, "heartbeat with the new token")
        sent_before = len(_events(redis_url))
        wait_for(lambda: len(_events(redis_url)) > sent_before + 1, 30, "more events")
    finally:
        agent.stop()
        t.join(30)
        if srv:
            srv.close()
    events = _events(redis_url)
    assert events[0].token == first and events[-1].token == second
    late = [e.payload for e in events if e.token == second]
    assert all(abs(p.drift_offset_ms - 2000) < 300 for p in late)
    assert all(p.lamport > 1000 for p in late)
    hb = srv.heartbeats[-1][1]
    assert hb["camera_up"] is True and hb["state"] == "active" and hb["events_sent"] >= 1


def test_results_are_learnt_per_track(redis_server, redis_url):
    from facegrid_node.results import ResultsListener

    seen = []
    rl = ResultsListener(redis_url, "cam-test", on_result=seen.append)
    rl.start()
    r = redis_server.client()
    try:
        wait_for(lambda: r.pubsub_numsub(keys.results_channel("cam-test"))[0][1] == 1, 10,
                 "subscription")
        ch = keys.results_channel("cam-test")
        r.publish(ch, wire.Result(str(uuid.uuid4()), 7, True).to_json())
        # Malformed results are ignored (the format's own error), never learnt.
        r.publish(ch, b'{"event_id":"x","track_id":9,"recognised":true}')
        r.publish(ch, b'not json')
        r.publish(ch, wire.Result(str(uuid.uuid4()), 8, False).to_json())
        wait_for(lambda: len(seen) == 2, 10, "results")
        assert rl.recognised(7) is True and rl.recognised(8) is False
        assert rl.recognised(9) is None
    finally:
        rl.stop()
        r.close()
    assert np.array(seen).tolist() == [True, False]


def test_against_the_real_server(tmp_path, redis_url, face_analyzer, lfw_embeddings):
    """Registration and heartbeats accepted by `facegrid server`; it reports the node."""
    import httpx
    from facegrid_node.agent import NodeAgent
    from fixtures.api_server import start_server, stop_server

    from facegrid import tokens
    from facegrid.contract import NodeStatus, node_path

    server = start_server(tmp_path, redis_url)
    folder = tmp_path / "cam"
    folder.mkdir()
    shutil.copy(lfw_embeddings["Colin_Powell"][1][0], folder / "a.jpg")
    (tmp_path / "token").write_text(tokens.issue_token(server.key, "cam-test"))
    agent = NodeAgent(_settings(tmp_path, redis_url, folder, loop=True, source_fps=10,
                                server_url=server.url), analyzer=face_analyzer)
    t = _start(agent)
    try:
        wait_for(lambda: metric(agent, "facegrid_node_heartbeats_total", reason="ok") >= 2,
                 60, "accepted heartbeats")

        def status():
            r = httpx.get(server.url + node_path("cam-test"), headers=server.admin, timeout=5)
            return NodeStatus.model_validate_json(r.content) if r.status_code == 200 else None

        st = wait_for(lambda: (s := status()) and s.camera_up and s, 30, "node status")
        assert st.model == "facenet-casia-webface" and st.timezone == "Europe/Paris"
        assert st.state.value == "active" and abs(st.drift_offset_ms) < 1000
        assert metric(agent, "facegrid_node_heartbeats_total", reason="refused") == 0
    finally:
        agent.stop()
        t.join(30)
        stop_server(server)
