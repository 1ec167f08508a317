"""Browser tests: a real `facegrid server` process and headless Chromium."""

from fixtures.api_server import live_server  # noqa: F401 (fixture)
