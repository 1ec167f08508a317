"""The CRD schema and the operator's own spec checks (pure)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml
from facegrid_operator.spec import InvalidSpec, SourceKind, parse, redact, source_kind

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[3]
CRD = yaml.safe_load((REPO / "crds" / "cameranodes.facegrid.io.yaml").read_text())
EXAMPLE = yaml.safe_load((REPO / "docs" / "camera.yaml").read_text())
SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _walk(schema: dict, path: str):
    yield path, schema
    for name, sub in (schema.get("properties") or {}).items():
        yield from _walk(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from _walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}{{}}")


def test_crd_names_and_shape():
    assert CRD["metadata"]["name"] == "cameranodes.facegrid.io"
    names = CRD["spec"]["names"]
    assert (names["kind"], names["shortNames"], names["categories"]) == (
        "CameraNode", ["cam"], ["facegrid"])
    v = CRD["spec"]["versions"][0]
    assert v["name"] == "v1alpha1" and v["subresources"] == {"status": {}}
    assert [c["name"] for c in v["additionalPrinterColumns"]] == [
        "Host", "Phase", "State", "Last Heartbeat", "Age"]


def test_every_spec_and_status_field_is_described():
    missing = [p for root in ("spec", "status")
               for p, s in _walk(SCHEMA["properties"][root], root)
               if "description" not in s and not p.endswith("{}")]
    assert missing == []


def _validator():
    return jsonschema.Draft4Validator(SCHEMA)


def test_example_camera_is_valid_and_parses():
    errors = [e.message for e in _validator().iter_errors(EXAMPLE)]
    assert errors == []
    cam = parse(EXAMPLE["metadata"]["name"], EXAMPLE["spec"])
    assert cam.kind is SourceKind.DEVICE and cam.node_name == "edge-01"
    assert cam.ttl_s == 86400 and cam.rotate_after_s == pytest.approx(86400 * 0.66)


@pytest.mark.parametrize("patch, where", [
    ({"camera": {"source": "ftp://cam/x"}}, "source"),
    ({"camera": {"source": "/dev/video0", "fps": 0}}, "fps"),
    ({"token": {"ttl": "1 day"}}, "ttl"),
    ({"token": {"ttl": "24h", "rotateAtPercent": 95}}, "rotateAtPercent"),
    ({"host": {"nodeName": "Edge_01"}}, "nodeName"),
    ({"idle": {"motionThreshold": 2}}, "motionThreshold"),
    ({"imagePullPolicy": "Sometimes"}, "imagePullPolicy"),
    ({"redis": {"url": "http://redis"}}, "url"),
])
def test_schema_refuses_bad_fields(patch, where):
    doc = {**EXAMPLE, "spec": {**EXAMPLE["spec"], **patch}}
    errors = list(_validator().iter_errors(doc))
    assert errors, f"{patch} was accepted"
    assert any(where in "/".join(map(str, e.absolute_path)) for e in errors)


def test_cel_rules_are_declared():
    host = SCHEMA["properties"]["spec"]["properties"]["host"]
    cam = SCHEMA["properties"]["spec"]["properties"]["camera"]
    assert "has(self.nodeName) != has(self.nodeSelector)" in host[
        "x-kubernetes-validations"][0]["rule"]
    assert "has(self.source) != has(self.sourceFrom)" in cam["x-kubernetes-validations"][0]["rule"]


@pytest.mark.parametrize("source, kind", [
    ("/dev/video2", SourceKind.DEVICE), ("0", SourceKind.INDEX),
    ("rtsp://user:pw@10.0.0.5:554/stream1", SourceKind.URL),
    ("https://cam.example/mjpeg", SourceKind.URL), ("/srv/clips/door.mp4", SourceKind.FILE),
])
def test_source_kinds(source, kind):
    assert source_kind(source) is kind


@pytest.mark.parametrize("source, words", [
    ("/dev/sda", "not a V4L2 capture device"),
    ("rtsp://:554/x", "has no host"),
    ("rtsp://cam:99999/x", "bad port"),
    ("relative/path.mp4", "not a device"),
    ("/srv/../etc/passwd", "not a device"),
    ("gopher://cam", "scheme 'gopher'"),
])
def test_unusable_sources_say_why(source, words):
    with pytest.raises(InvalidSpec) as e:
        source_kind(source)
    assert e.value.reason == "UnusableSource" and words in e.value.detail


def test_parse_errors_name_the_field():
    base = EXAMPLE["spec"]
    cases = [
        ({**base, "timeZone": "Mars/Olympus"}, "UnknownTimeZone", "Mars/Olympus"),
        ({**base, "token": {"ttl": "5s"}}, "InvalidTokenTTL", "shorter than 10s"),
        ({**base, "host": {"nodeName": "a", "nodeSelector": {"x": "y"}}}, "InvalidHost",
         "exactly one"),
        ({**base, "camera": {}}, "UnusableSource", "exactly one of camera.source"),
    ]
    for spec, reason, words in cases:
        with pytest.raises(InvalidSpec) as e:
            parse("lobby", spec)
        assert e.value.reason == reason and words in e.value.detail
    with pytest.raises(InvalidSpec, match="not a valid node id"):
        parse("x" * 64, base)


def test_redact_hides_passwords_only():
    assert redact("rtsp://admin:s3cret@cam:554/s") == "rtsp://admin:***@cam:554/s"
    assert redact("rtsp://cam/s") == "rtsp://cam/s"
