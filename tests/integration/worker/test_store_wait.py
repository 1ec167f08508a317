"""Components that start beside their database wait for it (a chart install starts
PostgreSQL, server, worker and notifier together): ``repo.migrate_locked`` waits until
the database accepts connections, then migrates; it gives up with the database's own
error after its deadline."""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from urllib.parse import urlsplit, urlunsplit

import pytest
from facegrid_services.store import db, repo
from fixtures.servers import free_port
from sqlalchemy import exc as sa_exc
from sqlalchemy import inspect

pytestmark = pytest.mark.integration


def _pipe(a: socket.socket, b: socket.socket) -> None:
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    finally:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


def late_listener(port: int, target: tuple[str, int], after_s: float,
                  stop: threading.Event) -> threading.Thread:
    """Nothing listens on ``port`` for ``after_s``; then it forwards to the real server
    (a PostgreSQL that is still starting, as far as a client can tell)."""
    def run() -> None:
        time.sleep(after_s)
        srv = socket.create_server(("127.0.0.1", port))
        srv.settimeout(0.2)
        with srv:
            while not stop.is_set():
                try:
                    client, _ = srv.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def with_port(url: str, port: int) -> str:
    u = urlsplit(url)
    netloc = u.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(u._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


def test_migrate_waits_for_a_database_that_is_still_starting(postgres_url, caplog):
    real = urlsplit(postgres_url)
    port, stop = free_port(), threading.Event()
    late_listener(port, (real.hostname, real.port), 1.5, stop)
    url = with_port(postgres_url, port)
    caplog.set_level(logging.INFO, logger="facegrid_services.store.db")
    t0 = time.monotonic()
    try:
        repo.migrate_locked(url)
    finally:
        stop.set()
    assert time.monotonic() - t0 >= 1.4
    waiting = [r for r in caplog.records if "not reachable yet" in r.getMessage()]
    assert len(waiting) == 1, [r.getMessage() for r in caplog.records]  # said once
    assert any("reachable" in r.getMessage() and r is not waiting[0] for r in caplog.records)
    engine = db.make_engine(postgres_url)
    try:
        assert "people" in inspect(engine).get_table_names()  # migrated after the wait
    finally:
        engine.dispose()


def test_wait_gives_up_with_the_databases_error():
    engine = db.make_engine(f"postgresql+psycopg://facegrid:pw@127.0.0.1:{free_port()}/x")
    t0 = time.monotonic()
    with pytest.raises(sa_exc.OperationalError, match="refused"):
        db.wait_reachable(engine, timeout_s=1.0)
    assert 0.5 <= time.monotonic() - t0 < 5
    engine.dispose()
