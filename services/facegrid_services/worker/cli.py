"""``facegrid worker``: wiring only (settings, metrics endpoint, signals, the loop)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    redis_url: Annotated[str | None, typer.Option(help="Redis URL [FACEGRID_REDIS_URL]")] = None,
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL of the store [FACEGRID_DATABASE_URL]")] = None,
    public_key_file: Annotated[Path | None, typer.Option(
        help="Ed25519 public key that verifies node tokens [FACEGRID_PUBLIC_KEY_FILE]")] = None,
    consumer: Annotated[str | None, typer.Option(
        help="Consumer name, unique per replica [FACEGRID_CONSUMER]")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Entries per XREADGROUP [FACEGRID_BATCH_SIZE]")] = None,
    threshold: Annotated[float | None, typer.Option(
        help="Cosine similarity a match needs [FACEGRID_THRESHOLD]")] = None,
    model: Annotated[str | None, typer.Option(
        help="Embedding model id to match; unset: the gallery's [FACEGRID_MODEL]")] = None,
    site_timezone: Annotated[str | None, typer.Option(
        help="IANA zone that defines attendance days [FACEGRID_SITE_TIMEZONE]")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Port of /metrics, 0 = off [FACEGRID_METRICS_PORT]")] = None,
    migrate: Annotated[bool | None, typer.Option(
        "--migrate/--no-migrate", help="Run migrations at start [FACEGRID_MIGRATE]")] = None,
) -> None:
    """Classify events from the Redis stream into sightings, attendance and alerts."""
    import os

    # One BLAS thread: the (256×512)·(512×people) product per batch is faster alone than
    # split over threads that compete with decoding and the store for the same cores.
    # Only effective before numpy loads; an explicit OPENBLAS_NUM_THREADS wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    import logging
    import signal
    import threading

    from pydantic import ValidationError

    from .settings import WorkerSettings

    log = logging.getLogger("facegrid_services.worker")
    given = {k: v for k, v in {
        "redis_url": redis_url, "database_url": database_url,
        "public_key_file": public_key_file, "consumer": consumer, "batch_size": batch_size,
        "threshold": threshold, "model": model, "site_timezone": site_timezone,
        "metrics_port": metrics_port, "migrate": migrate}.items() if v is not None}
    try:
        settings = WorkerSettings(**given)
    except ValidationError as e:
        typer.echo(f"invalid worker settings:\n{e}", err=True)
        raise typer.Exit(2) from None
    if not settings.public_key_file.is_file():
        typer.echo(f"public key {settings.public_key_file} not found: set "
                   "FACEGRID_PUBLIC_KEY_FILE (see `facegrid token keygen`)", err=True)
        raise typer.Exit(2)

    from facegrid import keys
    from facegrid_services.store import repo

    from .consumer import GalleryModelError, Worker
    from .health import serve

    if settings.migrate:
        repo.migrate_locked(settings.database_url)
    try:
        worker_ = Worker(settings)
    except ValueError as e:
        typer.echo(f"cannot start the worker: {e}", err=True)
        raise typer.Exit(2) from None
    if settings.metrics_port:
        serve(settings.metrics_port, lambda: worker_.last_progress,
              settings.liveness_timeout_s)
    stop = threading.Event()

    def _stop(signum, _frame):
        log.info("signal %s: finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("worker %s consuming %s as group %s", settings.consumer,
             keys.EVENTS_STREAM, keys.WORKER_GROUP)
    try:
        worker_.run(stop)
    except GalleryModelError as e:
        typer.echo(f"cannot start the worker: {e}", err=True)
        raise typer.Exit(2) from None
