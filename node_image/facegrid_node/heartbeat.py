"""Registration and heartbeats over HTTP (facegrid.contract), feeding the clocks.

At start the node registers with its JWT; then every few seconds it sends a
:class:`~facegrid.contract.Heartbeat`.  Each reply gives one drift sample
``(sent_at, server_time, received_at)`` for the :class:`DriftEstimator` and the
system's highest Lamport value for :meth:`LamportClock.observe`.  An
unreachable server is logged once per outage and retried; the node keeps
running.  A changed token (rotation) or a 401/404 reply triggers registration
again.  While the drift estimator is warming (start, or the node clock stepped)
heartbeats go every ``burst_interval_s`` instead (NTP's ``iburst``), so the
node's clock is corrected within about a second of reaching the server.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import httpx

from facegrid.clock import DriftEstimator, LamportClock
from facegrid.contract import (
    REGISTER_PATH,
    Heartbeat,
    HeartbeatReply,
    Registration,
    heartbeat_path,
)

log = logging.getLogger(__name__)


class HeartbeatClient:
    def __init__(self, server_url: str, registration: Registration,
                 token: Callable[[], str], status: Callable[[], dict],
                 drift: DriftEstimator, lamport: LamportClock, *,
                 interval_s: float = 5.0, timeout_s: float = 5.0,
                 burst_interval_s: float = 0.2,
                 on_result: Callable[[str], None] | None = None) -> None:
        self.registration = registration
        self._token = token
        self._status = status
        self.drift = drift
        self.lamport = lamport
        self.interval_s = interval_s
        self.burst_interval_s = burst_interval_s
        self._synced = threading.Event()
        self._http = httpx.Client(base_url=server_url.rstrip("/"), timeout=timeout_s)
        self._on_result = on_result or (lambda reason: None)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.registered_token: str | None = None
        self.last_success: float | None = None  # monotonic
        self.server_ok = True
        self._refused = False

    def _headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def register(self) -> bool:
        token = self._token()
        try:
            r = self._http.post(REGISTER_PATH, headers=self._headers(token),
                                content=self.registration.model_dump_json())
        except httpx.HTTPError as e:
            self._unreachable(e)
            return False
        if r.status_code >= 300:
            self._on_result("register_refused")
            (log.debug if self._refused else log.warning)(
                "server refused registration of %s: HTTP %d %s",
                self.registration.node_id, r.status_code, r.text[:300])
            self._refused = True
            return False
        self._refused = False
        self.registered_token = token
        self._on_result("registered")
        log.info("registered node %s with %s", self.registration.node_id, self._http.base_url)
        return True

    def beat(self) -> bool:
        """One heartbeat (registering first when needed). True on success."""
        token = self._token()
        if self.registered_token != token and not self.register():
            return False
        status = self._status()
        t_send = time.time()
        hb = Heartbeat(sent_at=t_send, **status)
        try:
            r = self._http.post(heartbeat_path(self.registration.node_id),
                                headers=self._headers(token), content=hb.model_dump_json())
            t_recv = time.time()
        except httpx.HTTPError as e:
            self._unreachable(e)
            return False
        if r.status_code in (401, 403, 404):
            self._on_result("refused")
            log.warning("heartbeat refused (HTTP %d): registering again", r.status_code)
            self.registered_token = None
            return False
        if r.status_code >= 300:
            self._on_result("error")
            log.warning("heartbeat failed: HTTP %d %s", r.status_code, r.text[:200])
            return False
        try:
            reply = HeartbeatReply.model_validate_json(r.content)
        except ValueError as e:
            self._on_result("bad_reply")
            log.warning("heartbeat reply is not a HeartbeatReply: %s", str(e)[:200])
            return False
        self.drift.add(t_send, reply.server_time, max(t_recv, t_send))
        if not self.drift.warming:
            self._synced.set()
        ignored = self.lamport.ignored
        self.lamport.observe(reply.lamport_max)
        if self.lamport.ignored > ignored:
            log.warning("ignoring an implausible Lamport maximum %d from the server",
                        reply.lamport_max)
        if reply.heartbeat_interval_s > 0:
            self.interval_s = min(max(reply.heartbeat_interval_s, 0.5), 300.0)
        if not self.server_ok:
            log.info("server reachable again")
        self.server_ok = True
        self.last_success = time.monotonic()
        self._on_result("ok")
        return True

    def _unreachable(self, e: Exception) -> None:
        self._on_result("unreachable")
        if self.server_ok:
            log.warning("server %s unreachable (%s): running on, retrying",
                        self._http.base_url, e)
        self.server_ok = False

    def wait_synced(self, timeout_s: float) -> bool:
        """Block until the clock estimate has left its warm-up (or ``timeout_s``)."""
        return self._synced.wait(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = False
            try:
                ok = self.beat()
            except Exception:  # never let the heartbeat thread die
                log.exception("heartbeat failed unexpectedly")
            burst = ok and self.drift.warming
            self._stop.wait(min(self.burst_interval_s, self.interval_s) if burst
                            else self.interval_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)
        self._http.close()
