"""A small keep-alive HTTP/1.1 client for webhook POSTs (asyncio streams).

Why not httpx: at hundreds of deliveries a second its per-request CPU (≈1–3 ms
here, as bench/server.py found for heartbeats) was most of the notifier's cost;
this client needs ~0.2 ms.  It does exactly what a webhook delivery needs:
POST a body with Content-Length over http or https (certificates verified), read
the status and discard the body (Content-Length, chunked or until close), keep
the connection for the next request, never follow redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

MAX_HEADER_LINES = 100
MAX_DISCARD = 1 << 20  # a receiver's reply body beyond 1 MiB closes the connection


class HttpError(Exception):
    """The receiver's reply could not be read as HTTP/1.x."""


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class HttpPool:
    def __init__(self, timeout: float, *, max_idle_per_host: int = 64) -> None:
        self.timeout = timeout
        self.max_idle = max_idle_per_host
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """POST and return the status code; raises OSError, TimeoutError or HttpError."""
        u = urlsplit(url)
        https = u.scheme == "https"
        host = u.hostname or ""
        port = u.port or (443 if https else 80)
        key = (u.scheme, host, port)
        target = (u.path or "/") + (f"?{u.query}" if u.query else "")
        host_header = host if u.port is None else f"{host}:{port}"
        if ":" in host and not host.startswith("["):
            host_header = f"[{host}]" if u.port is None else f"[{host}]:{port}"
        head = [f"POST {target} HTTP/1.1", f"Host: {host_header}",
                f"Content-Length: {len(body)}", "Connection: keep-alive"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with asyncio.timeout(self.timeout):
            idle = self._idle.get(key)
            while idle:  # a kept connection may have been closed by the receiver meanwhile
                conn = idle.pop()
                with contextlib.suppress(_Stale):
                    return await self._exchange(key, conn, request, reused=True)
            conn = await self._connect(host, port, https)
            try:
                return await self._exchange(key, conn, request, reused=False)
            except _Stale:
                raise HttpError("the receiver closed the connection without a reply") from None

    async def _connect(self, host: str, port: int, https: bool) -> _Conn:
        if https and self._ssl is None:
            self._ssl = ssl.create_default_context()
        reader, writer = await asyncio.open_connection(
            host, port, ssl=self._ssl if https else None,
            server_hostname=host if https else None, limit=1 << 16)
        return _Conn(reader, writer)

    async def _exchange(self, key, conn: _Conn, request: bytes, *, reused: bool) -> int:
        try:
            try:
                conn.writer.write(request)
                await conn.writer.drain()
                status_line = await conn.reader.readline()
            except (ConnectionError, OSError):
                if reused:
                    raise _Stale from None
                raise
            if not status_line:
                if reused:
                    raise _Stale
                raise HttpError("the receiver closed the connection without a reply")
            status, keep = await self._read_reply(conn.reader, status_line)
        except BaseException:  # also a timeout's cancellation: never reuse a half-read one
            conn.close()
            raise
        if keep:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self.max_idle:
                idle.append(conn)
                return status
        conn.close()
        return status

    async def _read_reply(self, reader: asyncio.StreamReader, status_line: bytes
                          ) -> tuple[int, bool]:
        parts = status_line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {status_line[:60]!r}")
        status = int(parts[1])
        keep = parts[0] == "HTTP/1.1"
        length: int | None = None
        chunked = False
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == "content-length" and value.isdigit():
                length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                chunked = True
            elif name == "connection":
                keep = "close" not in value if parts[0] == "HTTP/1.1" else "keep-alive" in value
        else:
            raise HttpError("too many header lines in the reply")
        if status in (204, 304) or 100 <= status < 200:
            return status, keep
        if chunked:
            total = 0
            while True:
                size_line = await reader.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                total += size
                if total > MAX_DISCARD:
                    return status, False
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return status, keep
                await reader.readexactly(size + 2)
        if length is not None:
            if length > MAX_DISCARD:
                return status, False
            if length:
                await reader.readexactly(length)
            return status, keep
        # no length: the body runs until the receiver closes
        return status, False

    def close(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()


class _Stale(Exception):
    """A reused keep-alive connection turned out to be closed before any reply."""
