"""NotifierSettings: the one configuration object of ``facegrid notifier`` (prefix FACEGRID_)."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class NotifierSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGRID_", extra="ignore")

    #: SQLAlchemy URL of the store (its outbox, subscriptions and delivery log).
    database_url: str = "sqlite:///./facegrid.db"
    #: Port of /metrics (0: off).
    metrics_port: int = Field(default=9103, ge=0, le=65535)
    #: Run Alembic migrations at start.
    migrate: bool = True
    #: How often the outbox and due deliveries are polled when idle.
    notify_poll_interval_s: float = Field(default=0.1, gt=0, le=10)
    #: Outbox events fanned out per transaction.
    notify_batch: int = Field(default=500, ge=1, le=10_000)
    #: How often camera states (online/offline, idle/active) are compared.
    camera_poll_interval_s: float = Field(default=1.0, gt=0)
    #: A camera with no heartbeat for this long is offline (as the server lists it).
    offline_after_s: float = Field(default=30.0, gt=0)

    #: Seconds one webhook request may take (a hanging receiver is cut off after it).
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=120)
    #: Attempts before a delivery becomes a dead letter (replayable from the API).
    webhook_max_attempts: int = Field(default=10, ge=1, le=1000)
    #: First retry delay; doubles per failure (with ±20 % jitter) up to the maximum.
    webhook_backoff_base_s: float = Field(default=1.0, gt=0)
    #: Longest retry delay.
    webhook_backoff_max_s: float = Field(default=300.0, gt=0)
    #: Requests in flight per subscription.
    webhook_concurrency: int = Field(default=16, ge=1, le=256)
    #: Due deliveries taken per round per subscription (outcomes stored in one transaction).
    webhook_batch: int = Field(default=256, ge=1, le=10_000)
    #: Delivered log entries are kept this many days (dead letters until replayed or deleted).
    webhook_log_days: float = Field(default=7.0, gt=0)

    #: MQTT broker, e.g. mqtt://user:pass@broker:1883 or mqtts://… (unset: no MQTT).
    mqtt_url: str | None = None
    #: Broker user name (wins over the one in the URL).
    mqtt_username: str | None = None
    #: Broker password (wins over the one in the URL).
    mqtt_password: SecretStr | None = None
    #: First level of every topic.
    mqtt_topic_prefix: str = Field(default="facegrid", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    #: Put people's names in topics and messages (privacy: off = pseudonymous ids).
    mqtt_include_names: bool = False
    #: Publish Home Assistant MQTT discovery configs for cameras.
    mqtt_discovery: bool = False
    #: Home Assistant's discovery prefix.
    mqtt_discovery_prefix: str = Field(default="homeassistant", pattern=r"^[A-Za-z0-9_/-]{1,64}$")
    #: Key of the pseudonymous person ids on MQTT (unset: generated once, kept in the store).
    mqtt_pseudonym_key: SecretStr | None = None
    #: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str | None) -> str | None:
        if v in (None, ""):
            return None
        u = urlsplit(v)
        if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
            raise ValueError("mqtt_url must look like mqtt://host:1883 or mqtts://host:8883")
        return v
