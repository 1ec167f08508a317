"""Logging set-up: what a user reads is ours, not every HTTP request a library makes."""

from __future__ import annotations

import logging

import pytest

from facegrid import logs

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _restore_logging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers),
             {n: logging.getLogger(n).level for n in logs.QUIET_LIBRARIES})
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    for n, lvl in saved[2].items():
        logging.getLogger(n).setLevel(lvl)


def test_httpx_request_lines_stay_out_at_info():
    logs.configure("INFO")
    assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
    assert logging.getLogger("httpx").isEnabledFor(logging.WARNING)
    assert logging.getLogger("facegrid_node.heartbeat").isEnabledFor(logging.INFO)


def test_debug_shows_everything():
    logs.configure("DEBUG")
    assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    assert logging.getLogger("httpcore").isEnabledFor(logging.DEBUG)
