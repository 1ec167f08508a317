"""Accuracy and speed cost of the int8 (dynamically quantised) embedder, on real photos.

    .venv/bin/python bench/int8.py [--limit 0] [--threads 1]

Every faces/lfw_dev and faces/lfw_dev_unknown photo: faces detected once (ONNX
MTCNN, the same boxes for both), the main face embedded by the fp32 and the int8
ONNX embedder.  Prints cosine fp32↔int8, LFW verification AUC for both, and the
worker's matcher (5 photos enrolled per person, the worker's default threshold)
for both: rank-1, correct-accept, stranger false-accept, and how many decisions
differ; then ms per face for both.  The ONNX files (with the int8 embedder) are
exported into the cache first if missing.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    scores = np.concatenate([pos, neg])
    ranks = np.empty(len(scores))
    ranks[scores.argsort(kind="mergesort")] = np.arange(1, len(scores) + 1)
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, default=0, help="photos (0: all)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import cv2
    from facegrid_services.worker.gallery import Gallery
    from facegrid_services.worker.settings import WorkerSettings
    from facegrid_vision.faces import load_analyzer
    from facegrid_vision.models import CASIA_MODEL_ID
    from facegrid_vision.onnx_backend import EMBEDDER_INT8, default_dir

    from facegrid.logs import configure

    configure("WARNING")
    folder = default_dir(CASIA_MODEL_ID)
    if not (folder / EMBEDDER_INT8).is_file():
        from facegrid_vision.export import export_onnx

        export_onnx("casia-webface", folder, int8=True)
    fp32 = load_analyzer(folder, threads=args.threads, min_face_size=40)
    int8 = load_analyzer(folder, int8=True, threads=args.threads, min_face_size=40)
    files = []
    for sub in ("lfw_dev", "lfw_dev_unknown"):
        files += sorted((SHARED / "faces" / sub).glob("*/*.jpg"))
    if args.limit:
        files = files[:: max(1, len(files) // args.limit)]
    crops, owners = [], []
    for f in files:
        rgb = cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
        boxes, _ = fp32.detect(rgb)
        if len(boxes):
            h, w = rgb.shape[:2]
            c = np.array([((b[0] + b[2]) / 2 - w / 2) ** 2 + ((b[1] + b[3]) / 2 - h / 2) ** 2
                          for b in boxes])
            area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            i = int(np.argmax(area / (1 + c / (w * h))))
            crops.append(fp32.crops(rgb, boxes[i:i + 1])[0])
            owners.append(f)
    crops = np.stack(crops)
    res = {}
    for name, a in (("fp32", fp32), ("int8", int8)):
        a.embed_crops(crops[:8])  # warm-up
        t = time.process_time()
        res[name] = a.embed_crops(crops)
        res[name + "_ms"] = (time.process_time() - t) * 1000 / len(crops)
    cos = (res["fp32"] * res["int8"]).sum(axis=1)
    print(f"{len(files)} photos, {len(crops)} faces; cosine fp32-int8: min {cos.min():.4f}, "
          f"mean {cos.mean():.4f}")
    print(f"CPU ms per face (batches of {fp32.max_batch}): fp32 {res['fp32_ms']:.1f}, "
          f"int8 {res['int8_ms']:.1f}")

    s = WorkerSettings(public_key_file="unused.pub")
    threshold = s.threshold if s.threshold is not None else s.default_threshold
    decisions = {}
    for name in ("fp32", "int8"):
        emb = res[name]
        people: dict[str, list[np.ndarray]] = {}
        strangers = []
        for f, e in zip(owners, emb, strict=True):
            if f.parent.parent.name == "lfw_dev":
                people.setdefault(f.parent.name, []).append(e)
            else:
                strangers.append(e)
        known = {p: v for p, v in people.items() if len(v) > 1}
        pos = np.array([float(a @ b) for v in known.values()
                        for a, b in itertools.combinations(v, 2)])
        neg = np.array([float(a @ b) for p, q in itertools.combinations(list(known), 2)
                        for a, b in itertools.product(known[p][:5], known[q][:5])])
        rows = [(pid, e.tobytes()) for pid, v in enumerate(people.values()) for e in v[:5]]
        g = Gallery.from_rows("m", rows)
        probes = np.stack([e for v in people.values() for e in v[5:]])
        labels = np.array([pid for pid, v in enumerate(people.values()) for _ in v[5:]])
        m = g.match(probes, threshold)
        far = float(g.match(np.stack(strangers), threshold).recognised.mean()) if strangers \
            else float("nan")
        decisions[name] = np.concatenate([np.where(m.recognised, m.person_ids, -1),
                                          g.match(np.stack(strangers), threshold).recognised
                                          if strangers else []])
        print(f"{name}: verification AUC {auc(pos, neg):.4f}; threshold {threshold}: rank-1 "
              f"{(m.person_ids == labels).mean():.2%}, correct-accept "
              f"{((m.person_ids == labels) & m.recognised).mean():.2%}, strangers accepted "
              f"{far:.2%} ({len(probes)} probes, {len(strangers)} strangers)")
    diff = int((decisions["fp32"] != decisions["int8"]).sum())
    print(f"decisions that differ fp32 vs int8: {diff} of {len(decisions['fp32'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
