"""ServerSettings: the one configuration object of ``facegrid server`` (env prefix FACEGRID_)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facegrid import tokens

from .timezones import validate_timezone


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACEGRID_", extra="ignore")

    #: Address the server listens on.
    host: str = "0.0.0.0"
    #: Port of the API, the dashboard and /metrics.
    port: int = Field(default=8000, ge=1, le=65535)
    #: SQLAlchemy URL of the store (a SQLite file or postgresql+psycopg://…).
    database_url: str = "sqlite:///./facegrid.db"
    #: Redis with the event stream, dead letters, revocations and statistics.
    redis_url: str = "redis://127.0.0.1:6379/0"
    #: Ed25519 public key (signing.pub) that verifies node tokens.
    public_key_file: Path = Path(tokens.PUBLIC_KEY_FILE)
    #: Bearer token of the management API and the dashboard (≥ 16 characters).
    admin_token: SecretStr | None = None
    #: File holding the admin token; wins over FACEGRID_ADMIN_TOKEN.
    admin_token_file: Path | None = None
    #: Required `aud` claim of node tokens.
    token_audience: str = tokens.DEFAULT_AUDIENCE
    #: IANA zone of the site: the reports' default zone.
    site_timezone: str = "UTC"
    #: Sightings older than this many days are deleted (0 keeps them for ever).
    retention_days: float = Field(default=90.0, ge=0)
    #: How often the retention job runs.
    retention_interval_s: float = Field(default=3600.0, gt=0)
    #: The interval the server asks nodes to heartbeat at (HeartbeatReply).
    heartbeat_interval: float = Field(default=5.0, gt=0, le=3600)
    #: A node with no heartbeat for this long is listed as offline.
    offline_after_s: float = Field(default=30.0, gt=0)
    #: Largest request body accepted (413 beyond); read only after authentication.
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    #: Failed authentications one client may make per window before getting 429.
    auth_failures_max: int = Field(default=30, ge=1)
    #: The window of auth_failures_max, in seconds.
    auth_failure_window_s: float = Field(default=60.0, gt=0)
    #: Revocations are reloaded from the database this often (pub/sub can miss some).
    revocation_reload_s: float = Field(default=30.0, gt=0)
    #: Sightings of one person less than this many seconds apart are one stay on site;
    #: time on site sums the stays. A door camera sees arrival and departure a workday
    #: apart, so the default bridges a workday; a longer absence splits the stay.
    attendance_visit_gap_s: float = Field(default=9 * 3600.0, gt=0, le=24 * 3600)
    #: DEBUG, INFO, WARNING or ERROR.
    log_level: str = "INFO"

    @field_validator("site_timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        return validate_timezone(v)

    @model_validator(mode="after")
    def _admin(self) -> ServerSettings:
        if self.admin_token is None and self.admin_token_file is None:
            raise ValueError("set FACEGRID_ADMIN_TOKEN or FACEGRID_ADMIN_TOKEN_FILE")
        return self

    def admin_secret(self) -> str:
        """The admin token (from the file if one is given; it wins so Secrets can rotate)."""
        if self.admin_token_file is not None:
            value = self.admin_token_file.read_text().strip()
        else:
            value = self.admin_token.get_secret_value().strip()  # type: ignore[union-attr]
        if len(value) < 16:
            raise ValueError("the admin token must be at least 16 characters")
        return value
