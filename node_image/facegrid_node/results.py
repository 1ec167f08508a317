"""Per-event results from the worker: recognised yes/no per track, never a name.

The worker publishes :class:`facegrid.wire.Result` messages on
:func:`facegrid.keys.results_channel`; :class:`ResultsListener` keeps the
latest answer per track (bounded) for the preview window and the metrics.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable

from facegrid import keys, wire

log = logging.getLogger(__name__)


class ResultsListener:
    def __init__(self, redis_url: str, node_id: str, *, max_tracks: int = 1000,
                 on_result: Callable[[bool], None] | None = None) -> None:
        import redis

        self._redis = redis.Redis.from_url(redis_url, socket_connect_timeout=2,
                                           health_check_interval=10)
        self._errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        self.channel = keys.results_channel(node_id)
        self._max = max_tracks
        self._by_track: OrderedDict[int, bool] = OrderedDict()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._on_result = on_result or (lambda ok: None)
        self._thread = threading.Thread(target=self._run, name="results", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def recognised(self, track_id: int) -> bool | None:
        with self._lock:
            return self._by_track.get(track_id)

    def handle(self, data: bytes | str) -> bool:
        """Apply one message; False (and a log line) for a malformed one."""
        try:
            result = wire.decode_result(data)
        except wire.WireError as e:
            log.warning("ignoring malformed result on %s: %s", self.channel, e)
            return False
        track_id, ok = result.track_id, result.recognised
        with self._lock:
            self._by_track[track_id] = ok
            self._by_track.move_to_end(track_id)
            while len(self._by_track) > self._max:
                self._by_track.popitem(last=False)
        self._on_result(ok)
        return True

    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.subscribe(self.channel)
                delay = 0.2
                while not self._stop.is_set():
                    msg = pubsub.get_message(timeout=0.5)
                    if msg and msg.get("type") == "message":
                        self.handle(msg["data"])
            except self._errors as e:
                log.debug("results subscription lost (%s); retrying", e)
                self._stop.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(self._errors):
                    pubsub.close()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self._redis.close()
