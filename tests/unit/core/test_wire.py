"""Wire format v1 and v2: round trip, and every malformed entry refused with its reason."""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from facegrid import wire
from facegrid.wire import Reason, WireError

pytestmark = pytest.mark.unit
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln"


def entry(payload, emb, token=TOKEN):
    return wire.encode(payload, token, emb)


def test_round_trip(payload, unit_embedding):
    e = entry(payload, unit_embedding)
    assert set(e) == {"v", "token", "payload", "embedding"}
    assert len(e["embedding"]) == 2048
    ev = wire.decode(e)
    assert ev.payload == payload
    assert ev.token == TOKEN
    np.testing.assert_array_equal(ev.embedding, unit_embedding.astype("<f4"))
    assert ev.corrected_at == wire.parse_time(payload.corrected_utc)
    assert (ev.corrected_at - ev.node_time).total_seconds() * 1000 == pytest.approx(12.5)


def test_round_trip_as_redis_returns_it(payload, unit_embedding):
    """redis-py returns bytes keys and values."""
    e = {k.encode(): v for k, v in entry(payload, unit_embedding).items()}
    assert wire.decode(e).payload.event_id == payload.event_id


def test_embedding_is_little_endian_float32(payload, unit_embedding):
    raw = entry(payload, unit_embedding)["embedding"]
    assert np.frombuffer(raw, "<f4")[0] == np.float32(unit_embedding[0])


def test_all_design_fields_present(payload, unit_embedding):
    body = json.loads(entry(payload, unit_embedding)["payload"])
    assert set(body) == {
        "event_id", "node_id", "lamport", "utc_timestamp", "local_time", "timezone",
        "timezone_offset", "drift_offset_ms", "corrected_utc", "track_id", "box",
        "det_confidence", "quality", "model"}


def mutate(payload, emb, **changes):
    e = entry(payload, emb)
    body = json.loads(e["payload"])
    for k, v in changes.items():
        if v is KeyError:
            del body[k]
        else:
            body[k] = v
    e["payload"] = json.dumps(body).encode()
    return e


@pytest.mark.parametrize(("changes", "reason"), [
    ({"event_id": KeyError}, Reason.MISSING_FIELD),
    ({"colour": "red"}, Reason.EXTRA_FIELD),
    ({"lamport": "7"}, Reason.WRONG_TYPE),
    ({"lamport": True}, Reason.WRONG_TYPE),
    ({"lamport": -1}, Reason.BAD_VALUE),
    ({"node_id": "Not A Node!"}, Reason.BAD_VALUE),
    ({"event_id": "123"}, Reason.BAD_VALUE),
    ({"model": ""}, Reason.BAD_VALUE),
    ({"box": [1, 2, 3]}, Reason.BAD_VALUE),
    ({"box": [50, 2, 10, 40]}, Reason.BAD_VALUE),
    ({"det_confidence": 1.5}, Reason.BAD_VALUE),
    ({"quality": {"brightness": 1.0}}, Reason.MISSING_FIELD),
    ({"timezone_offset": "1:00"}, Reason.BAD_VALUE),
    ({"utc_timestamp": "yesterday"}, Reason.BAD_TIMESTAMP),
    ({"utc_timestamp": "2026-11-24T08:30:00"}, Reason.BAD_TIMESTAMP),
    ({"utc_timestamp": "2026-11-24T09:30:00+01:00"}, Reason.BAD_TIMESTAMP),
    ({"corrected_utc": "1970-01-01T00:00:00Z"}, Reason.BAD_TIMESTAMP),
    ({"corrected_utc": "2026-11-24T08:31:00.000000Z"}, Reason.BAD_TIMESTAMP),
    ({"local_time": "2026-11-24T10:30:00+01:00"}, Reason.BAD_TIMESTAMP),
    ({"local_time": "2026-11-24T08:30:00+00:00"}, Reason.BAD_TIMESTAMP),
    ({"drift_offset_ms": 1e12}, Reason.BAD_VALUE),
])
def test_bad_payload_fields(payload, unit_embedding, changes, reason):
    with pytest.raises(WireError) as err:
        wire.decode(mutate(payload, unit_embedding, **changes))
    assert err.value.reason is reason


@pytest.mark.parametrize("v", [b"3", b"0", b"", b"1.0"])
def test_unknown_version(payload, unit_embedding, v):
    e = entry(payload, unit_embedding) | {"v": v}
    with pytest.raises(WireError) as err:
        wire.decode(e)
    assert err.value.reason is Reason.UNKNOWN_VERSION


TRACK = wire.TrackSummary(frames=7, weight=5.25, face_quality=0.8)


def test_v2_round_trip_carries_the_track(make_payload, unit_embedding):
    p = make_payload(track=TRACK)
    e = entry(p, unit_embedding)
    assert e["v"] == b"2"
    assert json.loads(e["payload"])["track"] == {"frames": 7, "weight": 5.25,
                                                 "face_quality": 0.8}
    ev = wire.decode(e)
    assert ev.payload == p and ev.payload.track == TRACK and ev.payload.version == "2"


def test_v1_still_decodes_without_a_track(payload, unit_embedding):
    e = entry(payload, unit_embedding)
    assert e["v"] == b"1"
    ev = wire.decode(e)
    assert ev.payload.track is None and ev.payload.version == "1"


def test_version_and_track_must_agree(make_payload, payload, unit_embedding):
    v2 = entry(make_payload(track=TRACK), unit_embedding)
    with pytest.raises(WireError) as err:  # a v1 entry with a track field
        wire.decode(v2 | {"v": b"1"})
    assert err.value.reason is Reason.EXTRA_FIELD
    with pytest.raises(WireError) as err:  # a v2 entry without one
        wire.decode(entry(payload, unit_embedding) | {"v": b"2"})
    assert err.value.reason is Reason.MISSING_FIELD


@pytest.mark.parametrize(("track", "reason"), [
    ([7, 1.0, 0.5], Reason.WRONG_TYPE),
    ({"frames": 7, "weight": 1.0}, Reason.MISSING_FIELD),
    ({"frames": 7, "weight": 1.0, "face_quality": 0.5, "x": 1}, Reason.EXTRA_FIELD),
    ({"frames": 7.0, "weight": 1.0, "face_quality": 0.5}, Reason.WRONG_TYPE),
    ({"frames": True, "weight": 1.0, "face_quality": 0.5}, Reason.WRONG_TYPE),
    ({"frames": 0, "weight": 0.0, "face_quality": 0.5}, Reason.BAD_VALUE),
    ({"frames": 2, "weight": 2.5, "face_quality": 0.5}, Reason.BAD_VALUE),
    ({"frames": 2, "weight": -0.1, "face_quality": 0.5}, Reason.BAD_VALUE),
    ({"frames": 2, "weight": 1.0, "face_quality": 1.5}, Reason.BAD_VALUE),
    ({"frames": 2, "weight": 1.0, "face_quality": "high"}, Reason.WRONG_TYPE),
])
def test_bad_track(make_payload, unit_embedding, track, reason):
    with pytest.raises(WireError) as err:
        wire.decode(mutate(make_payload(track=TRACK), unit_embedding, track=track))
    assert err.value.reason is reason


@pytest.mark.parametrize(("field", "reason"), [("token", Reason.MISSING_FIELD),
                                               ("embedding", Reason.MISSING_FIELD),
                                               ("v", Reason.MISSING_FIELD)])
def test_missing_entry_field(payload, unit_embedding, field, reason):
    e = entry(payload, unit_embedding)
    del e[field]
    with pytest.raises(WireError) as err:
        wire.decode(e)
    assert err.value.reason is reason


def test_extra_entry_field(payload, unit_embedding):
    with pytest.raises(WireError) as err:
        wire.decode(entry(payload, unit_embedding) | {"picture": b"\xff\xd8"})
    assert err.value.reason is Reason.EXTRA_FIELD


@pytest.mark.parametrize("n", [511, 513, 0])
def test_wrong_embedding_length(payload, unit_embedding, n):
    e = entry(payload, unit_embedding)
    e["embedding"] = np.ones(n, "<f4").tobytes()
    with pytest.raises(WireError) as err:
        wire.decode(e)
    assert err.value.reason is Reason.WRONG_LENGTH


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_embedding(payload, unit_embedding, bad):
    emb = unit_embedding.copy()
    emb[5] = bad
    e = entry(payload, unit_embedding)
    e["embedding"] = emb.astype("<f4").tobytes()
    with pytest.raises(WireError) as err:
        wire.decode(e)
    assert err.value.reason is Reason.NOT_FINITE


@pytest.mark.parametrize("scale", [0.0, 0.5, 2.0])
def test_embedding_norm_far_from_one(payload, unit_embedding, scale):
    e = entry(payload, unit_embedding)
    e["embedding"] = (unit_embedding * scale).astype("<f4").tobytes()
    with pytest.raises(WireError) as err:
        wire.decode(e)
    assert err.value.reason is Reason.BAD_NORM


def test_oversize_payload_and_token(payload, unit_embedding):
    e = entry(payload, unit_embedding)
    e["payload"] = b'{"x":"' + b"a" * 10_000 + b'"}'
    with pytest.raises(WireError) as err:
        wire.decode(e)
    assert err.value.reason is Reason.OVERSIZE
    e = entry(payload, unit_embedding, token="a" * 5000)
    with pytest.raises(WireError) as err:
        wire.decode(e)
    assert err.value.reason is Reason.OVERSIZE


@pytest.mark.parametrize("raw", [b"not json", b"[1,2]", b"\xff\xfe", b'{"a":' * 5000])
def test_bad_json(payload, unit_embedding, raw):
    e = entry(payload, unit_embedding)
    e["payload"] = raw
    with pytest.raises(WireError) as err:
        wire.decode(e)
    assert err.value.reason in {Reason.BAD_JSON, Reason.WRONG_TYPE, Reason.OVERSIZE}


def test_encode_refuses_wrong_length(payload):
    with pytest.raises(WireError):
        wire.encode(payload, TOKEN, np.ones(100, "f4"))


values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=50),
                   st.binary(max_size=3000))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
              st.text(max_size=40)),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.text(max_size=10), children, max_size=5),
    max_leaves=20)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.one_of(st.text(max_size=12), st.binary(max_size=12)), values,
                       max_size=6))
def test_fuzz_random_entries_only_raise_wire_error(fields):
    with contextlib.suppress(WireError):
        wire.decode(fields)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(sorted(wire.PAYLOAD_FIELDS_V2)), value=json_values)
def test_fuzz_one_payload_field(make_payload, unit_embedding, key, value):
    e = mutate(make_payload(track=TRACK), unit_embedding, **{key: value})
    try:
        ev = wire.decode(e)
    except WireError:
        return
    # Anything accepted must still be a coherent event.
    assert ev.payload.node_id and ev.embedding.shape == (512,)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=0, max_size=600))
def test_fuzz_payload_bytes(payload, unit_embedding, raw):
    e = entry(payload, unit_embedding)
    e["payload"] = raw
    with pytest.raises(WireError):
        wire.decode(e)


def test_many_random_valid_events_round_trip(unit_embedding, make_payload):
    for i in range(200):
        p = make_payload(lamport=i, track_id=i)
        assert wire.decode(entry(p, unit_embedding)).payload == p


# Any JSON a client can write: huge integers (beyond int64 and float range), floats of
# any size, deep nesting, strings, odd types in every position.
huge_ints = st.one_of(st.integers(), st.integers(min_value=2**53 - 2, max_value=2**64),
                      st.builds(lambda k, s: s * 10**k, st.integers(15, 420),
                                st.sampled_from([1, -1])))
any_json = st.recursive(
    st.one_of(st.none(), st.booleans(), huge_ints, st.floats(), st.text(max_size=30)),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.text(max_size=8), children, max_size=4),
    max_leaves=12)


def _json_text(value) -> str:
    """Python's json writes NaN/Infinity as bare words: so may an attacker."""
    return json.dumps(value, allow_nan=True)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from([*sorted(wire.PAYLOAD_FIELDS), "quality.brightness", "quality.blur"]),
       value=any_json)
def test_property_any_json_value_in_any_field_only_raises_wire_error(payload, unit_embedding,
                                                                     key, value):
    e = entry(payload, unit_embedding)
    d = json.loads(e["payload"])
    if key.startswith("quality."):
        d["quality"][key.split(".")[1]] = "@@V@@"
    else:
        d[key] = "@@V@@"
    e["payload"] = json.dumps(d).replace('"@@V@@"', _json_text(value)).encode()
    try:
        ev = wire.decode(e)
    except WireError as err:
        assert err.reason in set(Reason)
        return
    assert 0 <= ev.payload.lamport <= wire.MAX_LAMPORT
    assert float(ev.payload.drift_offset_ms) == ev.payload.drift_offset_ms


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(depth=st.integers(1, 5000), opener=st.sampled_from(["[", '{"a":']))
def test_property_deep_nesting_only_raises_wire_error(payload, unit_embedding, depth, opener):
    e = entry(payload, unit_embedding)
    closer = "]" if opener == "[" else "}"
    e["payload"] = (opener * depth + "1" + closer * depth).encode()
    with pytest.raises(WireError):
        wire.decode(e)


@pytest.mark.parametrize("field", ["drift_offset_ms", "det_confidence", "lamport", "track_id"])
def test_ten_to_the_400_is_the_formats_error(payload, unit_embedding, field):
    e = entry(payload, unit_embedding)
    d = json.loads(e["payload"])
    d[field] = "@@V@@"
    e["payload"] = json.dumps(d).replace('"@@V@@"', "1" + "0" * 400).encode()
    with pytest.raises(WireError) as err:  # was OverflowError for the float fields
        wire.decode(e)
    assert err.value.reason == Reason.BAD_VALUE


def test_lamport_bounded_by_2_pow_53(make_payload, unit_embedding):
    assert wire.decode(entry(make_payload(lamport=2**53), unit_embedding)).payload.lamport == 2**53
    with pytest.raises(WireError) as err:
        wire.decode(entry(make_payload(lamport=2**53 + 1), unit_embedding))
    assert err.value.reason == Reason.BAD_VALUE


def test_result_message_round_trip_and_refusals():
    r = wire.Result("0190f0f0-0000-7000-8000-000000000001", 7, True)
    assert json.loads(r.to_json()) == {"event_id": r.event_id, "track_id": 7, "recognised": True}
    assert wire.decode_result(r.to_json()) == r
    for bad in ("[]", "{", '{"event_id":"x","track_id":1,"recognised":true}',
                '{"event_id":"0190f0f0-0000-7000-8000-000000000001","track_id":1e999,'
                '"recognised":true}', "1" * 300):
        with pytest.raises(WireError):
            wire.decode_result(bad)
