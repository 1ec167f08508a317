"""Prometheus metrics of ``facegrid notifier`` (prefix facegrid_notifier_; bounded labels)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("facegrid_notifier_events_total",
                 "Outbox events fanned out, by event type.", ["type"])
DELIVERIES = Counter("facegrid_notifier_webhook_attempts_total",
                     "Webhook delivery attempts, by outcome (delivered, failed, dead).",
                     ["outcome"])
PENDING = Gauge("facegrid_notifier_webhook_pending",
                "Webhook deliveries waiting (first try or retry).")
DEAD = Gauge("facegrid_notifier_webhook_dead", "Webhook deliveries given up (dead letters).")
LATENCY = Histogram("facegrid_notifier_webhook_latency_seconds",
                    "Event occurred → webhook acknowledged by the receiver.",
                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
MQTT_PUBLISHED = Counter("facegrid_notifier_mqtt_published_total",
                         "MQTT messages handed to the client, by kind (event, state, discovery).",
                         ["kind"])
MQTT_CONNECTED = Gauge("facegrid_notifier_mqtt_connected", "1 while connected to the broker.")
OUTBOX_BACKLOG = Gauge("facegrid_notifier_outbox_backlog",
                       "Outbox events seen but not yet fanned out at the last poll.")
