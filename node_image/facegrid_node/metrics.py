"""Prometheus metrics of the node agent (all ``facegrid_node_*``; labels bounded).

Each :class:`NodeMetrics` owns its registry, so several agents can live in one
process (tests) and ``/metrics`` shows exactly one node.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

STAGES = ("capture", "quality", "motion", "detect", "embed", "track", "publish", "frame")
STATES = ("active", "idle")
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25,
                    0.5, 1.0, 2.5)


#: Why the publisher or the agent drops an event (the events_dropped label).
DROP_REASONS = ("too_old", "buffer_full", "unencodable")


class NodeMetrics:
    def __init__(self, node_id: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        n = ["node"]
        self.node_id = node_id
        self.frames = Counter("facegrid_node_frames_total", "Frames captured", n, registry=r)
        self.frames_analysed = Counter("facegrid_node_frames_analysed_total",
                                       "Frames that ran the face detector", n, registry=r)
        self.faces = Counter("facegrid_node_faces_detected_total", "Faces detected", n,
                             registry=r)
        self.embeddings = Counter("facegrid_node_embeddings_total", "Faces embedded", n,
                                  registry=r)
        self.events_sent = Counter("facegrid_node_events_sent_total",
                                   "Events written to the Redis stream", n, registry=r)
        self.events_dropped = Counter("facegrid_node_events_dropped_total",
                                      "Events dropped (too old, buffer full, unencodable)",
                                      ["node", "reason"], registry=r)
        self.backlog = Gauge("facegrid_node_event_backlog", "Events waiting for Redis", n,
                             registry=r)
        self.redis_up = Gauge("facegrid_node_redis_up", "1 if the last Redis write worked", n,
                              registry=r)
        self.fps = Gauge("facegrid_node_fps", "Frames per second (last seconds)", n, registry=r)
        self.stage_seconds = Histogram("facegrid_node_stage_seconds",
                                       "Latency of each pipeline stage", ["node", "stage"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.state = Gauge("facegrid_node_state", "1 for the current state (active/idle)",
                           ["node", "state"], registry=r)
        self.state_seconds = Gauge("facegrid_node_state_seconds",
                                   "Seconds spent in the current state", n, registry=r)
        self.state_time = Counter("facegrid_node_time_in_state_seconds_total",
                                  "Total seconds spent in each state", ["node", "state"],
                                  registry=r)
        self.transitions = Counter("facegrid_node_state_transitions_total",
                                   "Idle/active transitions, by new state", ["node", "state"],
                                   registry=r)
        self.dark_frames = Counter("facegrid_node_dark_frames_total",
                                   "Frames skipped as too dark", n, registry=r)
        self.camera_up = Gauge("facegrid_node_camera_up", "1 while the camera gives frames", n,
                               registry=r)
        self.camera_reconnects = Counter("facegrid_node_camera_reconnects_total",
                                         "Camera reconnect attempts", n, registry=r)
        self.heartbeats = Counter("facegrid_node_heartbeats_total", "Heartbeats by result",
                                  ["node", "reason"], registry=r)
        self.heartbeat_age = Gauge("facegrid_node_heartbeat_age_seconds",
                                   "Seconds since the last successful heartbeat", n, registry=r)
        self.drift = Gauge("facegrid_node_drift_offset_seconds",
                           "Correction added to the node clock (server − node), in seconds",
                           n, registry=r)
        self.lamport = Gauge("facegrid_node_lamport", "Current Lamport value", n, registry=r)
        self.results = Counter("facegrid_node_results_total", "Results from the worker",
                               ["node", "state"], registry=r)
        self.token_reloads = Counter("facegrid_node_token_reloads_total",
                                     "Times the token file was (re)read", n, registry=r)
        for s in STATES:
            self.state.labels(node_id, s)
            self.state_time.labels(node_id, s)
            self.transitions.labels(node_id, s)
        for s in STAGES:
            self.stage_seconds.labels(node_id, s)

        # Series that stay at 0 on a healthy camera exist from the start, so dashboards
        # and increase() see them (a counter's first sample is its baseline).
        for c in (self.camera_reconnects, self.dark_frames, self.token_reloads):
            c.labels(node_id)
        for reason in DROP_REASONS:
            self.events_dropped.labels(node_id, reason)

    def observe(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(self.node_id, stage).observe(seconds)

    def set_state(self, state: str) -> None:
        for s in STATES:
            self.state.labels(self.node_id, s).set(1 if s == state else 0)
