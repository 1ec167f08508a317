"""ServerSettings: the one configuration object of ``facegrid server`` (env prefix FACEGRID_)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, model_validator

from facegrid.settings import (
    AdminTokenSettings,
    RedisSettings,
    SiteSettings,
    StoreSettings,
    VerifierSettings,
)

#: Admin tokens shorter than this are refused at start.
MIN_ADMIN_TOKEN = 16


class ServerSettings(AdminTokenSettings, SiteSettings, VerifierSettings, StoreSettings,
                     RedisSettings):
    """Configuration of ``facegrid server`` (shared fields from :mod:`facegrid.settings`)."""

    host: str = Field("0.0.0.0", description="Address the server listens on.")
    port: int = Field(default=8000, ge=1, le=65535,
        description="Port of the API, the dashboard and /metrics.")
    retention_days: float = Field(default=90.0, ge=0,
        description="Sightings, presences and strangers received (by the worker's clock, never "
                    "the node's) longer ago than this many days are deleted (0 keeps them for "
                    "ever).")
    retention_interval_s: float = Field(default=3600.0, gt=0,
        description="How often the retention job runs.")
    heartbeat_interval_s: float = Field(
        default=5.0, gt=0, le=3600,
        validation_alias=AliasChoices("FACEGRID_HEARTBEAT_INTERVAL_S",
                                      "FACEGRID_HEARTBEAT_INTERVAL"),
        description="The interval the server asks nodes to heartbeat at (HeartbeatReply). "
                    "Was FACEGRID_HEARTBEAT_INTERVAL, which is still read.")
    offline_after_s: float = Field(default=30.0, gt=0,
        description="A node with no heartbeat for this long is listed as offline.")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024,
        description="Largest request body accepted (413 beyond); read only after authentication.")
    auth_failures_max: int = Field(default=30, ge=1,
        description="Failed authentications one client may make per window before getting 429.")
    auth_failure_window_s: float = Field(default=60.0, gt=0,
        description="The window of auth_failures_max, in seconds.")
    revocation_reload_s: float = Field(default=30.0, gt=0,
        description="Revocations are reloaded from the database this often (pub/sub can miss "
                    "some).")
    attendance_visit_gap_s: float = Field(default=9 * 3600.0, gt=0, le=24 * 3600,
        description="Sightings of one person less than this many seconds apart are one stay on "
                    "site; time on site sums the stays. A door camera sees arrival and departure "
                    "a workday apart, so the default bridges a workday; a longer absence splits "
                    "the stay.")

    @model_validator(mode="after")
    def _admin(self) -> ServerSettings:
        if self.admin_token is None and self.admin_token_file is None:
            raise ValueError("set FACEGRID_ADMIN_TOKEN or FACEGRID_ADMIN_TOKEN_FILE")
        return self

    def admin_secret(self) -> str:
        """The admin token; raises ValueError when it is shorter than 16 characters."""
        value = super().admin_secret() or ""
        if len(value) < MIN_ADMIN_TOKEN:
            raise ValueError(f"the admin token must be at least {MIN_ADMIN_TOKEN} characters")
        return value
