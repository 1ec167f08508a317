"""The ONNX Runtime backend against the torch reference, on real photos.

ONNX files come from ``facegrid models export-onnx``'s code (fixture
``onnx_models``); the node's default analyzer runs them with onnxruntime and the
numpy MTCNN, the reference is facenet-pytorch's own MTCNN and InceptionResnetV1.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.models]


def _rgb(path):
    import cv2

    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_export_writes_checked_files_and_a_manifest(onnx_models, test_weights, tmp_path):
    from facegrid_vision.models import WeightsError, resolve_weights
    from facegrid_vision.onnx_backend import read_manifest, sha256_file

    m = read_manifest(onnx_models, int8=True)
    assert m["model_id"] == "facenet-casia-webface"
    assert m["weights"]["sha256"] == sha256_file(test_weights)
    assert m["files"]["pnet"]["input"] == [None, 3, None, None]
    assert m["files"]["rnet"]["input"] == [None, 3, 24, 24]
    assert m["files"]["onet"]["input"] == [None, 3, 48, 48]
    assert m["files"]["embedder"]["input"] == [None, 3, 160, 160]
    for entry in m["files"].values():
        assert sha256_file(onnx_models / entry["file"]) == entry["sha256"]
    assert max(m["max_abs_diff"].values()) < 1e-4
    # The folder is a --weights value of its own: its model id comes from the manifest.
    assert resolve_weights(str(onnx_models)) == ("facenet-casia-webface", onnx_models)
    with pytest.raises(WeightsError, match="not --model-id"):
        resolve_weights(str(onnx_models), "other-model")

    # A changed file is refused, never run.
    bad = tmp_path / "bad"
    shutil.copytree(onnx_models, bad)
    data = bytearray((bad / "rnet.onnx").read_bytes())
    data[-10] ^= 0xFF
    (bad / "rnet.onnx").write_bytes(bytes(data))
    with pytest.raises(WeightsError, match=r"rnet\.onnx does not match the SHA-256"):
        read_manifest(bad)
    (bad / "manifest.json").unlink()
    with pytest.raises(WeightsError, match="export-onnx"):
        read_manifest(bad)
    with pytest.raises(WeightsError, match="not an exported ONNX folder"):
        resolve_weights(str(bad))
    (bad / "manifest.json").write_text(json.dumps({"format": 99}))
    with pytest.raises(WeightsError, match="unknown manifest format"):
        read_manifest(bad)


def test_onnx_matches_torch_on_real_photos(face_analyzer, torch_analyzer, shared_data):
    """Boxes within 1 px, embeddings cosine ≥ 0.9999, on group photos and LFW faces."""
    assert face_analyzer.backend == "onnx" and torch_analyzer.backend == "torch"
    assert face_analyzer.model_id == torch_analyzer.model_id == "facenet-casia-webface"
    photos = sorted((shared_data / "media" / "multi_face").glob("*.jpg"))[:4]
    photos += sorted((shared_data / "faces" / "lfw_dev").glob("*/*.jpg"))[::60]
    assert len(photos) >= 12
    faces = worst_box = 0
    worst_cos = 1.0
    for path in photos:
        rgb = _rgb(path)
        bo, po = face_analyzer.detect(rgb)
        bt, pt = torch_analyzer.detect(rgb)
        assert len(bo) == len(bt), path.name
        if not len(bo):
            continue
        worst_box = max(worst_box, float(np.abs(bo - bt).max()))
        assert np.abs(po - pt).max() < 1e-3
        # Each backend embeds the same (torch) boxes: the networks alone are compared ...
        eo, et = face_analyzer.embed(rgb, bt), torch_analyzer.embed(rgb, bt)
        worst_cos = min(worst_cos, float((eo * et).sum(axis=1).min()))
        # ... and the whole ONNX path (its own boxes) too.
        end_to_end = (face_analyzer.embed(rgb, bo) * et).sum(axis=1)
        worst_cos = min(worst_cos, float(end_to_end.min()))
        faces += len(bo)
    print(f"\nONNX vs torch on {len(photos)} photos, {faces} faces: largest box difference "
          f"{worst_box:.2e} px, lowest embedding cosine {worst_cos:.7f}")
    assert faces >= 20
    assert worst_box <= 1.0
    assert worst_cos >= 0.9999


def _per_person(lfw, subset):
    out = {}
    for person, photos in sorted(lfw.items()):
        if photos and photos[0][0].parent.parent.name == subset:
            out[person] = [e for _, e in sorted(photos, key=lambda x: x[0].name)]
    return out


def test_lfw_dev_decisions_identical_and_torch_gallery_matches_onnx_events(
        lfw_embeddings, lfw_embeddings_torch):
    """The worker's own matcher gives the same answer for every LFW photo whether the
    gallery and the events come from torch, from ONNX, or a torch gallery meets ONNX
    events (enrolled before the nodes moved to ONNX)."""
    from facegrid_services.worker.gallery import Gallery
    from facegrid_services.worker.settings import WorkerSettings

    s = WorkerSettings(public_key_file="unused.pub")
    found_o = {p: [e is not None for e in v] for p, v in _per_person(lfw_embeddings,
                                                                     "lfw_dev").items()}
    found_t = {p: [e is not None for e in v] for p, v in _per_person(lfw_embeddings_torch,
                                                                     "lfw_dev").items()}
    assert found_o == found_t  # the same photos have a face
    cos = [float(a @ b) for p in lfw_embeddings for (_, a), (_, b)
           in zip(lfw_embeddings[p], lfw_embeddings_torch[p], strict=True)
           if a is not None and b is not None]
    assert len(cos) >= 600 and min(cos) >= 0.9999

    def split(lfw):
        known = {p: np.stack([e for e in v if e is not None])
                 for p, v in _per_person(lfw, "lfw_dev").items()}
        strangers = np.stack([e for v in _per_person(lfw, "lfw_dev_unknown").values()
                              for e in v if e is not None])
        rows = [(pid, e.tobytes()) for pid, embs in enumerate(known.values())
                for e in embs[:5]]
        probes = np.concatenate([*(e[5:] for e in known.values()), strangers])
        return Gallery.from_rows("facenet-casia-webface", rows), probes

    g_torch, probes_torch = split(lfw_embeddings_torch)
    g_onnx, probes_onnx = split(lfw_embeddings)
    # The worker's fixed default and the threshold it would calibrate from this gallery.
    thresholds = [s.threshold if s.threshold is not None else s.default_threshold,
                  g_torch.suggest_threshold(s.target_far)]
    for threshold in thresholds:
        ref = g_torch.match(probes_torch, threshold)
        assert 0 < int(ref.recognised.sum()) < len(probes_torch)  # decisions to compare
        decisions = {}
        for name, g, probes in (("onnx/onnx", g_onnx, probes_onnx),
                                ("torch gallery/onnx events", g_torch, probes_onnx)):
            m = g.match(probes, threshold)
            decisions[name] = int(((m.person_ids == ref.person_ids)
                                   & (m.recognised == ref.recognised)).sum())
            assert np.array_equal(m.recognised, ref.recognised), (name, threshold)
            assert np.array_equal(m.person_ids[m.recognised],
                                  ref.person_ids[ref.recognised]), (name, threshold)
            assert np.abs(m.scores - ref.scores).max() < 1e-3, (name, threshold)
        print(f"\nLFW dev, threshold {threshold:.3f}: {len(probes_torch)} probes "
              f"({int(ref.recognised.sum())} recognised by torch); identical decisions: "
              + ", ".join(f"{k} {v}/{len(probes_torch)}" for k, v in decisions.items()))


def test_int8_embedder_is_close_and_says_so(onnx_models, face_analyzer, shared_data):
    from facegrid_vision.faces import load_analyzer

    q = load_analyzer(onnx_models, backend="onnx", int8=True, threads=1, min_face_size=40)
    assert q.model_id == "facenet-casia-webface.int8"  # never matched with fp32 galleries
    rgb = _rgb(shared_data / "media" / "multi_face" / "friends_cast_6_faces.jpg")
    boxes, _ = face_analyzer.detect(rgb)
    cos = (q.embed(rgb, boxes) * face_analyzer.embed(rgb, boxes)).sum(axis=1)
    print(f"\nint8 vs fp32 embedder cosine on {len(boxes)} faces: min {cos.min():.4f}")
    assert len(boxes) >= 5 and cos.min() > 0.98
