"""Notifications: the outbox the worker writes, webhooks and MQTT sent by ``facegrid notifier``."""
