"""Conditions and phase (pure)."""

from __future__ import annotations

import pytest
from facegrid_operator import conditions as c
from facegrid_operator.conditions import FALSE, TRUE, UNKNOWN, Cond, Phase

pytestmark = pytest.mark.unit


def test_transition_time_changes_only_with_status():
    a = c.merge([], {Cond.VALID: c.condition(TRUE, "Valid", "ok")}, 1, now="T1")
    b = c.merge(a, {Cond.VALID: c.condition(TRUE, "Valid", "still ok")}, 2, now="T2")
    assert b[0]["lastTransitionTime"] == "T1" and b[0]["message"] == "still ok"
    assert b[0]["observedGeneration"] == 2
    d = c.merge(b, {Cond.VALID: c.condition(FALSE, "HostNotFound", "no Node")}, 3, now="T3")
    assert d[0]["lastTransitionTime"] == "T3"


def test_order_is_fixed_and_others_are_kept():
    out = c.merge([{"type": "Heartbeating", "status": UNKNOWN, "reason": "x", "message": ""}],
                  {Cond.DEPLOYED: c.condition(TRUE, "Applied", ""),
                   Cond.VALID: c.condition(TRUE, "Valid", "")}, None, now="T")
    assert [x["type"] for x in out] == ["Valid", "Deployed", "Heartbeating"]
    assert "observedGeneration" not in out[0]


def _conds(**st):
    return c.merge([], {k: c.condition(v, "r", "m") for k, v in st.items()}, 1, now="T")


@pytest.mark.parametrize("st, paused, ready, failing, want", [
    ({"Valid": FALSE}, False, True, False, Phase.INVALID),
    ({"Valid": TRUE, "TokenReady": TRUE, "Deployed": TRUE}, True, False, False, Phase.PAUSED),
    ({"Valid": TRUE, "TokenReady": FALSE, "Deployed": TRUE}, False, False, False, Phase.PENDING),
    ({"Valid": TRUE, "TokenReady": TRUE, "Deployed": TRUE}, False, False, False, Phase.DEPLOYING),
    ({"Valid": TRUE, "TokenReady": TRUE, "Deployed": TRUE}, False, True, False, Phase.RUNNING),
    ({"Valid": TRUE, "TokenReady": TRUE, "Deployed": TRUE, "Heartbeating": UNKNOWN},
     False, True, False, Phase.RUNNING),
    ({"Valid": TRUE, "TokenReady": TRUE, "Deployed": TRUE, "Heartbeating": FALSE},
     False, True, False, Phase.DEGRADED),
    ({"Valid": TRUE, "TokenReady": TRUE, "Deployed": TRUE}, False, False, True, Phase.DEGRADED),
])
def test_phase(st, paused, ready, failing, want):
    assert c.phase(_conds(**st), paused=paused, ready=ready, failing=failing) is want
