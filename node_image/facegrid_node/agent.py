"""The node agent: wires camera, pipeline, publisher, heartbeats, results and metrics.

``NodeAgent(settings).run()`` captures until :meth:`NodeAgent.stop` (SIGTERM)
or the end of a finite source, then stops capture, flushes buffered events
and releases everything.  Only embeddings leave: events are built with
:func:`facegrid.wire.encode` and time fields with :func:`facegrid.clock.event_times`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from datetime import UTC, datetime

import numpy as np

from facegrid import __version__, wire
from facegrid.clock import DriftEstimator, LamportClock, event_times, uuid7
from facegrid.contract import NodeState, Registration
from facegrid_node.metrics import NodeMetrics
from facegrid_node.motion import IdleController, MotionDetector
from facegrid_node.pipeline import FramePipeline, FrameResult, Outgoing
from facegrid_node.publisher import EventPublisher, RedisPublisher
from facegrid_node.quality import DarknessGate
from facegrid_node.settings import NodeSettings
from facegrid_node.sources import CameraMonitor, EndOfStream, FrameSource, open_source
from facegrid_node.token_file import TokenFile
from facegrid_node.tracker import IoUTracker, SendRule

log = logging.getLogger(__name__)

#: At start, how long capture waits for the heartbeat burst to correct the node clock
#: (a reachable server takes about a second); after it the camera starts regardless.
CLOCK_SYNC_WAIT_S = 3.0


def display_available() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class NodeAgent:
    def __init__(self, settings: NodeSettings, *, analyzer=None,
                 source: FrameSource | None = None, publisher: EventPublisher | None = None,
                 heartbeats: bool = True, results: bool = True,
                 serve_metrics: bool | None = None) -> None:
        self.s = settings
        self.metrics = NodeMetrics(settings.node_id)
        m, nid = self.metrics, settings.node_id
        self.token = TokenFile(settings.token_file)  # fails early and clearly if unusable
        self._token_reloads = self.token.reloads
        m.token_reloads.labels(nid).inc(self.token.reloads)
        if analyzer is None:
            from facegrid_vision.faces import load_analyzer

            analyzer = load_analyzer(settings.weights, model_id=settings.model_id,
                                     backend=settings.backend, onnx_dir=settings.onnx_dir,
                                     int8=settings.int8, max_batch=settings.embed_batch,
                                     min_face_size=settings.min_face_size,
                                     margin=settings.margin, flip=settings.flip,
                                     detect_max_side=settings.detect_max_side,
                                     det_threshold=settings.det_threshold,
                                     threads=settings.threads)
        self.analyzer = analyzer
        self.model_id: str = analyzer.model_id
        self.lamport = LamportClock()
        self.drift = DriftEstimator()
        self._stop = threading.Event()
        now = time.monotonic()
        self.idle = IdleController(settings.idle_after_s, now)
        self._state_mark = now
        self.tracker = IoUTracker(settings.iou_threshold, settings.track_max_age_s,
                                  settings.reembed_every, settings.reembed_iou,
                                  first_id=int(time.time() * 1000) % (2**40) * 1000)
        self.pipeline = FramePipeline(
            analyzer, analyzer, tracker=self.tracker,
            rule=SendRule(settings.send_distance, settings.resend_interval_s),
            gate=DarknessGate(settings.dark_threshold, settings.dark_window),
            motion=MotionDetector(settings.motion_threshold), idle=self.idle,
            detect_every=settings.detect_every,
            background_embed=settings.embed_in_background, observe=m.observe)
        src = source or open_source(settings.camera, loop=settings.loop,
                                    realtime=settings.realtime, fps=settings.source_fps,
                                    timeout_s=settings.camera_timeout_s,
                                    size=settings.camera_size)
        self.camera = CameraMonitor(
            src, timeout_s=settings.camera_timeout_s, backoff_max_s=settings.reconnect_max_s,
            on_state=lambda up: m.camera_up.labels(nid).set(1 if up else 0),
            on_reconnect=lambda: m.camera_reconnects.labels(nid).inc(),
            sleep=self._stop.wait)
        self.publisher = publisher or RedisPublisher(
            settings.redis_url, maxlen=settings.stream_maxlen, buffer_size=settings.buffer_size,
            max_age_s=settings.max_event_age_s,
            on_sent=lambda n: m.events_sent.labels(nid).inc(n),
            on_dropped=lambda reason, n: m.events_dropped.labels(nid, reason).inc(n),
            on_state=self._redis_state)
        self.events_sent_local = 0
        self.heartbeat = None
        if heartbeats:
            from facegrid_node.heartbeat import HeartbeatClient

            self.heartbeat = HeartbeatClient(
                settings.server_url,
                Registration(node_id=nid, timezone=settings.timezone, model=self.model_id,
                             version=__version__[:32], camera=src.description[:256]),
                token=lambda: self.token.token, status=self._status, drift=self.drift,
                lamport=self.lamport, interval_s=settings.heartbeat_interval_s,
                timeout_s=settings.http_timeout_s,
                on_result=lambda reason: m.heartbeats.labels(nid, reason).inc())
        self.results = None
        if results:
            from facegrid_node.results import ResultsListener

            self.results = ResultsListener(
                settings.redis_url, nid,
                on_result=lambda ok: m.results.labels(
                    nid, "recognised" if ok else "unrecognised").inc())
        if serve_metrics is None:
            serve_metrics = settings.metrics_port > 0
        self.health = None
        if serve_metrics:
            from facegrid_node.health import HealthServer

            self.health = HealthServer(settings.metrics_host, settings.metrics_port,
                                       m.registry, self._healthz, self._readyz)
        self.show = settings.show and display_available()
        if settings.show and not self.show:
            log.warning("--show needs a display (DISPLAY/WAYLAND_DISPLAY): no preview")
        self._fps_window: list[float] = []
        self.fps = 0.0
        self._last_loop = now
        self.frames = 0
        self.running = False
        m.set_state(NodeState.ACTIVE.value)
        m.redis_up.labels(nid).set(1)

    # --- status ------------------------------------------------------------
    def _redis_state(self, up: bool, backlog: int) -> None:
        self.metrics.redis_up.labels(self.s.node_id).set(1 if up else 0)
        self.metrics.backlog.labels(self.s.node_id).set(backlog)

    def _status(self) -> dict:
        pub = self.publisher
        return {
            "state": self.idle.state,
            "state_seconds": self.idle.seconds_in_state(time.monotonic()),
            "fps": min(self.fps, 1000.0),
            "drift_offset_ms": self.drift.offset_ms,
            "lamport": self.lamport.value,
            "camera_up": self.camera.up,
            "events_sent": int(getattr(pub, "sent", self.events_sent_local)),
            "events_dropped": int(getattr(pub, "dropped", 0)),
            "backlog": int(getattr(pub, "backlog", 0)),
        }

    def _healthz(self) -> tuple[bool, str]:
        age = time.monotonic() - self._last_loop
        limit = max(30.0, 5.0 / self.s.idle_fps, self.s.reconnect_max_s * 2)
        if self.running and age > limit:
            return False, f"capture loop stuck for {age:.0f}s"
        return True, "ok"

    def _readyz(self) -> tuple[bool, str]:
        if not self.running:
            return False, "not running"
        if not self.camera.up:
            return False, "camera down"
        return True, "ok"

    # --- events ------------------------------------------------------------
    def build_event(self, out: Outgoing) -> dict[str, bytes]:
        times = event_times(datetime.now(UTC), self.drift.offset_ms, self.s.timezone)
        payload = wire.EventPayload(
            event_id=uuid7(), node_id=self.s.node_id, lamport=self.lamport.tick(), **times,
            track_id=out.track_id, box=out.box, det_confidence=round(out.confidence, 4),
            quality=wire.Quality(out.quality.brightness, out.quality.blur),
            model=self.model_id, track=out.track)
        return wire.encode(payload, self.token.token, out.embedding)

    def _send(self, res: FrameResult) -> None:
        for out in res.outgoing:
            try:
                fields = self.build_event(out)
            except (wire.WireError, ValueError) as e:
                log.error("cannot encode an event: %s", e)
                self.metrics.events_dropped.labels(self.s.node_id, "unencodable").inc()
                continue
            self.publisher.publish(fields, time.monotonic())
            self.events_sent_local += 1

    # --- loop --------------------------------------------------------------
    def _account(self, res: FrameResult, now: float) -> None:
        m, nid = self.metrics, self.s.node_id
        m.frames.labels(nid).inc()
        if res.dark:
            m.dark_frames.labels(nid).inc()
        if res.detected:
            m.frames_analysed.labels(nid).inc()
            m.faces.labels(nid).inc(len(res.tracks))
        if res.embedded:
            m.embeddings.labels(nid).inc(res.embedded)
        m.state_time.labels(nid, self.idle.state.value if res.transition is None
                            else res.transition.old.value).inc(max(0.0, now - self._state_mark))
        self._state_mark = now
        if res.transition is not None:
            m.transitions.labels(nid, res.transition.new.value).inc()
            m.set_state(res.transition.new.value)
        m.state_seconds.labels(nid).set(self.idle.seconds_in_state(now))
        self._fps_window.append(now)
        while self._fps_window and now - self._fps_window[0] > 5.0:
            self._fps_window.pop(0)
        if len(self._fps_window) > 1:
            span = self._fps_window[-1] - self._fps_window[0]
            self.fps = (len(self._fps_window) - 1) / span if span > 0 else 0.0
        m.fps.labels(nid).set(self.fps)
        m.drift.labels(nid).set(self.drift.offset_ms / 1000.0)
        m.lamport.labels(nid).set(self.lamport.value)
        if self.heartbeat and self.heartbeat.last_success is not None:
            m.heartbeat_age.labels(nid).set(now - self.heartbeat.last_success)
        if self.token.reloads != self._token_reloads:
            m.token_reloads.labels(nid).inc(self.token.reloads - self._token_reloads)
            self._token_reloads = self.token.reloads

    def step(self) -> FrameResult | None:
        """Capture and process one frame (None while the camera is down)."""
        t0 = time.perf_counter()
        frame = self.camera.read()
        self.metrics.observe("capture", time.perf_counter() - t0)
        now = time.monotonic()
        self._last_loop = now
        if frame is None:
            return None
        res = self.pipeline.process(frame, now)
        t1 = time.perf_counter()
        self._send(res)
        self.metrics.observe("publish", time.perf_counter() - t1)
        self.metrics.observe("frame", time.perf_counter() - t0)
        self._account(res, now)
        self.frames += 1
        if self.show:
            self._preview(frame, res)
        return res

    def _preview(self, rgb: np.ndarray, res: FrameResult) -> None:
        import cv2

        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        for tr in res.tracks:
            ok = self.results.recognised(tr.track_id) if self.results else None
            colour = (0, 200, 0) if ok else (0, 0, 230) if ok is False else (0, 200, 230)
            x1, y1, x2, y2 = (int(v) for v in tr.box)
            cv2.rectangle(bgr, (x1, y1), (x2, y2), colour, 2)
        try:
            cv2.imshow(f"facegrid {self.s.node_id}", bgr)
            cv2.waitKey(1)
        except cv2.error as e:
            log.warning("no preview window (%s)", str(e).splitlines()[0][:120])
            self.show = False

    def _pace(self, started: float) -> None:
        fps = self.s.idle_fps if self.idle.state is NodeState.IDLE else self.s.max_fps
        left = 1.0 / fps - (time.monotonic() - started)
        if left > 0:
            self._stop.wait(left)

    def start_services(self) -> None:
        if self.health:
            self.health.start()
        if self.heartbeat:
            self.heartbeat.start()
        if self.results:
            self.results.start()

    def run(self) -> int:
        """Capture until stopped or a finite source ends; returns an exit code."""
        self.running = True
        self.start_services()
        if self.heartbeat and not self.heartbeat.wait_synced(CLOCK_SYNC_WAIT_S):
            log.warning("clock not yet synchronised with the server after %.0f s: events "
                        "carry the best estimate so far until it is", CLOCK_SYNC_WAIT_S)
        if not self.camera.start():
            log.error("camera %s not available at start; retrying",
                      self.camera.source.description)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.step()
                except EndOfStream:
                    log.info("camera %s: end of stream", self.camera.source.description)
                    break
                self._pace(started)
        finally:
            self.close()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        """Stop capture, flush buffered events, release everything (idempotent)."""
        if not self.running:
            return
        self.running = False
        self.camera.close()
        try:  # the faces of the embedding batch in flight still go out
            self._send(self.pipeline.close())
        except Exception:
            log.exception("the last embedding batch failed; its faces are not sent")
        self.publisher.close()
        if self.heartbeat:
            self.heartbeat.stop()
        if self.results:
            self.results.stop()
        if self.health:
            self.health.stop()
        if self.show:
            import cv2

            cv2.destroyAllWindows()
        log.info("node %s stopped after %d frames", self.s.node_id, self.frames)
