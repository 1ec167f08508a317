"""``/metrics``, ``/healthz`` and ``/readyz`` on one port (default :9100)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class HealthServer:
    """``healthz()``/``readyz()`` return ``(ok, reason)``."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 healthz: Callable[[], tuple[bool, str]],
                 readyz: Callable[[], tuple[bool, str]]) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body, ctype, code = generate_latest(registry), CONTENT_TYPE_LATEST, 200
                elif path in ("/healthz", "/readyz"):
                    ok, why = (outer.healthz if path == "/healthz" else outer.readyz)()
                    body, ctype, code = f"{why}\n".encode(), "text/plain", 200 if ok else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args) -> None:
                log.debug("health %s", fmt % args)

        self.healthz, self.readyz = healthz, readyz
        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="health",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("metrics and health on :%d (/metrics, /healthz, /readyz)", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
