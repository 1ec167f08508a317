"""Pure logic of the server and enrollment: threshold suggestion, face choice, ids, zones."""

from __future__ import annotations

import numpy as np
import pytest
from facegrid_services import enroll
from facegrid_services.api import streams, thresholds
from facegrid_services.api.report import to_csv

from facegrid.types import check_zone

pytestmark = pytest.mark.unit


def grid_of(scores, step=0.05):
    scores = np.asarray(scores)
    return [(round(t, 2), int((scores >= t).sum())) for t in np.arange(0, 1.0001, step)]


def test_threshold_suggestion_lies_in_the_valley():
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.normal(0.25, 0.05, 400), rng.normal(0.8, 0.05, 100)])
    t, why = thresholds.suggest(grid_of(scores))
    assert 0.45 <= t <= 0.6, (t, why)


def test_threshold_suggestion_needs_data_and_two_piles():
    assert thresholds.suggest([])[0] is None
    assert "need" in thresholds.suggest(grid_of([0.5] * 10))[1]
    one_pile = np.random.default_rng(2).normal(0.3, 0.03, 200)
    t, why = thresholds.suggest(grid_of(one_pile))
    assert t is None and "single pile" in why


def test_main_face_prefers_large_and_central():
    w, h = 640, 480
    small_centre = [300, 220, 340, 260]
    big_corner = [0, 0, 120, 120]
    big_centre = [250, 170, 390, 310]
    assert enroll.main_face(np.array([small_centre, big_corner]), w, h) == 1
    assert enroll.main_face(np.array([big_corner, big_centre]), w, h) == 1
    # Same size: the central one wins.
    same_corner = [0, 0, 140, 140]
    assert enroll.main_face(np.array([same_corner, big_centre]), w, h) == 1


def test_scan_and_names(tmp_path):
    (tmp_path / "Ada_Lovelace").mkdir()
    (tmp_path / "Ada_Lovelace" / "1.jpg").write_bytes(b"x")
    (tmp_path / "Ada_Lovelace" / "notes.txt").write_text("not a photo")
    (tmp_path / "empty").mkdir()
    (tmp_path / "loose.jpg").write_bytes(b"x")
    people = enroll.scan(tmp_path)
    assert list(people) == ["Ada Lovelace"]
    assert [p.name for p in people["Ada Lovelace"]] == ["1.jpg"]
    with pytest.raises(enroll.EnrollError, match="no person folders"):
        enroll.scan(tmp_path / "empty")
    with pytest.raises(enroll.EnrollError, match="not a folder"):
        enroll.scan(tmp_path / "missing")


def test_entry_ids():
    assert streams.check_entry_id("1732486490123-0") == "1732486490123-0"
    assert streams.check_entry_id("0-00") == "0-0"
    for bad in ("abc", "1-", str(2**64) + "-0", "1-" + str(2**64)):
        with pytest.raises(ValueError):
            streams.check_entry_id(bad)


def test_time_zone_names():
    assert check_zone("Europe/Paris") == "Europe/Paris"
    for bad in ("Mars/Olympus", "../etc/passwd", "", "europe/paris"):
        with pytest.raises(ValueError, match="IANA"):
            check_zone(bad)


def test_csv_of_nothing_has_a_header():
    assert to_csv([], "UTC").startswith("day,person_id,person_name,")
