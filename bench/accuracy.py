"""Recognition accuracy on the shared LFW sets: rank-1, correct-accept, strangers accepted.

    .venv/bin/python bench/accuracy.py [--sets lfw_dev,lfw_dev_large] [--variant default]

Protocols (the issue's):
* ``lfw_dev``: 31 people, enroll each one's first 5 photos, identify the other
  15; 40 single-photo strangers (``lfw_dev_unknown``).
* ``lfw_dev_large``: 124 people, enroll the first 5 photos, identify the 6th;
  150 strangers (``lfw_dev_large_unknown``).

"At the default settings" means what the worker does out of the box: the
threshold in force is the one calibrated from the gallery's own impostor
scores (:mod:`facegrid_services.worker.calibration`), never from the probes or
strangers; ``--fixed`` also prints the old fixed 0.58.  The operating curve
lists correct-accept and strangers accepted over a grid of thresholds.

Detections (box, probability, five landmarks of the main face) and embeddings
are cached under ``${FACEGRID_CACHE:-~/.cache/facegrid}/accuracy/`` keyed by the
weights, the photo list and the embedding settings: only the first run of a
variant embeds photos (a few minutes on 2 busy cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
SETS = {"lfw_dev": ("lfw_dev", "lfw_dev_unknown", 5, None),
        "lfw_dev_large": ("lfw_dev_large", "lfw_dev_large_unknown", 5, 1)}
log = logging.getLogger("bench.accuracy")


def files_of(sub: str) -> list[Path]:
    return sorted((SHARED / "faces" / sub).glob("*/*.jpg"))


def _key(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def main_face(boxes: np.ndarray, width: int, height: int) -> int:
    """Index of the largest, most central face (the labelled person in LFW)."""
    cx, cy, diag = width / 2, height / 2, float(np.hypot(width, height))
    best, score = 0, -1.0
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        d = float(np.hypot((x1 + x2) / 2 - cx, (y1 + y2) / 2 - cy)) / diag
        s = (x2 - x1) * (y2 - y1) * (1.0 - d) ** 2
        if s > score:
            best, score = i, s
    return best


def rgb_of(path: Path) -> np.ndarray:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def load_analyzer_for_bench(margin: int):
    from facegrid_vision.faces import load_analyzer

    # flip=False: embeddings() averages the mirror image itself (the same arithmetic).
    return load_analyzer("casia-webface", min_face_size=20, margin=margin, threads=1,
                         flip=False)


def detections(analyzer, files: list[Path], cache: Path) -> dict[str, np.ndarray]:
    """Main face of every photo: box (4), probability, landmarks (5, 2), found; cached."""
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    n = len(files)
    out = {"box": np.zeros((n, 4), np.float32), "prob": np.zeros(n, np.float32),
           "landmarks": np.zeros((n, 5, 2), np.float32), "found": np.zeros(n, bool)}
    t0 = time.perf_counter()
    for k in range(0, n, 32):
        chunk = files[k:k + 32]
        imgs = [rgb_of(p) for p in chunk]
        groups: dict[tuple, list[int]] = {}
        for j, img in enumerate(imgs):
            groups.setdefault(img.shape, []).append(j)
        for shape, idx in groups.items():
            dets = [analyzer.detect_landmarks(imgs[j]) for j in idx]
            for j, (b, p, lm) in zip(idx, dets, strict=True):
                if b is None or len(b) == 0:
                    continue
                i = main_face(np.asarray(b), shape[1], shape[0])
                out["box"][k + j], out["prob"][k + j] = b[i], p[i]
                out["landmarks"][k + j], out["found"][k + j] = lm[i], True
        log.info("detected %d/%d photos (%.0f s)", min(k + 32, n), n, time.perf_counter() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.npz")
    np.savez(tmp, **out)
    os.replace(tmp, cache)
    return out


def embeddings(analyzer, files: list[Path], det: dict[str, np.ndarray], *, margin: int,
               flip: bool, cache: Path) -> np.ndarray:
    """(N, 512) unit embeddings of each photo's main face (zeros where none was found)."""
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as z:
            return z["embeddings"]
    analyzer.margin = margin
    n = len(files)
    out = np.zeros((n, 512), np.float32)
    t0 = time.perf_counter()
    for k in range(0, n, 32):
        idx = [i for i in range(k, min(k + 32, n)) if det["found"][i]]
        crops = np.stack([analyzer.crops(rgb_of(files[i]), det["box"][i:i + 1])[0] for i in idx])
        e = analyzer.embed_crops(crops)
        if flip:
            e = e + analyzer.embed_crops(np.ascontiguousarray(crops[:, :, ::-1]))
            e /= np.linalg.norm(e, axis=1, keepdims=True)
        out[idx] = e
        log.info("embedded %d/%d (%.0f s)", min(k + 32, n), n, time.perf_counter() - t0)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f".{cache.stem}.{os.getpid()}.npz")
    np.savez(tmp, embeddings=out)
    os.replace(tmp, cache)
    return out


def split(files: list[Path], emb: np.ndarray, found: np.ndarray, sub: str, enroll: int,
          probes: int | None):
    """Enrolled rows ``(person, embedding)``, probe embeddings and their person labels."""
    rows, probe, labels = [], [], []
    people: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        if f.parent.parent.name == sub and found[i]:
            people.setdefault(f.parent.name, []).append(i)
    for pid, (_, idx) in enumerate(sorted(people.items())):
        idx = sorted(idx, key=lambda i: files[i].name)
        rows += [(pid, emb[i].tobytes()) for i in idx[:enroll]]
        rest = idx[enroll:] if probes is None else idx[enroll:enroll + probes]
        probe += [emb[i] for i in rest]
        labels += [pid] * len(rest)
    return rows, np.stack(probe), np.asarray(labels)


def strangers_of(files, emb, found, sub: str) -> np.ndarray:
    return np.stack([emb[i] for i, f in enumerate(files)
                     if f.parent.parent.name == sub and found[i]])


def evaluate(gallery, probes, labels, strangers, threshold: float) -> dict:
    m = gallery.match(probes, threshold)
    right = gallery.person_ids[np.argmax(probes @ gallery.templates.T, axis=1)] == labels
    s = gallery.match(strangers, threshold)
    return {"rank1": float(right.mean()),
            "correct_accept": float((right & m.recognised).mean()),
            "strangers": int(s.recognised.sum()), "n_strangers": len(strangers),
            "n_probes": len(probes)}


def run_set(name: str, files, emb, found, *, target_far: float, default: float,
            min_people: int, curve: list[float]) -> dict:
    from facegrid_services.worker.calibration import calibrate
    from facegrid_services.worker.gallery import Gallery

    sub, unknown, enroll, probes = SETS[name]
    rows, probe, labels = split(files, emb, found, sub, enroll, probes)
    strangers = strangers_of(files, emb, found, unknown)
    full = Gallery.from_rows("facenet-casia-webface", rows, centre_from=min_people)
    plain = Gallery.from_rows("facenet-casia-webface", rows, centre_from=0)
    cal = calibrate(full.impostor_scores(), full.people, target_far=target_far,
                    default=default, min_people=min_people)
    out = {"set": name, "people": full.people, "calibration": cal.as_json(),
           "default": evaluate(full, probe, labels, strangers, cal.threshold),
           "fixed_0.58": evaluate(plain, probe, labels, strangers, 0.58),
           "curve": {f"{t:.3f}": evaluate(full, probe, labels, strangers, t) for t in curve}}
    return out


def _line(r: dict) -> str:
    return (f"rank-1 {r['rank1']:.2%}  correct-accept {r['correct_accept']:.2%}  "
            f"strangers accepted {r['strangers']}/{r['n_strangers']} "
            f"({r['strangers'] / r['n_strangers']:.1%})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", default="lfw_dev,lfw_dev_large")
    ap.add_argument("--margin", type=int, default=None, help="crop margin (default: node's)")
    ap.add_argument("--flip", type=int, choices=(0, 1), default=None,
                    help="horizontal-flip averaging (default: node's)")
    ap.add_argument("--curve", default="0.45,0.50,0.55,0.58,0.60,0.62,0.65,0.70")
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from facegrid_node.settings import NodeSettings
    from facegrid_services.worker.settings import WorkerSettings
    from facegrid_vision.models import cache_dir

    ns = NodeSettings()
    ws = WorkerSettings(public_key_file="unused.pub")
    margin = ns.margin if args.margin is None else args.margin
    flip = getattr(ns, "flip", False) if args.flip is None else bool(args.flip)
    files: list[Path] = []
    for name in SETS:
        files += files_of(SETS[name][0]) + files_of(SETS[name][1])
    if not files:
        log.error("no photos under %s", SHARED / "faces")
        return 2
    rel = [str(f.relative_to(SHARED)) for f in files]
    key = _key(rel, "mtcnn-min20")
    an = load_analyzer_for_bench(margin)
    det = detections(an, files, cache_dir() / "accuracy" / f"detections-{key}.npz")
    emb = embeddings(an, files, det, margin=margin, flip=flip,
                     cache=cache_dir() / "accuracy" / f"emb-{key}-m{margin}-f{int(flip)}.npz")
    curve = [float(t) for t in args.curve.split(",")]
    results = [run_set(name, files, emb, det["found"], target_far=ws.target_far,
                       default=ws.default_threshold, min_people=ws.calibration_min_people,
                       curve=curve) for name in args.sets.split(",")]
    if args.json:
        print(json.dumps({"margin": margin, "flip": flip, "results": results}, indent=1))
        return 0
    print(f"crop margin {margin}, flip averaging {'on' if flip else 'off'}; "
          f"target stranger rate {ws.target_far:.0%}")
    for r in results:
        c = r["calibration"]
        print(f"\n{r['set']}: {r['people']} people enrolled; threshold in force "
              f"{c['threshold']} ({c['source']}: estimate {c['estimate']}, 90% interval "
              f"[{c['low']}, {c['high']}], {c['samples']} impostor scores)")
        print(f"  at the defaults:  {_line(r['default'])}")
        print(f"  uncentred, 0.58:  {_line(r['fixed_0.58'])}")
        print("  operating curve (centred gallery as in force):")
        for t, e in r["curve"].items():
            print(f"    {t}: {_line(e)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
