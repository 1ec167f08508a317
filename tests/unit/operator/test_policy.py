"""What the operator's settings allow a CameraNode spec to ask for (pure)."""

from __future__ import annotations

import pytest
from facegrid_operator import policy
from facegrid_operator.settings import OperatorSettings
from facegrid_operator.spec import InvalidSpec, parse

pytestmark = pytest.mark.unit
DEFAULT = OperatorSettings(node_image="registry.example.com/facegrid/node:1.2.0")


def cam(source: str = "/dev/video0", **spec):
    return parse("lobby", {"host": {"nodeName": "edge-01"}, "camera": {"source": source}, **spec})


@pytest.mark.parametrize(("image", "repo"), [
    ("facegrid/node:1.2", "facegrid/node"),
    ("registry.example.com:5000/facegrid/node:1.2", "registry.example.com:5000/facegrid/node"),
    ("registry.example.com:5000/facegrid/node", "registry.example.com:5000/facegrid/node"),
    ("facegrid/node@sha256:" + "a" * 64, "facegrid/node"),
    ("facegrid/node:1.2@sha256:" + "a" * 64, "facegrid/node"),
])
def test_repository(image, repo):
    assert policy.repository(image) == repo


def test_by_default_only_the_node_images_repository():
    policy.check(cam(), DEFAULT)  # no spec.image: the operator's node image
    policy.check(cam(image="registry.example.com/facegrid/node:1.3.0-rc1"), DEFAULT)
    policy.check(cam(image="registry.example.com/facegrid/node@sha256:" + "b" * 64), DEFAULT)
    for bad in ("docker.io/attacker/miner:latest", "registry.example.com/facegrid/node-evil:1",
                "registry.example.com/facegrid:1"):
        with pytest.raises(InvalidSpec, match="is not allowed") as e:
            policy.check(cam(image=bad), DEFAULT)
        assert e.value.reason == "ImageNotAllowed"
        assert "registry.example.com/facegrid/node" in e.value.message


def test_allow_list_of_repositories_and_prefixes():
    s = OperatorSettings(allowed_images="mirror.lan/facegrid/node, lab.lan/team/")
    policy.check(cam(image="mirror.lan/facegrid/node:2"), s)
    policy.check(cam(image="lab.lan/team/node-debug:x"), s)
    with pytest.raises(InvalidSpec):
        policy.check(cam(image="lab.lan/other/node:x"), s)
    with pytest.raises(InvalidSpec):  # the default repository is no longer implied
        policy.check(cam(image=f"{policy.repository(s.node_image)}:1"), s)


def test_file_sources_only_under_the_prefix():
    policy.check(cam("/var/lib/facegrid/media/door.mp4"), DEFAULT)
    policy.check(cam("/var/lib/facegrid/media"), DEFAULT)  # the folder itself
    for bad in ("/etc/shadow", "/var/lib/facegrid/media-other/x.mp4", "/var/lib/facegrid"):
        with pytest.raises(InvalidSpec, match="is not under /var/lib/facegrid/media/") as e:
            policy.check(cam(bad), DEFAULT)
        assert e.value.reason == "SourceNotAllowed"
    off = OperatorSettings(file_source_prefix="")
    with pytest.raises(InvalidSpec, match="turned off"):
        policy.check(cam("/var/lib/facegrid/media/door.mp4"), off)
    policy.check(cam("rtsp://cam.lan/s"), off)  # other sources are not affected
