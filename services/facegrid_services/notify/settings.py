"""NotifierSettings: the one configuration object of ``facegrid notifier`` (prefix FACEGRID_)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from facegrid.settings import StoreSettings


class NotifierSettings(StoreSettings):
    """Configuration of ``facegrid notifier`` (shared fields from :mod:`facegrid.settings`;
    the store holds its outbox, subscriptions and delivery log)."""

    metrics_port: int = Field(default=9103, ge=0, le=65535,
        description="Port of /metrics (0: off).")
    migrate: bool = Field(True, description="Run Alembic migrations at start.")
    notify_poll_interval_s: float = Field(default=0.1, gt=0, le=10,
        description="How often the outbox and due deliveries are polled when idle.")
    notify_batch: int = Field(default=500, ge=1, le=10_000,
        description="Outbox events fanned out per transaction.")
    camera_poll_interval_s: float = Field(default=1.0, gt=0,
        description="How often camera states (online/offline, idle/active) are compared.")
    offline_after_s: float = Field(default=30.0, gt=0,
        description="A camera with no heartbeat for this long is offline (as the server lists "
                    "it).")

    webhook_timeout_s: float = Field(default=5.0, gt=0, le=120,
        description="Seconds one webhook request may take (a hanging receiver is cut off after "
                    "it).")
    webhook_max_attempts: int = Field(default=10, ge=1, le=1000,
        description="Attempts before a delivery becomes a dead letter (replayable from the API).")
    webhook_backoff_base_s: float = Field(default=1.0, gt=0,
        description="First retry delay; doubles per failure (with ±20 % jitter) up to the "
                    "maximum.")
    webhook_backoff_max_s: float = Field(default=300.0, gt=0, description="Longest retry delay.")
    webhook_concurrency: int = Field(default=16, ge=1, le=256,
        description="Requests in flight per subscription.")
    webhook_batch: int = Field(default=256, ge=1, le=10_000,
        description="Due deliveries taken per round per subscription (outcomes stored in one "
                    "transaction).")
    webhook_log_days: float = Field(default=7.0, gt=0,
        description="Delivered log entries are kept this many days (dead letters until replayed "
                    "or deleted).")

    mqtt_url: str | None = Field(None,
        description="MQTT broker, e.g. mqtt://user:pass@broker:1883 or mqtts://… (unset: no "
                    "MQTT).")
    mqtt_username: str | None = Field(None,
        description="Broker user name (wins over the one in the URL).")
    mqtt_password: SecretStr | None = Field(None,
        description="Broker password (wins over the one in the URL).")
    mqtt_topic_prefix: str = Field(default="facegrid", pattern=r"^[A-Za-z0-9_/-]{1,64}$",
        description="First level of every topic.")
    mqtt_include_names: bool = Field(False,
        description="Put people's names in topics and messages (privacy: off = pseudonymous ids).")
    mqtt_discovery: bool = Field(False,
        description="Publish Home Assistant MQTT discovery configs for cameras.")
    mqtt_discovery_prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_/-]{1,64}$",
        description="Home Assistant's discovery prefix.")
    mqtt_pseudonym_key: SecretStr | None = Field(None,
        description="Key of the pseudonymous person ids on MQTT (unset: generated once, kept in "
                    "the store).")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        u = urlsplit(v)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise ValueError("mqtt_url must look like mqtt://host:1883 or mqtts://host:8883")
        return v
