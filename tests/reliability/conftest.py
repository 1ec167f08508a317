"""Reliability and security suite: real processes, each test prints and asserts its figure."""

from fixtures.api_server import live_server  # noqa: F401 (fixture)
