"""Webhook subscriptions through the API: create (secret once), log, dead letters, replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from facegrid_services.notify import outbox
from facegrid_services.notify.http import HttpPool
from facegrid_services.notify.notifier import Notifier
from facegrid_services.notify.settings import NotifierSettings
from typer.testing import CliRunner

from facegrid.cli import app as cli
from facegrid.contract import API_PREFIX

pytestmark = pytest.mark.integration


def notifier_round(api, settings: NotifierSettings, rounds: int = 3) -> None:
    """A few rounds of the real notifier loop (fan-out, then deliveries)."""
    service = Notifier(settings, api.sessions)

    async def go():
        http = HttpPool(5.0)
        for _ in range(rounds):
            await service.step(http)
            await asyncio.sleep(0.2)
        await asyncio.gather(*(t for ts in service._tasks.values() for t in ts))
        http.close()

    asyncio.run(go())


def queue_unknown(api, n: int) -> list[str]:
    with api.sessions() as s:
        rows = [outbox.presence_row(presence_id=i + 1, node_id="cam-1", track_id=i,
                                    person_id=None, score=0.2, at=datetime.now(UTC))
                for i in range(n)]
        outbox.presences_stored(s, rows)
        s.commit()
    return [r["event_id"] for r in rows]


def test_subscription_lifecycle_dead_letters_and_replay(api, webhook_receiver):
    r = api.client.post(f"{API_PREFIX}/webhooks", headers=api.admin, json={
        "name": "chat", "url": webhook_receiver.url("chat"),
        "events": ["presence.unknown", "alert.intruder"]})
    assert r.status_code == 201, r.text
    sub = r.json()
    assert sub["secret"].startswith("whsec_") and sub["include_names"] is False
    assert sub["created_by"] == "bootstrap-admin"
    listed = api.client.get(f"{API_PREFIX}/webhooks", headers=api.admin).json()["items"]
    assert "secret" not in listed[0]
    assert api.client.post(f"{API_PREFIX}/webhooks", headers=api.admin, json={
        "name": "chat", "url": webhook_receiver.url("x"),
        "events": ["camera.online"]}).status_code == 409
    for bad in ({"url": "ftp://x/y"}, {"events": ["camera.exploded"]}, {"events": []}):
        body = {"name": "bad", "url": webhook_receiver.url("x"),
                "events": ["camera.online"], **bad}
        assert api.client.post(f"{API_PREFIX}/webhooks", headers=api.admin,
                               json=body).status_code == 422, bad

    # The receiver does not know the secret yet: every delivery is refused (400) → dead
    # after one attempt with max_attempts=1.
    settings = NotifierSettings(database_url=api.settings.database_url, webhook_max_attempts=1,
                                webhook_backoff_base_s=0.01, webhook_backoff_max_s=0.01)
    sent = queue_unknown(api, 3)
    notifier_round(api, settings)
    sid = sub["id"]
    dead = api.client.get(f"{API_PREFIX}/webhooks/{sid}/deliveries?status=dead",
                          headers=api.admin).json()
    assert dead["total"] == 3
    assert {d["last_status"] for d in dead["items"]} == {400}
    assert all(d["attempts"] == 1 and d["last_error"] == "HTTP 400" for d in dead["items"])
    got = api.client.get(f"{API_PREFIX}/webhooks/{sid}", headers=api.admin).json()
    assert got["deliveries"] == {"pending": 0, "delivered": 0, "dead": 3}

    # Fixed: replay one, then all dead letters.
    webhook_receiver.secrets["chat"] = sub["secret"]
    one = dead["items"][0]["id"]
    r = api.client.post(f"{API_PREFIX}/webhooks/{sid}/deliveries/{one}/replay", headers=api.admin)
    assert r.json() == {"replayed": 1}
    notifier_round(api, settings, rounds=2)
    assert len(webhook_receiver.messages("chat")) == 1
    assert api.client.post(f"{API_PREFIX}/webhooks/{sid}/replay",
                           headers=api.admin).json() == {"replayed": 2}
    notifier_round(api, settings, rounds=2)
    assert sorted(m["id"] for m in webhook_receiver.messages("chat")) == sorted(
        d["event_id"] for d in dead["items"])
    assert len(sent) == 3 and webhook_receiver.bad_signatures == 3
    log = api.client.get(f"{API_PREFIX}/webhooks/{sid}/deliveries", headers=api.admin).json()
    assert [d["status"] for d in log["items"]] == ["delivered"] * 3
    assert api.client.post(f"{API_PREFIX}/webhooks/{sid}/deliveries/999999/replay",
                           headers=api.admin).status_code == 404

    # pause, privacy switch, delete
    r = api.client.patch(f"{API_PREFIX}/webhooks/{sid}", headers=api.admin,
                         json={"active": False, "include_names": True})
    assert r.json()["active"] is False and r.json()["include_names"] is True
    queue_unknown(api, 1)
    notifier_round(api, settings, rounds=1)
    assert len(webhook_receiver.messages("chat")) == 3  # paused: nothing fanned out to it
    assert api.client.delete(f"{API_PREFIX}/webhooks/{sid}", headers=api.admin).status_code == 204
    assert api.client.get(f"{API_PREFIX}/webhooks/{sid}", headers=api.admin).status_code == 404


def test_webhook_cli(api, webhook_receiver):
    url = api.settings.database_url
    runner = CliRunner()
    r = runner.invoke(cli, ["webhook", "create", "ha", "--url", webhook_receiver.url("ha"),
                            "--events", "camera.online,camera.offline", "--database-url", url])
    assert r.exit_code == 0, r.output
    assert r.stdout.strip().splitlines()[-1].startswith("whsec_")
    listed = runner.invoke(cli, ["webhook", "list", "--database-url", url]).stdout
    assert '"events": ["camera.online", "camera.offline"]' in listed and "whsec_" not in listed
    bad = runner.invoke(cli, ["webhook", "create", "x", "--url", "ftp://x",
                              "--database-url", url])
    assert bad.exit_code == 1
    assert runner.invoke(cli, ["webhook", "replay", "ha", "--database-url", url]).exit_code == 0
    assert runner.invoke(cli, ["webhook", "delete", "ha", "--database-url", url]).exit_code == 0
    assert runner.invoke(cli, ["webhook", "delete", "ha", "--database-url", url]).exit_code == 1


def test_erasure_removes_queued_notifications_and_delivery_log(api, webhook_receiver):
    from facegrid_services.store.models import NotifyOutbox, WebhookDelivery
    from sqlalchemy import func, select

    ada = api.client.post(f"{API_PREFIX}/people", headers=api.admin, json={"name": "Ada"})
    pid = ada.json()["id"]
    api.client.post(f"{API_PREFIX}/webhooks", headers=api.admin, json={
        "name": "hr", "url": webhook_receiver.url("hr"), "events": ["presence.recognised"],
        "include_names": True})
    with api.sessions() as s:
        outbox.presences_stored(s, [outbox.presence_row(
            presence_id=i + 1, node_id="cam-1", track_id=i, person_id=pid, score=0.9,
            at=datetime.now(UTC)) for i in range(2)])
        s.commit()
    notifier = Notifier(NotifierSettings(database_url=api.settings.database_url),
                        api.sessions)
    notifier.fan_out_once()  # one now in the delivery log
    with api.sessions() as s:
        outbox.presences_stored(s, [outbox.presence_row(
            presence_id=9, node_id="cam-1", track_id=9, person_id=pid, score=0.9,
            at=datetime.now(UTC))])
        s.commit()
    assert api.client.delete(f"{API_PREFIX}/people/{pid}", headers=api.admin).status_code == 200
    with api.sessions() as s:
        assert s.scalar(select(func.count()).select_from(NotifyOutbox)) == 0
        assert s.scalar(select(func.count()).select_from(WebhookDelivery)) == 0
