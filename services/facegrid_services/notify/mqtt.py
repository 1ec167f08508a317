"""MQTT: the same events to a broker, in topics a Home Assistant user expects.

Topics (``<p>`` = ``FACEGRID_MQTT_TOPIC_PREFIX``, default ``facegrid``):

| topic | retained | payload |
| --- | --- | --- |
| `<p>/availability` | yes | `online` / `offline` (last will) |
| `<p>/events/<type>` | no | every event (JSON message) |
| `<p>/camera/<node>/availability` | yes | `online` / `offline` |
| `<p>/camera/<node>/activity` | yes | `idle` / `active` |
| `<p>/camera/<node>/presence` | no | presence events seen by that camera |
| `<p>/person/<id>/presence` | no | that person's presence events |
| `<p>/person/<id>/last_seen` | yes | `{"camera", "at"}` |
| `<p>/alerts/intruder`, `<p>/alerts/unknown` | no | intruder alerts, unknown presences |

``<id>`` is a pseudonymous id unless ``FACEGRID_MQTT_INCLUDE_NAMES`` (then a slug of
the name).  With ``FACEGRID_MQTT_DISCOVERY`` each camera is announced to Home
Assistant as a device with a connectivity binary sensor and an activity sensor.
Messages use QoS 1; paho queues them while the broker is away.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

from . import metrics
from .events import EventType, dumps
from .settings import NotifierSettings

log = logging.getLogger(__name__)
_SLUG = re.compile(r"[^a-z0-9_-]+")


def slug(text: str) -> str:
    return _SLUG.sub("_", text.lower()).strip("_") or "_"


class MqttPublisher:
    def __init__(self, settings: NotifierSettings, pseudonym_key: bytes) -> None:
        self.settings = settings
        self.prefix = settings.mqtt_topic_prefix.rstrip("/")
        self.pseudonym_key = pseudonym_key
        self.include_names = settings.mqtt_include_names
        self._retained: dict[str, str] = {}
        self._discovered: set[str] = set()
        u = urlsplit(settings.mqtt_url or "")
        self.host = u.hostname or "localhost"
        self.port = u.port or (8883 if u.scheme == "mqtts" else 1883)
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"facegrid-notifier-{socket.gethostname()}"[:64],
                                  protocol=mqtt.MQTTv311)
        user = settings.mqtt_username or (unquote(u.username) if u.username else None)
        password = (settings.mqtt_password.get_secret_value() if settings.mqtt_password
                    else unquote(u.password) if u.password else None)
        if user:
            self.client.username_pw_set(user, password)
        if u.scheme == "mqtts":
            self.client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(1, 30)
        self.client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect

    def topic(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts))

    # --- connection ---------------------------------------------------------------------
    def start(self) -> None:
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()

    def stop(self) -> None:
        info = self.client.publish(self.topic("availability"), "offline", qos=1, retain=True)
        try:
            if self.client.is_connected():
                info.wait_for_publish(5)
        except (RuntimeError, ValueError):
            pass
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, _userdata, _flags, reason_code, _props) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s", self.host, self.port,
                      reason_code)
            return
        log.info("connected to MQTT broker %s:%d", self.host, self.port)
        metrics.MQTT_CONNECTED.set(1)
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        for topic, payload in list(self._retained.items()):
            client.publish(topic, payload, qos=1, retain=True)

    def _on_disconnect(self, _client, _userdata, _flags, reason_code, _props) -> None:
        metrics.MQTT_CONNECTED.set(0)
        if reason_code.is_failure:
            log.warning("MQTT broker connection lost (%s); paho reconnects", reason_code)

    def _publish(self, topic: str, payload: str, *, retain: bool = False,
                 kind: str = "event") -> None:
        if retain:
            self._retained[topic] = payload
        self.client.publish(topic, payload, qos=1, retain=retain)
        metrics.MQTT_PUBLISHED.labels(kind).inc()

    # --- what is published ----------------------------------------------------------------
    def person_topic_id(self, message: dict) -> str | None:
        person = message["data"].get("person")
        if not person:
            return None
        if self.include_names and person.get("name"):
            return slug(person["name"])
        return str(person["id"])

    def publish_event(self, message: dict) -> None:
        """One rendered message (names only if this publisher may show them)."""
        type_, data = message["type"], message["data"]
        body = dumps(message)
        self._publish(self.topic("events", type_), body)
        node = data.get("node_id")
        if type_ in (EventType.presence_recognised, EventType.presence_unknown):
            self._publish(self.topic("camera", node, "presence"), body)
            pid = self.person_topic_id(message)
            if pid is not None:
                self._publish(self.topic("person", pid, "presence"), body)
                self._publish(self.topic("person", pid, "last_seen"),
                              json.dumps({"camera": node, "at": message["occurred_at"]}),
                              retain=True, kind="state")
            else:
                self._publish(self.topic("alerts", "unknown"), body)
        elif type_ == EventType.alert_intruder:
            self._publish(self.topic("alerts", "intruder"), body)
        elif type_ in (EventType.camera_online, EventType.camera_offline):
            self.camera_state(node, online=type_ == EventType.camera_online)
        elif type_ in (EventType.camera_idle, EventType.camera_active):
            self.camera_state(node, activity=type_.removeprefix("camera."))

    def camera_state(self, node: str, *, online: bool | None = None,
                     activity: str | None = None) -> None:
        self.discover(node)
        if online is not None:
            self._publish(self.topic("camera", node, "availability"),
                          "online" if online else "offline", retain=True, kind="state")
        if activity is not None:
            self._publish(self.topic("camera", node, "activity"), activity, retain=True,
                          kind="state")

    def discover(self, node: str) -> None:
        """Home Assistant MQTT discovery: the camera as a device with two sensors."""
        if not self.settings.mqtt_discovery or node in self._discovered:
            return
        self._discovered.add(node)
        dp = self.settings.mqtt_discovery_prefix.rstrip("/")
        obj = f"facegrid_{slug(node)}"
        device = {"identifiers": [obj], "name": f"facegrid camera {node}",
                  "manufacturer": "facegrid", "model": "camera node"}
        availability = self.topic("availability")
        configs = {
            f"{dp}/binary_sensor/{obj}/online/config": {
                "name": "Online", "unique_id": f"{obj}_online", "device_class": "connectivity",
                "state_topic": self.topic("camera", node, "availability"),
                "payload_on": "online", "payload_off": "offline",
                "availability_topic": availability, "device": device},
            f"{dp}/sensor/{obj}/activity/config": {
                "name": "Activity", "unique_id": f"{obj}_activity", "icon": "mdi:motion-sensor",
                "state_topic": self.topic("camera", node, "activity"),
                "availability_topic": availability, "device": device},
        }
        for topic, config in configs.items():
            self._publish(topic, json.dumps(config, sort_keys=True), retain=True,
                          kind="discovery")
