"""``facegrid notifier`` (wiring only) and ``facegrid webhook create|list|delete|replay``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

webhook_app = typer.Typer(help="Webhook subscriptions (the notifier delivers them).",
                          no_args_is_help=True)
DatabaseUrl = Annotated[str, typer.Option(
    "--database-url", envvar="FACEGRID_DATABASE_URL", help="The server's store.")]


def register(app: typer.Typer) -> None:
    app.command("notifier")(notifier)
    app.add_typer(webhook_app, name="webhook")


def notifier(
    database_url: Annotated[str | None, typer.Option(
        help="SQLAlchemy URL of the store [FACEGRID_DATABASE_URL]")] = None,
    mqtt_url: Annotated[str | None, typer.Option(
        help="MQTT broker, mqtt://user:pass@host:1883 [FACEGRID_MQTT_URL]")] = None,
    metrics_port: Annotated[int | None, typer.Option(
        help="Port of /metrics, 0 = off [FACEGRID_METRICS_PORT]")] = None,
) -> None:
    """Send webhooks and MQTT messages for presences, alerts and camera states (one replica)."""
    import asyncio
    import logging
    import signal

    from prometheus_client import start_http_server
    from pydantic import ValidationError

    from facegrid_services.store import db, repo

    from .mqtt import MqttPublisher
    from .notifier import Notifier, mqtt_pseudonym_key
    from .settings import NotifierSettings

    log = logging.getLogger("facegrid_services.notify")
    given = {k: v for k, v in {"database_url": database_url, "mqtt_url": mqtt_url,
                               "metrics_port": metrics_port}.items() if v is not None}
    try:
        settings = NotifierSettings(**given)
    except ValidationError as e:
        typer.echo(f"invalid notifier settings:\n{e}", err=True)
        raise typer.Exit(2) from None
    if settings.migrate:
        repo.migrate_locked(settings.database_url)
    sessions = db.session_factory(db.make_engine(settings.database_url))
    if settings.metrics_port:
        start_http_server(settings.metrics_port)
    mqtt = None
    if settings.mqtt_url:
        mqtt = MqttPublisher(settings, mqtt_pseudonym_key(sessions, settings))
        mqtt.start()
    service = Notifier(settings, sessions, mqtt=mqtt)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("notifier running (MQTT %s)", "on" if mqtt else "off")
        await service.run(stop)

    try:
        asyncio.run(main())
    finally:
        if mqtt is not None:
            mqtt.stop()
    log.info("notifier stopped")


def _sessions(url: str):
    from facegrid_services.store import db, repo

    repo.migrate_locked(url)
    return db.session_factory(db.make_engine(url))


@webhook_app.command()
def create(
    name: Annotated[str, typer.Argument(help="A unique name.")],
    url: Annotated[str, typer.Option(help="The receiver, http(s)://…")],
    events: Annotated[str, typer.Option(
        help="Comma-separated event types (default: all).")] = "",
    include_names: Annotated[bool, typer.Option(
        help="Send people's names (else a pseudonymous id).")] = False,
    database_url: DatabaseUrl = "sqlite:///./facegrid.db",
) -> None:
    """Subscribe URL; prints the signing secret (shown once)."""
    import os

    from . import webhooks
    from .events import ALL_TYPES

    chosen = [e.strip() for e in events.split(",") if e.strip()] or ALL_TYPES
    try:
        with _sessions(database_url)() as s:
            sub = webhooks.create_subscription(
                s, name=name, url=url, events=chosen, include_names=include_names,
                created_by=f"cli:{os.environ.get('USER', 'unknown')}")
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"subscription {sub.name!r} (id {sub.id}) for {', '.join(sub.events)}; "
               "its signing secret is shown only now:", err=True)
    typer.echo(sub.secret)


@webhook_app.command("list")
def list_(database_url: DatabaseUrl = "sqlite:///./facegrid.db") -> None:
    """Subscriptions with their delivery counts, as JSON lines (no secrets)."""
    from . import webhooks

    with _sessions(database_url)() as s:
        subs = webhooks.list_subscriptions(s)
        counts = webhooks.counts(s, [x.id for x in subs])
        for x in subs:
            typer.echo(json.dumps({"id": x.id, "name": x.name, "url": x.url,
                                   "events": x.events, "include_names": x.include_names,
                                   "active": x.active, "deliveries": counts[x.id]}))


@webhook_app.command()
def delete(
    subscription: Annotated[str, typer.Argument(help="Name or id.")],
    database_url: DatabaseUrl = "sqlite:///./facegrid.db",
) -> None:
    """Delete a subscription and its delivery log."""
    from . import webhooks

    with _sessions(database_url)() as s:
        try:
            webhooks.delete_subscription(s, webhooks.get(s, subscription))
        except webhooks.NotFound as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None


@webhook_app.command()
def replay(
    subscription: Annotated[str, typer.Argument(help="Name or id.")],
    database_url: DatabaseUrl = "sqlite:///./facegrid.db",
) -> None:
    """Send every dead letter of the subscription again."""
    from . import webhooks

    with _sessions(database_url)() as s:
        try:
            n = webhooks.replay(s, webhooks.get(s, subscription))
        except webhooks.NotFound as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from None
    typer.echo(f"{n} deliveries queued again", err=True)
