"""The shared base of every component's Settings, and the settings several components share.

Each component keeps ONE Settings class (``NodeSettings``, ``WorkerSettings``,
``ServerSettings``, ``OperatorSettings``) built from :class:`FacegridSettings`
and the mixins below for the fields it shares with others, so a shared field
has one name, one type, one default and one description.

Conventions: every field is documented with ``Field(description=...)`` (the
reference in docs/configuration.md is generated from it); a duration or
interval carries its unit in its name (``_s``, ``_ms``, ``_days``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facegrid import tokens
from facegrid.types import IanaZone, LogLevelName, RedisUrl

ENV_PREFIX = "FACEGRID_"


def read_secret(value: str | SecretStr | None, file: Path | None) -> str | None:
    """A secret given as a value or as a file; the file wins (a mounted Secret can rotate).

    Surrounding white space is stripped; an empty secret is None.  This is the one
    place that reads the admin-token file.
    """
    if file is not None:
        text = file.read_text()
    elif isinstance(value, SecretStr):
        text = value.get_secret_value()
    else:
        text = value or ""
    return text.strip() or None


class FacegridSettings(BaseSettings):
    """Base of every component's Settings: env prefix ``FACEGRID_`` and the log level."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore",
                                      populate_by_name=True)

    log_level: LogLevelName = Field("INFO", description="DEBUG, INFO, WARNING, ERROR or "
                                    "CRITICAL (the entry point configures logging with it).")

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v


class RedisSettings(FacegridSettings):
    redis_url: RedisUrl = Field("redis://127.0.0.1:6379/0", description="Redis with the "
                                "event stream, dead letters, revocations and statistics.")


class StoreSettings(FacegridSettings):
    database_url: str = Field("sqlite:///./facegrid.db", description="SQLAlchemy URL of the "
                              "store (a SQLite file or postgresql+psycopg://…).")


class TokenAudienceSettings(FacegridSettings):
    token_audience: str = Field(tokens.DEFAULT_AUDIENCE,
                                description="The `aud` claim of node tokens.")


class VerifierSettings(TokenAudienceSettings):
    public_key_file: Path = Field(Path(tokens.PUBLIC_KEY_FILE), description="Ed25519 public "
                                  "key (signing.pub) that verifies node tokens.")


class SiteSettings(FacegridSettings):
    site_timezone: IanaZone = Field("UTC", description="IANA zone of the site: it defines the "
                                    "attendance day and is the reports' default zone.")


class AdminTokenSettings(FacegridSettings):
    admin_token: SecretStr | None = Field(None, description="Admin token of the API server "
                                          "(Bearer token of its management API and dashboard; "
                                          "at least 16 characters).")
    admin_token_file: Path | None = Field(None, description="File holding the admin token; "
                                          "wins over FACEGRID_ADMIN_TOKEN (re-read, so a "
                                          "mounted Secret can rotate).")

    def admin_secret(self) -> str | None:
        """The admin token (from the file if one is given), or None when unset."""
        return read_secret(self.admin_token, self.admin_token_file)
