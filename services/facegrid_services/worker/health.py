"""The worker's HTTP endpoint: ``/metrics`` (Prometheus) and ``/healthz`` (liveness).

``/healthz`` answers 200 while the loop completes iterations (a batch, an empty
read or a handled outage each count) and 503 once none completed for
``liveness_timeout_s``: a wedged loop (a hung call, a deadlock) gets the pod
restarted, a Redis outage does not.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


def serve(port: int, last_progress: Callable[[], float], timeout_s: float,
          host: str = "0.0.0.0") -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] == "/healthz":
                idle = time.monotonic() - last_progress()
                ok = idle < timeout_s
                body = (f"{'ok' if ok else 'stuck'}: last loop iteration {idle:.1f} s ago\n"
                        ).encode()
                self._send(200 if ok else 503, body, "text/plain; charset=utf-8")
            else:
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)

        def _send(self, code: int, body: bytes, ctype: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:  # probes every few seconds: no access log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
