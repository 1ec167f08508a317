"""Getting events onto the Redis stream, surviving Redis outages.

:class:`RedisPublisher` keeps a bounded in-memory buffer and a background
thread that XADDs buffered entries in pipelines.  It never trims the stream
(``maxlen`` 0, the default): the worker deletes what it has acknowledged, so a
node can never delete events nobody has read; Redis' ``maxmemory`` bounds the
stream, and a refused XADD keeps the events buffered (then dropped by age, counted).  When
Redis is away it retries with exponential backoff; when the buffer is full the
oldest event is dropped, and events older than ``max_age_s`` are dropped before
sending, each counted by reason.  Nothing is ever written to disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from facegrid import keys

log = logging.getLogger(__name__)


class EventPublisher(Protocol):
    def publish(self, fields: dict[str, bytes], created: float) -> None: ...

    def flush(self, timeout: float) -> bool: ...

    def close(self) -> None: ...


class RedisPublisher:
    def __init__(self, redis_url: str, *, maxlen: int = 0, buffer_size: int = 1000,
                 max_age_s: float = 300.0, stream: str = keys.EVENTS_STREAM,
                 on_sent: Callable[[int], None] | None = None,
                 on_dropped: Callable[[str, int], None] | None = None,
                 on_state: Callable[[bool, int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 backoff_max_s: float = 5.0) -> None:
        import redis

        self._redis = redis.Redis.from_url(redis_url, socket_timeout=3,
                                           socket_connect_timeout=2,
                                           health_check_interval=10)
        self._errors = (redis.ConnectionError, redis.TimeoutError, OSError)
        self._response_error = redis.ResponseError
        self.stream = stream
        self.maxlen = maxlen
        self.buffer_size = buffer_size
        self.max_age_s = max_age_s
        self._buf: deque[tuple[float, dict[str, bytes]]] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._clock = clock
        self._on_sent = on_sent or (lambda n: None)
        self._on_dropped = on_dropped or (lambda reason, n: None)
        self._on_state = on_state or (lambda up, backlog: None)
        self._backoff_max = backoff_max_s
        self.up = True
        self.sent = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="redis-publisher", daemon=True)
        self._thread.start()

    @property
    def backlog(self) -> int:
        return len(self._buf)

    def publish(self, fields: dict[str, bytes], created: float | None = None) -> None:
        """Queue one stream entry (never blocks on Redis)."""
        with self._cond:
            if len(self._buf) >= self.buffer_size:
                self._buf.popleft()
                self._drop("buffer_full", 1)
            self._buf.append((self._clock() if created is None else created, fields))
            self._cond.notify()

    def _drop(self, reason: str, n: int) -> None:
        self.dropped += n
        self._on_dropped(reason, n)

    def _expire(self) -> None:
        cutoff = self._clock() - self.max_age_s
        n = 0
        while self._buf and self._buf[0][0] < cutoff:
            self._buf.popleft()
            n += 1
        if n:
            log.warning("dropped %d buffered events older than %.0fs", n, self.max_age_s)
            self._drop("too_old", n)

    def _run(self) -> None:
        delay = 0.1
        while True:
            with self._cond:
                while not self._buf and not self._stop:
                    self._cond.wait(1.0)
                if self._stop and (not self._buf or not self.up):
                    return
                self._expire()
                batch = list(self._buf)[:100]
            if not batch:
                continue
            try:
                pipe = self._redis.pipeline(transaction=False)
                for _, fields in batch:
                    if self.maxlen:
                        pipe.xadd(self.stream, fields, maxlen=self.maxlen, approximate=True)
                    else:
                        pipe.xadd(self.stream, fields)
                pipe.execute()
            except self._response_error as e:
                # Redis refused the entries (e.g. wrong password, OOM): keep them, retry.
                self._down(f"Redis refused the write: {e}")
            except self._errors as e:
                self._down(f"Redis unreachable: {e}")
            else:
                with self._cond:
                    # Sent entries still buffered are at the left (drops only pop left).
                    sent_ids = {id(item) for item in batch}
                    while self._buf and id(self._buf[0]) in sent_ids:
                        self._buf.popleft()
                    self._cond.notify_all()
                self.sent += len(batch)
                self._on_sent(len(batch))
                if not self.up:
                    log.info("Redis is back: sending %d buffered events", len(self._buf))
                self.up = True
                self._on_state(True, len(self._buf))
                delay = 0.1
                continue
            self._on_state(False, len(self._buf))
            with self._cond:
                if self._stop:
                    return
                self._cond.wait(delay)
            delay = min(delay * 2, self._backoff_max)

    def _down(self, why: str) -> None:
        if self.up:
            log.warning("%s; buffering up to %d events and retrying", why, self.buffer_size)
        self.up = False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the buffer is empty (True) or the timeout passes (False)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def close(self, timeout: float = 5.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._buf:
            log.warning("%d events not sent at shutdown", len(self._buf))
        self._redis.close()
