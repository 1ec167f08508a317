"""The shared value rules, errors and settings base: one definition, used everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from facegrid import contract, errors, tokens, types, wire
from facegrid.settings import AdminTokenSettings, FacegridSettings, SiteSettings, read_secret

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]


class _Model(BaseModel):
    node: types.NodeId
    model: types.ModelId
    zone: types.IanaZone


def test_node_id_rule():
    for good in ("cam-1", "a", "a.b-c", "x" * 63):
        assert types.is_node_id(good) and _Model(node=good, model="m", zone="UTC")
    for bad in ("Bad_Id", "-cam", "cam-", "", "x" * 64, "cam 1", 7):
        assert not types.is_node_id(bad)
        if isinstance(bad, str):
            with pytest.raises(ValidationError):
                _Model(node=bad, model="m", zone="UTC")


def test_model_id_rule():
    assert types.is_model_id("facenet-casia-webface")
    for bad in ("Facenet", "-x", "", "a" * 65, "a b"):
        assert not types.is_model_id(bad)
        with pytest.raises(ValidationError):
            _Model(node="n", model=bad, zone="UTC")


def test_zone_rule_is_the_zone_database_and_never_a_path():
    assert types.check_zone("Europe/Paris") == "Europe/Paris"
    assert types.zone("Asia/Tokyo").key == "Asia/Tokyo"
    assert _Model(node="n", model="m", zone="America/Port-au-Prince").zone
    for bad in ("Mars/Olympus", "../etc/passwd", "/etc/localtime", "", "europe/paris",
                "Europe/Paris ", "x" * 65):
        with pytest.raises(ValueError, match="IANA"):
            types.check_zone(bad)
        with pytest.raises(ValidationError):
            _Model(node="n", model="m", zone=bad)
    # The wire checks the shape only (a node may know a zone the worker does not).
    assert types.is_zone_name("Mars/Olympus") and not types.is_zone_name("../etc/passwd")


def test_contract_uses_the_shared_rules():
    schema = contract.Registration.model_json_schema()["properties"]
    assert schema["node_id"]["pattern"] == types.NODE_ID_PATTERN
    assert schema["model"]["pattern"] == types.MODEL_ID_PATTERN


def test_reason_errors_share_one_base():
    for cls in (wire.WireError, tokens.TokenError):
        assert issubclass(cls, errors.ReasonError)
    e = wire.WireError(wire.Reason.BAD_VALUE, "payload.box is odd")
    assert str(e) == "bad_value: payload.box is odd"
    assert e.reason is wire.Reason.BAD_VALUE and e.detail == "payload.box is odd"
    assert isinstance(e, ValueError) and isinstance(e, errors.FacegridError)


def test_every_exception_class_has_the_common_root():
    """No exception class in the packages is defined outside the FacegridError tree."""
    import ast

    roots = [REPO / d for d in ("src", "services", "operator", "node_image", "vision")]
    strays = []
    for root in roots:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if not isinstance(node, ast.ClassDef):
                    continue
                bases = {b.id for b in node.bases if isinstance(b, ast.Name)}
                builtin = {"Exception", "ValueError", "RuntimeError", "LookupError",
                           "KeyError", "OSError"}
                if bases & builtin and not bases - builtin - {"FacegridError"} \
                        and "FacegridError" not in bases and node.name != "FacegridError":
                    strays.append(f"{path.relative_to(REPO)}:{node.name}")
    assert not strays, f"exception classes without the FacegridError root: {strays}"


def test_settings_base(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEGRID_LOG_LEVEL", "debug")
    assert FacegridSettings().log_level == "DEBUG"
    monkeypatch.setenv("FACEGRID_LOG_LEVEL", "chatty")
    with pytest.raises(ValidationError):
        FacegridSettings()
    monkeypatch.delenv("FACEGRID_LOG_LEVEL")
    with pytest.raises(ValidationError, match="IANA"):
        SiteSettings(site_timezone="Mars/Olympus")
    secret = tmp_path / "admin"
    secret.write_text("  from-the-file\n")
    assert AdminTokenSettings(admin_token="given", admin_token_file=secret).admin_secret() \
        == "from-the-file"
    assert AdminTokenSettings(admin_token=" given ").admin_secret() == "given"
    assert AdminTokenSettings().admin_secret() is None
    assert read_secret("", None) is None


def test_dashboard_uses_the_api_prefix():
    app_js = (REPO / "services/facegrid_services/api/static/app.js").read_text()
    assert f'const API = "{contract.API_PREFIX}";' in app_js
    assert app_js.count(contract.API_PREFIX) == 1
    for other in (REPO / "services/facegrid_services/api/static").glob("*.js"):
        if other.name != "app.js":
            assert contract.API_PREFIX not in other.read_text(), other
