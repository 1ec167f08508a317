"""The notifier against a real store, redis-server, mosquitto and HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time

import pytest
from facegrid_services.notify.mqtt import MqttPublisher
from facegrid_services.notify.notifier import Notifier, mqtt_pseudonym_key
from facegrid_services.notify.settings import NotifierSettings
from facegrid_services.store import db, repo
from fixtures import waiting

from facegrid import tokens


@pytest.fixture(scope="session")
def signing_key():
    return tokens.generate_private_key()


@pytest.fixture
def store(database_url):
    repo.migrate_locked(database_url)
    engine = db.make_engine(database_url)
    yield database_url, engine, db.session_factory(engine)
    engine.dispose()


def notifier_settings(database_url: str, **kw) -> NotifierSettings:
    base = {"database_url": database_url, "metrics_port": 0, "migrate": False,
            "notify_poll_interval_s": 0.05, "camera_poll_interval_s": 0.2,
            "webhook_timeout_s": 2.0, "webhook_backoff_base_s": 0.5,
            "webhook_backoff_max_s": 4.0, "webhook_max_attempts": 50}
    return NotifierSettings(**{**base, **kw})


@contextlib.contextmanager
def running_notifier(settings: NotifierSettings, sessions, *, with_mqtt: bool = False):
    """The notifier's asyncio loop in a thread (as `facegrid notifier` runs it)."""
    mqtt = None
    if with_mqtt:
        mqtt = MqttPublisher(settings, mqtt_pseudonym_key(sessions, settings))
        mqtt.start()
    service = Notifier(settings, sessions, mqtt=mqtt)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def main():
        try:
            loop.run_until_complete(service.run(stop))
        except BaseException as e:  # surfaced below
            failure.append(e)

    t = threading.Thread(target=main, daemon=True)
    t.start()
    try:
        yield service
    finally:
        loop.call_soon_threadsafe(stop.set)
        t.join(30)
        if mqtt is not None:
            mqtt.stop()
        assert not t.is_alive(), "notifier did not stop"
        assert not failure, failure


def wait_for(cond, timeout=30.0, interval=0.05, what="condition"):
    return waiting.wait_for(cond, timeout, what, interval)


@contextlib.contextmanager
def notifier_process(settings: NotifierSettings, log_path):
    """``facegrid notifier`` as its own process (as deployed), with the same settings."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "FACEGRID_LOG_LEVEL": "WARNING"}
    for name, value in settings.model_dump(exclude_none=True).items():
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"FACEGRID_{name.upper()}"] = str(value).lower() if isinstance(value, bool) \
            else str(value)
    exe = Path(sys.executable).with_name("facegrid")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(exe), "notifier"], env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        time.sleep(0.5)
        assert proc.poll() is None, Path(log_path).read_text()
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def nh():
    """The helpers above (test modules cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(settings=notifier_settings, running=running_notifier,
                           process=notifier_process,
                           wait_for=wait_for)
