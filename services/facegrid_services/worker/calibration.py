"""The threshold in force, calibrated from the gallery's own impostor scores.

A fixed threshold cannot hold a stranger rate: the more people are enrolled,
the more likely a stranger resembles one of them (on LFW, 0.58 let 1 in 60
strangers in with 31 people enrolled and 7 % with 280).  So the worker derives
the threshold from the gallery it matches against, every time the gallery
changes (enroll, erase):

* impostor scores: each enrolled photo's best similarity to the template of
  *another* person (:meth:`Gallery.impostor_scores`), i.e. what a stranger who
  resembles an enrolled person scores;
* the estimate is their ``1 − target_far`` quantile (order statistic), and its
  90 % confidence interval comes from the binomial distribution of the rank
  (normal approximation): ``low``/``high``; ``high`` is None when the interval
  reaches past the highest score seen (too few samples to bound it);
* the threshold in force is the estimate (``floor``, off by default, can bound
  it from below); it is measured in the gallery's own space (centred on the
  gallery mean from 10 people: :mod:`.gallery`), which is why it is not
  compared with the uncentred default;
* **it refuses to pretend**: with fewer than ``min_people`` people, or fewer
  impostor scores than ``1 / target_far`` (the quantile would be the maximum,
  not an estimate), the fixed default stays in force and ``note`` says why.

A pinned ``FACEGRID_THRESHOLD`` overrides all of it (``source`` ``setting``);
per-camera overrides are applied on top by the worker.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

#: z of a two-sided 90 % interval.
_Z90 = 1.6449


@dataclass(frozen=True, slots=True)
class Calibration:
    threshold: float
    source: str  # "gallery" | "default" | "setting"
    target_far: float
    people: int
    samples: int
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    note: str = ""

    def as_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def quantile_interval(scores: np.ndarray, target_far: float) -> tuple[float, float,
                                                                        float | None]:
    """``(estimate, low, high)`` of the ``1 − target_far`` quantile of ``scores``."""
    s = np.sort(np.asarray(scores, np.float64))
    n = s.size
    q = 1.0 - target_far
    k = min(n, max(1, math.ceil(q * n)))  # 1-based rank of the estimate
    sd = math.sqrt(n * q * (1.0 - q))
    lo = max(1, math.floor(q * n - _Z90 * sd))
    hi = math.ceil(q * n + _Z90 * sd) + 1
    return float(s[k - 1]), float(s[lo - 1]), float(s[hi - 1]) if hi <= n else None


def calibrate(impostor: np.ndarray, people: int, *, target_far: float, default: float,
              floor: float | None = None, min_people: int = 10,
              pinned: float | None = None) -> Calibration:
    """The threshold in force for a gallery of ``people`` with these impostor scores."""
    n = int(np.asarray(impostor).size)
    if pinned is not None:
        return Calibration(pinned, "setting", target_far, people, n,
                           note="FACEGRID_THRESHOLD is set: no calibration")
    need = math.ceil(1.0 / target_far)
    if people < min_people or n < need:
        why = (f"{people} people enrolled (need {min_people})" if people < min_people
               else f"{n} impostor scores (need {need} for a {target_far:.1%} quantile)")
        return Calibration(default, "default", target_far, people, n,
                           note=f"too little to calibrate: {why}; the default "
                                f"{default:g} is in force")
    est, low, high = quantile_interval(impostor, target_far)
    t = est if floor is None else max(est, floor)
    note = (f"{1 - target_far:.0%} quantile of {n} impostor scores of {people} people"
            + (f"; below the floor {floor:g}, the floor is in force"
               if floor is not None and est < floor else "")
            + ("" if high is not None else "; upper bound not determined (few samples)"))
    return Calibration(round(t, 4), "gallery", target_far, people, n, round(est, 4),
                       round(low, 4), None if high is None else round(high, 4), note)
